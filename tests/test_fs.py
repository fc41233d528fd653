"""HubFileSystem (hubfs/fs.py): pinned reads, per-commit listings, ranged and parallel reads, commits, transactions.

The request budgets at the end are counted by the server itself (``HUBFS_REQUEST_LOG``), on a private hub.
"""

from __future__ import annotations

import math
import pickle
import random
import re
import threading
import time
import tracemalloc
import uuid
from pathlib import Path

import fsspec
import pytest
from hub_server import HubServer, RequestLog
from huggingface_hub import CommitOperationAdd

from hubfs.files import STRIDE_DEPTH
from hubfs.fs import HubFileSystem

MiB = 1 << 20
BIG = 70 * MiB  # over the 64 MiB where reads go parallel


def _bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _fresh(hub: HubServer, **kwargs) -> HubFileSystem:
    """A new filesystem starting cold: no instance reused, no branch pinned (pins are shared by the clients of
    one endpoint and token, so this client stops trusting those learnt so far)."""
    fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True, **kwargs)
    fs.client.forget_pins()
    return fs


def _commits(api, repo_id: str, repo_type: str | None = None) -> int:
    return len(api.list_repo_commits(repo_id, repo_type=repo_type))


class Counter:
    """Counts calls of some client methods of one filesystem (``list_tree``, ``paths_info``, ...)."""

    def __init__(self, monkeypatch, obj, *names: str) -> None:
        self.calls: list[tuple[str, tuple]] = []
        for name in names:
            original = getattr(obj, name)

            def wrapper(*args, _name=name, _original=original, **kwargs):
                self.calls.append((_name, args))
                return _original(*args, **kwargs)

            monkeypatch.setattr(obj, name, wrapper)

    def count(self, name: str | None = None) -> int:
        return sum(1 for n, _ in self.calls if name is None or n == name)

    def reset(self) -> None:
        self.calls.clear()


class FetchProbe:
    """Wraps ``fs.fetcher``'s ``fetch_into`` and ``fetch_pieces``: records (start, length) of every range and the
    peak of ranges in flight."""

    def __init__(self, monkeypatch, fs: HubFileSystem, delay: float = 0.0) -> None:
        self.ranges: list[tuple[int, int]] = []
        self.in_flight = self.peak = 0
        self._lock = threading.Lock()
        self.delay = delay
        fetch_into, fetch_pieces = fs.fetcher.fetch_into, fs.fetcher.fetch_pieces
        monkeypatch.setattr(fs.fetcher, "fetch_into", lambda url, start, buf, headers=None: self._call(
            start, len(buf), lambda: fetch_into(url, start, buf, headers)))
        monkeypatch.setattr(fs.fetcher, "fetch_pieces", lambda url, start, length, piece: self._call(
            start, length, lambda: fetch_pieces(url, start, length, piece)))

    def _call(self, start: int, length: int, call):
        with self._lock:
            self.ranges.append((start, length))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay)  # makes overlap observable when the calls really are concurrent
            return call()
        finally:
            with self._lock:
                self.in_flight -= 1


# -- a read-only repo shared by the read tests ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fs(hub) -> HubFileSystem:
    return _fresh(hub)


@pytest.fixture(scope="module")
def content() -> dict[str, bytes]:
    return {
        "README.md": b"# a model\n",
        "config.json": b'{"hidden": 8}',
        "data/train.csv": b"a,b\n1,2\n3,4\n",
        "data/test.csv": b"a,b\n5,6\n",
        "data/nested/deep/x.txt": b"deep",
        "weights/small.safetensors": _bytes(3000, 1),  # LFS by the .gitattributes pattern
        "weights/mid.bin": _bytes(3 * MiB + 17, 2),
        "weights/big.bin": _bytes(BIG + 12345, 3),  # LFS by size, parallel reads
    }


@pytest.fixture(scope="module")
def model(api, content) -> str:
    rid = f"admin/fs-{uuid.uuid4().hex[:10]}"
    api.create_repo(rid)
    api.create_commit(rid, [CommitOperationAdd(p, c) for p, c in content.items()], commit_message="content")
    return rid


# -- paths, listings, info -------------------------------------------------------------------------------------------


def test_protocol_resolves_to_hubfs(hub) -> None:
    assert type(fsspec.filesystem("hf")).__module__ == "hubfs.fs"
    assert fsspec.get_filesystem_class("hubfs") is HubFileSystem


def test_ls_and_info(fs, model, content) -> None:
    assert fs.ls(model, detail=False) == [f"{model}/{n}" for n in (".gitattributes", "README.md", "config.json",
                                                                    "data", "weights")]
    assert fs.ls(f"hf://{model}/data", detail=False) == [f"{model}/data/nested", f"{model}/data/test.csv",
                                                          f"{model}/data/train.csv"]
    entries = {e["name"]: e for e in fs.ls(f"{model}/weights")}
    big = entries[f"{model}/weights/big.bin"]
    assert big["type"] == "file" and big["size"] == len(content["weights/big.bin"])
    assert big["lfs"]["size"] == big["size"] and len(big["lfs"]["sha256"]) == 64
    assert entries[f"{model}/weights/small.safetensors"]["lfs"] is not None
    assert fs.info(f"{model}/config.json")["lfs"] is None
    assert fs.info(f"{model}/data") == {**fs.info(f"{model}/data"), "type": "directory", "size": 0}
    assert fs.info(model)["type"] == "directory"
    assert fs.ls(f"{model}/README.md", detail=False) == [f"{model}/README.md"]
    assert fs.isdir(f"{model}/data/nested") and fs.isfile(f"{model}/data/nested/deep/x.txt")
    assert fs.exists(f"hubfs://{model}/config.json") and not fs.exists(f"{model}/nope.txt")
    assert fs.size(f"{model}/weights/mid.bin") == 3 * MiB + 17
    assert fs.ukey(f"{model}/weights/big.bin") == big["lfs"]["sha256"]


