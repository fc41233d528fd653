"""`hubfs mount --all MOUNTPOINT --read-write`: every repo under the hub root is writable on its branch, each with
its own staging area and commits (one commit per repo per batch), fsync commits one repo, unmount flushes every
repo, a SIGKILLed daemon's staged changes of several repos are committed by the next mount without any lookup;
creating, deleting or renaming repos and namespaces is refused with EPERM, a tag stays read-only (EROFS)."""

from __future__ import annotations

import errno
import os
import signal
import stat
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from mounting import alive, committed, errno_of, hubfs, wait_for

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")


def commits(api: HfApi, rid: str, repo_type: str = "model") -> int:
    return len(api.list_repo_commits(rid, repo_type=repo_type))


@pytest.fixture
def two_repos(api: HfApi, repo_id: str, dataset_id: str) -> tuple[str, str]:
    """A model and a dataset of admin's, one file each."""
    api.create_commit(repo_id, [CommitOperationAdd("m.txt", b"model\n")], commit_message="seed")
    api.create_commit(dataset_id, [CommitOperationAdd("data/d.txt", b"data\n")], commit_message="seed",
                      repo_type="dataset")
    return repo_id, dataset_id


def test_every_repo_writable_fsync_one_unmount_all(mounter, api, hub, two_repos, tmp_path: Path) -> None:
    model, dataset = two_repos
    api.create_tag(model, tag="v1")
    mount = mounter("", "--all", "--read-write", "--commit-delay", "3600", "--cache-dir", str(tmp_path / "cache"))
    root = mount.path
    m, d = root / model, root / "datasets" / dataset
    n_model, n_data = commits(api, model), commits(api, dataset, "dataset")
    assert (m / "m.txt").read_bytes() == b"model\n" and stat.S_IMODE(os.stat(m / "m.txt").st_mode) == 0o644

    # changes in two repos: shown at once, each staged on its own
    (m / "new.txt").write_bytes(b"new in the model\n")
    (m / "m.txt").write_bytes(b"model v2\n")
    os.makedirs(d / "sub")
    (d / "sub/x.txt").write_bytes(b"x\n")
    os.rename(d / "data/d.txt", d / "data/moved.txt")
    assert sorted(os.listdir(m)) == [".gitattributes", "m.txt", "new.txt"]
    assert sorted(os.listdir(d)) == [".gitattributes", "data", "sub"] and os.listdir(d / "data") == ["moved.txt"]
    assert (d / "data/moved.txt").read_bytes() == b"data\n"

    # fsync commits the model's batch (one commit), not the dataset's
    fd = os.open(m / "new.txt", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert commits(api, model) == n_model + 1 and commits(api, dataset, "dataset") == n_data
    assert committed(hub, model) == {"m.txt": b"model v2\n", "new.txt": b"new in the model\n"}

    # the hub level: no repos or namespaces made, deleted or renamed; no rename across repos; a tag is read-only
    ns = model.split("/")[0]
    assert os.stat(root / ns).st_nlink == 2 + len(os.listdir(root / ns))  # its repos are its subfolders
    assert errno_of(lambda: os.mkdir(root / ns / "brand-new-repo")) == errno.EPERM
    assert errno_of(lambda: os.mkdir(root / "brand-new-namespace")) == errno.EPERM
    assert errno_of(lambda: os.mkdir(root / "datasets" / ns / "new-ds")) == errno.EPERM
    assert errno_of(lambda: os.rmdir(root / model)) == errno.EPERM
    assert errno_of(lambda: (root / ns / "file-beside-repos").write_bytes(b"")) == errno.EPERM
    assert errno_of(lambda: os.rename(root / model, root / ns / "renamed")) == errno.EPERM
    assert errno_of(lambda: os.rename(m / "new.txt", d / "new.txt")) == errno.EPERM
    assert errno_of(lambda: (root / f"{model}@v1" / "t.txt").write_bytes(b"")) == errno.EROFS
    assert (root / f"{model}@v1" / "m.txt").read_bytes() == b"model\n"  # still readable
    log = mount.log.read_text()
    assert "does not create, delete or rename repos or namespaces" in log and "brand-new-repo" in log

    # the same branch under two names shares one staging area
    (root / f"{model}@main" / "alias.txt").write_bytes(b"alias\n")
    assert (m / "alias.txt").read_bytes() == b"alias\n"

    # unmount commits what every repo still has staged: one commit each
    done = hubfs("umount", str(root))
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not alive(mount.pid), what="the daemon to exit")
    assert commits(api, model) == n_model + 2 and commits(api, dataset, "dataset") == n_data + 1
    assert committed(hub, model) == {"m.txt": b"model v2\n", "new.txt": b"new in the model\n", "alias.txt": b"alias\n"}
    assert committed(hub, dataset, "dataset") == {"data/moved.txt": b"data\n", "sub/x.txt": b"x\n"}


def test_sigkill_then_the_next_whole_hub_mount_commits(mounter, api, hub, two_repos, tmp_path: Path) -> None:
    model, dataset = two_repos
    cache = str(tmp_path / "cache")
    mount = mounter("", "--all", "--read-write", "--commit-delay", "3600", "--cache-dir", cache)
    (mount / model / "crash.txt").write_bytes(b"kept\n")
    os.unlink(mount / "datasets" / dataset / "data/d.txt")
    n_model, n_data = commits(api, model), commits(api, dataset, "dataset")
    os.kill(mount.pid, signal.SIGKILL)
    wait_for(lambda: not alive(mount.pid), what="the daemon to die")
    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0, done.stderr
    assert commits(api, model) == n_model and commits(api, dataset, "dataset") == n_data

    again = mounter("", "--all", "--read-write", "--commit-delay", "0.2", "--cache-dir", cache, name="again")
    # committed without anything being looked up in the mount
    wait_for(lambda: commits(api, model) == n_model + 1 and commits(api, dataset, "dataset") == n_data + 1,
             what="the recovered changes to be committed")
    assert committed(hub, model) == {"m.txt": b"model\n", "crash.txt": b"kept\n"}
    assert committed(hub, dataset, "dataset") == {}
    assert "recovered" in again.log.read_text()
    assert (again / model / "crash.txt").read_bytes() == b"kept\n"
