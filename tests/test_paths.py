"""The URL grammar and name validation shared by client and server."""

from __future__ import annotations

import pytest

from hubfs.errors import InvalidNameError
from hubfs.paths import RepoPath, RepoType, validate_path_in_repo, validate_repo_id, validate_revision


@pytest.mark.parametrize("url, expected", [
    ("hf://user/model", RepoPath(RepoType.MODEL, "user/model")),
    ("hf://user/model/config.json", RepoPath(RepoType.MODEL, "user/model", None, "config.json")),
    ("hf://datasets/org/ds@v1.0/data/train.csv", RepoPath(RepoType.DATASET, "org/ds", "v1.0", "data/train.csv")),
    ("hubfs://spaces/a/b/app.py", RepoPath(RepoType.SPACE, "a/b", None, "app.py")),
    ("hf://user/m@feat%2Fx/w.bin", RepoPath(RepoType.MODEL, "user/m", "feat/x", "w.bin")),
    ("hf://user/m@refs/pr/3/w.bin", RepoPath(RepoType.MODEL, "user/m", "refs/pr/3", "w.bin")),
    ("hf://datasets/u/d@refs/convert/parquet/default/x.parquet",
     RepoPath(RepoType.DATASET, "u/d", "refs/convert/parquet", "default/x.parquet")),
])
def test_parse(url: str, expected: RepoPath) -> None:
    assert RepoPath.parse(url) == expected


def test_unparse_roundtrip() -> None:
    for url in ["hf://user/m@feat%2Fx/w.bin", "hf://user/m@refs/pr/3/w.bin", "hf://datasets/o/d/a/b.csv"]:
        assert RepoPath.parse(url).unparse() == url


@pytest.mark.parametrize("bad", ["hf://single", "hf://a/../b", "hf://a/b/../../etc/passwd", "hf://a/b@x..y/f",
                                 "hf://a--b/c", "hf://a/b.git/f"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(InvalidNameError):
        RepoPath.parse(bad)


@pytest.mark.parametrize("rev", ["main", "feat/x", "v1.0", "refs/pr/1", "a" * 40, "release-2024_01"])
def test_valid_revisions(rev: str) -> None:
    assert validate_revision(rev) == rev


@pytest.mark.parametrize("rev", ["", "a..b", "x.lock", "a@{1}", "/x", "x/", "a//b", "a b", "a~1", "a^", "a:b",
                                 "a\x00b", ".hidden", "-x", "@"])
def test_invalid_revisions(rev: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_revision(rev)


@pytest.mark.parametrize("path", ["../x", "a/../b", "/etc/passwd", "a/./b", "a//b", "a\x00b", ".git/config",
                                  "a\\b", ""])
def test_invalid_paths(path: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_path_in_repo(path)


def test_valid_path_strips_trailing_slash() -> None:
    assert validate_path_in_repo("dir/sub/") == "dir/sub"
    assert validate_path_in_repo("a b/ü.txt") == "a b/ü.txt"


@pytest.mark.parametrize("repo_id", ["a", "a/b/c", "a/-b", "a/b..c", "a/b.git", "a/" + "x" * 97, "a/b c"])
def test_invalid_repo_ids(repo_id: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_repo_id(repo_id)


def test_repo_type_prefixes() -> None:
    assert RepoType.parse(None).url_prefix == ""
    assert RepoType.parse("datasets").url_prefix == "datasets/"
    assert RepoType.parse("space").plural == "spaces"
    with pytest.raises(InvalidNameError):
        RepoType.parse("kernel-thing")
