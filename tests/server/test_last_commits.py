"""``lastCommit`` of expanded tree and paths-info entries: right answers at bounded cost.

The reference is the original algorithm (for every commit of the first-parent walk, look every
pending path up in the parent). Histories are written straight into the bare repositories with
dulwich: hundreds of REST commits would make the tests slow.
"""

from __future__ import annotations

import random
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
from dulwich.objects import Blob, Commit, ShaFile, Tree

from hubfs.server.git_store import CommitInfo, GitRepo, last_commits

HTTP = httpx.Client(timeout=120)


def old_last_commits(g: GitRepo, head: str, paths: list[str], max_walk: int = 2000) -> dict[str, CommitInfo]:
    """The original O(commits x paths x depth) algorithm, kept as the reference."""
    pending = set(paths)
    found: dict[str, CommitInfo] = {}
    sha: str | None = head
    walked = 0
    current = {p: _entry_id(g, head, p) for p in pending}
    while sha and pending and walked < max_walk:
        info = g.commit_info(sha)
        parent = info.parents[0] if info.parents else None
        for p in list(pending):
            before = _entry_id(g, parent, p) if parent else None
            if before != current[p] or parent is None or walked == max_walk - 1:
                found[p] = info
                pending.discard(p)
        sha, walked = parent, walked + 1
    return found


def _entry_id(g: GitRepo, commit: str, path: str) -> str | None:
    entry = g.lookup(commit, path)
    return entry.oid if entry else None


class HistoryWriter:
    """Writes commits into a bare repository from an in-memory file map, packing objects per commit."""

    def __init__(self, g: GitRepo, files: dict[str, bytes] | None = None, head: str | None = None) -> None:
        self.g, self.files, self.head = g, dict(files or {}), head
        self._trees: dict[str, bytes] = {}  # folder -> tree sha, valid while no file under it changes
        self._seq = 0
        self._objects: dict[bytes, ShaFile] = {}  # written as one pack by ``flush``

    def fork(self) -> "HistoryWriter":
        side = HistoryWriter(self.g, self.files, self.head)
        side._objects, side._seq = self._objects, self._seq + 10_000
        return side

    def put(self, path: str, data: bytes | None = None) -> None:
        self._seq += 1
        self.files[path] = data if data is not None else f"{path} v{self._seq}\n".encode()
        self._dirty(path)

    def delete(self, path: str) -> None:
        prefix = path + "/"
        for p in [p for p in self.files if p == path or p.startswith(prefix)]:
            del self.files[p]
        self._dirty(path)

    def commit(self, message: str, merge: str | None = None, time_: int = 1_700_000_000) -> str:
        objects = self._objects
        c = Commit()
        c.tree = self._tree("", sorted(self.files), objects)
        c.parents = [p.encode() for p in ([self.head] if self.head else []) + ([merge] if merge else [])]
        c.author = c.committer = b"t <t@example.com>"
        c.author_time = c.commit_time = time_ + self._seq
        c.author_timezone = c.commit_timezone = 0
        c.message = message.encode() + b"\n"
        objects[c.id] = c
        self.head = c.id.decode()
        return self.head

    def flush(self) -> None:
        self.g.store.add_objects([(o, None) for o in self._objects.values()])
        self._objects.clear()

    def publish(self, ref: str = "refs/heads/main") -> None:
        self.flush()
        self.g.repo.refs[ref.encode()] = self.head.encode()  # type: ignore[union-attr]

    def _dirty(self, path: str) -> None:
        parts = path.split("/")
        for i in range(len(parts) + 1):
            self._trees.pop("/".join(parts[:i]), None)

    def _tree(self, folder: str, paths: list[str], objects: dict[bytes, ShaFile]) -> bytes:
        cached = self._trees.get(folder)
        if cached is not None:
            return cached
        prefix = folder + "/" if folder else ""
        groups: dict[str, list[str]] = {}
        tree = Tree()
        for p in paths:
            head, sep, _ = p[len(prefix):].partition("/")
            if sep:
                groups.setdefault(head, []).append(p)
            else:
                blob = Blob.from_string(self.files[p])
                objects[blob.id] = blob
                tree.add(head.encode(), 0o100644, blob.id)
        for name, sub in groups.items():
            tree.add(name.encode(), stat.S_IFDIR, self._tree(prefix + name, sub, objects))
        objects[tree.id] = tree
        self._trees[folder] = tree.id
        return tree.id


