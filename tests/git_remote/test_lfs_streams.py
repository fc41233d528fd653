"""The download's CPU savers, each both ways: streams added only on latency-bound links (GIT_REMOTE_HF_STREAMS),
one receive buffer per stream thread (GIT_REMOTE_HF_REUSE_BUFFERS), and fewer garbage collections in the
helper's processes (GIT_REMOTE_HF_GC); the bytes stored are the same either way."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from lfs_fixtures import VENV_BIN, commit_files, new_repo, pointer_of

from git_remote_hf.lfs_store import LfsStore
from git_remote_hf.lfs_transfer import (
    MAX_STREAMS,
    MIN_STREAMS,
    REUSE_ENV,
    SLOW,
    START_STREAMS,
    STREAMS_ENV,
    _Downloads,
    _Limiter,
    fetch_objects,
)
from hubfs.client.api import HubClient


@pytest.mark.parametrize("grow", ["", "grow"])
def test_streams_grow_only_after_slow_objects_unless_told(monkeypatch: pytest.MonkeyPatch, grow: str) -> None:
    monkeypatch.setenv(STREAMS_ENV, grow)
    limiter = _Limiter()
    for _ in range(20):  # quick objects: loopback or a LAN
        with limiter.slot():
            pass
    assert limiter.limit == (START_STREAMS + 20 if grow else START_STREAMS)
    limiter = _Limiter()
    for _ in range(3):  # objects that each took a round trip of a far link
        limiter.active += 1
        limiter.done(True, SLOW + 0.01)
    assert limiter.limit == START_STREAMS + 3 and limiter.active == 0
    for _ in range(100):
        limiter.active += 1
        limiter.done(True, 1.0)
    assert limiter.limit == MAX_STREAMS
    with pytest.raises(RuntimeError), limiter.slot():  # a failure halves
        raise RuntimeError("dropped")
    assert limiter.limit == MAX_STREAMS // 2 and limiter.active == 0
    for _ in range(10):
        limiter.active += 1
        limiter.done(False)
    assert limiter.limit == MIN_STREAMS


@pytest.mark.parametrize("reuse", ["1", "0"])
def test_receive_buffers_are_per_thread_and_the_bytes_are_the_same(tmp_path: Path, hub, monkeypatch: pytest.MonkeyPatch,
                                                                   reuse: str) -> None:
    monkeypatch.setenv(REUSE_ENV, reuse)
    files = {f"w{i}.bin": os.urandom(1000 * (i + 1)) for i in range(30)}
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
        git_dir = tmp_path / ".git"
        git_dir.mkdir()
        fetch_objects(git_dir, client, f"{hub.endpoint}/{repo_id}.git/info/lfs", [pointer_of(d) for d in files.values()])
        run = _Downloads(client, LfsStore(git_dir), "", None, None, {})
        try:
            first, second = run._buffer(10), run._buffer(5)
            other: list[memoryview] = []
            thread = threading.Thread(target=lambda: other.append(run._buffer(10)))
            thread.start()
            thread.join()
        finally:
            run.__exit__(None, None, None)
    store = LfsStore(git_dir)
    for data in files.values():
        assert store.path(pointer_of(data).oid).read_bytes() == data
    assert len(first) == 10 and len(second) == 5
    assert (first.obj is second.obj) is (reuse == "1")  # the same buffer again on this thread
    assert first.obj is not other[0].obj  # never shared between threads


@pytest.mark.parametrize("gc_env", ["1", "0"])
def test_the_executable_collects_garbage_less_often_unless_told_not_to(tmp_path: Path, gc_env: str) -> None:
    probe = ("import gc\nfrom git_remote_hf.__main__ import main\nmain(['origin', 'hf://a/b'])\n"
             "print(gc.get_threshold()[0])\n")
    out = subprocess.run([str(VENV_BIN / "python"), "-c", probe], input=b"", capture_output=True, check=True,
                         env={**os.environ, "GIT_REMOTE_HF_GC": gc_env, "GIT_DIR": str(tmp_path)}).stdout
    assert int(out.decode().strip()) == (50_000 if gc_env == "1" else 700)
