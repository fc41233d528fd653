"""The read-write mount's staging area against a real hub: the commits it makes, and nothing else."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import CommitOperationAdd

from hubfs.client.api import HubClient
from hubfs.client.policy import RetryPolicy
from hubfs.errors import ConflictError, HubConnectionError
from hubfs.mount.staging import StagingArea
from hubfs.paths import RepoRef

LOG = "hubfs.test.staging"


@pytest.fixture
def client(hub: Any) -> Iterator[HubClient]:
    with HubClient(hub.endpoint, hub.admin_token) as c:
        yield c


_OPEN: list[StagingArea] = []


@pytest.fixture(autouse=True)
def _close_staging_areas() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def staging(client: HubClient, repo_id: str, root: Path, **kw: Any) -> StagingArea:
    kw.setdefault("debounce", 3600)  # commits only when the test flushes, unless it says otherwise
    sa = StagingArea(client, RepoRef.of("model", repo_id), "main", root, log=logging.getLogger(LOG), **kw)
    _OPEN.append(sa)
    return sa


def put(sa: StagingArea, path: str, data: bytes) -> None:
    local = sa.create(path)
    local.write_bytes(data)
    sa.written(local)


def read(client: HubClient, repo_id: str, path: str) -> bytes:
    data, _ = client.read_range(client.file_url("model", repo_id, "main", path), 0, 1 << 30)
    return data


def opener(client: HubClient, repo_id: str, path: str) -> Callable[[], io.BytesIO]:
    return lambda: io.BytesIO(read(client, repo_id, path))


def files(api: Any, repo_id: str) -> set[str]:
    return set(api.list_repo_files(repo_id)) - {".gitattributes"}


def commits(api: Any, repo_id: str) -> int:
    return len(api.list_repo_commits(repo_id))


@contextmanager
def commit_held(client: HubClient, sa: StagingArea, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str | None]]:
    """Inside: ``sa.flush()`` runs in a thread and its commit waits; on leaving, the commit goes on, the flush
    ends (``result["sha"]``), and ``client.commit`` is itself again."""
    entered, release = threading.Event(), threading.Event()
    real = client.commit

    def held(*args: Any, **kw: Any) -> str:
        entered.set()
        assert release.wait(10)
        return real(*args, **kw)

    monkeypatch.setattr(client, "commit", held)
    result: dict[str, str | None] = {}
    flusher = threading.Thread(target=lambda: result.setdefault("sha", sa.flush()))
    flusher.start()
    assert entered.wait(10)
    try:
        yield result
    finally:
        release.set()
        flusher.join(10)
        monkeypatch.setattr(client, "commit", real)


def seed(api: Any, repo_id: str, content: dict[str, bytes]) -> None:
    api.create_commit(repo_id, [CommitOperationAdd(p, d) for p, d in content.items()], commit_message="seed")


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_create_overwrite_unlink_one_commit_each(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    sa = staging(client, repo_id, tmp_path / "st")
    n = commits(api, repo_id)
    put(sa, "a.txt", b"hello")
    staged = sa.lookup("/a.txt")
    assert staged is not None and staged.kind == "file" and staged.size == 5 and sa.pending == 1
    assert commits(api, repo_id) == n  # staged, not committed
    sha = sa.flush()
    assert sha == api.list_repo_commits(repo_id)[0].commit_id and commits(api, repo_id) == n + 1
    assert files(api, repo_id) == {"a.txt"} and read(client, repo_id, "a.txt") == b"hello"
    assert sa.lookup("a.txt") is None and sa.pending == 0 and not list((tmp_path / "st" / "files").iterdir())

    local = sa.open_for_write("a.txt", opener(client, repo_id, "a.txt"), truncate=False)  # copy-up, then append
    with open(local, "ab") as f:
        f.write(b" world")
    sa.written(local)
    assert sa.flush() and read(client, repo_id, "a.txt") == b"hello world"

    local = sa.open_for_write("a.txt", opener(client, repo_id, "a.txt"), truncate=True)
    local.write_bytes(b"line1\n")
    assert sa.flush() and read(client, repo_id, "a.txt") == b"line1\n"  # fsync with the handle still open
    with open(local, "ab") as f:
        f.write(b"line2\n")
    sa.written(local)
    assert sa.flush() and read(client, repo_id, "a.txt") == b"line1\nline2\n"

    sa.unlink("a.txt")
    gone = sa.lookup("a.txt")
    assert gone is not None and gone.kind == "deleted" and sa.listdir("") == ({}, {"a.txt"})
    assert sa.flush()
    assert files(api, repo_id) == set() and commits(api, repo_id) == n + 5
    assert sa.flush() is None and commits(api, repo_id) == n + 5
    sa.close()


def test_rename_files_and_folders(api: Any, client: HubClient, repo_id: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    seed(api, repo_id, {"top.txt": b"top", "d/x.txt": b"x" * 100, "d/sub/y.bin": b"y" * 3000})
    oid = api.get_paths_info(repo_id, ["d/sub/y.bin"])[0].lfs.sha256
    n = commits(api, repo_id)
    sa = staging(client, repo_id, tmp_path / "st")
    sa.mkdir("moved")
    sa.rename("top.txt", "moved/top.txt")
    sa.rename("d", "e")
    for path, kind in [("top.txt", "deleted"), ("d", "deleted"), ("d/x.txt", "deleted"), ("e", "dir"),
                       ("e/sub", "dir"), ("moved/top.txt", "file"), ("e/sub/y.bin", "file")]:
        staged = sa.lookup(path)
        assert staged is not None and staged.kind == kind, path
    moved = sa.lookup("e/sub/y.bin")
    assert moved is not None and moved.origin is not None and moved.origin.path == "d/sub/y.bin"
    assert moved.origin.lfs_oid == oid and moved.size == 3000 and moved.local is None
    kids, deleted = sa.listdir("")
    assert set(kids) == {"moved", "e"} and deleted == {"top.txt", "d"}
    assert set(sa.listdir("e")[0]) == {"x.txt", "sub"}

    sent: list[str] = []
    request = client.transport.request
    monkeypatch.setattr(client.transport, "request", lambda method, url, **kw: sent.append(url) or request(method, url, **kw))
    assert sa.flush()
    assert commits(api, repo_id) == n + 1
    assert files(api, repo_id) == {"moved/top.txt", "e/x.txt", "e/sub/y.bin"}
    assert read(client, repo_id, "e/x.txt") == b"x" * 100 and read(client, repo_id, "moved/top.txt") == b"top"
    info = api.get_paths_info(repo_id, ["e/sub/y.bin"])[0]
    assert info.lfs.sha256 == oid and info.size == 3000
    assert not [u for u in sent if "lfs/objects" in u or "/resolve/" in u and "y.bin" in u]  # the LFS object is reused
    assert sa.lookup("e") is None and sa.lookup("moved") is None  # the hub has these folders now
    sa.rename("moved/top.txt", "x.txt")
    sa.rename("x.txt", "moved/top.txt")  # back where it was: nothing to commit
    assert sa.flush() is None and commits(api, repo_id) == n + 1 and sa.pending == 0


def test_folders_stay_local_until_a_file_lands(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    seed(api, repo_id, {"g/old.txt": b"old"})
    n = commits(api, repo_id)
    sa = staging(client, repo_id, tmp_path / "st")
    sa.mkdir("empty")
    sa.mkdir("new")
    with pytest.raises(FileExistsError):
        sa.mkdir("new")
    assert sa.flush() is None and commits(api, repo_id) == n
    put(sa, "new/f.txt", b"f")
    assert sa.flush() and commits(api, repo_id) == n + 1 and "new/f.txt" in files(api, repo_id)
    assert sa.lookup("new") is None  # landed: the hub shows it now
    empty = sa.lookup("empty")
    assert empty is not None and empty.kind == "dir" and not empty.opaque
    with pytest.raises(OSError, match="into itself"):
        sa.rename("new", "new/inner")  # EINVAL: into itself
    sa.rmdir("empty")
    assert sa.flush() is None and commits(api, repo_id) == n + 1

    sa.unlink("g/old.txt")  # a remote folder emptied, removed, made again: only the new file shows
    sa.rmdir("g")
    sa.mkdir("g")
    g = sa.lookup("g")
    assert g is not None and g.kind == "dir" and g.opaque
    put(sa, "g/new.txt", b"n")
    old = sa.lookup("g/old.txt")
    assert old is not None and old.kind == "deleted"
    sa.unlink("new/f.txt")
    sa.rmdir("new")
    assert sa.flush() and commits(api, repo_id) == n + 2
    assert files(api, repo_id) == {"g/new.txt"}


def test_writers_go_on_while_a_commit_runs(api: Any, client: HubClient, repo_id: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    n = commits(api, repo_id)
    sa = staging(client, repo_id, tmp_path / "st")
    put(sa, "a.txt", b"v1")
    put(sa, "b.txt", b"b")
    with commit_held(client, sa, monkeypatch) as result:
        started = time.monotonic()
        local = sa.open_for_write("a.txt", None, truncate=False)  # being committed: written as a copy
        assert local.read_bytes() == b"v1"
        with open(local, "ab") as f:
            f.write(b" v2")
        sa.written(local)
        sa.rename("b.txt", "c.txt")
        put(sa, "d.txt", b"d")
        assert time.monotonic() - started < 2  # none of it waited for the commit
    assert result["sha"] and read(client, repo_id, "a.txt") == b"v1" and files(api, repo_id) == {"a.txt", "b.txt"}
    staged = sa.lookup("a.txt")
    assert staged is not None and staged.local is not None and staged.local.read_bytes() == b"v1 v2"
    assert sa.flush() and commits(api, repo_id) == n + 2
    assert files(api, repo_id) == {"a.txt", "c.txt", "d.txt"} and read(client, repo_id, "a.txt") == b"v1 v2"
    assert read(client, repo_id, "c.txt") == b"b" and sa.pending == 0


def test_files_a_commit_adds_stay_hidden_when_moved_or_deleted_during_it(api: Any, client: HubClient, repo_id: str,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A rename over a remote file, and a file put into a deleted folder, are being committed; meanwhile the
    first moves on and the second is deleted. The commit puts both on the hub: the deletions that hide them
    must stay (found by the mount's differential test with a short commit delay)."""
    seed(api, repo_id, {"a.txt": b"A", "b.txt": b"B", "d/x.txt": b"X"})
    sa = staging(client, repo_id, tmp_path / "st")
    sa.rename("a.txt", "b.txt")  # over the remote b.txt: a deletion there hides it
    sa.rename("d", "e")
    sa.mkdir("d")
    put(sa, "d/new.txt", b"N")  # lands under the deletion of d
    with commit_held(client, sa, monkeypatch) as result:
        sa.rename("b.txt", "c.txt")
        sa.unlink("d/new.txt")
    assert result["sha"] and files(api, repo_id) == {"b.txt", "d/new.txt", "e/x.txt"}  # what the batch held
    for path in ("b.txt", "d/new.txt"):
        staged = sa.lookup(path)
        assert staged is not None and staged.kind == "deleted", path
    c = sa.lookup("c.txt")
    assert c is not None and c.kind == "file"
    assert set(sa.listdir("")[0]) == {"c.txt", "d"} and "b.txt" in sa.listdir("")[1]
    assert sa.flush()
    assert files(api, repo_id) == {"c.txt", "e/x.txt"} and read(client, repo_id, "c.txt") == b"A"
    assert sa.lookup("b.txt") is None and sa.pending == 0