def mixed_history(g: GitRepo, seed: int = 7, commits: int = 120) -> HistoryWriter:
    """Files in nested folders, edits, deletes and re-adds, folder deletes, empty commits and merges."""
    rng = random.Random(seed)
    w = HistoryWriter(g)
    names = [f"top{i}.txt" for i in range(6)] + [f"a/f{i}.txt" for i in range(6)] + \
            [f"a/b/c/g{i}.bin" for i in range(5)] + [f"d{i % 3}/e/h{i}.txt" for i in range(9)]
    for n in names[:10]:
        w.put(n)
    w.commit("initial")
    for i in range(commits):
        roll = rng.random()
        if roll < 0.08:
            side = w.fork()
            for _ in range(rng.randint(1, 3)):
                side.put(rng.choice(names))
            side_head = side.commit(f"side {i}")
            w.files = dict(side.files)
            w._trees.clear()  # noqa: SLF001 - the merge takes the side's tree
            w.commit(f"merge {i}", merge=side_head)
            continue
        if roll < 0.12:
            w.commit(f"empty {i}")  # same tree as its parent
            continue
        for _ in range(rng.randint(1, 3)):
            n = rng.choice(names)
            if n in w.files and rng.random() < 0.3:
                w.delete(n)
            elif rng.random() < 0.05 and any(p.startswith("a/") for p in w.files):
                w.delete("a/b")
            else:
                w.put(n, b"same content\n" if rng.random() < 0.2 else None)  # re-adds may reuse a blob
        w.commit(f"change {i}")
    w.flush()
    return w


def _candidate_paths(w: HistoryWriter) -> list[str]:
    folders = {p.rsplit("/", 1)[0] for p in w.files if "/" in p} | {"a", "a/b", "a/b/c", "d0/e", "x"}
    ever = [f"top{i}.txt" for i in range(6)] + [f"a/f{i}.txt" for i in range(6)] + \
           [f"a/b/c/g{i}.bin" for i in range(5)] + [f"d{i % 3}/e/h{i}.txt" for i in range(9)]
    return sorted(set(ever) | folders | {"top0.txt/x", "never/there.txt", ""})


def _fresh_repo(tmp_path: Path) -> GitRepo:
    from dulwich.repo import Repo

    Repo.init_bare(str(tmp_path / "r.git"), mkdir=True).close()
    return GitRepo(tmp_path / "r.git")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_the_original_algorithm(tmp_path: Path, seed: int) -> None:
    with _fresh_repo(tmp_path) as g:
        w = mixed_history(g, seed=seed)
        paths = _candidate_paths(w)
        heads = [w.head] + [g.commit_info(w.head).parents[0]]
        for head in heads:
            for max_walk in (1, 40, 2000):  # short walks first: the cache only ever holds exact answers
                want = old_last_commits(g, head, paths, max_walk=max_walk)
                got = last_commits(g, head, paths, max_walk=max_walk)
                assert {p: c.id for p, c in got.items()} == {p: c.id for p, c in want.items()}, (head, max_walk)
        for p in paths:  # one at a time, through the cache filled above
            assert last_commits(g, w.head, [p])[p].id == old_last_commits(g, w.head, [p])[p].id


def test_work_budget_attributes_the_rest_to_the_last_walked_commit(tmp_path: Path) -> None:
    with _fresh_repo(tmp_path) as g:
        w = HistoryWriter(g)
        for i in range(50):
            w.put(f"f{i}.txt")
        first = w.commit("initial")
        for i in range(30):
            w.put("busy.txt")
            w.commit(f"busy {i}")
        w.flush()
        got = last_commits(g, w.head, ["busy.txt", "f3.txt"], budget=200)
        assert got["busy.txt"].id == w.head
        assert got["f3.txt"].id not in (first, w.head)  # cut short: not the exact answer
        assert last_commits(g, w.head, ["f3.txt"])["f3.txt"].id == first  # a bounded guess is never cached


