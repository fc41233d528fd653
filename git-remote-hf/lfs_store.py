"""A repo's ``.git/lfs`` in git-lfs's own layout, and the local config that makes git use the helper's filter.

Layout (what stock git-lfs reads and writes): ``objects/aa/bb/<oid>`` for complete, verified objects,
``incomplete/<oid>`` for downloads in progress (resumed with a Range request), ``tmp/`` for content being
hashed. An object reaches ``objects/`` only by an atomic rename after its sha256 and size were checked,
so a corrupt or half-written object is never there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from git_remote_hf.gitconfig import GitConfig
from hubfs.errors import IntegrityError
from hubfs.lfs import LfsPointer, is_valid_oid

__all__ = ["FILTER_PROCESS", "LfsStore", "configure_repo", "hf_remotes", "lfs_enabled"]

FILTER_PROCESS = "git-remote-hf filter-process"
OPT_OUT_ENV = "GIT_REMOTE_HF_LFS"  # "0" / "false": leave LFS to git-lfs (or to nothing)


class LfsStore:
    """``<git_dir>/lfs``: thread-safe, as every write goes to a private file renamed into place."""

    def __init__(self, git_dir: Path | str) -> None:
        self.git_dir = Path(git_dir)
        self.root = self.git_dir / "lfs"
        self.objects = self.root / "objects"
        self._objects_name = str(self.objects)
        self.incomplete_dir = self.root / "incomplete"
        self.tmp_dir = self.root / "tmp"
        self._made: set[str] = set()  # folders known to exist (a mkdir per object costs more than its write)

    def _folder(self, folder: Path) -> Path:
        self._make(str(folder))
        return folder

    def _make(self, folder: str) -> None:
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)

    def path(self, oid: str) -> Path:
        """Where the object ``oid`` lives (whether or not it is there)."""
        return Path(self.name(oid))

    def name(self, oid: str) -> str:
        """:meth:`path` as a string (a clone of thousands of objects asks this of each, several times)."""
        if not is_valid_oid(oid):
            raise IntegrityError(f"Not an LFS object id: {oid!r}.")
        return f"{self._objects_name}/{oid[0:2]}/{oid[2:4]}/{oid}"

    def incomplete(self, oid: str) -> Path:
        """The partial download of ``oid`` (its folder is created)."""
        self.path(oid)  # validates the oid
        return self._folder(self.incomplete_dir) / oid

    def has(self, oid: str, size: int) -> bool:
        """Whether the object is stored with exactly ``size`` bytes."""
        try:
            return os.stat(self.name(oid)).st_size == size
        except OSError:
            return False

    def missing(self, pointers: Iterable[LfsPointer]) -> list[LfsPointer]:
        """The pointers whose object is not stored, each once, in order."""
        seen: set[str] = set()
        out = []
        for p in pointers:
            if p.oid not in seen and not self.has(p.oid, p.size):
                seen.add(p.oid)
                out.append(p)
        return out

    def install(self, tmp: Path, pointer: LfsPointer) -> Path:
        """Move the verified file ``tmp`` into ``objects/`` (atomic; an object already there is kept)."""
        final = self.path(pointer.oid)
        self._folder(final.parent)
        if self.has(pointer.oid, pointer.size):
            tmp.unlink(missing_ok=True)
        else:
            os.chmod(tmp, 0o644)  # git-lfs's mode; a mkstemp file is 0600
            os.replace(tmp, final)
        return final

    def add_stream(self, chunks: Iterable[bytes], expect: LfsPointer | None = None) -> LfsPointer:
        """Hash and store the content ``chunks``; return its pointer. With ``expect``, content whose sha256 or
        size differs raises :class:`IntegrityError` and nothing is stored."""
        fd, name = tempfile.mkstemp(dir=self._folder(self.tmp_dir), prefix="clean-")
        tmp = Path(name)
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            pointer = LfsPointer(digest.hexdigest(), size)
            if expect is not None and pointer != expect:
                raise IntegrityError(f"LFS object {expect.oid}: the content has sha256 {pointer.oid} and "
                                     f"{size} bytes, expected {expect.size}; refused, nothing was stored.")
            self.install(tmp, pointer)
            return pointer
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_verified(self, data: bytes | bytearray | memoryview, pointer: LfsPointer) -> Path:
        """Store ``data``, already checked against ``pointer`` by the caller, under a private name renamed
        into place: the path of every small download, so one create, write and rename with no other
        look at the file system (a clone of thousands of small objects pays for each call); an object
        already there is replaced by these same bytes."""
        final = self.name(pointer.oid)
        self._make(final.rpartition("/")[0])
        tmp = f"{final}.{os.getpid()}-{threading.get_ident()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.fchmod(fd, 0o644)  # git-lfs's mode, whatever the umask
                view, done = memoryview(data).cast("B"), 0
                while done < len(view):
                    done += os.write(fd, view[done:])
            finally:
                os.close(fd)
            os.replace(tmp, final)
            return Path(final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def add_file(self, path: Path | str) -> LfsPointer:
        """Store the content of the local file ``path`` (streamed); return its pointer."""
        with open(path, "rb") as f:
            return self.add_stream(iter(lambda: f.read(1 << 20), b""))


def lfs_enabled(git_dir: Path, env: Mapping[str, str] | None = None, config: GitConfig | None = None) -> bool:
    """False when the user opted out: ``GIT_REMOTE_HF_LFS=0`` or git config ``hf.lfs=false`` (read from
    ``config`` when given)."""
    value = (os.environ if env is None else env).get(OPT_OUT_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    return (config or GitConfig.read(Path(git_dir))).get_bool("hf.lfs") is not False


def configure_repo(git_dir: Path, config: GitConfig | None = None, extra: Sequence[tuple[str, str]] = ()) -> None:
    """Make git use ``git-remote-hf filter-process`` for ``filter=lfs`` paths of this repo (local config,
    which wins over a global git-lfs install), required, so a failed smudge stops the checkout rather than
    leaving a pointer in the worktree. Does nothing when the user opted out (:func:`lfs_enabled`).

    git >= 2.11 uses ``filter.lfs.process``; ``clean``/``smudge`` are not set (git-lfs's global ones,
    if any, are ignored by a git that has ``process``). Each ``hf://`` remote without one gets
    ``remote.<name>.lfsurl`` (its http LFS endpoint, no credentials), so that stock git-lfs commands and
    hooks, which cannot derive it from an ``hf://`` URL, reach the same server. ``extra`` settings are
    written along (one write for all: :meth:`GitConfig.set_local`); ``config`` is the repo's config, read
    once by the caller (read here when None).
    """
    git_dir = Path(git_dir)
    config = config or GitConfig.read(git_dir)
    if not lfs_enabled(git_dir, config=config):
        config.set_local(list(extra))
        return
    settings = [("filter.lfs.process", FILTER_PROCESS), ("filter.lfs.required", "true")]
    settings += [(f"remote.{name}.lfsurl", url) for name, url in hf_remotes(git_dir, config=config).items()
                 if not config.has(f"remote.{name}.lfsurl")]
    config.set_local(settings + list(extra))
    (git_dir / "lfs").mkdir(exist_ok=True)


def hf_remotes(git_dir: Path, env: Mapping[str, str] | None = None, config: GitConfig | None = None) -> dict[str, str]:
    """``{remote name: LFS endpoint}`` for the repo's remotes whose URL is an ``hf://`` (or ``hf::``) URL."""
    from git_remote_hf.url import parse_remote_url
    from hubfs.errors import HubfsError

    found = {}
    for name, url in (config or GitConfig.read(Path(git_dir))).matching("remote", "url").items():
        if not url.startswith(("hf://", "hubfs://", "hf::")):
            continue
        try:
            remote = parse_remote_url(url.removeprefix("hf::"), os.environ if env is None else env)
        except HubfsError:
            continue
        found[name] = remote.lfs_url
    return found
