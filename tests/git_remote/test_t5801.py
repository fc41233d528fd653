"""Ports of the applicable cases of git's t5801-remote-helpers.sh, run with git-remote-hf against the hub.

t5801 drives `git-remote-testgit` (an import/export helper); git-remote-hf is a fetch/push helper, so
the marks and `no-private-update` cases do not apply. Kept: clone, pull, fetch of new and multiple
branches, push by name, `old:new` and `HEAD:new` refspecs, pushes when the remote has extra refs, push
of existing objects, deletes, forced pushes, tags (lightweight, annotated, `--tags`, signed), fetch
by URL and of a tag, the failure paths (non-fast-forward, a remote that moved, a non-existent repo, a
refused push with its messages) and `--force-with-lease`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from test_helper_common import Git, fresh_id, hub_refs


def ls_remote(git: Git, url: str, cwd: Path) -> dict[str, str]:
    out = git.out("ls-remote", url, cwd=cwd)
    return {name: sha for sha, name in (line.split("\t") for line in out.splitlines())}


def remote(api: HfApi, url: str) -> dict[str, str]:
    """The hub's refs through its REST API (cheaper than a helper run; tags peeled)."""
    return hub_refs(api, url.removeprefix("hf://"))


def commit(git: Git, repo: Path, name: str, text: str | None = None) -> str:
    (repo / name).write_text(text if text is not None else f"{name}\n")
    git("add", name, cwd=repo)
    git("commit", "-qm", f"add {name}", cwd=repo)
    return git.out("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def pair(hfgit: Git, gapi: HfApi, tmp_path: Path) -> tuple[str, Path, Path]:
    """A fresh hub repo, a clone of it ('local') and a second clone ('other', the other side of t5801's
    server repo) made by copying the first (same state, one helper run less)."""
    rid = fresh_id("t5801")
    gapi.create_repo(rid)
    hfgit("clone", f"hf://{rid}", str(tmp_path / "local"))
    # the clone's background LFS child may still be ending (it removes .git/lfs/hf-prefetch as it goes)
    shutil.copytree(tmp_path / "local", tmp_path / "other", symlinks=True,
                    ignore=shutil.ignore_patterns("hf-prefetch"))
    return f"hf://{rid}", tmp_path / "local", tmp_path / "other"


def test_pull_push_and_fetch_of_new_and_multiple_branches(hfgit: Git, gapi: HfApi, pair: tuple[str, Path, Path]) -> None:
    url, local, other = pair
    # 'create new commit on remote' + 'pulling from remote remote'
    head = commit(hfgit, other, "file")
    hfgit("push", cwd=other)
    hfgit("pull", cwd=local)
    assert hfgit.out("rev-parse", "HEAD", cwd=local) == head
    # 'pushing to remote repo'
    head = commit(hfgit, local, "file", "more\n")
    hfgit("push", cwd=local)
    assert remote(gapi, url)["refs/heads/main"] == head
    # 'fetch new branch', 'fetch multiple branches'
    hfgit("checkout", "-qb", "new", cwd=other)
    hfgit("pull", "-q", "origin", "main", cwd=other)
    new = commit(hfgit, other, "file", "new\n")
    hfgit("push", "origin", "new", cwd=other)
    hfgit("fetch", cwd=local)
    assert hfgit.out("rev-parse", "origin/new", cwd=local) == new
    hfgit("checkout", "-qb", "two", cwd=other)
    two = commit(hfgit, other, "two")
    hfgit("checkout", "-q", "new", cwd=other)
    newer = commit(hfgit, other, "file", "newer\n")
    hfgit("push", "origin", "new", "two", cwd=other)
    hfgit("fetch", cwd=local)
    assert hfgit.out("rev-parse", "origin/new", cwd=local) == newer
    assert hfgit.out("rev-parse", "origin/two", cwd=local) == two
    # 'fetch url' and 'fetch tag'
    hfgit("fetch", url, "refs/heads/two", cwd=local)
    assert hfgit.out("rev-parse", "FETCH_HEAD", cwd=local) == two
    hfgit("tag", "-a", "-m", "tag", "v1.0", two, cwd=other)
    hfgit("push", "origin", "v1.0", cwd=other)
    hfgit("fetch", "origin", "tag", "v1.0", cwd=local)
    assert hfgit.out("rev-parse", "v1.0^{commit}", cwd=local) == two


def test_push_refspecs_existing_objects_and_extra_refs(hfgit: Git, gapi: HfApi, pair: tuple[str, Path, Path]) -> None:
    url, local, other = pair
    # 'push when remote has extra refs'
    hfgit("checkout", "-qb", "extra", cwd=other)
    commit(hfgit, other, "extra")
    hfgit("push", "origin", "extra", cwd=other)
    head = commit(hfgit, local, "mine")
    hfgit("push", "origin", "main", cwd=local)
    # 'push new branch by name', 'with old:new refspec', 'with HEAD:new refspec'
    hfgit("checkout", "-qb", "new-name", cwd=local)
    by_name = commit(hfgit, local, "n1")
    hfgit("push", "origin", "new-name", cwd=local)
    hfgit("push", "origin", "new-name:new-refspec", "HEAD:new-refspec-2", cwd=local)  # one batch of two
    refs = remote(gapi, url)
    assert refs["refs/heads/new-name"] == refs["refs/heads/new-refspec"] == refs["refs/heads/new-refspec-2"] == by_name
    # 'push ref with existing object', and an expression as the source (git passes it verbatim)
    hfgit("push", "origin", f"{head}:refs/heads/dup", "+HEAD~1:refs/heads/older", cwd=local)
    # 'push all with existing object' (no new objects to send)
    hfgit("branch", "dup2", head, cwd=local)
    hfgit("push", "--all", cwd=local)
    refs = remote(gapi, url)
    assert refs["refs/heads/dup"] == refs["refs/heads/dup2"] == refs["refs/heads/older"] == head
    assert "refs/heads/extra" in refs  # untouched


def test_delete_and_forced_push(hfgit: Git, gapi: HfApi, pair: tuple[str, Path, Path]) -> None:
    url, local, _ = pair
    hfgit("checkout", "-qb", "doomed", cwd=local)
    commit(hfgit, local, "d")
    hfgit("push", "origin", "doomed", cwd=local)
    assert "refs/heads/doomed" in remote(gapi, url)
    hfgit("push", "--delete", "origin", "doomed", cwd=local)  # 'push delete branch' (git sends ':doomed')
    assert "refs/heads/doomed" not in remote(gapi, url)
    # 'forced push': rewrite main, refused as non-fast-forward without force, accepted with it
    hfgit("checkout", "-q", "main", cwd=local)
    commit(hfgit, local, "a")
    hfgit("push", cwd=local)
    hfgit("reset", "-q", "--hard", "HEAD~1", cwd=local)
    rewritten = commit(hfgit, local, "b")
    proc = hfgit("push", cwd=local, check=False)
    assert proc.returncode != 0 and "[rejected]" in proc.stderr and "non-fast-forward" in proc.stderr
    proc = hfgit("push", "--force", cwd=local)
    assert "(forced update)" in proc.stderr
    assert remote(gapi, url)["refs/heads/main"] == rewritten
    hfgit("reset", "-q", "--hard", "HEAD~1", cwd=local)
    again = commit(hfgit, local, "c")
    hfgit("push", "origin", "+main", cwd=local)  # force by refspec
    assert remote(gapi, url)["refs/heads/main"] == again


def test_remote_moved_fetch_first_and_force_with_lease(hfgit: Git, gapi: HfApi, pair: tuple[str, Path, Path]) -> None:
    url, local, other = pair
    theirs = commit(hfgit, other, "theirs")
    hfgit("push", cwd=other)
    commit(hfgit, local, "mine")
    proc = hfgit("push", cwd=local, check=False)  # the remote tip is unknown here: git's "fetch first"
    assert proc.returncode != 0 and "[rejected]" in proc.stderr and "fetch first" in proc.stderr
    assert remote(gapi, url)["refs/heads/main"] == theirs
    # --atomic: the branch that could go is held back too; --dry-run sends nothing
    hfgit("branch", "side", cwd=local)
    proc = hfgit("push", "--atomic", "origin", "main", "side", cwd=local, check=False)
    assert proc.returncode != 0 and "atomic push failed" in proc.stderr
    hfgit("push", "--dry-run", "origin", "side", cwd=local)
    assert "refs/heads/side" not in remote(gapi, url)
    proc = hfgit("push", "--force-with-lease=main:" + "1" * 40, cwd=local, check=False)
    assert proc.returncode != 0 and "stale info" in proc.stderr
    proc = hfgit("push", f"--force-with-lease=main:{theirs}", cwd=local)
    assert remote(gapi, url)["refs/heads/main"] == hfgit.out("rev-parse", "HEAD", cwd=local)


def test_tags(hfgit: Git, gapi: HfApi, pair: tuple[str, Path, Path]) -> None:
    url, local, other = pair
    first = commit(hfgit, local, "t")
    hfgit("tag", "light", cwd=local)
    hfgit("tag", "-a", "-m", "annotated", "ann", cwd=local)
    hfgit("push", "origin", "light", cwd=local)  # 'push tags'
    hfgit("push", "--tags", cwd=local)  # pushes ann (the commit too, through the tag)
    refs = ls_remote(hfgit, url, local)  # through the helper: tag objects and their peeled commits
    assert refs["refs/tags/light"] == first
    assert refs["refs/tags/ann"] == hfgit.out("rev-parse", "ann", cwd=local)
    assert refs["refs/tags/ann^{}"] == first
    hfgit("fetch", "--tags", cwd=other)
    assert hfgit.out("rev-parse", "ann^{commit}", cwd=other) == first
    # moving a tag needs force
    second = commit(hfgit, local, "t2")
    hfgit("push", cwd=local)
    hfgit("tag", "-f", "light", cwd=local)
    proc = hfgit("push", "origin", "light", cwd=local, check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    hfgit("push", "--force", "origin", "light", cwd=local)
    assert remote(gapi, url)["refs/tags/light"] == second
    hfgit("push", "origin", ":refs/tags/light", cwd=local)
    assert "refs/tags/light" not in remote(gapi, url)


def test_failure_paths(hfgit: Git, gapi: HfApi, pair: tuple[str, Path, Path]) -> None:
    url, local, _ = pair
    before = remote(gapi, url)
    # 'push to a non-existent repo fails' with one clear line, and nothing changes locally
    hfgit("remote", "add", "nowhere", "hf://admin/no-such-repo-here", cwd=local)
    refs_before = hfgit.out("for-each-ref", cwd=local)
    proc = hfgit("push", "nowhere", "main", cwd=local, check=False)
    assert proc.returncode != 0
    assert "git-remote-hf: hf://admin/no-such-repo-here" in proc.stderr and "not found" in proc.stderr
    proc = hfgit("fetch", "nowhere", cwd=local, check=False)
    assert proc.returncode != 0 and "not found" in proc.stderr
    assert hfgit.out("for-each-ref", cwd=local) == refs_before
    # 'push update refs failure': the hub refuses, git reports it and the remote is unchanged
    proc = hfgit("push", "origin", ":main", cwd=local, check=False)
    assert proc.returncode != 0 and "remote rejected" in proc.stderr
    assert remote(gapi, url) == before
    # a source that names nothing
    proc = hfgit("push", "origin", "no-such-branch", cwd=local, check=False)
    assert proc.returncode != 0 and "no-such-branch" in proc.stderr
    # 'totally broken helper reports failure message': a garbage URL
    proc = hfgit("ls-remote", "hf://user/bad..name", cwd=local, check=False)
    assert proc.returncode != 0 and "git-remote-hf:" in proc.stderr