# -- through the server --------------------------------------------------------------------------


def _server_repo(hub, repo_id: str) -> GitRepo:
    ns, name = repo_id.split("/")
    return GitRepo(hub.data_dir / "repos" / "model" / ns / f"{name}.git")


def _big_history(hub, repo_id: str, files: int = 3000, commits: int = 600) -> HistoryWriter:
    """``files`` files in one commit on top of the repo's, then ``commits`` commits of one file each."""
    g = _server_repo(hub, repo_id)
    head = g.repo.refs[b"refs/heads/main"].decode()
    w = HistoryWriter(g, {p: g.read_blob(sha.decode()) for p, (sha, _) in g.files(head).items()}, head)
    for i in range(files):
        w.put(f"data/part{i // 500}/file{i:05d}.txt")
    w.commit("many files")
    for i in range(commits):
        w.put(f"data/part{i % 6}/file{(i * 7) % files:05d}.txt")
        w.commit(f"edit {i}")
    w.publish()
    g.close()
    return w


def _paths_info(hub, repo_id: str, paths: list[str], expand: bool, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/paths-info/main",
                     json={"paths": paths, "expand": expand}, headers=headers)


def test_paths_info_last_commit_matches_the_original(hub, api, repo_id: str) -> None:
    w = _big_history(hub, repo_id, files=600, commits=60)
    paths = sorted(w.files)[::7] + ["data/part0", "data"]
    r = _paths_info(hub, repo_id, paths, expand=True)
    assert r.status_code == 200, r.text
    with _server_repo(hub, repo_id) as g:
        want = old_last_commits(g, w.head, [i["path"] for i in r.json()])
    got = {i["path"]: i["lastCommit"]["id"] for i in r.json()}
    assert got == {p: c.id for p, c in want.items()} and len(got) == len(paths)
    # The official client's expanded calls (one path, as HfFileSystem.info does) still work.
    info = api.get_paths_info(repo_id, [paths[0]], expand=True)[0]
    assert info.last_commit is not None and info.last_commit.oid == got[paths[0]]


def test_expanded_paths_info_refuses_too_many_paths(hub, repo_id: str) -> None:
    paths = [f"nope/{i}.txt" for i in range(1001)]
    r = _paths_info(hub, repo_id, paths, expand=True)
    assert r.status_code == 400, r.text
    assert "1000" in r.json()["error"]
    assert _paths_info(hub, repo_id, paths[:1000], expand=True).status_code == 200
    assert _paths_info(hub, repo_id, paths, expand=False).status_code == 200


def test_heavy_expanded_paths_info_is_bounded_and_off_the_event_loop(hub, repo_id: str) -> None:
    w = _big_history(hub, repo_id)
    paths = sorted(w.files)[:1000]
    results: list[tuple[int, float]] = []

    def heavy() -> None:
        t0 = time.monotonic()
        r = _paths_info(hub, repo_id, paths, expand=True)
        results.append((r.status_code, time.monotonic() - t0))

    # The light request once before: its first answer builds the repo's listing cache (~0.6 s of CPU on
    # 3,600 files), which is not what this test measures.
    assert httpx.get(f"{hub.endpoint}/api/models/{repo_id}", timeout=60).status_code == 200
    workers = [threading.Thread(target=heavy) for _ in range(3)]
    for t in workers:
        t.start()
    time.sleep(0.2)
    light: list[float] = []
    with httpx.Client(timeout=60) as client:
        while any(t.is_alive() for t in workers):
            t0 = time.monotonic()
            assert client.get(f"{hub.endpoint}/api/models/{repo_id}").status_code == 200
            light.append(time.monotonic() - t0)
            time.sleep(0.05)
    for t in workers:
        t.join()
    assert [code for code, _ in results] == [200, 200, 200]
    assert max(light, default=0) < 1.5, light
    assert max(s for _, s in results) < 20, results