def test_info_asks_paths_info_never_the_parent_listing(hub, model, monkeypatch) -> None:
    fs = _fresh(hub)
    calls = Counter(monkeypatch, fs.client, "list_tree", "paths_info")
    info = fs.info(f"{model}/data/train.csv")
    assert info["name"] == f"{model}/data/train.csv" and info["size"] == 12 and info["type"] == "file"
    assert calls.count("list_tree") == 0 and calls.count("paths_info") == 1
    assert fs.info(f"{model}/data/train.csv") == info and calls.count() == 1  # remembered for the commit
    fs.ls(f"{model}/weights")
    calls.reset()
    assert fs.info(f"{model}/weights/mid.bin")["size"] == 3 * MiB + 17  # from the listing
    with pytest.raises(FileNotFoundError):
        fs.info(f"{model}/weights/missing.bin")  # the folder's full listing says no
    assert calls.count() == 0


def test_listings_are_cached_per_commit(hub, api, repo_id, monkeypatch) -> None:
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo_id)
    old = api.list_repo_commits(repo_id)[0].commit_id
    fs = _fresh(hub, revision_ttl=600)
    calls = Counter(monkeypatch, fs.client, "list_tree", "repo_info")
    assert fs.ls(repo_id, detail=False) == [f"{repo_id}/.gitattributes", f"{repo_id}/a.txt"]
    assert calls.count("list_tree") == 1 and calls.count("repo_info") == 1
    api.upload_file(path_or_fileobj=b"2", path_in_repo="b.txt", repo_id=repo_id)
    # the branch stays pinned for revision_ttl, and the pinned commit's listing is served from memory
    assert fs.ls(repo_id, detail=False) == [f"{repo_id}/.gitattributes", f"{repo_id}/a.txt"]
    assert calls.count() == 2
    fs.invalidate_cache()
    assert fs.ls(repo_id, detail=False) == [f"{repo_id}/.gitattributes", f"{repo_id}/a.txt", f"{repo_id}/b.txt"]
    assert calls.count("list_tree") == 2 and calls.count("repo_info") == 2
    calls.reset()
    # the old commit's listing never goes stale: no request at all, even after invalidate_cache
    assert fs.ls(f"{repo_id}@{old}", detail=False) == [f"{repo_id}@{old}/.gitattributes", f"{repo_id}@{old}/a.txt"]
    assert fs.find(repo_id) == fs.find(repo_id)
    assert calls.count("list_tree") == 1  # one recursive listing, then memory


def test_revision_ttl_repins_the_branch(hub, api, repo_id) -> None:
    api.upload_file(path_or_fileobj=b"old", path_in_repo="a.txt", repo_id=repo_id)
    fs = _fresh(hub, revision_ttl=0.3)
    assert fs.cat(f"{repo_id}/a.txt") == b"old"
    api.upload_file(path_or_fileobj=b"new", path_in_repo="a.txt", repo_id=repo_id)
    time.sleep(0.4)
    assert fs.cat(f"{repo_id}/a.txt") == b"new"


def test_find_glob_walk_du(fs, model, content) -> None:
    files = sorted(f"{model}/{p}" for p in [*content, ".gitattributes"])
    assert fs.find(model) == files
    assert fs.find(f"hf://{model}/data") == [f"{model}/data/nested/deep/x.txt", f"{model}/data/test.csv",
                                             f"{model}/data/train.csv"]
    assert fs.find(f"{model}/data", maxdepth=1) == [f"{model}/data/test.csv", f"{model}/data/train.csv"]
    assert fs.find(f"{model}/data", withdirs=True) == [
        f"{model}/data", f"{model}/data/nested", f"{model}/data/nested/deep", f"{model}/data/nested/deep/x.txt",
        f"{model}/data/test.csv", f"{model}/data/train.csv"]
    assert fs.find(f"{model}/README.md") == [f"{model}/README.md"]
    assert fs.find(f"{model}/nope") == []
    detail = fs.find(f"{model}/weights", detail=True)
    assert {n: e["size"] for n, e in detail.items()} == {f"{model}/{p}": len(c) for p, c in content.items()
                                                          if p.startswith("weights/")}
    assert fs.glob(f"{model}/data/*.csv") == [f"{model}/data/test.csv", f"{model}/data/train.csv"]
    assert fs.glob(f"hf://{model}/**/*.txt") == [f"{model}/data/nested/deep/x.txt"]
    assert fs.glob(f"{model}/*") == [f"{model}/{n}" for n in (".gitattributes", "README.md", "config.json", "data",
                                                               "weights")]
    assert fs.glob(f"{model}/weights/*.bin", detail=True)[f"{model}/weights/mid.bin"]["size"] == 3 * MiB + 17
    walked = list(fs.walk(model))
    assert walked[0] == (model, ["data", "weights"], [".gitattributes", "README.md", "config.json"])
    assert (f"{model}/data/nested/deep", [], ["x.txt"]) in walked and len(walked) == 5
    assert list(fs.walk(model, maxdepth=1)) == walked[:1]
    total = sum(len(c) for c in content.values()) + fs.size(f"{model}/.gitattributes")
    assert fs.du(model) == total
    assert fs.du(f"{model}/data", total=False) == {f"{model}/{p}": len(c) for p, c in content.items()
                                                   if p.startswith("data/")}


