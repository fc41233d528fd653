"""`hubfs mount` of one repo, read-only, through real kernel mounts (root and /dev/fuse needed).

The repo is uploaded with the official client (so its big files go through Xet), and everything read
through the mount is compared with the bytes uploaded: ls/stat/cat/cp/sha256sum, the mmap loaders
(safetensors, torch.load(mmap=True), pyarrow.memory_map), the read-only errors, a refresh after a push,
and the lifecycle: wrong endpoint/token/repo refused before mounting, a SIGKILLed daemon cleaned up.
"""

from __future__ import annotations

import errno
import hashlib
import io
import mmap
import os
import random
import signal
import stat
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator

import pytest
from mounting import MiB, Mount, alive, hubfs, is_mounted, mounting, wait_for

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")


def _safetensors_bytes() -> tuple[bytes, dict]:
    import torch
    from safetensors.torch import save

    g = torch.Generator().manual_seed(3)
    tensors = {"embed.weight": torch.randn(512, 256, generator=g), "head.bias": torch.arange(1000, dtype=torch.int64),
               "norm.weight": torch.randn(777, generator=g).to(torch.bfloat16)}
    return save(tensors), tensors


def _torch_bytes() -> tuple[bytes, dict]:
    import torch

    g = torch.Generator().manual_seed(4)
    state = {"w": torch.randn(300, 300, generator=g), "step": torch.tensor(7)}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue(), state


def _arrow_bytes() -> tuple[bytes, object]:
    import pyarrow as pa

    table = pa.table({"id": pa.array(range(50_000), pa.int64()), "x": pa.array([i * 0.5 for i in range(50_000)]),
                      "name": pa.array([f"row-{i}" for i in range(50_000)])})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes(), table


@pytest.fixture(scope="module")
def uploaded(api) -> dict:
    """A public repo uploaded with huggingface_hub (LFS files through Xet): {"repo", "files", ...}."""
    from huggingface_hub import CommitOperationAdd

    rng = random.Random(11)
    st, tensors = _safetensors_bytes()
    pt, state = _torch_bytes()
    arrow, table = _arrow_bytes()
    files = {
        "README.md": b"# mounted\n",
        "empty.txt": b"",
        "config.json": b'{"hidden": 256}\n' * 300,
        "dir/sub/with space & \u00fc.txt": b"odd name\n",
        "weights/model.safetensors": st,
        "weights/state.pt": pt,
        "data/table.arrow": arrow,
        "big.bin": rng.randbytes(12 * MiB + 333),
    }
    rid = f"admin/mnt-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "a data file in a model repo": intended
        api.create_commit(rid, [CommitOperationAdd(p, c) for p, c in files.items()], commit_message="upload")
    entries = {e.path: e for e in api.list_repo_tree(rid, recursive=True) if hasattr(e, "size")}
    assert entries["big.bin"].lfs is not None and entries["weights/model.safetensors"].lfs is not None
    return {"repo": rid, "files": files, "tensors": tensors, "state": state, "table": table,
            "gitattributes": api.hf_hub_download(rid, ".gitattributes")}


@pytest.fixture(scope="module")
def mounted(uploaded, tmp_path_factory) -> Iterator[Mount]:
    with mounting(tmp_path_factory.mktemp("mount")) as mount:
        yield mount(uploaded["repo"])


