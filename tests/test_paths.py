"""The URL grammar and name validation shared by client and server."""

from __future__ import annotations

import pytest

from hubfs.errors import InvalidNameError
from hubfs.paths import (
    RepoPath,
    RepoType,
    is_dotgit,
    is_dotgitmodules,
    validate_path_in_repo,
    validate_ref_name,
    validate_repo_id,
    validate_revision,
)


@pytest.mark.parametrize("url, expected", [
    ("hf://user/model", RepoPath(RepoType.MODEL, "user/model")),
    ("hf://user/model/config.json", RepoPath(RepoType.MODEL, "user/model", None, "config.json")),
    ("hf://datasets/org/ds@v1.0/data/train.csv", RepoPath(RepoType.DATASET, "org/ds", "v1.0", "data/train.csv")),
    ("hubfs://spaces/a/b/app.py", RepoPath(RepoType.SPACE, "a/b", None, "app.py")),
    ("hf://user/m@feat%2Fx/w.bin", RepoPath(RepoType.MODEL, "user/m", "feat/x", "w.bin")),
    ("hf://user/m@refs/pr/3/w.bin", RepoPath(RepoType.MODEL, "user/m", "refs/pr/3", "w.bin")),
    ("hf://datasets/u/d@refs/convert/parquet/default/x.parquet",
     RepoPath(RepoType.DATASET, "u/d", "refs/convert/parquet", "default/x.parquet")),
    ("hf://single", RepoPath(RepoType.MODEL, "single")),
    ("hf://datasets/imdb", RepoPath(RepoType.DATASET, "imdb")),
    ("hf://gpt2@main/config.json", RepoPath(RepoType.MODEL, "gpt2", "main", "config.json")),
])
def test_parse(url: str, expected: RepoPath) -> None:
    assert RepoPath.parse(url) == expected


def test_canonical_reading_of_an_ambiguous_path() -> None:
    parsed = RepoPath.parse("hf://gpt2/config.json")
    assert parsed == RepoPath(RepoType.MODEL, "gpt2/config.json")
    assert parsed.canonical_reading() == RepoPath(RepoType.MODEL, "gpt2", None, "config.json")
    assert RepoPath.parse("hf://gpt2@main/config.json").canonical_reading() is None


def test_unparse_roundtrip() -> None:
    for url in ["hf://user/m@feat%2Fx/w.bin", "hf://user/m@refs/pr/3/w.bin", "hf://datasets/o/d/a/b.csv"]:
        assert RepoPath.parse(url).unparse() == url


@pytest.mark.parametrize("bad", ["hf://a/../b", "hf://a/b/../../etc/passwd", "hf://a/b@x..y/f",
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


# git's verify_path (read-cache.c) with its NTFS (path.c is_ntfs_dotgit) and HFS+ (utf8.c is_hfs_dotgit)
# protections, and fsck's .gitmodules look-alikes.
GIT_REFUSES = [".GIT/config", ".Git/hooks/post-checkout", "git~1/config", "GIT~1/HEAD", ".git./config",
               ".git /config", ".git. . /x", ".g\u200cit/config", ".\u200dgit/x", ".git\u200e/x", ".gi\u202et/x",
               ".git\u206f/x", "\ufeff.git/x", "sub/.GiT/x", ".git::$INDEX_ALLOCATION/x", ".git:stream",
               ".gitmodules/x", ".GITMODULES", ".gitmodules.", ".gitmodules :x", ".git\u200cmodules", "gitmod~1",
               "GITMOD~4", "gi7eba~1", "gi7eba~9", "a/gitmod~2/b"]
GIT_ACCEPTS = [".gitmodules", ".gitattributes", ".gitignore", ".github/workflows/ci.yml", ".gitkeep", "git~2",
               "git~1x", ".gitx/y", "gitmod~5", "gi7eba~12", "gi7eba~0", "x.git/y", "a/.gitmodulesx", "git/x",
               ".g it/x", "\u200c"]


@pytest.mark.parametrize("path", GIT_REFUSES)
def test_git_look_alike_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_path_in_repo(path)


@pytest.mark.parametrize("path", GIT_ACCEPTS)
def test_paths_git_accepts_stay_valid(path: str) -> None:
    assert validate_path_in_repo(path) == path


def test_dotgit_predicates() -> None:
    assert is_dotgit(".GIT") and is_dotgit("git~1") and is_dotgit(".g\ufeffit") and not is_dotgit(".gitx")
    assert is_dotgitmodules(".gitmodules") and is_dotgitmodules("GI7EBA~3") and not is_dotgitmodules("gitmod~0")


@pytest.mark.parametrize("repo_id", ["alice/.", "alice/..", "alice/.hidden", "alice/x.", "alice/-x", "alice/x-",
                                     ".alice/x", "alice/a--b", "alice/a..b", "alice/x.git", "alice/.git"])
def test_odd_repo_names_are_refused(repo_id: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_repo_id(repo_id)


@pytest.mark.parametrize("repo_id", ["alice/x.y", "alice/_x", "alice/x_", "alice/a-b.c_d", "a/" + "x" * 96])
def test_usual_repo_names_are_valid(repo_id: str) -> None:
    assert validate_repo_id(repo_id) == tuple(repo_id.split("/"))


@pytest.mark.parametrize("name", ["HEAD", "refs/heads/x", "a" * 40, "ABCDEF0123" * 4, "a..b", "x.lock", "-x"])
def test_reserved_branch_and_tag_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_ref_name(name)


@pytest.mark.parametrize("name", ["main", "head", "HEADS", "feat/HEAD", "v1.0", "a" * 39])
def test_branch_names_that_stay_valid(name: str) -> None:
    assert validate_ref_name(name, "tag") == name


def test_pr_refs_are_bounded() -> None:
    from hubfs.paths import is_pr_ref

    assert is_pr_ref("refs/pr/12") and not is_pr_ref("refs/pr/" + "9" * 19) and not is_pr_ref("refs/pr/" + "9" * 5000)