def test_walk_lists_the_tree_once(hub, model, monkeypatch) -> None:
    fs = _fresh(hub)
    calls = Counter(monkeypatch, fs.client, "list_tree", "paths_info")
    assert len(list(fs.walk(model))) == 5
    assert sum(len(files) for _, _, files in fs.walk(model)) == 9
    assert fs.du(model) > BIG and len(fs.glob(f"{model}/**")) > 9
    assert calls.count() == 1


def test_revision_paths(hub, api, repo_id) -> None:
    api.upload_file(path_or_fileobj=b"main", path_in_repo="d/a.txt", repo_id=repo_id)
    main_sha = api.list_repo_commits(repo_id)[0].commit_id
    api.create_tag(repo_id, tag="v1.0")
    api.create_branch(repo_id, branch="feat/x")
    api.upload_file(path_or_fileobj=b"feat", path_in_repo="d/a.txt", repo_id=repo_id, revision="feat/x")
    pr = api.upload_file(path_or_fileobj=b"pr", path_in_repo="d/a.txt", repo_id=repo_id, create_pr=True)
    assert pr.pr_revision == "refs/pr/1"
    api.upload_file(path_or_fileobj=b"main2", path_in_repo="d/a.txt", repo_id=repo_id)
    fs = _fresh(hub)
    for rev, spelled, data in [("", "", b"main2"), ("feat%2Fx", "@feat%2Fx", b"feat"), ("v1.0", "@v1.0", b"main"),
                               ("refs/pr/1", "@refs/pr/1", b"pr"), (main_sha, f"@{main_sha}", b"main")]:
        root = f"{repo_id}{'@' + rev if rev else ''}"
        assert fs.cat(f"hf://{root}/d/a.txt") == data, rev
        assert fs.cat_file(f"{root}/d/a.txt", start=1) == data[1:]
        with fs.open(f"{root}/d/a.txt") as f:
            assert f.read() == data
        assert fs.ls(f"{root}/d", detail=False) == [f"{repo_id}{spelled}/d/a.txt"], rev
        assert fs.info(f"{root}/d/a.txt")["name"] == f"{repo_id}{spelled}/d/a.txt"
        assert fs.find(root) == [f"{repo_id}{spelled}/.gitattributes", f"{repo_id}{spelled}/d/a.txt"]
        assert fs.glob(f"{root}/d/*") == [f"{repo_id}{spelled}/d/a.txt"]


def test_dataset_and_space_prefixes(fs, api, dataset_id) -> None:
    fs.pipe(f"hf://datasets/{dataset_id}/x/y.csv", b"a,b\n1,2\n")
    assert fs.ls(f"datasets/{dataset_id}/x", detail=False) == [f"datasets/{dataset_id}/x/y.csv"]
    assert fs.cat(f"datasets/{dataset_id}/x/y.csv") == b"a,b\n1,2\n"
    assert fs.find(f"hf://datasets/{dataset_id}") == [f"datasets/{dataset_id}/.gitattributes",
                                                      f"datasets/{dataset_id}/x/y.csv"]
    assert [e.path for e in api.list_repo_tree(dataset_id, repo_type="dataset", recursive=True)
            if e.path.endswith(".csv")] == ["x/y.csv"]
    space = f"admin/s-{uuid.uuid4().hex[:10]}"
    api.create_repo(space, repo_type="space", space_sdk="static")
    fs.pipe(f"spaces/{space}/index.html", b"<p>hi</p>")
    assert fs.info(f"spaces/{space}/index.html")["name"] == f"spaces/{space}/index.html"
    assert fs.cat(f"hf://spaces/{space}/index.html") == b"<p>hi</p>"
    with pytest.raises(FileNotFoundError):
        fs.ls(f"datasets/{space}")  # no dataset of that name


def test_canonical_repo_then_a_path(hub, fs) -> None:
    """hf://gpt2/config.json: no repo gpt2/config.json, so canonical repo gpt2 and its config.json."""
    from hubfs.client.api import HubClient
    from hubfs.client.commit import Add

    name = f"canon-{uuid.uuid4().hex[:8]}"
    with HubClient(hub.endpoint, hub.admin_token) as admin:  # huggingface_hub refuses single-segment ids
        admin.create_repo("model", name)
        admin.commit("model", name, [Add("config.json", b'{"n": 1}'), Add("sub/w.txt", b"w")], "seed")
    assert fsspec.open(f"hf://{name}/config.json", endpoint=hub.endpoint, token=hub.admin_token).open().read() \
        == b'{"n": 1}'
    fresh = _fresh(hub)
    assert fresh.cat(f"hf://{name}/sub/w.txt") == b"w"
    assert fresh.info(f"{name}/config.json")["name"] == f"{name}/config.json"
    assert fresh.ls(f"hf://{name}/sub", detail=False) == [f"{name}/sub/w.txt"]
    assert sorted(fresh.ls(f"hf://{name}", detail=False)) == [f"{name}/.gitattributes", f"{name}/config.json",
                                                              f"{name}/sub"]
    fresh.pipe(f"hf://{name}/new.txt", b"new")  # writes take the canonical reading too
    assert fresh.cat(f"hf://{name}@main/new.txt") == b"new"
    with pytest.raises(FileNotFoundError):
        fresh.cat(f"hf://{name}/missing.txt")
    with pytest.raises(FileNotFoundError):
        fresh.cat(f"hf://no-such-{name}/config.json")


# -- reads -----------------------------------------------------------------------------------------------------------


