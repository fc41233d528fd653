"""A clone's LFS download started from the hub's tree listing, before the pack arrives (background.start_listing):
what it lists, how the filter waits for a listing in progress, and the fallbacks (another branch checked out,
a listing that fails), with real git, a real hub and no git-lfs on PATH."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from lfs_fixtures import commit_files, git, git_env, hub_clone, new_repo, pointer_of
from test_lfs_background import marks, own_fetches

from git_remote_hf import background
from git_remote_hf.background import STATUS_FILE, Watch
from git_remote_hf.lfs_select import PathFilter, hub_listing, listed_pointers, listed_tree
from git_remote_hf.trace import TRACE_ENV
from hubfs.client.api import HubClient
from hubfs.client.http import Transport
from hubfs.client.commit import Add
from hubfs.lfs import LfsPointer

OID_A, OID_B = "a" * 64, "b" * 64


@pytest.fixture
def env(tmp_path: Path, hub) -> dict[str, str]:
    return git_env(tmp_path, lfs=False, endpoint=hub.endpoint, token=hub.admin_token)


def test_listed_pointers_takes_well_formed_lfs_files_the_filter_allows() -> None:
    entries = [
        {"type": "file", "path": "w/a.bin", "lfs": {"oid": OID_A, "size": 5}},
        {"type": "file", "path": "plain.txt", "size": 3},  # not LFS
        {"type": "directory", "path": "w"},
        {"type": "file", "path": "w/bad.bin", "lfs": {"oid": "not-hex", "size": 5}},
        {"type": "file", "path": "w/neg.bin", "lfs": {"oid": OID_B, "size": -1}},
        {"type": "file", "path": "w/str.bin", "lfs": {"oid": OID_B, "size": "5"}},
        {"type": "file", "path": "skip/b.bin", "lfs": {"oid": OID_B, "size": 7}},
        "garbage",
        {"type": "file", "path": "w/c.bin", "lfs": {"oid": OID_B, "size": 0}},
    ]
    groups = list(listed_pointers(entries, PathFilter(exclude=("skip",)), batch=1))
    assert groups == [[("w/a.bin", LfsPointer(OID_A, 5))], [("w/c.bin", LfsPointer(OID_B, 0))]]
    assert list(listed_pointers(entries[:2], None)) == [[("w/a.bin", LfsPointer(OID_A, 5))]]
    assert list(listed_pointers([], None)) == []


def test_listed_tree_lists_the_root_then_each_folder_recursively() -> None:
    """The root alone (not recursive), then every top-level folder recursively, in parallel."""
    tree = {
        "": [{"type": "file", "path": "top.bin", "lfs": {"oid": OID_A, "size": 1}},
             {"type": "directory", "path": "d1"}, {"type": "directory", "path": "d2"}],
        "d1": [{"type": "file", "path": "d1/x/y.bin", "lfs": {"oid": OID_B, "size": 2}}],
        "d2": [{"type": "file", "path": "d2/t.txt", "size": 9}],
    }
    asked: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def list_dir(path: str, recursive: bool) -> list[object]:
        with lock:
            asked.append((path, recursive))
        return list(tree[path])

    got = [item for group in listed_tree(list_dir) for item in group]
    assert got == [("top.bin", LfsPointer(OID_A, 1)), ("d1/x/y.bin", LfsPointer(OID_B, 2))]
    assert asked[0] == ("", False) and sorted(asked[1:]) == [("d1", True), ("d2", True)]


def _counted(client: HubClient) -> list[tuple[str, dict[str, str]]]:
    """Record (url, params) of every request ``client`` sends (its transport keeps working)."""
    sent: list[tuple[str, dict[str, str]]] = []
    request = client.transport.request

    def spy(method: str, path: str, **kwargs: Any) -> Any:
        sent.append((path, dict(kwargs.get("params") or {})))
        return request(method, path, **kwargs)

    client.transport.request = spy  # type: ignore[method-assign]
    return sent


def test_the_hubs_lfs_only_listing_names_every_lfs_file_in_one_request(hub) -> None:
    """``hubfs serve`` answers the root request with every LFS file of the commit (folders included)."""
    files = {"a.txt": b"text", "top.bin": os.urandom(300), "d1/x/y.bin": os.urandom(400), "d2/t.txt": b"t"}
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        sha = commit_files(client, repo_id, files)
        sent = _counted(client)
        url = f"{HubClient.api_path('model', repo_id)}/tree/{sha}"
        got = sorted(item for group in hub_listing(client, url) for item in group)
        assert got == sorted((name, pointer_of(files[name])) for name in ("top.bin", "d1/x/y.bin"))
        assert len(sent) == 1 and sent[0][1]["hubfs_lfs"] == "all"
        only_d1 = sorted(item for group in hub_listing(client, url, PathFilter(("d1",), ())) for item in group)
        assert only_d1 == [("d1/x/y.bin", pointer_of(files["d1/x/y.bin"]))]


def test_a_hub_without_the_lfs_only_listing_is_listed_folder_by_folder() -> None:
    """Another hub ignores ``hubfs_lfs`` and answers the root's listing (played by a transport: no such
    hub runs here); the folders are then listed, and the root is not asked twice."""
    tree = {
        "": [{"type": "file", "path": "top.bin", "lfs": {"oid": OID_A, "size": 1}},
             {"type": "directory", "path": "d1"}, {"type": "directory", "path": "d2"}],
        "d1": [{"type": "file", "path": "d1/x/y.bin", "lfs": {"oid": OID_B, "size": 2}}],
        "d2": [{"type": "file", "path": "d2/t.txt", "size": 9}],
    }
    asked: list[str] = []
    lock = threading.Lock()
    base = "/api/models/ns/name/tree/" + "c" * 40

    def answer(request: httpx.Request) -> httpx.Response:
        folder = request.url.path.removeprefix(base).lstrip("/")
        with lock:
            asked.append(folder)
        return httpx.Response(200, json=tree[folder])

    client = HubClient("https://hub.test", False)
    client.transport = Transport(client.config, http_transport=httpx.MockTransport(answer))
    got = [item for group in hub_listing(client, base) for item in group]
    assert got == [("top.bin", LfsPointer(OID_A, 1)), ("d1/x/y.bin", LfsPointer(OID_B, 2))]
    assert asked[0] == "" and sorted(asked[1:]) == ["d1", "d2"]


def test_watch_waits_for_a_listing_in_progress(tmp_path: Path) -> None:
    """While the child is listing, the filter's question about an object waits until the child names it
    (it brings it), says it has listed everything (it does not), or ends."""
    git_dir = tmp_path / ".git"
    (git_dir / "lfs").mkdir(parents=True)
    fd = os.open(git_dir / "lfs" / STATUS_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, b"listing\n")
    try:
        watch = Watch.open(git_dir)
        assert watch is not None and watch.running

        def later(data: bytes) -> None:
            time.sleep(0.3)
            os.write(fd, data)

        writer = threading.Thread(target=later, args=(b"want %s\n" % OID_A.encode(),))
        writer.start()
        t0 = time.monotonic()
        assert watch.brings(OID_A)
        assert time.monotonic() - t0 >= 0.25  # it waited for the listing
        writer.join()
        writer = threading.Thread(target=later, args=(b"listed\n",))
        writer.start()
        t0 = time.monotonic()
        assert not watch.brings(OID_B)  # listed without it
        assert time.monotonic() - t0 >= 0.25
        writer.join()
        assert watch.brings(OID_A) and not watch.listing
        watch.close()
    finally:
        os.close(fd)


def test_a_listing_that_fails_leaves_every_object_to_the_filter(tmp_path: Path, env: dict[str, str], hub) -> None:
    """No listing (an older hub, an error): the child ends having named nothing, and the checkout's
    filter fetches each object itself; the worktree is the same."""
    files = {f"w{i}.bin": os.urandom(3000 + i) for i in range(5)}
    repo = hub_clone(env, hub, tmp_path, files)

    def pages(client: HubClient) -> list[list[tuple[str, LfsPointer]]]:
        raise OSError("no tree listing here")

    with HubClient(hub.endpoint, hub.admin_token) as client:
        pid = background.start_listing(repo / ".git", client, f"{hub.endpoint}/x.git/info/lfs", pages)
    assert pid is not None
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # nothing wanted, nothing failed
    assert not (repo / ".git/lfs" / STATUS_FILE).exists()
    trace = tmp_path / "trace"
    git({**env, TRACE_ENV: str(trace)}, repo, "checkout", "-q", "main")
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    assert own_fetches(trace) == 5


def _two_branches(hub) -> tuple[str, dict[str, bytes], dict[str, bytes]]:
    """A repo whose main (the default) and ``other`` branches hold different LFS files."""
    main_files = {f"m{i}.bin": os.urandom(200_000 + i) for i in range(6)}
    other_files = {f"o{i}.bin": os.urandom(4000 + i) for i in range(4)}
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        base = commit_files(client, repo_id, {"README.md": b"hi\n"})
        client.transport.request("POST", f"/api/models/{repo_id}/branch/other", json_body={"startingPoint": base})
        client.commit("model", repo_id, [Add(p, d) for p, d in other_files.items()], "other", revision="other")
        commit_files(client, repo_id, main_files)
    return repo_id, main_files, other_files


def test_the_early_download_is_for_the_urls_revision(tmp_path: Path, env: dict[str, str], hub) -> None:
    """``hf://ns/name@other`` checks out ``other``: the early child lists and fetches that branch's objects."""
    repo_id, main_files, other_files = _two_branches(hub)
    trace = tmp_path / "trace"
    git({**env, TRACE_ENV: str(trace)}, tmp_path, "clone", "-q", f"hf://{repo_id}@other", "c")
    repo = tmp_path / "c"
    for name, content in other_files.items():
        assert (repo / name).read_bytes() == content
    assert not any((repo / name).exists() for name in main_files)
    phases = [(phase, detail) for _, _, phase, detail in marks(trace)]
    assert ("listed", "4 objects") in phases
    assert "early-prefetch-stopped" not in [p for p, _ in phases]
    assert own_fetches(trace) == 0


