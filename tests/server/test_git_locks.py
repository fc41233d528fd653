"""Lock files left in git repositories: a killed process's are cleared, a live writer's never are."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hubfs.server.git_hooks import write_hook
from hubfs.server.git_store import STALE_LOCK_AGE, Change, GitStore


def _aged(path: Path, seconds: float) -> Path:
    path.write_text("")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_recover_removes_only_stale_locks(tmp_path: Path) -> None:
    store = GitStore(tmp_path)
    repo = store.init("model", "alice/m")
    refs = repo.path / "refs" / "heads"
    refs.mkdir(parents=True, exist_ok=True)
    stale = _aged(refs / "old.lock", STALE_LOCK_AGE + 5)
    live = _aged(refs / "main.lock", 1)  # another worker mid compare-and-swap
    assert store.recover() == 1
    assert not stale.exists() and live.exists()


def test_a_commit_breaks_a_lock_a_killed_process_left(tmp_path: Path) -> None:
    store = GitStore(tmp_path)
    store.init("model", "alice/m")
    repo = store.open("model", "alice/m")
    first = repo.write_commit(repo.build_tree(None, [Change("put", "a.txt", blob=repo.add_blob(b"a"))]), [], "first",
                              "alice <alice@example.org>")
    repo.set_ref("refs/heads/main", first, None)
    _aged(repo.path / "refs" / "heads" / "main.lock", STALE_LOCK_AGE + 5)
    second, old = repo.commit("refs/heads/main", [Change("put", "b.txt", blob=repo.add_blob(b"b"))], "second",
                              "alice <alice@example.org>")
    assert old == first and repo.branch_head("refs/heads/main") == second
    assert not (repo.path / "refs" / "heads" / "main.lock").exists()


def test_write_hook_replaces_whole_files(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    path = write_hook(hooks, "pre-receive", "#!/bin/sh\necho one\n")
    assert path.read_text() == "#!/bin/sh\necho one\n" and os.access(path, os.X_OK)
    inode = path.stat().st_ino
    assert write_hook(hooks, "pre-receive", "#!/bin/sh\necho one\n").stat().st_ino == inode  # unchanged: untouched
    write_hook(hooks, "pre-receive", "#!/bin/sh\necho two\n")
    assert path.read_text() == "#!/bin/sh\necho two\n" and path.stat().st_ino != inode  # renamed over, not rewritten
    assert sorted(p.name for p in hooks.iterdir()) == ["pre-receive"]
