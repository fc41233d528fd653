"""HubFileSystem and huggingface_hub's HfFileSystem give the same answers on the same server and paths.

ls (names, and name/size/type of the details), info (name/size/type and the LFS sha256), find, glob, cat,
on a model with nested folders, regular and LFS files, a branch with '/' in its name, and a dataset.
"""

from __future__ import annotations

import random
import uuid

import pytest
from huggingface_hub import CommitOperationAdd, HfFileSystem

from hubfs.fs import HubFileSystem

MiB = 1 << 20
FILES = {
    "README.md": b"# parity\n",
    "config.json": b'{"a": 1}',
    "a/one.txt": b"one",
    "a/b/two.txt": b"two two",
    "a/b/c/three.csv": b"x,y\n1,2\n",
    "a/b/c/model.safetensors": random.Random(1).randbytes(5000),  # LFS by pattern
    "a/b2/four.txt": b"4",
    "weights/big.bin": random.Random(2).randbytes(11 * MiB),  # LFS by size
    "weights/small.bin": random.Random(3).randbytes(300),  # LFS by pattern
}


@pytest.fixture(scope="module")
def repos(api) -> dict[str, str]:
    model, dataset = f"admin/parity-{uuid.uuid4().hex[:8]}", f"admin/parity-{uuid.uuid4().hex[:8]}"
    api.create_repo(model)
    api.create_commit(model, [CommitOperationAdd(p, c) for p, c in FILES.items()], commit_message="files")
    api.create_branch(model, branch="feat/x")
    api.upload_file(path_or_fileobj=b"only on the branch", path_in_repo="a/branch.txt", repo_id=model,
                    revision="feat/x")
    api.create_repo(dataset, repo_type="dataset")
    api.create_commit(dataset, [CommitOperationAdd("data/train/0.csv", b"a\n1\n"),
                                CommitOperationAdd("data/test/0.csv", b"a\n2\n")],
                      commit_message="data", repo_type="dataset")
    return {"model": model, "branch": f"{model}@feat%2Fx", "dataset": f"datasets/{dataset}"}


@pytest.fixture(scope="module")
def both(hub) -> tuple[HubFileSystem, HfFileSystem]:
    return (HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True),
            HfFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True))


def _fields(entry: dict) -> dict:
    out = {k: entry[k] for k in ("name", "size", "type")}
    if entry.get("lfs"):
        out["lfs_sha256"] = entry["lfs"]["sha256"]
    return out


FOLDERS = [("model", ""), ("model", "a"), ("model", "a/b"), ("model", "a/b/c"), ("model", "weights"),
           ("branch", ""), ("branch", "a"), ("dataset", ""), ("dataset", "data"), ("dataset", "data/train")]
PATHS = FOLDERS + [("model", "README.md"), ("model", "a/b/c/model.safetensors"), ("model", "weights/big.bin"),
                   ("model", "weights/small.bin"), ("branch", "a/branch.txt"), ("dataset", "data/test/0.csv")]


def _path(repos: dict[str, str], repo: str, rel: str) -> str:
    return f"{repos[repo]}/{rel}" if rel else repos[repo]


@pytest.mark.parametrize("repo,rel", PATHS)
def test_ls(both, repos, repo, rel) -> None:
    ours, theirs = both
    path = _path(repos, repo, rel)
    assert ours.ls(path, detail=False) == theirs.ls(path, detail=False)
    assert [_fields(e) for e in ours.ls(path, detail=True)] == [_fields(e) for e in theirs.ls(path, detail=True)]
    assert ours.ls(f"hf://{path}", detail=False) == theirs.ls(f"hf://{path}", detail=False)


@pytest.mark.parametrize("repo,rel", PATHS)
def test_info(both, repos, repo, rel) -> None:
    ours, theirs = both
    path = _path(repos, repo, rel)
    assert _fields(ours.info(path)) == _fields(theirs.info(path))
    assert (ours.isdir(path), ours.isfile(path), ours.exists(path)) == (
        theirs.isdir(path), theirs.isfile(path), theirs.exists(path))