def test_ls_stat_cat_cp_sha256sum(mounted, uploaded, tmp_path) -> None:
    files: dict[str, bytes] = uploaded["files"]
    root = mounted.path
    assert sorted(os.listdir(root)) == sorted({".gitattributes", *(p.split("/")[0] for p in files)})
    assert sorted(os.listdir(root / "dir/sub")) == ["with space & \u00fc.txt"]
    for path, data in files.items():
        st = os.stat(root / path)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444 and st.st_size == len(data), path
        assert st.st_blocks == (len(data) + 511) // 512
        assert (root / path).read_bytes() == data, path
    assert stat.S_ISDIR(os.stat(root / "weights").st_mode)
    ls = subprocess.run(["ls", "-lR", str(root)], capture_output=True, text=True, check=True).stdout
    assert str(12 * MiB + 333) in ls and "model.safetensors" in ls
    cat = subprocess.run(["cat", str(root / "config.json"), str(root / "README.md")], capture_output=True, check=True)
    assert cat.stdout == files["config.json"] + files["README.md"]
    subprocess.run(["cp", "-r", str(root), str(tmp_path / "copy")], check=True)
    for path, data in files.items():
        assert (tmp_path / "copy" / path).read_bytes() == data, path
    sums = subprocess.run(["sha256sum", *files], cwd=root, capture_output=True, text=True, check=True).stdout
    assert {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums.splitlines()} == {
        p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    du = subprocess.run(["du", "-sb", str(root)], capture_output=True, text=True, check=True).stdout
    assert int(du.split()[0]) >= sum(len(d) for d in files.values())


def test_daemon_heap_huge_pages_both_ways(mounter, uploaded) -> None:
    """The daemon asks glibc for a huge-page heap (HUBFS_MOUNT_HUGEPAGES, on by default); reads are the same
    bytes either way."""
    data = uploaded["files"]["big.bin"]
    for name, env, asked in (("hp-on", {}, True), ("hp-off", {"HUBFS_MOUNT_HUGEPAGES": "0"}, False)):
        mount = mounter(uploaded["repo"], env=env, name=name)
        with open(f"/proc/{mount.pid}/environ", "rb") as f:
            assert (b"glibc.malloc.hugetlb=1" in f.read()) == asked, name
        with open(mount / "big.bin", "rb", buffering=0) as f:
            assert b"".join(iter(lambda: f.read(MiB), b"")) == data, name


def test_read_only_and_errno(mounted) -> None:
    root = mounted.path
    for attempt in (lambda: open(root / "README.md", "wb"), lambda: open(root / "new.txt", "w"),  # noqa: SIM115
                    lambda: os.mkdir(root / "d"), lambda: os.unlink(root / "README.md"),
                    lambda: os.rename(root / "README.md", root / "R.md"), lambda: os.rmdir(root / "weights"),
                    lambda: os.chmod(root / "README.md", 0o644), lambda: os.truncate(root / "big.bin", 0)):
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS
    with pytest.raises(FileNotFoundError):
        os.stat(root / "missing.txt")
    with pytest.raises(FileNotFoundError):
        os.stat(root / "weights/missing/deeper")
    with pytest.raises(NotADirectoryError):
        os.listdir(root / "README.md")
    with pytest.raises(IsADirectoryError):
        (root / "weights").read_bytes()


def test_random_reads_and_mmap(mounted, uploaded) -> None:
    data = uploaded["files"]["big.bin"]
    rng = random.Random(5)
    with open(mounted / "big.bin", "rb", buffering=0) as f:
        for _ in range(40):
            off, n = rng.randrange(len(data)), rng.choice([1, 4096, 100_000, 3 * MiB])
            assert os.pread(f.fileno(), n, off) == data[off:off + n]
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            assert len(m) == len(data)
            for _ in range(20):
                off = rng.randrange(len(data) - 4096)
                assert m[off:off + 4096] == data[off:off + 4096]
            assert hashlib.sha256(m).digest() == hashlib.sha256(data).digest()


def test_mmap_loaders(mounted, uploaded) -> None:
    import pyarrow as pa
    import torch
    from safetensors import safe_open

    with safe_open(str(mounted / "weights/model.safetensors"), framework="pt") as f:
        assert sorted(f.keys()) == sorted(uploaded["tensors"])
        for name, tensor in uploaded["tensors"].items():
            assert torch.equal(f.get_tensor(name), tensor), name
    state = torch.load(str(mounted / "weights/state.pt"), mmap=True, weights_only=True)
    assert torch.equal(state["w"], uploaded["state"]["w"]) and int(state["step"]) == 7
    with pa.memory_map(str(mounted / "data/table.arrow"), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    assert table.equals(uploaded["table"])


def test_refused_before_mounting(hub, uploaded, tmp_path) -> None:
    """Wrong endpoint, token, repo or revision: exit 1 with one line, and no mount appears."""
    rid, mnt = uploaded["repo"], tmp_path / "mnt"
    mnt.mkdir()
    cases = [
        ((rid, "--endpoint", "http://127.0.0.1:9"), "cannot reach the hub at http://127.0.0.1:9"),
        ((rid, "--token", "hf_not_a_token"), "refused the token"),
        (("admin/no-such-repo-here",), "repo admin/no-such-repo-here not found"),
        ((f"{rid}@no-such-branch",), "revision no-such-branch"),
        (("--all", "--token", "hf_not_a_token"), "refused the token"),
        (("--all", "--read-write", "--token", "hf_not_a_token"), "refused the token"),
    ]
    for args, expected in cases:
        target, rest = (args[0], args[1:]) if args[0] != "--all" else ("--all", args[1:])
        done = hubfs("mount", target, str(mnt), *rest)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr
        assert not is_mounted(mnt)
    done = hubfs("mount", rid, str(tmp_path / "missing"))
    assert done.returncode == 1 and "not a directory" in done.stderr
    done = hubfs("umount", str(mnt))
    assert done.returncode == 1 and "not a hubfs mount" in done.stderr


def test_sigkill_leaves_no_hung_mount_sigterm_unmounts(mounter, uploaded) -> None:
    files = uploaded["files"]
    mount = mounter(uploaded["repo"])
    assert (mount / "README.md").read_bytes() == files["README.md"]
    os.kill(mount.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(mount.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(OSError) as info:
        os.listdir(mount.path)
    assert info.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)  # dead, not hung
    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0 and "daemon was gone" in done.stdout, done.stderr
    assert not is_mounted(mount.path)
    again = mounter(uploaded["repo"])
    assert (again / "config.json").read_bytes() == files["config.json"]
    os.kill(again.pid, signal.SIGKILL)  # and a new mount over a dead one clears it by itself
    while alive(again.pid):
        time.sleep(0.02)
    third = mounter(uploaded["repo"])
    assert (third / "README.md").read_bytes() == files["README.md"]
    done = hubfs("umount", str(third.path))
    assert done.returncode == 0 and not is_mounted(third.path)
    deadline = time.monotonic() + 10
    while alive(third.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(third.pid)  # umount waited for a clean exit
    fourth = mounter(uploaded["repo"])
    os.kill(fourth.pid, signal.SIGTERM)  # libfuse's handler ends the loop and unmounts
    deadline = time.monotonic() + 10
    while (alive(fourth.pid) or is_mounted(fourth.path)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(fourth.pid) and not is_mounted(fourth.path)
    assert "stopped by a signal" in fourth.log.read_text()


def test_refresh_after_push(mounter, api, repo_id) -> None:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    api.create_commit(repo_id, [CommitOperationAdd("f.txt", b"one\n"), CommitOperationAdd("same.txt", b"same\n"),
                                CommitOperationAdd("gone.txt", b"bye\n")], commit_message="v1")
    mount = mounter(repo_id, "--refresh", "0.5")
    assert (mount / "f.txt").read_bytes() == b"one\n"  # now in the kernel's page cache (keep_cache)
    same_mtime = os.stat(mount / "same.txt").st_mtime_ns
    with open(mount / "f.txt", "rb") as held:
        api.create_commit(repo_id, [CommitOperationAdd("f.txt", b"two, longer\n"), CommitOperationAdd("new.txt", b"new\n"),
                                    CommitOperationDelete("gone.txt")], commit_message="v2")
        deadline = time.monotonic() + 15
        while (mount / "f.txt").read_bytes() != b"two, longer\n":
            assert time.monotonic() < deadline, "the mount never switched to the new commit"
            time.sleep(0.1)
        assert held.read(4) in (b"one\n", b"two,")  # an open handle keeps working
    assert (mount / "new.txt").read_bytes() == b"new\n"
    assert not (mount / "gone.txt").exists()
    assert os.stat(mount / "f.txt").st_size == len(b"two, longer\n")
    assert os.stat(mount / "same.txt").st_mtime_ns == same_mtime  # unchanged content keeps its time
    assert os.stat(mount / "f.txt").st_mtime_ns > same_mtime


def test_miss_rechecks_the_branch(mounter, api, repo_id) -> None:
    """With --refresh, a path missing from the commit shown re-checks the branch before ENOENT."""
    from huggingface_hub import CommitOperationAdd

    api.create_commit(repo_id, [CommitOperationAdd("a.txt", b"a\n")], commit_message="v1")
    mount = mounter(repo_id, "--refresh", "3600")
    assert not (mount / "b.txt").exists()
    time.sleep(1.1)  # the kernel and the mount trust a miss for 1 s
    api.create_commit(repo_id, [CommitOperationAdd("b.txt", b"b\n")], commit_message="v2")
    assert (mount / "b.txt").read_bytes() == b"b\n"  # found at once, long before the next poll


def test_a_file_read_whole_is_kept_in_the_cache_both_ways(mounter, uploaded, tmp_path) -> None:
    """``HUBFS_MOUNT_KEEP_READS`` (on by default): a file the mount served whole, in order, becomes its blob in
    the mount's cache (shared with hf:// and huggingface_hub), so its next open is local; off: nothing kept."""
    from hubfs.client.cache import HubCache

    data = uploaded["files"]["big.bin"]
    for name, env, kept in (("keep-on", {}, True), ("keep-off", {"HUBFS_MOUNT_KEEP_READS": "0"}, False)):
        cache_dir = tmp_path / f"cache-{name}"
        mount = mounter(uploaded["repo"], "--cache-dir", str(cache_dir), env=env, name=name)
        assert subprocess.run(["cat", str(mount / "big.bin")], capture_output=True, check=True).stdout == data
        blob = HubCache(cache_dir).blob("model", uploaded["repo"], hashlib.sha256(data).hexdigest())
        if kept:
            wait_for(lambda: blob.exists(), what="the blob of a file read whole")  # noqa: B023
            assert blob.read_bytes() == data
        else:
            time.sleep(1)
            assert not blob.exists()
        assert not list(cache_dir.rglob("*.incomplete"))
        assert (mount / "big.bin").read_bytes() == data