def test_cat_file_ranges(fs, model, content) -> None:
    path, data = f"{model}/weights/mid.bin", content["weights/mid.bin"]
    n = len(data)
    cases = [(None, None), (0, 10), (10, None), (None, 100), (-100, None), (-100, -10), (5, -5), (n - 3, n + 100),
             (n + 5, None), (20, 10), (0, 2 * MiB + 3), (-(n + 50), 4), (MiB - 1, MiB + 1)]
    for start, end in cases:
        assert fs.cat_file(path, start=start, end=end) == data[start:end], (start, end)
    assert fs.cat_file(f"{model}/README.md", start=2, end=5) == content["README.md"][2:5]
    assert fs.cat(f"{model}/data/*.csv") == {f"{model}/data/{k}": content[f"data/{k}"]
                                             for k in ("test.csv", "train.csv")}
    assert fs.head(path, 100) == data[:100] and fs.tail(path, 100) == data[-100:]
    assert fs.read_block(path, 1000, 500) == data[1000:1500]


def test_cat_ranges_run_concurrently_in_order(hub, model, content, monkeypatch) -> None:
    fs = _fresh(hub)
    probe = FetchProbe(monkeypatch, fs, delay=0.05)
    mid, big = content["weights/mid.bin"], content["weights/big.bin"]
    rng = random.Random(7)
    paths, starts, ends, want = [], [], [], []
    for i in range(24):
        name, data = (("weights/mid.bin", mid), ("weights/big.bin", big))[i % 2]
        s = rng.randrange(len(data) - 70000)
        e = s + rng.randrange(1, 70000)
        paths.append(f"{model}/{name}")
        starts.append(s)
        ends.append(e)
        want.append(data[s:e])
    paths.append(f"{model}/README.md")
    starts.append(-4)
    ends.append(None)
    want.append(content["README.md"][-4:])
    t = time.monotonic()
    assert fs.cat_ranges(paths, starts, ends) == want
    assert probe.peak >= 4, probe.peak
    assert time.monotonic() - t < 24 * 0.05  # not one after the other
    assert all(length <= 70000 for _, length in probe.ranges)  # exactly the ranges, no read-ahead
    assert fs.cat_ranges([f"{model}/README.md"] * 3, 0, 3) == [b"# a"] * 3


def test_open_file_keeps_reading_its_commit(fs, api, repo_id) -> None:
    old, new = _bytes(4 * MiB, 10), _bytes(4 * MiB, 11)
    api.upload_file(path_or_fileobj=old, path_in_repo="w.bin", repo_id=repo_id)
    with fs.open(f"{repo_id}/w.bin") as f:
        assert f.read(10) == old[:10]
        api.upload_file(path_or_fileobj=new, path_in_repo="w.bin", repo_id=repo_id)
        f.seek(3 * MiB)
        assert f.read(100) == old[3 * MiB:3 * MiB + 100]
        f.seek(10)
        assert f.read() == old[10:]
    fs.invalidate_cache()
    assert fs.cat(f"{repo_id}/w.bin") == new


def test_sequential_read_of_a_big_file(hub, model, content, monkeypatch) -> None:
    data = content["weights/big.bin"]
    fs = _fresh(hub)
    probe = FetchProbe(monkeypatch, fs, delay=0.05)
    with fs.open(f"{model}/weights/big.bin") as f:
        assert f.size == len(data)
        assert f.read() == data
        assert f.read() == b"" and f.tell() == len(data)
    # the first 64 KiB came with open (the peek), the rest goes as >= 4 concurrent ranges of at most 16 MiB
    assert min(start for start, _ in probe.ranges) == 64 * 1024
    assert probe.peak >= 4 and max(length for _, length in probe.ranges) <= 16 * MiB
    assert sum(length for _, length in probe.ranges) <= len(data) + 16 * MiB

    probe.ranges.clear()
    probe.peak = 0
    with fs.open(f"{model}/weights/big.bin") as f:  # reads in 1 MiB pieces: growing windows
        got = bytearray()
        while chunk := f.read(MiB):
            got += chunk
    assert bytes(got) == data
    assert len(probe.ranges) < 40 and max(length for _, length in probe.ranges) <= 16 * MiB
    assert sum(length for _, length in probe.ranges) <= len(data) + 16 * MiB


def test_short_seeks_forward_keep_streaming(hub, model, content, monkeypatch) -> None:
    data = content["weights/big.bin"]
    fs = _fresh(hub, block_cache=False)
    probe = FetchProbe(monkeypatch, fs)
    with fs.open(f"{model}/weights/big.bin") as f:  # read a record, skip a little, read on
        while f.tell() + 4 * MiB <= len(data):
            at = f.tell()
            assert f.read(4 * MiB) == data[at:at + 4 * MiB]
            f.seek(MiB + 100, 1)
    starts = sorted(start for start, _ in probe.ranges)
    assert all(b > a for a, b in zip(starts, starts[1:])), "one stream: no byte range asked twice"
    assert sum(length for _, length in probe.ranges) <= len(data) + 16 * MiB and len(probe.ranges) < 12


def test_random_reads_fetch_what_was_asked(hub, model, content, monkeypatch) -> None:
    data = content["weights/big.bin"]
    fs = _fresh(hub)
    probe = FetchProbe(monkeypatch, fs)
    rng = random.Random(3)
    with fs.open(f"{model}/weights/big.bin") as f:
        probe.ranges.clear()
        f.seek(5)
        assert f.read(10) == data[5:15]  # inside the first window: no request
        for _ in range(30):
            off, n = rng.randrange(2 * MiB, len(data) - 65536), rng.randrange(1, 65536)
            f.seek(off)
            assert f.read(n) == data[off:off + n]
        f.seek(-10, 2)
        assert f.read(100) == data[-10:]
    assert len(probe.ranges) == 31
    assert sum(length for _, length in probe.ranges) <= 31 * 65536


