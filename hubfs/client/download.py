"""Downloads into the cache: whole files, verified, resumable, in big parallel ranges.

A file goes to ``blobs/{etag}.incomplete`` first. Small files are fetched in one request; files of
64 MiB and more in concurrent 16 MiB ranges written in place, with the finished ranges recorded
beside the file, so a download killed half-way resumes where it stopped. LFS content is checked
against its sha256 and regular files against their git blob id before the rename into place.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hubfs.client.api import HubClient
from hubfs.client.cache import HubCache, free_bytes, is_disk_full, write_new
from hubfs.client.fetch import RangeFetcher
from hubfs.client.malloc import receive_buffer
from hubfs.config import PART_SIZE
from hubfs.errors import CacheFullError, EntryNotFoundError, HubfsError, IntegrityError

PARALLEL_MIN = 64 << 20
SEQUENTIAL_PIECE = 8 << 20
SMALL = 1 << 20  # fetched whole into memory, checked, written under a private name and renamed: no lock


@dataclass(frozen=True)
class RemoteFile:
    """A file of a commit: where it is, how big, and the hash that names its blob."""

    path: str
    size: int
    etag: str  # sha256 for LFS files, git blob sha1 otherwise
    is_lfs: bool

    @classmethod
    def from_tree(cls, entry: dict[str, Any]) -> RemoteFile:
        lfs = entry.get("lfs")
        return cls(entry["path"], entry["size"], lfs["oid"] if lfs else entry["oid"], bool(lfs))


def _new_digest(remote: RemoteFile) -> Any:
    return hashlib.sha256() if remote.is_lfs else hashlib.sha1(b"blob %d\x00" % remote.size)


def _verify(path: Path, remote: RemoteFile, hexdigest: str) -> None:
    """Size and content hash (computed while the bytes arrived) against the tree entry."""
    _check(remote, path.stat().st_size, hexdigest)


def _check(remote: RemoteFile, size: int, hexdigest: str) -> None:
    if size != remote.size:
        raise IntegrityError(f"{remote.path}: downloaded {size} bytes, expected {remote.size}.")
    if hexdigest != remote.etag:
        raise IntegrityError(f"{remote.path}: content is corrupted (hash {hexdigest}, expected "
                             f"{remote.etag}); the partial file was removed, retry the download.")


def _discard(tmp: Path) -> None:
    """Remove a partial download and its record of finished ranges."""
    tmp.unlink(missing_ok=True)
    Path(str(tmp) + ".parts").unlink(missing_ok=True)


def fetch_file(fetcher: RangeFetcher, pool: ThreadPoolExecutor | None, url: str, remote: RemoteFile, tmp: Path,
               progress: Any = None) -> None:
    """Download ``url`` into ``tmp`` (resuming what is there), hashing in order as it arrives, and verify it.

    A full disk raises :class:`CacheFullError` (an ``OSError`` with errno ENOSPC) naming ``tmp``'s folder,
    after removing the partial file so that the space is given back.
    """
    try:
        if remote.size >= PARALLEL_MIN and pool is not None:
            hexdigest = _fetch_parallel(fetcher, pool, url, remote, tmp, progress)
        else:
            hexdigest = _fetch_sequential(fetcher, url, remote, tmp, progress)
    except OSError as err:
        if not is_disk_full(err):
            raise
        _discard(tmp)
        raise CacheFullError(str(tmp.parent), remote.size, free_bytes(tmp.parent), remote.path) from err
    try:
        _verify(tmp, remote, hexdigest)
    except IntegrityError:
        _discard(tmp)
        raise


def _fetch_sequential(fetcher: RangeFetcher, url: str, remote: RemoteFile, tmp: Path, progress: Any) -> str:
    done = tmp.stat().st_size if tmp.exists() else 0
    if done > remote.size:
        tmp.unlink()
        done = 0
    digest = _new_digest(remote)
    if done:
        with open(tmp, "rb") as f:  # the part a previous attempt left
            while chunk := f.read(8 << 20):
                digest.update(chunk)
        if progress is not None:
            progress.update(done)
    with open(tmp, "ab") as out:
        while done < remote.size:
            buf = receive_buffer(min(SEQUENTIAL_PIECE, remote.size - done))
            n, _ = fetcher.fetch_into(url, done, buf)
            if n == 0:
                raise HubfsError(f"{remote.path}: the server sent no bytes at offset {done} of {remote.size}.")
            out.write(buf[:n])
            out.flush()
            digest.update(buf[:n])
            done += n
            if progress is not None:
                progress.update(n)
    return digest.hexdigest()


def _fetch_parallel(fetcher: RangeFetcher, pool: ThreadPoolExecutor, url: str, remote: RemoteFile, tmp: Path,
                    progress: Any, ahead: int = 6) -> str:
    """Pieces are fetched concurrently (at most ``ahead`` beyond the hash cursor) and hashed in order."""
    parts_file = Path(str(tmp) + ".parts")
    finished: set[int] = set()
    if tmp.exists() and parts_file.exists():
        finished = {int(x) for x in parts_file.read_text().split() if x.isdigit()}
    else:
        parts_file.unlink(missing_ok=True)
    with open(tmp, "ab"):
        pass
    os.truncate(tmp, remote.size)
    offsets = list(range(0, remote.size, PART_SIZE))
    if progress is not None:
        progress.update(sum(min(PART_SIZE, remote.size - o) for o in offsets if o // PART_SIZE in finished))
    lock = threading.Lock()
    digest = _new_digest(remote)
    fd = os.open(tmp, os.O_RDWR)
    window: dict[int, Any] = {}
    try:
        def one(offset: int) -> memoryview:
            length = min(PART_SIZE, remote.size - offset)
            buf = receive_buffer(length)
            got = 0
            while got < length:
                n, _ = fetcher.fetch_into(url, offset + got, buf[got:])
                if n == 0:
                    raise HubfsError(f"{remote.path}: the server sent no bytes at offset {offset + got}.")
                got += n
            _pwrite_all(fd, buf, offset)
            with lock, open(parts_file, "a") as pf:
                pf.write(f"{offset // PART_SIZE}\n")
            if progress is not None:
                progress.update(length)
            return buf

        def start(i: int) -> Any:
            o = offsets[i]
            return None if o // PART_SIZE in finished else pool.submit(one, o)

        window.update({i: start(i) for i in range(min(ahead, len(offsets)))})
        for i, offset in enumerate(offsets):
            future = window.pop(i)
            buf = future.result() if future is not None else os.pread(fd, min(PART_SIZE, remote.size - offset), offset)
            digest.update(buf)
            if i + ahead < len(offsets):
                window[i + ahead] = start(i + ahead)
    finally:
        # No worker may still write to ``fd`` once it is closed (its number could be reused).
        pending = [f for f in window.values() if f is not None]
        for future in pending:
            future.cancel()
        wait(pending)
        os.close(fd)
    parts_file.unlink(missing_ok=True)
    return digest.hexdigest()


def _pwrite_all(fd: int, buf: bytearray | memoryview, offset: int) -> None:
    """Write all of ``buf`` at ``offset``: a short write (a nearly full disk) is continued, so it ends in
    an ``OSError`` rather than a silent hole."""
    view, done = memoryview(buf), 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def _write_all(path: Path, buf: bytearray) -> None:
    """Create ``path`` (mode 0644) holding exactly ``buf``; partial on error (the caller removes it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view, done = memoryview(buf), 0
        while done < len(view):
            done += os.write(fd, view[done:])
    finally:
        os.close(fd)


def select(files: Iterable[RemoteFile], names: list[str] | None, include: list[str] | None,
           exclude: list[str] | None) -> list[RemoteFile]:
    """Files named explicitly, or matching an include glob and no exclude glob (fnmatch on paths)."""
    out = []
    for f in files:
        if names and f.path not in names:
            continue
        if include and not any(fnmatch.fnmatch(f.path, p) for p in include):
            continue
        if exclude and any(fnmatch.fnmatch(f.path, p) for p in exclude):
            continue
        out.append(f)
    return out


class Downloader:
    """Downloads files of a repo commit into a :class:`HubCache` (and optionally a local folder)."""

    def __init__(self, client: HubClient, cache: HubCache, max_workers: int = 8, progress: bool = True) -> None:
        self.client, self.cache = client, cache
        self.fetcher = RangeFetcher(client.transport)
        self.max_workers = max_workers
        self.progress = progress and not os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")

    def download(self, repo_type: str, repo_id: str, revision: str | None = None, *, files: list[str] | None = None,
                 include: list[str] | None = None, exclude: list[str] | None = None,
                 local_dir: Path | None = None) -> Path:
        """Download the selected files of ``revision``; returns the snapshot folder (or ``local_dir``).

        A full disk raises :class:`CacheFullError` naming the folder; no partial blob is left behind.
        """
        try:
            return self._download(repo_type, repo_id, revision, files, include, exclude, local_dir)
        except CacheFullError:
            raise
        except OSError as err:
            if not is_disk_full(err):
                raise
            raise self.cache.full_error(None) from err

    def _download(self, repo_type: str, repo_id: str, revision: str | None, files: list[str] | None,
                  include: list[str] | None, exclude: list[str] | None, local_dir: Path | None) -> Path:
        rev = revision or "main"
        commit = self.client.resolve(repo_type, repo_id, rev, refresh=True)
        self.cache.write_ref(repo_type, repo_id, rev, commit)
        tree = [RemoteFile.from_tree(e) for e in self.client.list_tree(repo_type, repo_id, commit, recursive=True)
                if e["type"] == "file"]
        wanted = select(tree, files, include, exclude)
        missing = sorted(set(files or []) - {f.path for f in wanted})
        if missing:
            raise EntryNotFoundError(f"Not in {repo_id}@{rev}: {', '.join(missing)}")
        todo = [f for f in wanted if not self.cache.snapshot(repo_type, repo_id, commit, f.path).exists()]
        total = sum(f.size for f in todo)
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not self.progress or not todo,
                   desc=f"Downloading {len(todo)} files")
        try:
            (self.cache.repo_dir(repo_type, repo_id) / "blobs").mkdir(parents=True, exist_ok=True)
            with ThreadPoolExecutor(self.max_workers, thread_name_prefix="hubfs-dl") as files_pool, \
                    ThreadPoolExecutor(self.max_workers, thread_name_prefix="hubfs-part") as parts_pool:
                list(files_pool.map(lambda f: self._one(repo_type, repo_id, commit, f, parts_pool, bar), todo))
        finally:
            bar.close()
        snapshot = self.cache.snapshot(repo_type, repo_id, commit)
        snapshot.mkdir(parents=True, exist_ok=True)
        if local_dir is not None:
            self._export(snapshot, Path(local_dir), wanted, commit)
            return Path(local_dir)
        return snapshot

    def _one(self, repo_type: str, repo_id: str, commit: str, f: RemoteFile, pool: ThreadPoolExecutor,
             bar: Any) -> None:
        """Fetch one file into its blob (unless there) and link it; a full disk raises :class:`CacheFullError`
        naming the cache folder, with no partial file left behind."""
        try:
            self._fetch_one(repo_type, repo_id, commit, f, pool, bar)
        except OSError as err:
            if not is_disk_full(err):
                raise
            raise self.cache.full_error(f.size, f.path) from err

    def _fetch_one(self, repo_type: str, repo_id: str, commit: str, f: RemoteFile, pool: ThreadPoolExecutor,
                   bar: Any) -> None:
        blob = self.cache.blob(repo_type, repo_id, f.etag)
        if f.size <= SMALL:
            if not os.path.exists(blob):
                self._small(self.client.file_url(repo_type, repo_id, commit, f.path), f, blob)
            if bar is not None:
                bar.update(f.size)
        elif not blob.exists():
            with self.cache.lock(repo_type, repo_id, f.etag):
                if not blob.exists():
                    tmp = blob.with_name(blob.name + ".incomplete")
                    url = self.client.file_url(repo_type, repo_id, commit, f.path)
                    fetch_file(self.fetcher, pool, url, f, tmp, bar)
                    os.chmod(tmp, 0o644)
                    os.replace(tmp, blob)
        elif bar is not None:
            bar.update(f.size)
        self.cache.link(repo_type, repo_id, commit, f.path, f.etag)

    def _small(self, url: str, f: RemoteFile, blob: Path) -> None:
        """A small file in one request, verified in memory, then written and renamed into place.

        Processes racing for the same blob each write a private temporary file and rename it: the
        content is the same verified bytes, so whichever rename lands last changes nothing.
        """
        buf = bytearray(f.size)
        n = self.fetcher.fetch_into(url, 0, memoryview(buf))[0] if f.size else 0
        digest = _new_digest(f)
        digest.update(memoryview(buf)[:n])
        _check(f, n, digest.hexdigest())
        tmp = blob.with_name(f"{blob.name}.{os.getpid()}-{threading.get_ident()}.incomplete")
        try:
            _write_all(tmp, buf)
            os.replace(tmp, blob)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _export(snapshot: Path, local_dir: Path, files: list[RemoteFile], commit: str) -> None:
        """Copy into ``local_dir`` with huggingface_hub's ``.cache/huggingface/download`` metadata."""
        for f in files:
            dest = local_dir / f.path
            meta = local_dir / ".cache" / "huggingface" / "download" / f"{f.path}.metadata"
            if dest.exists() and meta.exists() and meta.read_text().split("\n")[1:2] == [f.etag]:
                continue
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                write_new(dest, functools.partial(shutil.copyfile, snapshot / f.path))
                meta.parent.mkdir(parents=True, exist_ok=True)
                meta.write_text(f"{commit}\n{f.etag}\n{time.time()}\n")
            except OSError as err:
                if not is_disk_full(err):
                    raise
                raise CacheFullError(str(local_dir), f.size, free_bytes(local_dir), f.path) from err
