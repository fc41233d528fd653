"""The local cache, in huggingface_hub's layout, so either tool finds what the other downloaded.

::

    {cache}/{models|datasets|spaces}--{ns}--{name}/
        blobs/{etag}                 content (etag: sha256 for LFS files, git blob sha1 otherwise)
        blobs/{etag}.incomplete      a download in progress; resumed by the next attempt
        snapshots/{commit}/{path}    relative symlink to ../../blobs/{etag}
        refs/{revision}              the commit a branch or tag pointed to
    {cache}/.locks/{repo folder}/{etag}.lock

Concurrent processes are safe: a blob is downloaded under its lock file and renamed into place.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from hubfs.errors import CacheFullError
from hubfs.paths import RepoType, is_commit_sha, validate_path_in_repo


def is_disk_full(err: OSError) -> bool:
    """Whether ``err`` says the disk (or the user's quota) has no room left."""
    return err.errno in (errno.ENOSPC, errno.EDQUOT)


def free_bytes(folder: Path) -> int | None:
    """Free bytes on the disk holding ``folder`` (or its nearest existing parent); None when unknown."""
    for path in (folder, *folder.parents):
        try:
            return shutil.disk_usage(path).free
        except OSError:
            continue
    return None


def write_new(target: Path, write: Callable[[Path], object]) -> None:
    """Create ``target`` atomically: ``write`` fills a private temporary file that is renamed into place,
    and is removed if writing fails, so a half-written ``target`` never exists."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _link_or_copy(rel: str, blob: Path, target: Path) -> None:
    """A relative symlink at ``target`` (kept if there already), a copy where links fail; FileNotFoundError
    when ``target``'s folder is missing, the OSError itself when the disk is full."""
    try:
        os.symlink(rel, target)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise
    except OSError as err:
        if is_disk_full(err):
            raise
        if not target.exists():
            write_new(target, lambda tmp: shutil.copyfile(blob, tmp))


def repo_folder(repo_type: str, repo_id: str) -> str:
    return f"{RepoType.parse(repo_type).plural}--{repo_id.replace('/', '--')}"


@dataclass(frozen=True)
class CachedRepo:
    repo_type: str
    repo_id: str
    path: Path
    size: int
    revisions: dict[str, list[str]]  # commit -> refs pointing at it
    files: int


class HubCache:
    """One cache folder (default ``HF_HUB_CACHE``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / repo_folder(repo_type, repo_id)

    def blob(self, repo_type: str, repo_id: str, etag: str) -> Path:
        return self.repo_dir(repo_type, repo_id) / "blobs" / etag

    def snapshot(self, repo_type: str, repo_id: str, commit: str, path: str = "") -> Path:
        base = self.repo_dir(repo_type, repo_id) / "snapshots" / commit
        return base / validate_path_in_repo(path) if path else base

    def full_error(self, needed: int | None, what: str = "") -> CacheFullError:
        """The error for a write that found this cache's disk full."""
        return CacheFullError(str(self.root), needed, free_bytes(self.root), what)

    def lock(self, repo_type: str, repo_id: str, etag: str) -> FileLock:
        path = self.root / ".locks" / repo_folder(repo_type, repo_id) / f"{etag}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def write_ref(self, repo_type: str, repo_id: str, revision: str, commit: str) -> None:
        if is_commit_sha(revision):
            return
        ref = self.repo_dir(repo_type, repo_id) / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not ref.exists() or ref.read_text() != commit:
            write_new(ref, lambda tmp: tmp.write_text(commit))

    def read_ref(self, repo_type: str, repo_id: str, revision: str) -> str | None:
        if is_commit_sha(revision):
            return revision
        try:
            return (self.repo_dir(repo_type, repo_id) / "refs" / revision).read_text().strip()
        except OSError:
            return None

    def link(self, repo_type: str, repo_id: str, commit: str, path: str, etag: str) -> Path:
        """Point ``snapshots/{commit}/{path}`` at the blob (relative symlink, a copy where links fail)."""
        target = self.snapshot(repo_type, repo_id, commit, path)
        blob = self.blob(repo_type, repo_id, etag)
        rel = os.path.relpath(blob, target.parent)
        try:
            _link_or_copy(rel, blob, target)
        except FileNotFoundError:  # the folder's first file
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(rel, blob, target)
        return target

    def adopt(self, tmp: Path, repo_type: str, repo_id: str, etag: str, size: int, commit: str, path: str) -> Path:
        """Make the verified file ``tmp`` the blob ``etag`` (renamed into place under the blob's lock unless a
        blob of the right size is already there; ``tmp`` is gone either way) and link it into the commit's
        snapshot as ``path``; the snapshot path."""
        blob = self.blob(repo_type, repo_id, etag)
        blob.parent.mkdir(parents=True, exist_ok=True)
        with self.lock(repo_type, repo_id, etag):
            if not blob.exists() or blob.stat().st_size != size:  # missing, or truncated: replace it
                os.chmod(tmp, 0o644)
                os.replace(tmp, blob)
            else:
                tmp.unlink(missing_ok=True)
        return self.link(repo_type, repo_id, commit, path, etag)

    def scan(self) -> list[CachedRepo]:
        """Every cached repo with its size on disk and revisions."""
        out: list[CachedRepo] = []
        if not self.root.is_dir():
            return out
        for folder in sorted(self.root.iterdir()):
            if "--" not in folder.name or not folder.is_dir():
                continue
            kind, _, rest = folder.name.partition("--")
            repo_id = rest.replace("--", "/", 1)
            blobs = folder / "blobs"
            size = sum(f.stat().st_size for f in blobs.iterdir() if f.is_file()) if blobs.is_dir() else 0
            revisions: dict[str, list[str]] = {}
            snaps = folder / "snapshots"
            for snap in sorted(snaps.iterdir()) if snaps.is_dir() else []:
                revisions[snap.name] = []
            refs = folder / "refs"
            for ref in sorted(refs.rglob("*")) if refs.is_dir() else []:
                if ref.is_file():
                    revisions.setdefault(ref.read_text().strip(), []).append(str(ref.relative_to(refs)))
            files = sum(1 for f in blobs.iterdir() if f.is_file() and not f.name.endswith(".incomplete")) \
                if blobs.is_dir() else 0
            out.append(CachedRepo(kind.removesuffix("s"), repo_id, folder, size, revisions, files))
        return out

    def remove(self, repo_type: str, repo_id: str) -> int:
        """Delete a repo's cache; returns the bytes freed."""
        folder = self.repo_dir(repo_type, repo_id)
        if not folder.exists():
            return 0
        freed = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(folder)
        shutil.rmtree(self.root / ".locks" / folder.name, ignore_errors=True)
        return freed