def test_text_mode_and_readinto(fs, model, content) -> None:
    with fs.open(f"{model}/data/train.csv", "r") as f:
        assert f.read() == content["data/train.csv"].decode()
    buf = bytearray(100)
    with fs.open(f"{model}/weights/mid.bin", "rb") as f:
        f.seek(MiB)
        assert f.readinto(buf) == 100 and bytes(buf) == content["weights/mid.bin"][MiB:MiB + 100]


# -- writes ----------------------------------------------------------------------------------------------------------


def test_pipe_put_and_open_wb(fs, api, repo_id, tmp_path) -> None:
    before = _commits(api, repo_id)
    fs.pipe(f"{repo_id}/small.txt", b"hello")
    assert fs.cat(f"{repo_id}/small.txt") == b"hello"
    big = _bytes(12 * MiB, 20)
    (tmp_path / "big.bin").write_bytes(big)
    fs.put(str(tmp_path / "big.bin"), f"hf://{repo_id}/w/big.bin")
    with fs.open(f"{repo_id}/w/written.bin", "wb") as f:
        for i in range(11):
            f.write(big[i * MiB:(i + 1) * MiB])
    with fs.open(f"{repo_id}/w/note.txt", "w") as f:
        f.write("text mode")
    assert _commits(api, repo_id) == before + 4
    tree = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True)}
    assert tree["w/big.bin"].lfs is not None and tree["w/big.bin"].lfs.size == len(big)
    assert tree["w/written.bin"].lfs is not None and tree["w/written.bin"].size == 11 * MiB
    assert tree["small.txt"].lfs is None
    assert fs.cat(f"{repo_id}/w/big.bin") == big
    assert fs.cat(f"{repo_id}/w/written.bin") == big[:11 * MiB]
    assert fs.cat(f"{repo_id}/w/note.txt") == b"text mode"
    with pytest.raises(FileExistsError):
        fs.open(f"{repo_id}/small.txt", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{repo_id}/small.txt", b"again", mode="create")
    fs.put(str(tmp_path / "big.bin"), f"{repo_id}/w/big.bin")  # same content: nothing to commit
    assert _commits(api, repo_id) == before + 4


def test_put_and_open_wb_stream_from_disk(fs, api, repo_id, tmp_path) -> None:
    local = tmp_path / "stream.bin"
    with open(local, "wb") as f:
        for i in range(8):
            f.write(_bytes(8 * MiB, 30 + i))
    size = local.stat().st_size
    chunk = _bytes(MiB, 39)
    tracemalloc.start()
    try:
        fs.put_file(str(local), f"{repo_id}/stream.bin")
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with fs.open(f"{repo_id}/written.bin", "wb") as f:
            for _ in range(64):
                f.write(chunk)
        _, write_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # no second full copy in RAM: at most a few 8 MiB pieces at a time
    assert put_peak < size / 2, f"put of {size >> 20} MiB held {put_peak >> 20} MiB in RAM"
    assert write_peak < size / 2, f"writing {size >> 20} MiB held {write_peak >> 20} MiB in RAM"
    assert fs.info(f"{repo_id}/stream.bin")["lfs"]["size"] == size
    assert fs.info(f"{repo_id}/written.bin")["lfs"]["size"] == 64 * MiB


def test_rm_mv_cp(fs, api, repo_id) -> None:
    with fs.transaction:
        fs.pipe({f"{repo_id}/a.txt": b"a", f"{repo_id}/dir/b.txt": b"b", f"{repo_id}/dir/sub/c.txt": b"c",
                 f"{repo_id}/keep/d.txt": b"d", f"{repo_id}/big.bin": _bytes(11 * MiB, 40)})
    before = _commits(api, repo_id)
    fs.rm(f"{repo_id}/a.txt")
    assert not fs.exists(f"{repo_id}/a.txt")
    fs.mv(f"{repo_id}/keep/d.txt", f"{repo_id}/moved/d.txt")
    assert fs.find(f"{repo_id}/moved") == [f"{repo_id}/moved/d.txt"] and not fs.exists(f"{repo_id}/keep")
    fs.cp(f"{repo_id}/dir", f"{repo_id}/copy", recursive=True)
    assert fs.cat(f"{repo_id}/copy/sub/c.txt") == b"c" and fs.cat(f"{repo_id}/dir/sub/c.txt") == b"c"
    fs.mv(f"{repo_id}/copy", f"{repo_id}/copy2", recursive=True)
    assert fs.find(f"{repo_id}/copy2") == [f"{repo_id}/copy2/b.txt", f"{repo_id}/copy2/sub/c.txt"]
    assert not fs.exists(f"{repo_id}/copy")
    fs.rm(f"{repo_id}/dir", recursive=True)
    assert not fs.exists(f"{repo_id}/dir")
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{repo_id}/no-such-file")
    # one commit per call, whatever the number of files
    assert _commits(api, repo_id) == before + 5
    assert fs.find(repo_id) == [f"{repo_id}/.gitattributes", f"{repo_id}/big.bin", f"{repo_id}/copy2/b.txt",
                                f"{repo_id}/copy2/sub/c.txt", f"{repo_id}/moved/d.txt"]


def test_cp_of_an_lfs_file_uploads_nothing(hub, api, repo_id, monkeypatch) -> None:
    data = _bytes(11 * MiB, 50)
    api.upload_file(path_or_fileobj=data, path_in_repo="big.bin", repo_id=repo_id)
    fs = _fresh(hub)
    sent = Counter(monkeypatch, fs.client.transport, "request")
    fs.cp(f"{repo_id}/big.bin", f"{repo_id}/copies/big.bin")
    assert not [a for _, a in sent.calls if "lfs" in a[1] or a[0] == "PUT"], sent.calls
    tree = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True)}
    assert tree["copies/big.bin"].lfs.sha256 == tree["big.bin"].lfs.sha256
    assert fs.cat(f"{repo_id}/copies/big.bin") == data


