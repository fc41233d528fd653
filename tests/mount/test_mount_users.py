"""Other users and a mount made by root: ``allow_other`` plus ``default_permissions`` by default (another user
reads, the kernel enforces the reported modes, so it cannot write a root-owned file), none of it with
``--no-allow-other`` (another user gets EACCES on everything). Non-root mounts ask for ``allow_other`` only
when /etc/fuse.conf allows it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd
from mounting import Mount, is_mounted, mounting

from hubfs.mount import daemon
from hubfs.mount.daemon import MountSpec

NOBODY = 65534
needs_root = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as uid/gid 65534 (``nobody``), no supplementary groups."""
    return subprocess.run(list(argv), check=False, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                          capture_output=True, text=True, timeout=20)


def options(mount: Mount) -> set[str]:
    """The mount's options and super options, from /proc/self/mountinfo."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == str(mount.path):
                return set(fields[5].split(",")) | set(fields[-1].split(","))
    raise AssertionError(f"{mount.path} is not mounted")


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A folder other users can traverse (pytest's tmp_path is 0700), removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="hubfs-users-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for p in root.iterdir():
            if not is_mounted(p):
                p.rmdir()
        root.rmdir()


@needs_root
def test_other_users_read_but_cannot_write_and_no_allow_other_shuts_them_out(api, repo_id, shared_root) -> None:
    api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"alpha\n"), CommitOperationAdd("d/b.txt", b"bravo\n")],
                      commit_message="seed")
    with mounting(shared_root) as mount:
        rw = mount(repo_id, "--read-write", "--commit-delay", "0.2", name="rw")
        assert {"allow_other", "default_permissions"} <= options(rw)
        done = as_nobody("cat", str(rw / "a.txt"), str(rw / "d/b.txt"))
        assert (done.returncode, done.stdout) == (0, "alpha\nbravo\n"), done.stderr
        assert as_nobody("ls", str(rw / "d")).stdout == "b.txt\n"
        for script in (f": >> '{rw / 'a.txt'}'", f": > '{rw / 'new.txt'}'", f"rm -f '{rw / 'd/b.txt'}'"):
            done = as_nobody("sh", "-c", script)
            assert done.returncode != 0 and "Permission denied" in done.stderr, (script, done.stderr)
        assert sorted(os.listdir(rw.path)) == [".gitattributes", "a.txt", "d"]  # nothing created or removed
        assert (rw / "a.txt").read_bytes() == b"alpha\n"

        ro = mount(repo_id, "--no-allow-other", name="ro")
        assert not {"allow_other", "default_permissions"} & options(ro)
        assert (ro / "a.txt").read_bytes() == b"alpha\n"  # the mounting user still reads
        for argv in (["cat", str(ro / "a.txt")], ["ls", str(ro.path)], ["stat", str(ro / "d")]):
            done = as_nobody(*argv)
            assert done.returncode != 0 and "Permission denied" in done.stderr, (argv, done.stderr)


def test_allow_other_is_asked_for_only_when_allowed(tmp_path, monkeypatch) -> None:
    conf = tmp_path / "fuse.conf"
    spec, off = MountSpec("/mnt"), MountSpec("/mnt", allow_other=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert daemon.allow_other(spec, str(conf)) and not daemon.allow_other(off, str(conf))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert not daemon.allow_other(spec, str(conf))  # no fuse.conf: silently off
    conf.write_text("# user_allow_other\n#user_allow_other\nmount_max = 1000\n")
    assert not daemon.allow_other(spec, str(conf))
    conf.write_text("mount_max = 1000\nuser_allow_other\n")
    assert daemon.allow_other(spec, str(conf)) and not daemon.allow_other(off, str(conf))
    assert MountSpec.from_json(off.to_json()) == off
