"""``hf://`` and ``hubfs://`` as an fsspec filesystem: a faster, safer drop-in for ``HfFileSystem``.

Same URL grammar: ``hf://[datasets/|spaces/]ns/name[@rev]/path``. What differs:

- a branch resolves to a commit once (per ``revision_ttl``) and every read of an open file,
  listing or ``cat`` uses that commit, so a concurrent push never mixes two versions;
- listings are cached per commit; ``info`` asks ``paths-info`` for one path instead of listing the
  parent; ``find``/``glob``/``walk``/``du`` cost one request per 1,000 entries;
- reads: a cold ``open`` or ``info`` is one round trip (the peek: ``paths-info`` and a ranged GET
  on the branch at once, see :mod:`hubfs.client.peek`); sequential reads stream ahead in ranges
  growing to 16 MiB, four in flight (:mod:`hubfs.client.readahead`); random reads fetch only what
  was asked, strides are prefetched; ``cat_ranges`` runs its ranges concurrently;
- writes become commits (LFS for large files, streamed from disk); inside ``with fs.transaction:``
  any number of writes, deletes and moves are one commit per branch;
- a path missing under a branch pinned before the call re-resolves the branch once before
  ``FileNotFoundError`` is raised, so a file just pushed by anyone (git, another process) is found;
- ``close()`` (or ``with HubFileSystem(...) as fs:``) shuts its thread pools and connections down;
- with ``HF_HUB_OFFLINE=1``, ``ls``/``info``/``find`` and reads of a revision in the local cache
  (``refs/<branch>`` or a commit sha) come from the cache and nothing is sent; like huggingface_hub's
  offline mode, listings show only the files downloaded, and anything else raises an
  :class:`~hubfs.errors.OfflineModeError` naming offline mode (see :mod:`hubfs.client.snapshot`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.registry import register_implementation
from fsspec.spec import AbstractFileSystem
from fsspec.transaction import Transaction

from hubfs.client.api import HubClient
from hubfs.client.blocks import BlockCache
from hubfs.client.cache import HubCache
from hubfs.client.commit import Add, Delete, LfsRef, Operation
from hubfs.client.download import RemoteFile, fetch_file
from hubfs.client.fetch import RangeFetcher
from hubfs.client.malloc import keep_freed_buffers
from hubfs.client.peek import TAIL_FIRST, peek_file
from hubfs.client.reader import FileReader, ReaderDeps, ReadTarget, SingleFlight, probe
from hubfs.client.snapshot import FileEntry, Snapshot
from hubfs.errors import HubfsError, RepoNotFoundError, RevisionNotFoundError
from hubfs.files import HubFile, HubWriteFile
from hubfs.paths import RepoPath

if TYPE_CHECKING:
    from typing_extensions import Self

T = TypeVar("T")


class HubTransaction(Transaction):
    """Everything written, deleted or moved inside ``with fs.transaction:`` is one commit per branch."""

    def complete(self, commit: bool = True) -> None:
        fs = self.fs
        super().complete(commit)  # files written in the block queue their content on the fs
        fs._flush(commit)


class HubFileSystem(AbstractFileSystem):
    """fsspec filesystem over one hub (``endpoint``, default ``HF_ENDPOINT``) with one token.

    Constructing one applies hubfs's allocator tuning for big reads, once per process
    (:func:`hubfs.client.malloc.keep_freed_buffers`; ``HUBFS_MALLOPT=0`` turns it off).
    """

    protocol = ("hf", "hubfs")
    root_marker = ""
    transaction_type = HubTransaction

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None, *, revision_ttl: float = 5.0,
                 max_workers: int = 8, block_cache: bool = True, **storage_options: Any) -> None:
        super().__init__(endpoint=endpoint, token=token, revision_ttl=revision_ttl, **storage_options)
        self.client = HubClient(endpoint, token, revision_ttl=revision_ttl)
        self.fetcher = RangeFetcher(self.client.transport)
        self.blocks = BlockCache(HubCache(self.client.config.cache_dir)) if block_cache else None
        self.max_workers = max_workers
        self._edges: OrderedDict[tuple, tuple[int, bytes]] = OrderedDict()  # first or last bytes seen by a peek
        self._pending: dict[tuple[str, str, str], list[Operation]] = {}
        self._cleanup: list[str] = []
        self._pool: ThreadPoolExecutor | None = None
        self._part_pool: ThreadPoolExecutor | None = None
        self._flights = SingleFlight()  # concurrent reads of one range, by any reader of this fs, share a fetch
        self._lock = threading.Lock()
        # (repo type, "ns/name") of paths found to read as canonical repo "ns" with path "name/...":
        # hf://gpt2/config.json, when there is no repo gpt2/config.json (see _repo_path)
        self._canonical: set[tuple[str, str]] = set()
        self._closed = False
        keep_freed_buffers()

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="hubfs")
            return self._pool

    @property
    def part_pool(self) -> ThreadPoolExecutor:
        """Runs the 16 MiB pieces of one big read; separate from ``pool`` so a task there that waits
        for its pieces can never starve them."""
        with self._lock:
            self._check_open()
            if self._part_pool is None:
                self._part_pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="hubfs-part")
            return self._part_pool

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("This HubFileSystem is closed; create a new one.")

    def close(self) -> None:
        """Shut down the thread pools (waiting for running tasks), the connections and the client, and
        leave fsspec's instance cache, so that ``HubFileSystem(...)`` makes a new one. Idempotent."""
        with self._lock:
            self._closed = True
            pools = [p for p in (self._pool, self._part_pool) if p is not None]
            self._pool = self._part_pool = None
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)
        for pool in pools:
            pool.shutdown(wait=True)
        self.fetcher.close()
        self.client.close()
        self._drop_temporaries()
        type(self)._cache.pop(getattr(self, "_fs_token_", None), None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rechecked(self, path: str, op: Callable[[], T]) -> T:
        """``op()``, run once more if it found ``path`` missing under a branch pin learnt before the call
        and the branch now points elsewhere (pushed to by git, another process or another token)."""
        since = self.client.pin_stamp()
        try:
            return op()
        except FileNotFoundError:
            if not self._branch_moved(path, since):
                raise
        return op()

    def _branch_moved(self, path: str, since: int) -> bool:
        try:
            rp = self._repo_path(path)
            return self.client.recheck(rp.repo_type.value, rp.repo_id, rp.revision, since)
        except (HubfsError, ValueError):
            return False  # no such repo or revision, or not a repo path: the first error stands

    @classmethod
    def _strip_protocol(cls, path: str) -> str:  # type: ignore[override]
        path = str(path)
        for proto in ("hf://", "hubfs://"):
            path = path.removeprefix(proto)
        return path.rstrip("/")

    def _parse(self, path: str) -> tuple[RepoPath, str]:
        rp, snap = self._snapshot(path)
        return rp, snap.sha

    def _repo_path(self, path: str, *, lookup: bool = False) -> RepoPath:
        """``path`` parsed. ``hf://gpt2/config.json`` first reads as repo ``gpt2/config.json``; it reads as
        canonical repo ``gpt2`` and path ``config.json`` once that repo is known to be missing and ``gpt2``
        to exist (learnt by :meth:`_snapshot`, or asked now with ``lookup``)."""
        rp = RepoPath.parse(self._strip_protocol(path))
        other = rp.canonical_reading()
        if other is None:
            return rp
        with self._lock:
            if (rp.repo_type.value, rp.repo_id) in self._canonical:
                return other
        if lookup:
            try:
                return self._snapshot(path)[0]
            except FileNotFoundError:
                pass  # neither repo exists: the namespaced reading's error stands
        return rp

    def _snapshot(self, path: str) -> tuple[RepoPath, Snapshot]:
        """The parsed path and the snapshot its revision points to (the local cache's when offline).
        A missing repo ``ns/name`` is tried once as canonical repo ``ns`` (see :meth:`_repo_path`)."""
        rp = self._repo_path(path)
        try:
            return rp, self.client.snapshot(rp.repo, rp.revision)
        except RepoNotFoundError as exc:
            other = rp.canonical_reading()
            if other is not None:
                try:
                    snap = self.client.snapshot(other.repo, other.revision)
                except (RepoNotFoundError, RevisionNotFoundError):
                    raise FileNotFoundError(f"{path}: {exc}") from exc
                with self._lock:
                    self._canonical.add((rp.repo_type.value, rp.repo_id))
                return other, snap
            raise FileNotFoundError(f"{path}: {exc}") from exc
        except RevisionNotFoundError as exc:
            raise FileNotFoundError(f"{path}: {exc}") from exc

    @staticmethod
    def _name(rp: RepoPath, path: str) -> str:
        return RepoPath(rp.repo_type, rp.repo_id, rp.revision, path).unparse().removeprefix("hf://")

    def _named(self, rp: RepoPath, entry: FileEntry) -> dict[str, Any]:
        """fsspec info of ``entry``, named the way ``rp`` spells repo and revision."""
        return entry.info(self._name(rp, entry.path))

    # -- listing -----------------------------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        return self._rechecked(path, lambda: self._ls(path, detail))

    def _ls(self, path: str, detail: bool) -> list[Any]:
        rp, snap = self._snapshot(path)
        entries = snap.listdir(rp.path)
        if entries is None:  # a file, or nothing
            info = self.info(path)
            if info["type"] != "file":
                raise FileNotFoundError(path)
            return [info] if detail else [info["name"]]
        prefix = self._name(rp, "") + "/"
        if not detail:
            return [prefix + e.path for e in entries]
        return [e.info(prefix + e.path) for e in entries]

    def _peek(self, path: str) -> tuple[tuple, dict[str, Any]] | None:
        """One round trip for a file not described yet (see peek.py): on a branch not pinned yet, the pin,
        the entry and the first or last 64 KiB; on a pinned one, the entry and the tail of a format
        read from its footer (a parquet file's ``info`` is followed by its footer read)."""
        rp = self._repo_path(path)
        if not rp.path or self.client.config.offline:
            return None
        rev = rp.revision or "main"
        sha = self.client.pinned(rp.repo_type.value, rp.repo_id, rev)
        if sha is not None and (Snapshot(self.client, rp.repo, rev, sha).cached_entry(rp.path) is not None
                                or not rp.path.lower().endswith(TAIL_FIRST)):
            return None
        seen = peek_file(self.client, self.fetcher, self.pool, rp.repo_type.value, rp.repo_id, sha or rev, rp.path)
        if seen is None:
            return None
        key = (rp.repo_type.value, rp.repo_id, seen.sha, rp.path)
        entry = FileEntry.from_tree(seen.entry)
        Snapshot(self.client, rp.repo, rev, seen.sha).remember(entry)
        with self._lock:
            self._edges[key] = (seen.offset, seen.data)
            while len(self._edges) > 64:
                self._edges.popitem(last=False)
        return key, self._named(rp, entry)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return self._rechecked(path, lambda: self._info(path))

    def _info(self, path: str) -> dict[str, Any]:
        peeked = self._peek(path)
        if peeked is not None:
            return peeked[1]
        rp, snap = self._snapshot(path)
        entry = snap.entry(rp.path)
        if entry is None:
            raise FileNotFoundError(path)
        return self._named(rp, entry)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        since = self.client.pin_stamp()
        found = self._find(path, maxdepth, withdirs, detail)
        if not found and self._branch_moved(path, since):  # nothing there: perhaps not yet, under an old pin
            found = self._find(path, maxdepth, withdirs, detail)
        return found

    def _find(self, path: str, maxdepth: int | None, withdirs: bool, detail: bool) -> Any:
        rp, snap = self._snapshot(path)
        raw = snap.walk(rp.path)
        if len(raw) == 1 and not raw[0].is_dir and raw[0].path == rp.path:
            out = {self._name(rp, rp.path): self._named(rp, raw[0])}
            return out if detail else list(out)
        if not raw and rp.path:
            try:
                info = self.info(path)
            except FileNotFoundError:
                return {} if detail else []
            if info["type"] == "file":
                return {info["name"]: info} if detail else [info["name"]]
        base_depth = rp.path.count("/") + 1 if rp.path else 0
        out = {}
        for e in raw:
            depth = e.path.count("/") + 1 - base_depth
            if maxdepth is not None and depth > maxdepth:
                continue
            if not e.is_dir or withdirs:
                out[self._name(rp, e.path)] = self._named(rp, e)
        if withdirs and raw:  # a listing with entries under it: the root is a folder (the repo's root too)
            root = snap.cached_entry(rp.path) or FileEntry.folder(rp.path)
            out[self._name(rp, rp.path)] = self._named(rp, root)
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    def walk(self, path: str, maxdepth: int | None = None, topdown: bool = True, on_error: str = "omit",
             **kwargs: Any) -> Any:
        if not kwargs.pop("_filled", False):  # fsspec's walk recurses through self.walk: fill once, at the top
            try:
                self.find(path, maxdepth=maxdepth, withdirs=True)  # one recursive listing fills every folder
            except FileNotFoundError:
                pass
        yield from super().walk(path, maxdepth=maxdepth, topdown=topdown, on_error=on_error, _filled=True, **kwargs)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Stop trusting the branch pins learnt so far, in this filesystem only (listings are per commit
        and never go stale; other filesystems of the same endpoint and token keep their pins)."""
        self.client.forget_pins()
        super().invalidate_cache(path)

    def modified(self, path: str) -> Any:
        raise NotImplementedError("Hub files have no modification time without expand=True listings.")

    def ukey(self, path: str) -> str:
        info = self.info(path)
        return (info.get("lfs") or {}).get("sha256") or info.get("blob_id") or info["name"]

    # -- reading -----------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The pinned download URL of a file (``/resolve/<commit>/path``)."""
        rp, sha = self._parse(path)
        return self.client.file_url(rp.repo_type.value, rp.repo_id, sha, rp.path)

    def reader_deps(self) -> ReaderDeps:
        """What this filesystem's readers share (read at each open: a test may swap the cache or config)."""
        config = self.client.config
        return ReaderDeps(self.fetcher, lambda: self.pool, lambda: self.part_pool, self.blocks,
                          HubCache(config.cache_dir), config.offline, self._flights)

    def _read_target(self, rp: RepoPath, snap: Any) -> ReadTarget:
        """What a reader of ``rp`` in ``snap`` reads, with its entry when known already (no request)."""
        entry = snap.cached_entry(rp.path)
        if entry is None and self.client.config.offline:
            entry = snap.entry(rp.path)  # offline, the cache itself describes the file (no request)
        return ReadTarget.from_entry(rp.repo_type.value, rp.repo_id, snap.sha, rp.path, snap.url(rp.path), entry)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        return self._rechecked(path, lambda: self._cat_file(path, start, end))

    def _cat_file(self, path: str, start: int | None, end: int | None) -> bytes:
        rp, snap = self._snapshot(path)  # pins the branch first: the open below needs no peek
        if start is None and end is None:
            with self.open(path, "rb") as f:
                return f.read()
        size = 0
        if (start or 0) < 0 or end is None or end < 0:
            size = int(self.info(path)["size"])
        s = (start or 0) + (size if (start or 0) < 0 else 0)
        e = size if end is None else end + (size if end < 0 else 0)
        s = max(0, s)
        if e <= s:
            return b""
        with FileReader(self._read_target(rp, snap), self.reader_deps(), stride=False) as reader:
            return reader.read(s, e - s)

    def get_file(self, rpath: str, lpath: str, callback: Any = None, outfile: Any = None, **kwargs: Any) -> None:
        """Download one file: 16 MiB ranges in parallel when big, verified against its hash, resumable."""
        if outfile is not None:
            return super().get_file(rpath, lpath, callback=callback, outfile=outfile, **kwargs)
        info = self.info(rpath)
        if info["type"] == "directory":
            os.makedirs(lpath, exist_ok=True)
            return None
        lfs = info.get("lfs")
        remote = RemoteFile(info["name"], info["size"], lfs["sha256"] if lfs else info["blob_id"], bool(lfs))
        os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
        tmp = Path(f"{lpath}.incomplete")
        progress = _CallbackProgress(callback, info["size"]) if callback is not None else None
        fetch_file(self.fetcher, self.part_pool, self.url(rpath), remote, tmp, progress)
        os.replace(tmp, lpath)
        return None

    def cat_ranges(self, paths: list[str], starts: list[int] | int, ends: list[int] | int, max_gap: Any = None,
                   on_error: str = "return", **kwargs: Any) -> list[Any]:
        """Ranges fetched concurrently (fsspec's default loops over them one by one)."""
        n = len(paths)
        starts = starts if isinstance(starts, list) else [starts] * n
        ends = ends if isinstance(ends, list) else [ends] * n

        def one(i: int) -> Any:
            try:
                return self.cat_file(paths[i], starts[i], ends[i])
            except Exception as exc:  # fsspec's on_error="return" contract
                if on_error == "raise":
                    raise
                return exc

        return list(self.pool.map(one, range(n)))

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, **kwargs: Any) -> Any:
        if mode in ("rb", "r"):
            return self._rechecked(path, lambda: self._open_read(path))
        if mode in ("wb", "xb", "w"):
            if mode == "xb" and self.exists(path):
                raise FileExistsError(path)
            return HubWriteFile(self, path, autocommit=autocommit and not self._intrans)
        raise ValueError(f"Mode {mode!r} is not supported: a file in a Hub repo is replaced whole by a commit, so "
                         "append and random writes are impossible. Read it, then write the full content with 'wb'.")

    def _open_read(self, path: str) -> HubFile:
        offline = self.client.config.offline
        if not offline:
            self._peek(path)
        rp, snap = self._snapshot(path)
        if offline:  # the cached snapshot describes the file (or raises an error naming offline mode)
            entry = snap.entry(rp.path)
            if entry is None or entry.is_dir:
                raise IsADirectoryError(f"{path} is a folder.") if entry else FileNotFoundError(path)
        key = (rp.repo_type.value, rp.repo_id, snap.sha, rp.path)
        with self._lock:
            edge = self._edges.get(key)
        target, deps = self._read_target(rp, snap), self.reader_deps()
        if target.size is None:  # not described yet: the first 64 KiB tell the size
            target, edge = probe(deps, target)
        return HubFile(self, self._name(rp, rp.path), FileReader(target, deps, edge))

    # -- writing -----------------------------------------------------------------------------------

    def _queue(self, path: str, make: Any) -> None:
        rp = self._repo_path(path, lookup=True)
        key = (rp.repo_type.value, rp.repo_id, rp.revision or "main")
        op = make(rp)
        ops = op if isinstance(op, list) else [op]
        if self._intrans:
            self._pending.setdefault(key, []).extend(ops)
            return
        try:
            self.client.commit(*key[:2], ops, message=f"Update {rp.path or rp.repo_id} with hubfs", revision=key[2])
        finally:
            self.client.forget_pin(*key)
            self._drop_temporaries()

    def _flush(self, commit: bool) -> None:
        pending, self._pending = self._pending, {}
        try:
            for (repo_type, repo_id, rev), ops in pending.items() if commit else ():
                try:
                    self.client.commit(repo_type, repo_id, ops, message=f"Update {len(ops)} files with hubfs",
                                       revision=rev)
                finally:
                    self.client.forget_pin(repo_type, repo_id, rev)
        finally:
            self._drop_temporaries()

    def _drop_temporaries(self) -> None:
        import shutil

        while self._cleanup:
            shutil.rmtree(self._cleanup.pop(), ignore_errors=True)

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        if mode == "create" and self.exists(path):
            raise FileExistsError(path)
        self._queue(path, lambda rp: Add(rp.path, bytes(value)))

    def put_file(self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kwargs: Any) -> None:
        if os.path.isdir(lpath):
            return  # folders exist implicitly
        if mode == "create" and self.exists(rpath):
            raise FileExistsError(rpath)
        self._queue(rpath, lambda rp: Add(rp.path, os.fspath(lpath)))

    def pipe(self, path: Any, value: bytes | None = None, **kwargs: Any) -> None:
        """A dict of paths is one commit."""
        with self._batch():
            super().pipe(path, value, **kwargs)

    def put(self, lpath: Any, rpath: Any, recursive: bool = False, callback: Any = DEFAULT_CALLBACK,
            maxdepth: int | None = None, **kwargs: Any) -> None:
        """Any number of local files is one commit."""
        with self._batch():
            super().put(lpath, rpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)

    def copy(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
             on_error: str | None = None, **kwargs: Any) -> None:
        """Any number of copies is one commit."""
        with self._batch():
            super().copy(path1, path2, recursive=recursive, maxdepth=maxdepth, on_error=on_error, **kwargs)

    def rm_file(self, path: str) -> None:
        self._queue(path, lambda rp: Delete(rp.path))

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
        ops_by_path = []
        for p in paths:
            if self.isfile(p):
                ops_by_path.append(p)
        if not ops_by_path and paths:
            raise FileNotFoundError(path)
        with self._batch():
            for p in ops_by_path:
                self.rm_file(p)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        info = self.info(path1)
        if info["type"] != "file":
            return
        src, dst = self._repo_path(path1), self._repo_path(path2, lookup=True)
        if info.get("lfs") and (src.repo_type, src.repo_id) == (dst.repo_type, dst.repo_id):
            self._queue(path2, lambda rp: LfsRef(rp.path, info["lfs"]["sha256"], info["size"]))
        else:
            data = self.cat_file(path1)
            self._queue(path2, lambda rp: Add(rp.path, data))

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        with self._batch():
            self.copy(path1, path2, recursive=recursive, maxdepth=maxdepth)
            self.rm(path1, recursive=recursive, maxdepth=maxdepth)

    def _batch(self) -> Any:
        """Group the calls inside into one commit (joins an open transaction)."""
        fs = self

        class _Batch:
            def __enter__(self) -> None:
                self.owner = not fs._intrans
                if self.owner:
                    fs.start_transaction()

            def __exit__(self, exc_type: object, *rest: object) -> None:
                if self.owner:
                    fs.end_transaction() if exc_type is None else fs.transaction.complete(commit=False)

        return _Batch()

    def start_transaction(self) -> Any:
        self._intrans = True
        self._transaction = self.transaction_type(self)
        return self._transaction

    def end_transaction(self) -> None:
        self.transaction.complete(commit=True)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Folders exist when they hold files; creating one is a no-op."""

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        """Folders exist when they hold files; creating one is a no-op."""

    def rmdir(self, path: str) -> None:
        """Empty folders do not exist in git; nothing to remove."""

    def __reduce__(self) -> Any:
        return _rebuild, (self.storage_options,)


class _CallbackProgress:
    """Adapts an fsspec callback to the ``update(n)`` the downloader reports progress with."""

    def __init__(self, callback: Any, size: int) -> None:
        self.callback = callback
        callback.set_size(size)

    def update(self, n: int) -> None:
        self.callback.relative_update(n)


def _rebuild(storage_options: dict[str, Any]) -> HubFileSystem:
    return HubFileSystem(**storage_options)


# The package's entry points register both protocols; importing this module makes the takeover of
# "hf" from huggingface_hub certain whatever order the installed entry points are read in.
register_implementation("hf", HubFileSystem, clobber=True)
register_implementation("hubfs", HubFileSystem, clobber=True)