def test_transaction_is_one_commit(fs, api, repo_id, tmp_path) -> None:
    fs.pipe(f"{repo_id}/old.txt", b"old")
    (tmp_path / "local.bin").write_bytes(_bytes(11 * MiB, 60))
    before = _commits(api, repo_id)
    with fs.transaction:
        for i in range(30):
            fs.pipe(f"{repo_id}/many/{i:02d}.txt", b"%d" % i)
        for i in range(3):
            with fs.open(f"{repo_id}/opened/{i}.txt", "wb") as f:
                f.write(b"opened %d" % i)
        fs.put(str(tmp_path / "local.bin"), f"{repo_id}/local.bin")
        fs.rm(f"{repo_id}/old.txt")
        assert _commits(api, repo_id) == before  # nothing is sent before the block ends
    assert _commits(api, repo_id) == before + 1
    assert len(fs.find(f"{repo_id}/many")) == 30 and fs.cat(f"{repo_id}/opened/2.txt") == b"opened 2"
    assert fs.cat(f"{repo_id}/local.bin") == (tmp_path / "local.bin").read_bytes()
    assert not fs.exists(f"{repo_id}/old.txt")


def test_aborted_transaction_commits_nothing(fs, api, repo_id) -> None:
    before = _commits(api, repo_id)
    with pytest.raises(RuntimeError, match="boom"):
        with fs.transaction:
            fs.pipe(f"{repo_id}/a.txt", b"a")
            with fs.open(f"{repo_id}/b.txt", "wb") as f:
                f.write(b"b")
            raise RuntimeError("boom")
    assert _commits(api, repo_id) == before
    assert not fs.exists(f"{repo_id}/a.txt") and not fs.exists(f"{repo_id}/b.txt")
    fs.pipe(f"{repo_id}/c.txt", b"c")  # the filesystem is out of the transaction
    assert _commits(api, repo_id) == before + 1 and fs.cat(f"{repo_id}/c.txt") == b"c"


@pytest.mark.parametrize("mode", ["ab", "a", "r+b", "w+b"])
def test_append_and_random_writes_are_refused(fs, model, mode) -> None:
    with pytest.raises(ValueError, match=r"(?s)not supported.*replaced whole by a commit.*'wb'"):
        fs.open(f"{model}/README.md", mode)


def test_missing_repo_path_and_revision(fs, model) -> None:
    for path in ["admin/no-such-repo/a.txt", f"{model}@no-such-branch/README.md", f"{model}/no/such/file.txt",
                 f"datasets/{model}/README.md"]:
        for call in (fs.info, fs.cat, fs.open, lambda p: fs.cat_file(p, 0, 10), lambda p: fs.ls(p)):
            with pytest.raises(FileNotFoundError):
                call(path)
    with pytest.raises(FileNotFoundError):
        fs.ls("admin/no-such-repo")
    assert not fs.exists(f"{model}@no-such-branch") and fs.find(f"{model}/no/such") == []


def test_pickle_round_trip(hub, model, content) -> None:
    fs = _fresh(hub, revision_ttl=7.0)
    clone = pickle.loads(pickle.dumps(fs))
    assert isinstance(clone, HubFileSystem) and clone.storage_options == fs.storage_options
    assert clone.client.revision_ttl == 7.0 and clone.client.endpoint == hub.endpoint
    assert clone.cat(f"{model}/config.json") == content["config.json"]
    with fs.open(f"{model}/config.json") as f:
        assert f.read(3) == content["config.json"][:3]


# -- request budgets, counted by the server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A private hub logging every request, with a repo: 2,500 files in one folder, a 20 MiB file."""
    root = tmp_path_factory.mktemp("logged")
    log = root / "requests.log"
    server = HubServer(root / "hub", env={"HUBFS_REQUEST_LOG": str(log)}).start()
    fs = _fresh(server)
    rid = f"admin/budget-{uuid.uuid4().hex[:8]}"
    fs.client.create_repo("model", rid)
    big = _bytes(20 * MiB, 70)
    with fs.transaction:
        fs.pipe({f"{rid}/many/f{i:04d}.txt": b"%d" % i for i in range(2500)})
        fs.pipe({f"{rid}/big.bin": big, f"{rid}/small/a.txt": b"a", f"{rid}/small/b.txt": b"b"})
    yield server, RequestLog(log), rid, big
    server.stop()


def test_budget_ls(logged) -> None:
    server, log, rid, _ = logged
    fs = _fresh(server)
    log.clear()
    assert len(fs.ls(f"{rid}/many", detail=False)) == 2500
    assert log.count(r"^GET /api/models/.*/revision/main$") == 1
    assert log.count(r"/tree/[0-9a-f]{40}/many$") == 3 and len(log.lines()) == 4
    log.clear()
    assert len(fs.ls(f"{rid}/many")) == 2500 and fs.info(f"{rid}/many/f0042.txt")["size"] == 2
    assert log.lines() == []