def test_lfs_fields_are_present(both, repos) -> None:
    ours, _ = both
    for rel in ("a/b/c/model.safetensors", "weights/big.bin", "weights/small.bin"):  # *.bin is an LFS pattern
        assert len(_fields(ours.info(f"{repos['model']}/{rel}"))["lfs_sha256"]) == 64
    assert "lfs_sha256" not in _fields(ours.info(f"{repos['model']}/a/b/two.txt"))


@pytest.mark.parametrize("repo,rel", PATHS + [("model", "nope"), ("model", "a/nope")])
def test_find(both, repos, repo, rel) -> None:
    ours, theirs = both
    path = _path(repos, repo, rel)
    assert ours.find(path) == theirs.find(path)
    assert ours.find(path, withdirs=True) == theirs.find(path, withdirs=True)
    assert ours.find(path, maxdepth=1) == theirs.find(path, maxdepth=1)
    ours_d, theirs_d = ours.find(path, detail=True), theirs.find(path, detail=True)
    assert {k: _fields(v) for k, v in ours_d.items()} == {k: _fields(v) for k, v in theirs_d.items()}


@pytest.mark.parametrize("pattern", ["*", "**", "*.md", "**/*.txt", "a/*", "a/**", "a/b*/*.txt", "**/c/*",
                                     "[ac]*", "a/b/c/*.safetensors", "weights/*.bin", "nope*", "**/nope"])
@pytest.mark.parametrize("repo", ["model", "branch", "dataset"])
def test_glob(both, repos, repo, pattern) -> None:
    ours, theirs = both
    path = f"{repos[repo]}/{pattern}"
    assert ours.glob(path) == theirs.glob(path)
    ours_d, theirs_d = ours.glob(path, detail=True), theirs.glob(path, detail=True)
    assert {k: _fields(v) for k, v in ours_d.items()} == {k: _fields(v) for k, v in theirs_d.items()}


def test_glob_with_maxdepth(both, repos) -> None:
    ours, theirs = both
    for depth in (1, 2, 3):
        path = f"{repos['model']}/**"
        assert ours.glob(path, maxdepth=depth) == theirs.glob(path, maxdepth=depth)


@pytest.mark.parametrize("rel", list(FILES))
def test_cat(both, repos, rel) -> None:
    ours, theirs = both
    path = f"{repos['model']}/{rel}"
    assert ours.cat(path) == theirs.cat(path) == FILES[rel]
    size = len(FILES[rel])
    for start, end in [(0, 1), (1, None), (-3, None), (2, -1), (size // 2, size // 2 + 1000)]:
        assert ours.cat_file(path, start=start, end=end) == theirs.cat_file(path, start=start, end=end)


def test_cat_many(both, repos) -> None:
    ours, theirs = both
    for pattern in (f"{repos['model']}/a/**/*.txt", f"{repos['dataset']}/data/*/*.csv", f"{repos['branch']}/a/*.txt"):
        assert ours.cat(pattern) == theirs.cat(pattern)
    paths = [f"{repos['model']}/README.md", f"{repos['branch']}/a/branch.txt"]
    assert ours.cat(paths) == theirs.cat(paths)


def test_du_and_sizes(both, repos) -> None:
    ours, theirs = both
    for repo in ("model", "branch", "dataset"):
        assert ours.du(repos[repo]) == theirs.du(repos[repo])
        assert ours.du(repos[repo], total=False) == theirs.du(repos[repo], total=False)


def test_missing_paths_raise_the_same(both, repos) -> None:
    ours, theirs = both
    for path in (f"{repos['model']}/nope.txt", f"{repos['model']}/a/nope/x", f"{repos['dataset']}/nope"):
        for fs in (ours, theirs):
            with pytest.raises(FileNotFoundError):
                fs.info(path)
            assert not fs.exists(path)
