"""Bare git repositories, one per Hub repo, read and written with dulwich.

Trees hold LFS pointer blobs exactly like the Hub's. Commits are built from a parent's tree plus a
list of changes and published with a compare-and-swap of the branch ref under a per-repo lock, so
concurrent writers never lose a commit and a crash leaves the branch at its old or new commit
(objects are written first, the ref last, each by atomic rename).
"""

from __future__ import annotations

import shutil
import stat
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from dulwich.file import FileLocked
from dulwich.index import commit_tree
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tag, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from hubfs.errors import (
    BadRequestError,
    ConflictError,
    EntryNotFoundError,
    PreconditionFailedError,
    RevisionNotFoundError,
)
from hubfs.lfs import POINTER_MAX_SIZE, LfsPointer
from hubfs.paths import is_commit_sha
from hubfs.server.faults import fault_point
from hubfs.server.ref_lock import RefLocks

if TYPE_CHECKING:
    from dulwich.object_store import ObjectContainer
    from typing_extensions import Self

FILE_MODE = 0o100644
STALE_LOCK_AGE = 60.0  # seconds: git holds a ref.lock for milliseconds; one this old was left by a killed process
ZERO_SHA = b"0" * 40


@dataclass(frozen=True)
class Entry:
    """A file or folder in a commit's tree, with its real size and LFS pointer if it is one."""

    path: str
    type: str  # "file" or "directory"
    oid: str  # git blob or tree sha1
    size: int = 0
    lfs: LfsPointer | None = None
    pointer_size: int = 0
    mode: int = FILE_MODE


@dataclass(frozen=True)
class CommitInfo:
    """What the API shows of a commit."""

    id: str
    title: str
    message: str
    author: str
    timestamp: int
    parents: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """One tree change: ``put`` a blob at a path, or ``delete_file`` / ``delete_folder``."""

    kind: str
    path: str
    blob: str | None = None
    mode: int = FILE_MODE


K = TypeVar("K")
V = TypeVar("V")