def test_budget_info(logged) -> None:
    server, log, rid, _ = logged
    fs = _fresh(server)
    log.clear()
    assert fs.info(f"{rid}/many/f0007.txt")["size"] == 1  # cold: the peek pins, describes and reads in one trip
    assert sorted((m, re.sub(r"^.*/(resolve|paths-info)/", r"\1 ", p), r) for m, p, r, _ in log.lines()) == [
        ("GET", "resolve main/many/f0007.txt", "bytes=0-65535"), ("POST", "paths-info main", "-")]
    assert log.count("/revision/") == 0 and log.count("/tree/") == 0
    log.clear()
    assert fs.info(f"{rid}/many/f0008.txt")["size"] == 1  # pinned: paths-info at the commit
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, *_ in log.lines()] == [("POST", fs.client.pinned("model", rid))]
    log.clear()
    fs = _fresh(server)
    assert fs.info(f"{rid}/many")["type"] == "directory"  # a folder: the peek still pins the branch
    assert fs.isfile(f"{rid}/many/f0042.txt") and not fs.exists(f"{rid}/many/nope.txt")
    # a miss under a pin learnt before the call re-resolves the branch once (it may have moved since)
    assert log.count("/revision/") == 1 and len(log.lines()) == 6


def test_budget_find_glob_walk_du(logged) -> None:
    server, log, rid, big = logged
    n = 2500 + 4
    for call in (lambda fs: fs.find(rid), lambda fs: fs.glob(f"{rid}/**"), lambda fs: list(fs.walk(rid)),
                 lambda fs: fs.du(rid)):
        fs = _fresh(server)
        log.clear()
        call(fs)
        assert log.count("/tree/") == math.ceil(n / 1000), log.lines()
        assert len(log.lines()) == 1 + math.ceil(n / 1000)
    assert fs.du(rid) >= len(big) + 2500
    log.clear()
    fs.find(rid), fs.glob(f"{rid}/many/f00*"), fs.ls(f"{rid}/small"), fs.info(f"{rid}/small/b.txt")
    assert log.lines() == []  # everything under the listed commit is known


def test_budget_open_read1(logged) -> None:
    server, log, rid, big = logged
    fs = _fresh(server)
    log.clear()
    with fs.open(f"{rid}/big.bin") as f:
        assert f.read(1) == big[:1]
        assert f.read(65535) == big[1:65536]
    lines = log.lines()  # the peek: paths-info and the first 64 KiB, at once
    assert sorted(m for m, *_ in lines) == ["GET", "POST"] and log.count("/revision/") == 0
    assert [r for m, _, r, _ in lines if m == "GET"] == ["bytes=0-65535"]
    log.clear()
    with fs.open(f"{rid}/small/a.txt") as f:  # pinned already: one request
        assert f.read(1) == b"a"
    assert len(log.lines()) == 1


def test_budget_reads_go_to_the_commit(logged) -> None:
    server, log, rid, big = logged
    fs = _fresh(server)
    log.clear()
    fs.cat(f"{rid}/small/a.txt")
    fs.cat_file(f"{rid}/big.bin", 100, 200)
    fs.cat_file(f"{rid}/big.bin", -100)
    fs.cat_ranges([f"{rid}/big.bin"] * 3, [0, 10, 20], [5, 15, 25])
    with fs.open(f"{rid}/big.bin") as f:
        assert f.read() == big
    with fs.open(f"{rid}/big.bin") as f:
        while f.read(300_000):
            pass
    gets = [p for m, p, *_ in log.lines() if m == "GET" and "/api/" not in p]
    assert len(gets) > 10
    assert all(re.search(r"/resolve/[0-9a-f]{40}/", p) for p in gets), gets


def _span(rng: str) -> int:
    m = re.fullmatch(r"bytes=(\d+)-(\d+)", rng)
    assert m, rng
    return int(m.group(2)) - int(m.group(1)) + 1


def test_budget_sequential_windows_grow(logged) -> None:
    server, log, rid, big = logged
    fs = _fresh(server)
    with fs.open(f"{rid}/big.bin") as f:
        log.clear()
        got = bytearray(f.read(256 * 1024))
        while chunk := f.read(256 * 1024):
            got += chunk
    assert bytes(got) == big
    ranges = sorted(r for m, _, r, _ in log.lines() if m == "GET")  # ranges run concurrently: order by offset
    spans = [_span(r) for r in sorted(ranges, key=lambda r: int(r.split("=")[1].split("-")[0]))]
    assert 3 <= len(spans) <= 8, spans
    assert spans[0] <= 256 * 1024 and max(spans) >= 4 * MiB, spans  # small first, then growing windows
    assert all(b >= a for a, b in zip(spans, spans[1:-1])), spans  # never shrinking, but for the tail
    assert sum(spans) < len(big)  # the first window came with open()


def test_budget_random_reads(logged) -> None:
    server, log, rid, big = logged
    fs = _fresh(server)
    rng = random.Random(5)
    asked = []
    with fs.open(f"{rid}/big.bin") as f:
        log.clear()
        for _ in range(20):
            off, n = rng.randrange(2 * MiB, len(big) - 8192), rng.choice([1, 100, 4096, 8192])
            f.seek(off)
            assert f.read(n) == big[off:off + n]
            asked.append(n)
    spans = [_span(r) for m, _, r, _ in log.lines() if m == "GET"]
    assert spans == asked