def test_a_clone_of_another_branch_stops_the_early_download(tmp_path: Path, env: dict[str, str], hub) -> None:
    """``git clone --single-branch -b other``: the early child (for the remote HEAD) is stopped once the
    fetch shows which branch is checked out, and the objects of that branch are downloaded instead."""
    repo_id, main_files, other_files = _two_branches(hub)
    trace = tmp_path / "trace"
    git({**env, TRACE_ENV: str(trace)}, tmp_path, "clone", "-q", "--single-branch", "-b", "other",
        f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    for name, content in other_files.items():
        assert (repo / name).read_bytes() == content
    assert not any((repo / name).exists() for name in main_files)
    assert git(env, repo, "status", "--porcelain").stdout == b""
    phases = [(phase, detail) for _, _, phase, detail in marks(trace)]
    assert "early-prefetch" in [p for p, _ in phases] and "early-prefetch-stopped" in [p for p, _ in phases]
    assert any(p == "background-prefetch" and d.endswith("4 objects") for p, d in phases)
    assert own_fetches(trace) == 0
    assert not (repo / ".git/lfs" / STATUS_FILE).exists()


def test_the_early_download_honours_fetch_exclude(tmp_path: Path, env: dict[str, str], hub) -> None:
    """``lfs.fetchexclude`` given at clone time: the listing leaves those paths out and they stay pointers."""
    files = {f"keep/{i}.bin": os.urandom(5000 + i) for i in range(3)}
    files.update({f"skip/{i}.bin": os.urandom(6000 + i) for i in range(2)})
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
    trace = tmp_path / "trace"
    git({**env, TRACE_ENV: str(trace)}, tmp_path, "clone", "-q", "-c", "lfs.fetchexclude=skip",
        f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    for name, content in files.items():
        expected = pointer_of(content).to_bytes() if name.startswith("skip/") else content
        assert (repo / name).read_bytes() == expected
    assert ("listed", "3 objects") in [(phase, detail) for _, _, phase, detail in marks(trace)]
    assert own_fetches(trace) == 0