class _ImmutableCache(Generic[K, V]):
    """A thread-safe LRU for facts about immutable git objects, which never go stale."""

    def __init__(self, capacity: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._capacity, self._lock = capacity, threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
            return hit

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._capacity:
                self._data.popitem(last=False)


class GitCaches:
    """What a :class:`GitStore` remembers across its repositories and threads: LRUs of facts about
    immutable git objects (which never go stale), and the locks that serialize ref updates per repo
    (:mod:`hubfs.server.ref_lock`: across processes and hosts too)."""

    def __init__(self, locks: RefLocks | None = None) -> None:
        self.blob_info: _ImmutableCache[bytes, tuple[int, LfsPointer | None]] = _ImmutableCache(200_000)
        self.commit_trees: _ImmutableCache[tuple[str, int, str], bytes] = _ImmutableCache(50_000)  # (repo, gen, commit)
        self.trees: _ImmutableCache[bytes, Tree] = _ImmutableCache(8192)  # parsed trees by sha
        self.last_commits: _ImmutableCache[tuple[str, int, str, str], CommitInfo] = _ImmutableCache(100_000)
        self._locks = locks

    def repo_lock(self, path: Path) -> AbstractContextManager[None]:
        """``with caches.repo_lock(path):`` holds the ref-update lock of the repository at ``path``
        against every thread, process and host (see :class:`hubfs.server.ref_lock.RefLocks`)."""
        if self._locks is None:
            self._locks = RefLocks(Path(path).parent.parent.parent)
        return self._locks.hold(path)


class RefMovedError(PreconditionFailedError):
    """A compare-and-swap of a ref found another value than expected."""


class _ObjectWriter:
    """Adds objects to a store; two writers racing on the same new object both succeed.

    dulwich writes a loose object through ``<sha>.lock``; a concurrent writer of the same content
    gets FileLocked, which here means "someone else is writing exactly these bytes": wait for them.
    """

    def __init__(self, store: object) -> None:
        self._store = store

    def add_object(self, obj: ShaFile) -> None:
        for attempt in range(200):
            try:
                self._store.add_object(obj)  # type: ignore[attr-defined]
                return
            except FileLocked:
                if obj.id in self._store:  # type: ignore[operator]
                    return
                time.sleep(0.005 * min(attempt + 1, 10))
        raise ConflictError(f"Could not write object {obj.id.decode()}: it stays locked.")


class GitRepo:
    """One bare repository. Open it with ``GitStore.open`` and close it (or use ``with``)."""

    def __init__(self, path: Path, repo: Repo | None = None, generation: int = 0,
                 caches: GitCaches | None = None) -> None:
        self.path = path
        self.caches = caches or GitCaches()  # the store's, shared by every handle it opens
        self.generation = generation  # bumped by GitStore when the repo at ``path`` is deleted or moved
        self._shared = repo is not None
        self.repo = repo if repo is not None else Repo(str(path))
        self.store = self.repo.object_store
        self.writer = _ObjectWriter(self.store)

    def close(self) -> None:
        if not self._shared:
            self.repo.close()

    def tree(self, sha: bytes) -> Tree:
        """A parsed tree, from the store's LRU (trees are immutable and content-addressed)."""
        hit = self.caches.trees.get(sha)
        if hit is not None:
            return hit
        obj = self.store[ObjectID(sha)]
        if not isinstance(obj, Tree):
            raise EntryNotFoundError(f"{sha.decode()} is not a folder.")
        self.caches.trees.put(sha, obj)
        return obj

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- refs ------------------------------------------------------------------------------------

    def refs(self) -> dict[str, str]:
        """All refs (``refs/heads/main`` -> commit sha; annotated tags peeled to their commit)."""
        out: dict[str, str] = {}
        for name, sha in self.repo.get_refs().items():
            if not name.startswith(b"refs/"):
                continue
            out[name.decode()] = self._peel(sha).decode()
        return out

    def _peel(self, sha: bytes) -> bytes:
        obj = self.store[ObjectID(sha)]
        while isinstance(obj, Tag):
            obj = self.store[obj.object[1]]
        return obj.id

    def ref_for(self, revision: str) -> str | None:
        """The full ref a branch, tag or PR name refers to, or None."""
        candidates = [revision] if revision.startswith("refs/") else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
        refs = self.repo.refs
        for ref in candidates:
            if Ref(ref.encode()) in refs:
                return ref
        return None

    def resolve(self, revision: str) -> str:
        """A full commit sha, branch, tag or ``refs/...`` ref -> commit sha (RevisionNotFound else).

        A full sha names the commit before any ref, as in git; a ref named like one is never looked up.
        """
        if is_commit_sha(revision):
            try:
                self.tree_of(revision)
                return revision
            except (KeyError, RevisionNotFoundError):
                pass
        ref = self.ref_for(revision)
        if ref is not None:
            return self._peel(self.repo.refs[Ref(ref.encode())]).decode()
        raise RevisionNotFoundError(f"Invalid rev id: {revision}")

    def branch_head(self, ref: str) -> str | None:
        try:
            return self.repo.refs[Ref(ref.encode())].decode()
        except KeyError:
            return None

    def set_ref(self, ref: str, new: str | None, expected_old: str | None) -> None:
        """Compare-and-swap ``ref`` from ``expected_old`` (None: must not exist) to ``new`` (None: delete)."""
        old = expected_old.encode() if expected_old else ZERO_SHA
        for attempt in range(400):
            try:
                if new is None:
                    ok = self.repo.refs.remove_if_equals(Ref(ref.encode()), ObjectID(old))
                else:
                    ok = self.repo.refs.set_if_equals(Ref(ref.encode()), ObjectID(old), ObjectID(new.encode()))
                break
            except FileLocked:  # git receive-pack holds the same ``ref.lock`` file: wait for it
                if attempt == 0 and remove_stale_lock(Path(self.repo.controldir()) / f"{ref}.lock"):
                    continue  # left by a killed process
                time.sleep(0.005 * min(attempt + 1, 10))
        else:
            raise ConflictError(f"{ref} stayed locked by another writer; retry.")
        if not ok:
            raise RefMovedError(f"{ref} moved while it was being updated; retry.")

    def make_tag(self, name: str, target: str, message: str | None, tagger: str) -> str:
        """Create ``refs/tags/name``: annotated when a message is given. Refuses an existing tag."""
        ref = f"refs/tags/{name}"
        sha = target
        if message:
            tag = Tag()
            tag.object = (Commit, target.encode())
            tag.name = name.encode()
            tag.message = message.encode() + (b"" if message.endswith("\n") else b"\n")
            tag.tagger = tagger.encode()
            tag.tag_time, tag.tag_timezone = int(time.time()), 0
            self.writer.add_object(tag)
            sha = tag.id.decode()
        with self.caches.repo_lock(self.path):
            if Ref(ref.encode()) in self.repo.refs:
                raise ConflictError(f"Tag {name} already exists.")
            self.set_ref(ref, sha, None)
        return sha

    # -- objects -------------------------------------------------------------------------------

    def commit_info(self, sha: str) -> CommitInfo:
        c = self.store[ObjectID(sha.encode())]
        if not isinstance(c, Commit):
            raise RevisionNotFoundError(f"{sha} is not a commit.")
        message = c.message.decode("utf-8", "replace")
        return CommitInfo(
            id=sha,
            title=message.split("\n", 1)[0],
            message=message,
            author=c.author.decode("utf-8", "replace"),
            timestamp=c.commit_time,
            parents=tuple(p.decode() for p in c.parents),
        )

    def tree_of(self, commit: str) -> bytes:
        """The root tree of a commit of this repo (KeyError if missing, RevisionNotFound if not a commit)."""
        key = (str(self.path), self.generation, commit)
        tree = self.caches.commit_trees.get(key)
        if tree is None:
            obj = self.store[ObjectID(commit.encode())]
            if not isinstance(obj, Commit):
                raise RevisionNotFoundError(f"{commit} is not a commit.")
            tree = obj.tree
            self.caches.commit_trees.put(key, tree)
        return tree

    def read_blob(self, sha: str) -> bytes:
        obj = self.store[ObjectID(sha.encode())]
        if not isinstance(obj, Blob):
            raise EntryNotFoundError(f"{sha} is not a file.")
        return obj.as_raw_string()

    def blob_info(self, sha: bytes) -> tuple[int, LfsPointer | None]:
        """(size, LFS pointer or None) of a blob, reading only its head when it is a loose object."""
        cached = self.caches.blob_info.get(sha)
        if cached is not None:
            return cached
        info = self._loose_blob_info(sha)
        if info is None:
            data = self.store[ObjectID(sha)].as_raw_string()
            info = (len(data), LfsPointer.parse(data) if len(data) <= POINTER_MAX_SIZE else None)
        self.caches.blob_info.put(sha, info)
        return info

    def _loose_blob_info(self, sha: bytes) -> tuple[int, LfsPointer | None] | None:
        hexsha = sha.decode()
        path = self.path / "objects" / hexsha[:2] / hexsha[2:]
        try:
            with open(path, "rb") as f:
                raw = f.read(POINTER_MAX_SIZE + 64)
        except FileNotFoundError:
            return None
        head = zlib.decompressobj().decompress(raw, POINTER_MAX_SIZE + 40)
        header, _, body = head.partition(b"\x00")
        kind, _, size_text = header.partition(b" ")
        if kind != b"blob" or not size_text.isdigit():
            return None
        size = int(size_text)
        if size > POINTER_MAX_SIZE:
            return size, None
        return size, (LfsPointer.parse(body) if len(body) == size else None)

    def add_blob(self, data: bytes) -> str:
        blob = Blob.from_string(data)
        self.writer.add_object(blob)
        return blob.id.decode()

    # -- trees ---------------------------------------------------------------------------------

    def _entry(self, path: str, mode: int, sha: bytes) -> Entry:
        if stat.S_ISDIR(mode):
            return Entry(path, "directory", sha.decode(), 0, mode=mode)
        if (mode & 0o170000) == 0o160000:  # submodule (gitlink)
            return Entry(path, "file", sha.decode(), 0, mode=mode)
        size, pointer = self.blob_info(sha)
        if pointer is not None:
            return Entry(path, "file", sha.decode(), pointer.size, pointer, size, mode)
        return Entry(path, "file", sha.decode(), size, mode=mode)

    def lookup(self, commit: str, path: str) -> Entry | None:
        """The entry at ``path`` in ``commit`` ('' is the root folder), or None."""
        tree_id = self.tree_of(commit)
        if not path:
            return Entry("", "directory", tree_id.decode(), 0, mode=stat.S_IFDIR)
        mode, sha = stat.S_IFDIR, tree_id
        for segment in path.split("/"):
            if not stat.S_ISDIR(mode):
                return None
            tree = self.tree(sha)
            try:
                mode, sha = tree[segment.encode()]
            except KeyError:
                return None
        return self._entry(path, mode, sha)

    def list_tree(self, commit: str, path: str = "", recursive: bool = False) -> list[Entry]:
        """Entries under folder ``path`` in tree order; recursive listings include folders.

        Raises EntryNotFound when ``path`` is missing; a file path lists as that one file.
        """
        top = self.lookup(commit, path)
        if top is None:
            raise EntryNotFoundError(f"{path} does not exist at {commit}.")
        if top.type == "file":
            return [top]
        out: list[Entry] = []
        self._walk(top.oid.encode(), path, recursive, out)
        return out

    def _walk(self, tree_sha: bytes, prefix: str, recursive: bool, out: list[Entry]) -> None:
        tree = self.tree(tree_sha)
        for item in tree.iteritems():
            child = f"{prefix}/{item.path.decode()}" if prefix else item.path.decode()
            out.append(self._entry(child, item.mode, item.sha))
            if recursive and stat.S_ISDIR(item.mode):
                self._walk(item.sha, child, recursive, out)

    def files(self, commit: str) -> dict[str, tuple[bytes, int]]:
        """Every file of a commit: path -> (blob sha, mode)."""
        return {
            e.path.decode(): (e.sha, e.mode)
            for e in self.store.iter_tree_contents(ObjectID(self.tree_of(commit)))
        }

    # -- writing -------------------------------------------------------------------------------

    def build_tree(self, base_commit: str | None, changes: list[Change]) -> bytes:
        """Apply ``changes`` in order to ``base_commit``'s files and write the new tree."""
        files = self.files(base_commit) if base_commit else {}
        for change in changes:
            if change.kind == "put":
                _check_no_conflict(files, change.path)
                old = files.get(change.path)
                mode = old[1] if old and old[1] == 0o100755 else change.mode
                if change.blob is None:
                    raise BadRequestError(f"Nothing to put at {change.path}.")
                files[change.path] = (change.blob.encode(), mode)
            elif change.kind == "delete_file":
                if change.path not in files:
                    raise EntryNotFoundError(f"A file with this name doesn't exist: {change.path}")
                del files[change.path]
            elif change.kind == "delete_folder":
                prefix = change.path.rstrip("/") + "/"
                doomed = [p for p in files if p.startswith(prefix)]
                if not doomed:
                    raise EntryNotFoundError(f"A folder with this name doesn't exist: {change.path}")
                for p in doomed:
                    del files[p]
            else:
                raise BadRequestError(f"Unknown change {change.kind!r}.")
        # commit_tree only calls add_object, which _ObjectWriter provides (racing writers tolerated)
        return commit_tree(cast("ObjectContainer", self.writer),
                           [(p.encode(), ObjectID(sha), mode) for p, (sha, mode) in files.items()])

    def write_commit(self, tree: bytes, parents: list[str], message: str, author: str) -> str:
        c = Commit()
        c.tree = tree
        c.parents = [ObjectID(p.encode()) for p in parents]
        c.author = c.committer = author.encode()
        c.author_time = c.commit_time = int(time.time())
        c.author_timezone = c.commit_timezone = 0
        c.encoding = b"UTF-8"
        c.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
        self.writer.add_object(c)
        return c.id.decode()

    def commit(
        self,
        ref: str,
        changes: list[Change],
        message: str,
        author: str,
        expected_parent: str | None = None,
        base: str | None = None,
    ) -> tuple[str, str | None]:
        """Commit ``changes`` on top of ``ref`` and move it, atomically. Returns (new sha, old sha).

        ``expected_parent`` (a prefix of at least 5 hex is accepted) must be the ref's head, or the
        commit is refused with 412. ``base`` starts a ref that does not exist yet (a new PR).
        """
        with self.caches.repo_lock(self.path):
            for _ in range(20):
                head = self.branch_head(ref)
                if head is None and base is None:
                    raise RevisionNotFoundError(f"Invalid rev id: {ref.removeprefix('refs/heads/')}")
                parent = head or base
                if expected_parent and not (parent or "").startswith(expected_parent.lower()):
                    raise PreconditionFailedError(
                        f"A commit has happened since. Parent commit {expected_parent} is not the head of "
                        f"{ref.removeprefix('refs/heads/')} ({parent}). Pull and retry."
                    )
                tree = self.build_tree(parent, changes)
                sha = self.write_commit(tree, [parent] if parent else [], message, author)
                fault_point("before-ref-update")
                try:
                    self.set_ref(ref, sha, head)
                except RefMovedError:
                    continue  # a git push moved the branch: re-apply the changes on its new head
                return sha, head
            raise ConflictError(f"{ref} keeps moving under concurrent pushes; retry.")

    def squash(self, ref: str, message: str, author: str) -> tuple[str, str]:
        """Replace the history of ``ref`` (a branch or ``refs/pr/N``) by one root commit holding its
        head's tree, and move it atomically. Returns (new sha, old sha).

        Other refs keep their commits; what only ``ref`` reached becomes garbage for gc. A missing
        ref is RevisionNotFound; a ref moved meanwhile (a push) is 412, with nothing changed.
        """
        with self.caches.repo_lock(self.path):
            head = self.branch_head(ref)
            if head is None:
                raise RevisionNotFoundError(f"Invalid rev id: {ref.removeprefix('refs/heads/')}")
            sha = self.write_commit(self.tree_of(head), [], message, author)
            self.set_ref(ref, sha, head)
            return sha, head

    def walk(self, head: str, limit: int | None = None) -> Iterator[CommitInfo]:
        """Commits reachable from ``head``, newest first (by commit date, like ``git log``)."""
        walker = self.repo.get_walker(include=[ObjectID(head.encode())], max_entries=limit)
        for entry in walker:
            yield self.commit_info(entry.commit.id.decode())

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return any(c.id == ancestor for c in self.walk(descendant))


def _check_no_conflict(files: dict[str, tuple[bytes, int]], path: str) -> None:
    parts = path.split("/")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in files:
            raise ConflictError(f"Cannot add {path}: {'/'.join(parts[:i])} is a file.")
    prefix = path + "/"
    if path not in files and any(p.startswith(prefix) for p in files):
        raise ConflictError(f"Cannot add {path}: a folder with this name exists.")


class GitStore:
    """Bare repositories under ``root/repos/{type}/{ns}/{name}.git``."""

    def __init__(self, root: Path, db: object = None) -> None:
        """``db``: the hub's database; a PostgreSQL one (with ``session_lock``) makes the ref locks
        advisory locks, else they are file locks beside each repo."""
        self.root = Path(root) / "repos"
        self.root.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._generation: dict[str, int] = {}
        self.caches = GitCaches(RefLocks(self.root, getattr(db, "session_lock", None)))

    def path(self, repo_type: str, repo_id: str) -> Path:
        ns, name = repo_id.split("/")
        return Path(f"{self.root}/{repo_type}/{ns}/{name}.git")  # one parse: this is on every request

    def exists(self, repo_type: str, repo_id: str) -> bool:
        return (self.path(repo_type, repo_id) / "HEAD").exists()

    def init(self, repo_type: str, repo_id: str) -> GitRepo:
        """Create an empty bare repository whose HEAD is ``refs/heads/main``."""
        path = self.path(repo_type, repo_id)
        self._forget(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        repo = Repo.init_bare(str(path), mkdir=True)
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(b"refs/heads/main"))
        repo.close()
        return GitRepo(path, generation=self._generation.get(str(path), 0), caches=self.caches)

    def open(self, repo_type: str, repo_id: str) -> GitRepo:
        """The repository, reusing this thread's open dulwich ``Repo`` (opening one costs ~1 ms).

        Refs and packs are re-read from disk as they change, so a cached Repo never serves stale
        refs; deleting or moving a repo bumps its generation so no thread reuses the old handle.
        """
        path = self.path(repo_type, repo_id)
        key = str(path)
        cache: OrderedDict[str, tuple[int, Repo]] = self._local.__dict__.setdefault("repos", OrderedDict())
        generation = self._generation.get(key, 0)
        hit = cache.get(key)
        if hit is not None and hit[0] == generation:
            cache.move_to_end(key)
            return GitRepo(path, hit[1], generation, self.caches)
        if hit is not None:
            hit[1].close()
        repo = Repo(key)
        cache[key] = (generation, repo)
        if len(cache) > 64:
            cache.popitem(last=False)[1][1].close()
        return GitRepo(path, repo, generation, self.caches)

    def _forget(self, path: Path) -> None:
        self._generation[str(path)] = self._generation.get(str(path), 0) + 1

    def delete(self, repo_type: str, repo_id: str) -> None:
        path = self.path(repo_type, repo_id)
        self._forget(path)
        shutil.rmtree(path, ignore_errors=True)

    def move(self, repo_type: str, old_id: str, new_id: str) -> None:
        target = self.path(repo_type, new_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._forget(self.path(repo_type, old_id))
        self._forget(target)
        self.path(repo_type, old_id).rename(target)

    def recover(self, stale_after: float = STALE_LOCK_AGE) -> int:
        """Remove git lock files a killed process left behind: those untouched for ``stale_after``
        seconds. A live writer holds a ``ref.lock`` for milliseconds, so a hub starting beside other
        workers or hosts on the same volume never breaks their compare-and-swap."""
        return sum(remove_stale_lock(lock, stale_after) for lock in self.root.glob("*/*/*.git/**/*.lock"))


def remove_stale_lock(lock: Path, stale_after: float = STALE_LOCK_AGE) -> bool:
    """Delete the git lock file ``lock`` if it is untouched for ``stale_after`` seconds; True if it was."""
    try:
        if lock.stat().st_mtime >= time.time() - stale_after:
            return False
        lock.unlink()
    except FileNotFoundError:
        return False
    return True


LAST_COMMITS_MAX_WALK = 2000  # first-parent commits walked at most per call
LAST_COMMITS_BUDGET = 2_000_000  # tree entries compared at most per call: about 1 s of CPU at worst


def last_commits(
    g: GitRepo, head: str, paths: list[str], max_walk: int = LAST_COMMITS_MAX_WALK,
    budget: int = LAST_COMMITS_BUDGET,
) -> dict[str, CommitInfo]:
    """For each path, the newest commit (first-parent walk from ``head``) that changed its oid.

    Past ``max_walk`` commits or ``budget`` tree entries compared, the paths still pending are
    attributed to the last commit walked. Exact answers are cached per (repo, head, path).
    """
    keys = {p: (str(g.path), g.generation, head, p) for p in set(paths)}
    found = {p: hit for p, key in keys.items() if (hit := g.caches.last_commits.get(key)) is not None}
    walk = _LastCommitWalk(g, [p for p in keys if p not in found])
    last = walk.run(head, max_walk, budget)
    for p, exact in walk.found.items():
        g.caches.last_commits.put(keys[p], exact)
        found[p] = exact
    if last is not None:
        found.update(walk.rest(last))  # past the walk's limits: not cached, a later call may do better
    return found


class _Pending:
    """A trie of the paths still looked for, one node per path segment."""

    __slots__ = ("children", "count", "name", "parent", "path")

    def __init__(self, parent: _Pending | None = None, name: bytes = b"") -> None:
        self.children: dict[bytes, _Pending] = {}
        self.path: str | None = None  # set while a looked-for path ends here
        self.count = 0  # looked-for paths at or under this node
        self.parent, self.name = parent, name

    def add(self, path: str) -> None:
        node = self
        node.count += 1
        for segment in path.split("/") if path else []:
            name = segment.encode()
            node = node.children.get(name) or node.children.setdefault(name, _Pending(node, name))
            node.count += 1
        node.path = path

    def resolve(self) -> None:
        """The path ending here is found: drop it, and every node left with nothing pending."""
        self.path = None
        node: _Pending | None = self
        while node is not None:
            node.count -= 1
            if not node.count and node.parent is not None:
                del node.parent.children[node.name]
            node = node.parent

    def paths(self) -> list[str]:
        out, stack = [], [self]
        while stack:
            node = stack.pop()
            if node.path is not None:
                out.append(node.path)
            stack.extend(node.children.values())
        return out


_Item = tuple[int, bytes]  # a tree entry: (mode, sha)


class _LastCommitWalk:
    """Attributes pending paths to commits, one first-parent step at a time.

    Each step compares a commit's tree with its parent's top-down along the pending paths only,
    skipping every subtree whose sha is unchanged; ``work`` counts the tree entries compared.
    """

    def __init__(self, g: GitRepo, paths: list[str]) -> None:
        self.g, self.root, self.work = g, _Pending(), 0
        self.found: dict[str, CommitInfo] = {}
        for p in paths:
            self.root.add(p)

    def run(self, head: str, max_walk: int, budget: int) -> CommitInfo | None:
        """Walk first parents from ``head`` until nothing is pending, past the root, or a limit.

        Returns the last commit walked when a limit left paths pending, else None.
        """
        info: CommitInfo | None = None
        sha = head
        for _ in range(max_walk):
            if not self.root.count or self.work >= budget:
                break
            info = self.g.commit_info(sha)
            self.step(info)
            if not info.parents:
                self.found.update(self.rest(info))  # the root commit added whatever is still pending
                self.root = _Pending()
                return None
            sha = info.parents[0]
        return info if self.root.count else None

    def step(self, info: CommitInfo) -> None:
        """Attribute to ``info`` every pending path whose oid differs in its first parent."""
        new: _Item = (stat.S_IFDIR, self.g.tree_of(info.id))
        old: _Item | None = (stat.S_IFDIR, self.g.tree_of(info.parents[0])) if info.parents else None
        self.work += 1
        self._compare(new, old, info)

    def rest(self, info: CommitInfo) -> dict[str, CommitInfo]:
        """Every path still pending, attributed to ``info``."""
        return {p: info for p in self.root.paths()}

    def _compare(self, new: _Item, old: _Item | None, info: CommitInfo) -> None:
        """Record the pending paths whose entry differs between the trees ``new`` and ``old``."""
        stack: list[tuple[_Pending, _Item | None, _Item | None]] = [(self.root, new, old)]
        while stack:  # a loop, not recursion: trees may nest deeper than Python's stack
            node, a, b = stack.pop()
            if (a[1] if a else None) == (b[1] if b else None):
                continue
            if node.path is not None:
                self.found[node.path] = info
                node.resolve()
            if node.children:
                new_entries, old_entries = self._entries(a), self._entries(b)
                for name in self._changed(node.children, new_entries, old_entries):
                    stack.append((node.children[name], new_entries.get(name), old_entries.get(name)))

    def _entries(self, item: _Item | None) -> dict[bytes, _Item]:
        """A folder's entries by name ({} for a file or nothing)."""
        if item is None or not stat.S_ISDIR(item[0]):
            return {}
        entries = cast(dict[bytes, _Item], self.g.tree(item[1])._entries)
        self.work += len(entries)
        return entries

    @staticmethod
    def _changed(children: dict[bytes, _Pending], new: dict[bytes, _Item], old: dict[bytes, _Item]) -> list[bytes]:
        """The pending names whose entry may differ: a set difference in C when many are pending."""
        if len(children) * 8 < len(new) + len(old):
            return list(children)
        return list({name for name, _ in new.items() ^ old.items()} & children.keys())