def test_budget_offline_sends_nothing(logged, monkeypatch) -> None:
    server, log, rid, big = logged
    online = _fresh(server)
    sha = online.client.resolve("model", rid)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fs = _fresh(server)
    log.clear()
    for call in (lambda: fs.open(f"{rid}/big.bin").read(1), lambda: fs.info(f"{rid}/small/a.txt"),
                 lambda: fs.cat_file(f"{rid}@{sha}/big.bin", 0, 10), lambda: fs.ls(rid)):
        with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
            call()
    assert log.lines() == []


def test_a_write_is_seen_at_once_by_other_filesystems(logged) -> None:
    server, log, rid, _ = logged
    reader = _fresh(server)
    assert reader.cat(f"{rid}/small/a.txt") == b"a"  # main is pinned now, for revision_ttl
    writer = HubFileSystem(endpoint=server.endpoint, token=server.admin_token, skip_instance_cache=True,
                           revision_ttl=60)
    writer.pipe(f"{rid}/small/c.txt", b"c")
    assert reader.cat(f"{rid}/small/c.txt") == b"c", "the writer's commit unpinned the branch for every client"
    writer.rm(f"{rid}/small/c.txt")


def test_budget_lfs_cp_uploads_nothing(logged) -> None:
    server, log, rid, big = logged
    fs = _fresh(server)
    log.clear()
    fs.cp(f"{rid}/big.bin", f"{rid}/copy-of-big.bin")
    assert [m for m, *_ in log.lines() if m == "PUT"] == [] and log.count("lfs") == 0
    assert log.count(r"^POST .*/commit/main$") == 1
    assert fs.cat_file(f"{rid}/copy-of-big.bin", -5) == big[-5:]


def test_partial_reads_are_shared_through_the_block_cache_and_promoted(hub, model, content, tmp_path) -> None:
    from hubfs.config import HubConfig

    data = content["weights/big.bin"]
    cache_dir = tmp_path / "cache"
    cfg_fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)
    cfg_fs.client.config = HubConfig(hub.endpoint, hub.admin_token, cache_dir, False)
    from hubfs.client.blocks import BlockCache
    from hubfs.client.cache import HubCache

    cfg_fs.blocks = BlockCache(HubCache(cache_dir))
    with cfg_fs.open(f"{model}/weights/big.bin") as f:
        f.seek(len(data) // 2)
        assert f.read(4096) == data[len(data) // 2: len(data) // 2 + 4096]
    maps = list((cache_dir / ".hubfs-blocks").glob("*.map"))
    assert len(maps) == 1, "the partial read is kept on disk for every later reader"
    with cfg_fs.open(f"{model}/weights/big.bin") as f:  # the probe, then random reads over the rest, complete it
        for off in reversed(range(64 * 1024, len(data), 3 * MiB)):
            f.seek(off)
            assert f.read(3 * MiB) == data[off: off + 3 * MiB]
    blobs = list(cache_dir.glob("models--*/blobs/*"))
    assert [b.read_bytes() == data for b in blobs] == [True], "complete objects are promoted into blobs"


def test_strided_reads_asked_out_of_order_are_prefetched(hub, model, content, monkeypatch) -> None:
    data = content["weights/big.bin"]
    fs = _fresh(hub, block_cache=False)
    probe = FetchProbe(monkeypatch, fs, delay=0.05)
    stride, length = 6 * MiB + 4321, MiB + 100
    order = [0, 8, 2, 3, 4, 5, 6, 7, 1, 9]  # how pyarrow's pre-buffer threads asked row groups in a run
    with fs.open(f"{model}/weights/big.bin") as f:
        probe.ranges.clear()
        for k in order:
            at = 1000 + k * stride + (k % 2) * 2000  # row groups differ a little in size
            f.seek(at)
            assert f.read(length) == data[at:at + length]
    spans = sorted(probe.ranges)
    assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:])), f"no byte fetched twice: {spans}"
    fetched = sum(n for _, n in spans)
    assert fetched <= len(order) * length + (STRIDE_DEPTH + 2) * 1.1 * length, "waste: guesses past the end"
    assert len(spans) <= len(order) + STRIDE_DEPTH + 2 and probe.peak >= 3


def test_chance_multiples_among_small_reads_guess_little(hub, model, content, monkeypatch) -> None:
    data = content["weights/big.bin"]
    fs = _fresh(hub, block_cache=False)
    probe = FetchProbe(monkeypatch, fs)
    with fs.open(f"{model}/weights/big.bin") as f:
        probe.ranges.clear()
        for at in (1_000_000, 1_100_000, 6_000_000):  # gaps of 1 and 49 "strides": 48 slots look missing
            f.seek(at)
            assert f.read(4096) == data[at:at + 4096]
    assert len(probe.ranges) <= 3 + STRIDE_DEPTH + 3, "guesses in proportion to the evidence"


def test_strided_reads_are_prefetched_concurrently(hub, model, content, monkeypatch) -> None:
    data = content["weights/big.bin"]
    fs = _fresh(hub, block_cache=False)
    probe = FetchProbe(monkeypatch, fs, delay=0.05)
    stride, length = 3 * MiB + 777, 200_000
    starts = list(range(2 * MiB, len(data) - length, stride))[:8]
    with fs.open(f"{model}/weights/big.bin") as f:
        probe.ranges.clear()
        for i, s in enumerate(starts):
            f.seek(s)
            assert f.read(length + (i % 3)) == data[s:s + length + (i % 3)]
    assert probe.peak >= 3, "reads after the third came from concurrent prefetches"
    asked = sum(length + (i % 3) for i in range(len(starts)))
    assert sum(n for _, n in probe.ranges) <= asked + STRIDE_DEPTH * 1.1 * length, "at most `depth` guesses are wasted"
