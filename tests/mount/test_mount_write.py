"""`hubfs mount --read-write` through real kernel mounts: shell-level changes become the expected commits and
nothing else; fsync commits at once, unmount flushes, a SIGKILLed daemon's staged writes are committed by the
next mount, a failed commit keeps the changes staged and is retried; unsupported operations fail at once; and
a differential test runs random operation sequences on the mount and on a local folder side by side.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from mounting import MiB, alive, hubfs, is_mounted, mounting

from hubfs.client.api import HubClient

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")


# -- helpers ----------------------------------------------------------------------------------------------


def commits(api: HfApi, rid: str) -> int:
    return len(api.list_repo_commits(rid))


def committed(hub: Any, rid: str, token: str | None = None) -> dict[str, bytes]:
    """Every file of the branch head (but .gitattributes) and its bytes, read from the hub."""
    with HubClient(hub.endpoint, token or hub.admin_token) as client:
        sha = client.resolve("model", rid, "main", refresh=True)
        out = {}
        for e in client.list_tree("model", rid, sha, recursive=True):
            if e.get("type") == "file" and e["path"] != ".gitattributes":
                out[e["path"]] = client.read_range(client.file_url("model", rid, sha, e["path"]), 0, 1 << 40)[0]
        return out


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.05)


def settle(api: HfApi, rid: str, expected: int, delay: float) -> None:
    """The commit count reaches ``expected`` and stays there past a few commit delays."""
    wait_for(lambda: commits(api, rid) >= expected, what=f"{expected} commits")
    time.sleep(3 * delay + 0.3)
    assert commits(api, rid) == expected


def sh(script: str, cwd: Path) -> None:
    subprocess.run(["bash", "-ec", script], cwd=cwd, check=True, timeout=60)


def wait_exit(pid: int, timeout: float = 30) -> None:
    wait_for(lambda: not alive(pid), timeout, f"daemon {pid} to exit")


def seed(api: HfApi, rid: str, files: dict[str, bytes]) -> None:
    api.create_commit(rid, [CommitOperationAdd(p, d) for p, d in files.items()], commit_message="seed")


def errno_of(fn: Callable[[], Any]) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


# -- scenarios --------------------------------------------------------------------------------------------


def test_shell_changes_make_the_expected_commits(mounter, api, hub, repo_id, tmp_path) -> None:
    seed(api, repo_id, {"a.txt": b"alpha\n", "keep.txt": b"keep\n", "dir/b.txt": b"bravo\n",
                        "part.bin": bytes(range(256)) * 40})
    delay = 0.6
    mount = mounter(repo_id, "--read-write", "--commit-delay", str(delay))
    root, n = mount.path, commits(api, repo_id)
    st = os.stat(root / "a.txt")
    assert stat.S_IMODE(st.st_mode) == 0o644 and stat.S_IMODE(os.stat(root / "dir").st_mode) == 0o755

    sh("echo hello > new.txt", root)  # a new file: one commit
    assert (root / "new.txt").read_bytes() == b"hello\n"  # shown at once, from the staging area
    settle(api, repo_id, n + 1, delay)
    assert committed(hub, repo_id)["new.txt"] == b"hello\n"

    # one batch of changes (inside one commit delay): one commit
    sh("echo over > a.txt; echo more >> keep.txt; mkdir -p x/y && echo deep > x/y/c; mv dir/b.txt dir/moved.txt; "
       "rm new.txt; mkdir empty; mkdir gone; rmdir gone", root)
    assert sorted(os.listdir(root)) == [".gitattributes", "a.txt", "dir", "empty", "keep.txt", "part.bin", "x"]
    assert (root / "keep.txt").read_bytes() == b"keep\nmore\n" and (root / "dir/moved.txt").read_bytes() == b"bravo\n"
    settle(api, repo_id, n + 2, delay)
    files = committed(hub, repo_id)
    assert files == {"a.txt": b"over\n", "keep.txt": b"keep\nmore\n", "x/y/c": b"deep\n", "dir/moved.txt": b"bravo\n",
                     "part.bin": bytes(range(256)) * 40}
    assert sorted(os.listdir(root)) == [".gitattributes", "a.txt", "dir", "empty", "keep.txt", "part.bin", "x"]  # `empty` stays local

    # a partial overwrite in place (copy-up at the first write), after reading
    with open(root / "part.bin", "r+b") as f:
        assert f.read(4) == bytes(range(4))
        f.seek(1000)
        f.write(b"XYZ")
    expected = bytearray(bytes(range(256)) * 40)
    expected[1000:1003] = b"XYZ"
    assert (root / "part.bin").read_bytes() == expected
    settle(api, repo_id, n + 3, delay)
    assert committed(hub, repo_id)["part.bin"] == expected

    # opened for writing but never written (touch): nothing staged, nothing committed; rm of a folder's last file
    sh("touch a.txt; rm x/y/c; rmdir x/y x", root)
    settle(api, repo_id, n + 4, delay)
    assert "x/y/c" not in committed(hub, repo_id) and not (root / "x").exists()

    # a big file goes through LFS
    big = os.urandom(12 * MiB + 5)
    (tmp_path / "big.bin").write_bytes(big)
    sh(f"cp {tmp_path / 'big.bin'} big.bin", root)
    settle(api, repo_id, n + 5, delay)
    info = api.get_paths_info(repo_id, ["big.bin"])[0]
    assert info.lfs is not None and info.lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert hashlib.sha256((root / "big.bin").read_bytes()).digest() == hashlib.sha256(big).digest()
    assert committed(hub, repo_id)["big.bin"] == big
    assert commits(api, repo_id) == n + 5  # nothing else


def test_fsync_commits_at_once_unmount_flushes(mounter, api, hub, repo_id) -> None:
    mount = mounter(repo_id, "--read-write", "--commit-delay", "3600")
    n = commits(api, repo_id)
    with open(mount / "synced.txt", "wb") as f:
        f.write(b"synced\n")
        f.flush()
        os.fsync(f.fileno())
        assert commits(api, repo_id) == n + 1  # before the close
        f.write(b"more\n")
    assert committed(hub, repo_id) == {"synced.txt": b"synced\n"}
    (mount / "later.txt").write_bytes(b"later\n")
    time.sleep(0.3)
    assert commits(api, repo_id) == n + 1  # the close alone waits for the (long) commit delay
    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0, done.stderr
    wait_exit(mount.pid)
    assert commits(api, repo_id) == n + 2
    assert committed(hub, repo_id) == {"synced.txt": b"synced\nmore\n", "later.txt": b"later\n"}


def test_a_folder_deleted_and_refilled_keeps_files_put_back_unchanged(mounter, api, hub, repo_id) -> None:
    """`rm -rf d` then the same bytes written back at d/same.txt: the commit keeps d/same.txt (a folder delete
    would take it away while the commit drops its unchanged add) and deletes only what was not put back."""
    seed(api, repo_id, {"d/same.txt": b"same\n", "d/gone.txt": b"gone\n", "d/sub/deep.txt": b"deep\n"})
    mount = mounter(repo_id, "--read-write", "--commit-delay", "3600")
    n = commits(api, repo_id)
    sh("rm -rf d; mkdir -p d/sub; echo same > d/same.txt; echo new > d/sub/new.txt", mount.path)
    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0, done.stderr
    wait_exit(mount.pid)
    assert commits(api, repo_id) == n + 1
    assert committed(hub, repo_id) == {"d/same.txt": b"same\n", "d/sub/new.txt": b"new\n"}


def test_open_files_follow_renames_and_unlinks(mounter, api, hub, repo_id) -> None:
    """A remote file opened for writing is copied up at its first write, to wherever it is then: a log rotated
    (mv) while its writer holds it open gets the writes; an unlinked one is not brought back."""
    seed(api, repo_id, {"app.log": b"line1\n", "doomed.txt": b"doomed\n"})
    mount = mounter(repo_id, "--read-write", "--commit-delay", "3600")
    n = commits(api, repo_id)
    with open(mount / "app.log", "ab") as log_, open(mount / "doomed.txt", "r+b") as doomed:
        os.rename(mount / "app.log", mount / "app.log.1")
        os.unlink(mount / "doomed.txt")
        log_.write(b"line2\n")
        log_.flush()
        doomed.write(b"DOOM")
        doomed.flush()
        doomed.seek(0)
        assert doomed.read() == b"DOOMed\n"  # the open file still works
    assert sorted(os.listdir(mount.path)) == [".gitattributes", "app.log.1"]
    assert (mount / "app.log.1").read_bytes() == b"line1\nline2\n"
    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0, done.stderr
    wait_exit(mount.pid)
    assert commits(api, repo_id) == n + 1 and committed(hub, repo_id) == {"app.log.1": b"line1\nline2\n"}


def test_sigkill_then_the_next_mount_commits(mounter, api, hub, repo_id) -> None:
    seed(api, repo_id, {"old.txt": b"old\n", "gone.txt": b"gone\n"})
    mount = mounter(repo_id, "--read-write", "--commit-delay", "3600")
    n = commits(api, repo_id)
    sh("echo new > new.txt; echo changed > old.txt; rm gone.txt; mkdir -p d && echo x > d/x.txt", mount.path)
    os.kill(mount.pid, signal.SIGKILL)
    wait_exit(mount.pid)
    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0 and "daemon was gone" in done.stdout, done.stderr
    assert commits(api, repo_id) == n
    again = mounter(repo_id, "--read-write", "--commit-delay", "0.2")
    assert (again / "old.txt").read_bytes() == b"changed\n" and not (again / "gone.txt").exists()  # still shown
    settle(api, repo_id, n + 1, 0.2)
    assert committed(hub, repo_id) == {"new.txt": b"new\n", "old.txt": b"changed\n", "d/x.txt": b"x\n"}
    assert "recovered" in again.log.read_text()


def test_a_failed_commit_stays_staged_and_is_retried(mounter, api, hub, repo_id) -> None:
    """A conflicting push to the same path: fsync fails (EIO), the log says why, the mount keeps showing the
    staged bytes; once the conflict is gone the next flush commits them."""
    seed(api, repo_id, {"f.txt": b"v1\n"})
    mount = mounter(repo_id, "--read-write", "--commit-delay", "3600")
    (mount / "f.txt").write_bytes(b"mine\n")
    seed(api, repo_id, {"f.txt": b"theirs\n"})
    n = commits(api, repo_id)
    fd = os.open(mount / "f.txt", os.O_RDONLY)
    try:
        assert errno_of(lambda: os.fsync(fd)) == errno.EIO
        assert commits(api, repo_id) == n
        assert "f.txt changed on the hub since staged" in mount.log.read_text()
        assert (mount / "f.txt").read_bytes() == b"mine\n"
        seed(api, repo_id, {"f.txt": b"v1\n"})  # the hub is back where the change started from
        os.fsync(fd)
    finally:
        os.close(fd)
    assert commits(api, repo_id) == n + 2 and committed(hub, repo_id) == {"f.txt": b"mine\n"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_fails_fsync_and_the_next_flush_commits(tmp_hub, tmp_path) -> None:
    port = _free_port()
    server = tmp_hub("--port", str(port))
    api = HfApi(endpoint=server.endpoint, token=server.admin_token)
    rid = f"admin/w-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    env = {"HF_ENDPOINT": server.endpoint, "HF_TOKEN": server.admin_token}
    with mounting(tmp_path) as mount_:
        mount = mount_(rid, "--read-write", "--commit-delay", "3600", "--timeout", "3", env=env)
        n = commits(api, rid)
        (mount / "kept.txt").write_bytes(b"kept\n")
        server.kill()
        fd = os.open(mount / "kept.txt", os.O_RDONLY)
        try:
            assert errno_of(lambda: os.fsync(fd)) == errno.EIO
            assert "kept in" in mount.log.read_text() and (mount / "kept.txt").read_bytes() == b"kept\n"
            server = tmp_hub("--port", str(port), data=server.data_dir)
            os.fsync(fd)
        finally:
            os.close(fd)
        assert commits(api, rid) == n + 1 and committed(server, rid) == {"kept.txt": b"kept\n"}


def test_refused_operations_and_posix_errors(mounter, api, repo_id, tmp_path) -> None:
    seed(api, repo_id, {"r.txt": b"r\n", "d/f.txt": b"f\n"})
    sha = api.list_repo_commits(repo_id)[0].commit_id
    api.create_tag(repo_id, tag="v1")
    for target, expected in ((f"{repo_id}@v1", "is a tag"), (f"{repo_id}@{sha}", "is a commit")):
        done = hubfs("mount", target, str(tmp_path), "--read-write")
        assert done.returncode == 2 and expected in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr

    mount = mounter(repo_id, "--read-write", "--commit-delay", "3600")
    root = mount.path
    second = tmp_path / "second"
    second.mkdir()
    done = hubfs("mount", repo_id, str(second), "--read-write")  # one read-write mount per branch
    assert done.returncode == 1 and "in use by another hubfs mount" in done.stderr and not is_mounted(second)
    (root / "new.txt").write_bytes(b"n")
    assert errno_of(lambda: os.link(root / "r.txt", root / "hard")) == errno.EPERM
    assert errno_of(lambda: os.symlink("/etc/passwd", root / "sym")) == errno.EPERM
    assert errno_of(lambda: os.mkfifo(root / "fifo")) == errno.EPERM
    assert errno_of(lambda: os.chmod(root / "r.txt", 0o600)) == errno.EPERM
    assert errno_of(lambda: os.chown(root / "r.txt", 1, 1)) == errno.EPERM
    os.chmod(root / "new.txt", 0o600)  # a file made here: accepted, nothing to keep
    assert errno_of(lambda: os.mkdir(root / "d")) == errno.EEXIST
    assert errno_of(lambda: os.rmdir(root / "d")) == errno.ENOTEMPTY
    assert errno_of(lambda: os.rmdir(root / "r.txt")) == errno.ENOTDIR
    assert errno_of(lambda: os.unlink(root / "d")) == errno.EISDIR
    assert errno_of(lambda: os.rename(root / "d", root / "r.txt")) == errno.ENOTDIR
    assert errno_of(lambda: os.rename(root / "r.txt", root / "d")) == errno.EISDIR
    assert errno_of(lambda: os.rename(root / "d", root / "d/f.txt/x")) in (errno.ENOTDIR, errno.EINVAL)
    assert errno_of(lambda: os.rename(root / "missing", root / "x")) == errno.ENOENT
    assert errno_of(lambda: (root / "no/such/file").write_bytes(b"")) == errno.ENOENT
    assert errno_of(lambda: (root / ".git").write_bytes(b"")) == errno.EINVAL  # git refuses the name
    assert sorted(os.listdir(root)) == [".gitattributes", "d", "new.txt", "r.txt"]


# -- differential: the mount against a local folder ---------------------------------------------------------


PATHS = ["a", "b", "d", "e", "d/a", "d/b", "d/e", "e/a", "d/e/a"]
DIFF_COMMIT_DELAY = 0.06  # the differential test's debounce: short, so that its pauses (twice it) cost little
SEEDED = {"b": b"remote b\n", "d/a": b"remote d/a\n" * 50, "d/e/a": b"remote d/e/a\n"}


def _walk(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: None for folders, the bytes of files."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirs:
            out[os.path.normpath(os.path.join(rel, name))] = None
        for name in files:
            out[os.path.normpath(os.path.join(rel, name))] = Path(dirpath, name).read_bytes()
    return out


def test_differential_random_operations(mounter, api, hub, repo_id, tmp_path) -> None:
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

    examples = 10
    seed(api, repo_id, {f"ex{i}/{p}": d for i in range(examples + 40) for p, d in SEEDED.items()})
    mount = mounter(repo_id, "--read-write", "--commit-delay", str(DIFF_COMMIT_DELAY))
    local_root = tmp_path / "local"
    counter = iter(range(10_000))

    path = st.sampled_from(PATHS)
    data = st.binary(max_size=3000)

    class MountVsLocal(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.name = f"ex{next(counter)}"
            self.sides = (mount.path / self.name, local_root / self.name)
            self.sides[1].mkdir(parents=True)
            if int(self.name[2:]) < examples + 40:
                for p, d in SEEDED.items():
                    (self.sides[1] / p).parent.mkdir(parents=True, exist_ok=True)
                    (self.sides[1] / p).write_bytes(d)

        def both(self, op: Callable[[Path], Any]) -> None:
            codes = [errno_of(lambda side=side: op(side)) for side in self.sides]
            assert codes[0] == codes[1], f"mount errno {codes[0]}, local errno {codes[1]}"

        @rule(p=path, d=data)
        def create_or_overwrite(self, p: str, d: bytes) -> None:
            self.both(lambda s: (s / p).write_bytes(d))

        @rule(p=path, d=data, off=st.integers(0, 4000))
        def write_at(self, p: str, d: bytes, off: int) -> None:
            def op(s: Path) -> None:
                with open(s / p, "r+b") as f:
                    f.seek(off)
                    f.write(d)
            self.both(op)

        @rule(p=path, d=data)
        def append(self, p: str, d: bytes) -> None:
            def op(s: Path) -> None:
                with open(s / p, "ab") as f:
                    f.write(d)
            self.both(op)

        @rule(p=path, n=st.integers(0, 4000))
        def truncate(self, p: str, n: int) -> None:
            self.both(lambda s: os.truncate(s / p, n))

        @rule(p=path)
        def unlink(self, p: str) -> None:
            self.both(lambda s: os.unlink(s / p))

        @rule(p=path)
        def mkdir(self, p: str) -> None:
            self.both(lambda s: os.mkdir(s / p))

        @rule(p=path)
        def rmdir(self, p: str) -> None:
            self.both(lambda s: os.rmdir(s / p))

        @rule(a=path, b=path)
        def rename(self, a: str, b: str) -> None:
            self.both(lambda s: os.rename(s / a, s / b))

        @rule()
        def pause(self) -> None:
            time.sleep(2 * DIFF_COMMIT_DELAY)  # past the commit delay: a commit starts between the steps around it

        @invariant()
        def same_tree(self) -> None:
            if hasattr(self, "sides"):
                assert _walk(self.sides[0]) == _walk(self.sides[1])

    MountVsLocal.TestCase.settings = settings(max_examples=examples, stateful_step_count=25, deadline=None,
                                              suppress_health_check=list(HealthCheck), database=None,
                                              phases=[Phase.explicit, Phase.generate])  # no shrinking: minutes
    run_state_machine_as_test(MountVsLocal, settings=MountVsLocal.TestCase.settings)

    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0, done.stderr
    wait_exit(mount.pid)
    expected = {p: d for p, d in _walk(local_root).items() if d is not None}
    used = set(os.listdir(local_root))  # the examples run (the others' seeded files are untouched)
    assert {p: d for p, d in committed(hub, repo_id).items() if p.split("/")[0] in used} == expected
