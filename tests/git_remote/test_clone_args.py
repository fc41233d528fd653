"""clone_args (git-remote-hf/clone_args.py): which `git clone` command lines check a tree out, and a clone that
does not downloads no LFS object until a checkout smudges it (real git, no git-lfs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lfs_fixtures import commit_files, git, git_env, new_repo

from git_remote_hf.clone_args import checks_out, parent_args
from hubfs.client.api import HubClient


@pytest.mark.parametrize(("args", "expected"), [
    (["git", "clone", "hf://a/b"], True),
    (["git", "clone", "-q", "--branch", "dev", "hf://a/b", "dir"], True),
    (["git", "-c", "x.y=z", "clone", "--depth", "1", "hf://a/b"], True),
    (["git", "clone", "--no-checkout", "hf://a/b"], False),
    (["git", "clone", "-n", "hf://a/b"], False),
    (["git", "clone", "-qn", "hf://a/b"], False),
    (["git", "clone", "--sparse", "hf://a/b"], False),
    (["git", "clone", "--bare", "hf://a/b"], False),
    (["git", "clone", "--mirror", "hf://a/b"], False),
    (["git", "clone", "-b", "-n", "hf://a/b"], False),  # a branch named -n: git refuses it anyway
    (["git", "clone", "--", "-n", "dir"], True),  # after --: a URL or folder named -n
    (["git", "clone", "-o", "name", "hf://a/b"], True),
    (["git", "fetch", "--no-checkout"], True),  # not a clone
    ([], True),
])
def test_checks_out(args: list[str], expected: bool) -> None:
    assert checks_out(args) is expected


def test_parent_args_reads_the_parent_command_line() -> None:
    probe = "from git_remote_hf.clone_args import parent_args; print(parent_args())"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == repr(parent_args(os.getpid()))
    assert parent_args(2 ** 22 + 12345) is None  # no such process


def test_clone_args_finds_the_clone_among_the_ancestors(tmp_path: Path) -> None:
    """git starts the helper through `git remote-hf`: the clone is its grandparent. A fake `git` (a shell
    script whose arguments say clone) runs a shell that runs the probe."""
    fake = tmp_path / "git"
    fake.write_text('#!/bin/sh\nsh -c "$PROBE"\n')
    fake.chmod(0o755)
    probe = f"{sys.executable} -c 'from git_remote_hf.clone_args import clone_args, checks_out; args = clone_args(); print(args[args.index(\"clone\"):], checks_out())'"
    out = subprocess.run([str(fake), "clone", "-n", "hf://a/b"], env={**os.environ, "PROBE": probe},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['clone', '-n', 'hf://a/b'] False"


@pytest.mark.parametrize("how", ["--no-checkout", "--sparse"])
def test_a_clone_that_checks_nothing_out_downloads_no_lfs_until_a_checkout(tmp_path: Path, hub, how: str) -> None:
    files = {f"weights/w{i}.bin": os.urandom(50_000 + i) for i in range(6)}
    files["config.json"] = b'{"a": 1}\n'
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
    env = git_env(tmp_path, lfs=False, endpoint=hub.endpoint, token=hub.admin_token)
    git(env, tmp_path, "clone", "-q", how, f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    assert not (repo / ".git/lfs/objects").exists() or not any(p.is_file() for p in (repo / ".git/lfs/objects").rglob("*"))
    if how == "--sparse":
        assert (repo / "config.json").read_bytes() == files["config.json"] and not (repo / "weights").exists()
        git(env, repo, "sparse-checkout", "add", "weights")
    else:
        git(env, repo, "checkout", "main")
    for path, data in files.items():
        assert (repo / path).read_bytes() == data, path
    assert git(env, repo, "status", "--porcelain").stdout == b""
