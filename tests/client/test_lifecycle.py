"""Lifecycle: ``close()`` and ``with`` on HubClient and HubFileSystem leave no thread and no open pool behind;
the allocator tuning is applied at one place, with its switch."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading

import pytest

from hubfs.client.api import HubClient
from hubfs.fs import HubFileSystem

MiB = 1 << 20


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started since ``before`` and still alive, other libraries' daemon threads aside."""
    return [t for t in threading.enumerate() if t not in before and (not t.daemon or t.name.startswith("hubfs"))]


def test_close_leaves_no_thread(hub, api, repo_id: str) -> None:
    data = random.Random(9).randbytes(40 * MiB)  # over one 16 MiB part: reads go parallel
    api.upload_file(path_or_fileobj=data, path_in_repo="big.bin", repo_id=repo_id)
    before = set(threading.enumerate())
    sockets_before = _sockets()
    with HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True) as fs:
        path = f"{repo_id}/big.bin"
        assert fs.cat_file(path, 0, 40 * MiB) == data  # the part pool
        assert fs.cat_ranges([path] * 3, [0, MiB, 2 * MiB], [10, MiB + 10, 2 * MiB + 10]) == [
            data[0:10], data[MiB:MiB + 10], data[2 * MiB:2 * MiB + 10]]  # the pool
        with fs.open(path) as f:  # read-ahead
            assert f.read(4 * MiB) == data[:4 * MiB] and f.read(20 * MiB) == data[4 * MiB:24 * MiB]
        assert any(t.name.startswith("hubfs") for t in _new_threads(before))
        assert fs.fetcher.idle_connections() > 0  # keep-alive connections, idle now
    assert _new_threads(before) == []
    assert fs.fetcher.idle_connections() == 0
    assert _sockets() <= sockets_before, "close() leaves no connection open"


def _sockets() -> int:
    """Open sockets of this process."""
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if os.path.exists(f"/proc/self/fd/{fd}") and
               os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"))


def test_a_closed_filesystem_leaves_the_instance_cache(hub) -> None:
    fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token)
    assert HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token) is fs
    fs.close()
    fs.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        fs.pool  # noqa: B018 - the property is the call under test
    again = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token)
    assert again is not fs and again.pool is not None
    again.close()


def test_client_close_and_context_manager(hub) -> None:
    with HubClient(hub.endpoint, hub.admin_token) as client:
        assert client.whoami()["name"] == "admin"
    assert client.transport.client.is_closed
    client.close()  # idempotent


def test_filesystem_construction_tunes_the_allocator_once_with_a_switch() -> None:
    code = ("from hubfs.client.malloc import keep_freed_buffers as k; from hubfs.fs import HubFileSystem; "
            "assert k.cache_info().currsize == 0; HubFileSystem(skip_instance_cache=True); "
            "print(k.cache_info().currsize, k())")
    for switch, expected in (("1", sys.platform == "linux"), ("0", False)):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                             env={**os.environ, "HUBFS_MALLOPT": switch}).stdout.split()
        assert out[0] == "1"  # applied by the constructor, not by a read
        if not expected:
            assert out[1] == "False"