def test_a_file_staged_where_the_running_commit_deletes_a_folder_commits_next(api: Any, client: HubClient,
                                                                               repo_id: str, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder is moved away and committed; meanwhile a file is put back where the folder was (staged on the
    commit before). The commit that deleted the folder is the mount's own: the next one has no conflict."""
    seed(api, repo_id, {"d/a.txt": b"A", "d/b.txt": b"B"})
    shown = {"sha": client.resolve("model", repo_id, "main", refresh=True)}
    sa = staging(client, repo_id, tmp_path / "st", base=lambda: shown["sha"], on_commit=lambda sha: shown.update(sha=sha))
    sa.rename("d", "e")
    with commit_held(client, sa, monkeypatch) as result:
        sa.mkdir("d")
        put(sa, "d/b.txt", b"new")  # staged on the commit the mount shows: the one before the running commit
    assert result["sha"] and files(api, repo_id) == {"e/a.txt", "e/b.txt"}
    assert sa.flush()  # no ConflictError: d/b.txt changed on the hub by this mount's own commit only
    assert files(api, repo_id) == {"e/a.txt", "e/b.txt", "d/b.txt"} and read(client, repo_id, "d/b.txt") == b"new"
    assert sa.pending == 0


def test_a_folder_emptied_here_stays_after_the_commit(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    """Deleting or moving away a folder's last file empties it on the hub, which has no folders: the mount
    keeps showing the folder, as a local file system would."""
    seed(api, repo_id, {"d/x.txt": b"X", "f/g/y.txt": b"Y", "keep.txt": b"K"})
    sa = staging(client, repo_id, tmp_path / "st")
    sa.unlink("d/x.txt")
    sa.rename("f/g/y.txt", "y.txt")
    assert sa.flush() and files(api, repo_id) == {"keep.txt", "y.txt"}
    for folder in ("d", "f/g"):
        staged = sa.lookup(folder)
        assert staged is not None and staged.kind == "dir" and not staged.opaque, folder
    assert set(sa.listdir("")[0]) == {"d"} and sa.implied("") == {"f"} and sa.pending == 0
    sa.rmdir("f/g")
    assert sa.lookup("f") is not None and sa.lookup("f").kind == "dir"  # the hub never had f without g


def test_many_changes_make_one_commit(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    seed(api, repo_id, {f"old/{i}.txt": b"o" for i in range(5)})
    n = commits(api, repo_id)
    sa = staging(client, repo_id, tmp_path / "st")
    expected = {f"old/{i}.txt" for i in range(5)}
    for d in range(4):
        sa.mkdir(f"dir{d}")
        for i in range(10):
            put(sa, f"dir{d}/{i}.txt", f"{d}-{i}".encode())
            expected.add(f"dir{d}/{i}.txt")
    for i in range(3):
        sa.unlink(f"old/{i}.txt")
        expected.discard(f"old/{i}.txt")
    put(sa, "tmp.txt", b"short-lived")
    sa.unlink("tmp.txt")
    assert sa.flush()
    assert commits(api, repo_id) == n + 1 and files(api, repo_id) == expected
    assert read(client, repo_id, "dir3/9.txt") == b"3-9"


def test_large_files_go_through_lfs(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    sa = staging(client, repo_id, tmp_path / "st")
    big = os.urandom(11 << 20)
    put(sa, "big.dat", big)  # over the regular-file limit
    put(sa, "w.bin", b"weights")  # *.bin: LFS by the default .gitattributes
    assert sa.flush()
    infos = {i.path: i for i in api.get_paths_info(repo_id, ["big.dat", "w.bin"])}
    assert infos["big.dat"].lfs.sha256 == hashlib.sha256(big).hexdigest() and infos["big.dat"].size == 11 << 20
    assert infos["w.bin"].lfs.sha256 == hashlib.sha256(b"weights").hexdigest()
    assert read(client, repo_id, "big.dat") == big


def test_debounce_commits_closed_files_once(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    threads = threading.active_count()
    sa = staging(client, repo_id, tmp_path / "st", debounce=0.5, max_delay=30)
    n = commits(api, repo_id)
    still_open = sa.create("open.txt")
    still_open.write_bytes(b"not closed yet")
    for i in range(5):
        put(sa, f"f{i}.txt", b"x")
    assert commits(api, repo_id) == n  # inside the debounce
    wait_for(lambda: commits(api, repo_id) == n + 1)
    time.sleep(0.6)
    assert commits(api, repo_id) == n + 1  # five closes, one commit
    assert files(api, repo_id) == {f"f{i}.txt" for i in range(5)}  # the open file waits for its close
    assert threading.active_count() <= threads + 1  # one timer thread at most
    sa.written(still_open)
    wait_for(lambda: commits(api, repo_id) == n + 2)
    assert "open.txt" in files(api, repo_id)
    sa.close()
    assert threading.active_count() <= threads


def test_max_delay_bounds_a_busy_stream(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    sa = staging(client, repo_id, tmp_path / "st", debounce=0.3, max_delay=0.8)
    n = commits(api, repo_id)
    seen_while_writing = 0
    for i in range(25):  # a close every 0.1 s: the debounce alone would never fire
        put(sa, f"s{i}.txt", b"s")
        time.sleep(0.1)
        if i % 5 == 4:
            seen_while_writing = commits(api, repo_id) - n
    assert seen_while_writing >= 1
    sa.close()  # flushes the rest
    assert files(api, repo_id) == {f"s{i}.txt" for i in range(25)}


CRASHING = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hubfs.client.api import HubClient
    from hubfs.mount.staging import StagingArea
    from hubfs.paths import RepoRef

    endpoint, token, repo_id, root = sys.argv[1:5]
    sa = StagingArea(HubClient(endpoint, token), RepoRef.of("model", repo_id), "main", Path(root), debounce=3600)
    def put(path, data):
        local = sa.create(path)
        local.write_bytes(data)
        sa.written(local)
    put("a.txt", b"alpha")
    sa.mkdir("d")
    put("d/b.bin", b"b" * 5000)
    put("gone.txt", b"never committed")
    sa.unlink("gone.txt")
    sa.unlink("old.txt")
    sa.rename("keep.txt", "renamed.txt")
    sa.create("half.txt").write_bytes(b"written, never closed")
    print("ready", flush=True)
    time.sleep(600)
""")


def test_crash_recovery_commits_leftovers(api: Any, hub: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    seed(api, repo_id, {"old.txt": b"old", "keep.txt": b"keep"})
    n = commits(api, repo_id)
    root = tmp_path / "st"
    proc = subprocess.Popen([sys.executable, "-c", CRASHING, hub.endpoint, hub.admin_token, repo_id, str(root)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    with open(root / "journal", "ab") as f:
        f.write(b'{"path":"torn.txt","entry":{"ki')  # a write cut short by the crash
    assert commits(api, repo_id) == n

    sa = staging(client, repo_id, root, debounce=0.2)  # replays the journal and schedules the commit
    with pytest.raises(ConflictError):
        staging(client, repo_id, root)  # one staging area per root
    half = sa.lookup("half.txt")
    assert half is not None and half.local is not None and half.local.read_bytes() == b"written, never closed"
    gone = sa.lookup("old.txt")
    assert gone is not None and gone.kind == "deleted"
    wait_for(lambda: commits(api, repo_id) == n + 1)
    assert files(api, repo_id) == {"a.txt", "d/b.bin", "renamed.txt", "half.txt"}
    assert read(client, repo_id, "renamed.txt") == b"keep" and read(client, repo_id, "half.txt") == b"written, never closed"
    assert api.get_paths_info(repo_id, ["d/b.bin"])[0].lfs is not None
    wait_for(lambda: sa.pending == 0)
    assert not list((root / "files").iterdir())
    sa.close()
    assert commits(api, repo_id) == n + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_down_keeps_staged_files_until_a_flush_succeeds(tmp_hub: Any, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    server = tmp_hub("--port", str(port))
    with HubClient(server.endpoint, server.admin_token) as c:
        c.create_repo("model", "admin/down")
        c.transport.retry = RetryPolicy(tries=1)
        sa = staging(c, "admin/down", tmp_path / "st")
        put(sa, "a.txt", b"survives")
        server.kill()
        with caplog.at_level(logging.WARNING, logger=LOG), pytest.raises(HubConnectionError):
            sa.flush()
        assert "kept in" in caplog.text and "HubConnectionError" in caplog.text
        staged = sa.lookup("a.txt")
        assert staged is not None and staged.kind == "file" and sa.pending == 1
        tmp_hub("--port", str(port), data=server.data_dir)
        c.transport.retry = RetryPolicy(tries=3, base=0.05)
        assert sa.flush()
        assert read(c, "admin/down", "a.txt") == b"survives" and sa.pending == 0
        sa.close()


def test_concurrent_commit_elsewhere_is_rebased_on(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    seed(api, repo_id, {"old.txt": b"old"})
    n = commits(api, repo_id)
    sa = staging(client, repo_id, tmp_path / "st")
    put(sa, "mine.txt", b"mine")
    sa.unlink("old.txt")
    api.upload_file(path_or_fileobj=b"theirs", path_in_repo="theirs.txt", repo_id=repo_id)
    assert sa.flush()
    log = api.list_repo_commits(repo_id)
    assert len(log) == n + 2 and log[1].title.startswith("Upload theirs.txt")
    assert files(api, repo_id) == {"mine.txt", "theirs.txt"}


def test_concurrent_commit_to_the_same_path_keeps_it_staged(api: Any, client: HubClient, repo_id: str, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    seed(api, repo_id, {"a.txt": b"v0"})
    sa = staging(client, repo_id, tmp_path / "st")
    local = sa.open_for_write("a.txt", opener(client, repo_id, "a.txt"), truncate=False)
    with open(local, "ab") as f:
        f.write(b" + mine")
    sa.written(local)
    put(sa, "other.txt", b"waits with it")
    api.upload_file(path_or_fileobj=b"theirs", path_in_repo="a.txt", repo_id=repo_id)
    n = commits(api, repo_id)
    with caplog.at_level(logging.WARNING, logger=LOG), pytest.raises(ConflictError, match="a.txt"):
        sa.flush()
    assert "a.txt changed on the hub" in caplog.text
    assert commits(api, repo_id) == n and read(client, repo_id, "a.txt") == b"theirs" and files(api, repo_id) == {"a.txt"}
    sa.close()  # logs the conflict again, raises nothing
    sa = staging(client, repo_id, tmp_path / "st")  # still staged on disk
    staged = sa.lookup("a.txt")
    assert staged is not None and staged.local is not None and staged.local.read_bytes() == b"v0 + mine"
    assert sa.pending == 2
    sa.close()


def test_threads_write_and_flush_concurrently(api: Any, client: HubClient, repo_id: str, tmp_path: Path) -> None:
    seed(api, repo_id, {"shared.txt": b"shared"})
    sa = staging(client, repo_id, tmp_path / "st", debounce=0.05, max_delay=0.2)
    errors: list[BaseException] = []
    opened: list[Path] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                put(sa, f"t{k}-{i}.txt", f"{k}:{i}".encode())
            opened.append(sa.open_for_write("shared.txt", opener(client, repo_id, "shared.txt"), truncate=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in workers:
        t.start()
    while any(t.is_alive() for t in workers):
        sa.flush()
    for t in workers:
        t.join()
    assert not errors
    assert len(set(opened)) == 1 and opened[0].read_bytes() == b"shared"  # one copy-up shared by all handles
    for local in opened:
        sa.written(local)
    sa.close()
    assert files(api, repo_id) == {"shared.txt"} | {f"t{k}-{i}.txt" for k in range(6) for i in range(10)}
    assert read(client, repo_id, "t5-9.txt") == b"5:9"


ATTRS_THEN_KILLED = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from hubfs.client.api import HubClient
    from hubfs.mount.overlay import Attrs
    from hubfs.mount.staging import StagingArea
    from hubfs.paths import RepoRef

    endpoint, token, repo_id, root = sys.argv[1:5]
    sa = StagingArea(HubClient(endpoint, token), RepoRef.of("model", repo_id), "main", Path(root), debounce=3600)
    local = sa.create("f.bin", Attrs(0o600, 1000, 1000))
    local.write_bytes(b"x")
    sa.written(local)
    sa.mkdir("d", Attrs(0o700))
    assert sa.set_attrs("f.bin", mode=0o640) and sa.set_attrs("d", uid=7)
    assert sa.set_times("f.bin", 1_000_000_000, 2_000_000_000) and sa.set_times("d", 0, 3_000_000_000)
    assert not sa.set_attrs("README.md", mode=0o600) and not sa.set_times("nowhere", 0, 0)  # not staged here
    print("ready", flush=True)
    time.sleep(600)
""")


def test_modes_owners_and_times_are_journaled_until_committed(client, api, hub, repo_id, tmp_path) -> None:
    """chmod/chown/utimensat of staged entries survive a crash (the journal, the content files' own times);
    remote paths are not the staging area's; once committed, the entry (and what was kept for it) is gone."""
    from hubfs.mount.overlay import Attrs

    root = tmp_path / "stage"
    proc = subprocess.Popen([sys.executable, "-c", ATTRS_THEN_KILLED, hub.endpoint, hub.admin_token, repo_id,
                             str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    sa = staging(client, repo_id, root)
    f, d = sa.lookup("f.bin"), sa.lookup("d")
    assert f is not None and f.attrs == Attrs(0o640, 1000, 1000) and (f.atime_ns, f.mtime_ns) == (1_000_000_000,
                                                                                                  2_000_000_000)
    assert d is not None and d.attrs == Attrs(0o700, 7, None) and d.mtime == 3.0
    assert sa.flush() is not None and sa.lookup("f.bin") is None  # committed: a remote file now
