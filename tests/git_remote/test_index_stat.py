"""git_remote_hf.index_stat against real git indexes (versions 2-4, SHA-1 and SHA-256)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from git_remote_hf.index_stat import restat


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo.parent), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def cached(repo: Path, path: str) -> dict[str, str]:
    """The stat fields git's index caches for ``path`` (``ls-files --debug``: no refresh)."""
    lines = git(repo, "ls-files", "--debug", "--", path).splitlines()[1:]
    fields: dict[str, str] = {}
    for line in lines:
        parts = line.replace("\t", " ").split()
        for key, value in zip(parts[::2], parts[1::2]):
            fields[key.rstrip(":")] = value
    return fields


def replace(path: Path, data: bytes) -> None:
    """A new file (new inode) at ``path``, as a program outside git would write it."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@pytest.fixture(params=[("sha1", 2), ("sha1", 4), ("sha256", 3)], ids=["v2", "v4", "sha256-v3"])
def repo(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, int]:
    fmt, version = request.param
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", f"--object-format={fmt}")
    for name in ("a/one.bin", "a/two.bin", "b/three.txt"):
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_bytes(name.encode() * 3)
    git(repo, "add", ".")
    git(repo, "update-index", "--index-version", str(version))
    git(repo, "commit", "-qm", "c")
    return repo, 32 if fmt == "sha256" else 20


def test_replaced_files_get_their_new_stat_and_git_sees_no_change(repo: tuple[Path, int]) -> None:
    root, hash_size = repo
    old = {p: (root / p).lstat() for p in ("a/one.bin", "b/three.txt")}
    for p in old:
        replace(root / p, p.encode() * 3)  # same bytes, new inode
    before = cached(root, "a/two.bin")
    assert restat(root / ".git", root, old, hash_size) == set(old)
    for p in old:
        assert cached(root, p)["ino"] == str((root / p).lstat().st_ino)
    assert cached(root, "a/two.bin") == before  # untouched entries stay as they were
    git(root, "fsck", "--full")  # the checksum is right
    assert git(root, "diff-files", "--name-only") == ""  # compares the cached stat only: it matches


def test_an_entry_git_rewrote_since_is_left_alone(repo: tuple[Path, int]) -> None:
    root, hash_size = repo
    stale = (root / "a/one.bin").lstat()
    replace(root / "a/one.bin", b"other")
    git(root, "add", "a/one.bin")  # git caches the new file's stat itself
    mine = cached(root, "a/one.bin")
    assert restat(root / ".git", root, {"a/one.bin": stale}, hash_size) == set()
    assert cached(root, "a/one.bin") == mine


def test_a_locked_or_damaged_index_is_not_touched(repo: tuple[Path, int]) -> None:
    root, hash_size = repo
    old = {"a/one.bin": (root / "a/one.bin").lstat()}
    replace(root / "a/one.bin", b"a/one.bin" * 3)
    (root / ".git/index.lock").write_bytes(b"")
    assert restat(root / ".git", root, old, hash_size) == set()
    (root / ".git/index.lock").unlink()
    index = root / ".git/index"
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF  # a checksum git would refuse: not an index to rewrite
    index.write_bytes(bytes(data))
    assert restat(root / ".git", root, old, hash_size) == set()
    assert index.read_bytes() == bytes(data) and not (root / ".git/index.lock").exists()
