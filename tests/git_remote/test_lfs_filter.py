"""The filter process with real git and no git-lfs on PATH: clean makes git-lfs's pointer bytes, checkout
smudges from the store (fetching missing objects through delay), corrupt objects are refused, and the
knobs (GIT_LFS_SKIP_SMUDGE, lfs.fetchexclude, hf.lfs.linkMode) hold."""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from lfs_fixtures import ATTRS, git, git_env, hub_clone, pointer_of

from git_remote_hf import filter_process
from git_remote_hf.filter_process import FilterServer, reflink
from git_remote_hf.lfs_store import FILTER_PROCESS, LfsStore, configure_repo
from git_remote_hf.pktline import PktLine
from hubfs.lfs import LfsPointer


@pytest.fixture
def env(tmp_path: Path, hub) -> dict[str, str]:
    return git_env(tmp_path, lfs=False, endpoint=hub.endpoint, token=hub.admin_token)


def _local_repo(env: dict[str, str], path: Path) -> Path:
    path.mkdir()
    git(env, path, "init", "-q", "-b", "main")
    configure_repo(path / ".git")
    (path / ".gitattributes").write_bytes(ATTRS)
    return path


def test_configure_repo_sets_the_filter_and_honours_the_opt_out(tmp_path: Path, env: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(env, repo, "init", "-q")
    git(env, repo, "remote", "add", "origin", "hf://datasets/someone/data")
    git(env, repo, "remote", "add", "mirror", "hf::https://hub.example.com/a/b")
    git(env, repo, "remote", "add", "plain", "https://example.com/x.git")
    configure_repo(repo / ".git")

    def get(key: str) -> str:
        return git(env, repo, "config", "--local", key).stdout.decode().strip()

    assert get("filter.lfs.process") == FILTER_PROCESS
    assert get("filter.lfs.required") == "true"
    assert get("remote.origin.lfsurl") == f"{env['HF_ENDPOINT']}/datasets/someone/data.git/info/lfs"
    assert get("remote.mirror.lfsurl") == "https://hub.example.com/a/b.git/info/lfs"
    assert git(env, repo, "config", "remote.plain.lfsurl", check=False).returncode == 1
    other = tmp_path / "o"
    other.mkdir()
    git(env, other, "init", "-q")
    monkeypatch.setenv("GIT_REMOTE_HF_LFS", "0")
    configure_repo(other / ".git")
    assert git(env, other, "config", "--local", "filter.lfs.process", check=False).returncode == 1


def test_clean_is_byte_identical_to_git_lfs_and_checkout_smudges(tmp_path: Path, env: dict[str, str]) -> None:
    assert shutil.which("git-lfs", path=env["PATH"]) is None
    repo = _local_repo(env, tmp_path / "r")
    data = {"model.bin": os.urandom(3_000_000), "empty.bin": b"", "deep/x.bin": b"\x00\x01" * 700,
            "notes.txt": b"plain text\n"}
    for name, content in data.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(content)
    git(env, repo, "add", ".")
    git(env, repo, "commit", "-q", "-m", "lfs")
    store = LfsStore(repo / ".git")
    lfs_env = git_env(tmp_path, lfs=True, endpoint=env["HF_ENDPOINT"], token=None)
    scratch = tmp_path / "scratch"  # git-lfs commands install its hooks: kept out of the repo under test
    scratch.mkdir()
    git(lfs_env, scratch, "init", "-q")
    for name, content in data.items():
        blob = git(env, repo, "cat-file", "blob", f"HEAD:{name}").stdout
        if name.endswith(".txt"):
            assert blob == content
            continue
        stock = subprocess.run([shutil.which("git-lfs") or "git-lfs", "pointer", f"--file={repo / name}"],
                               capture_output=True, check=True).stdout
        if not content:  # git-lfs keeps an empty file empty: no pointer, no object
            assert blob == stock == b""
            continue
        assert blob == stock == pointer_of(content).to_bytes()
        cleaned = git(lfs_env, scratch, "lfs", "clean", "--", name, stdin=content).stdout  # git-lfs's own clean
        assert blob == cleaned
        assert store.path(pointer_of(content).oid).read_bytes() == content
    pointer_text = pointer_of(b"already a pointer").to_bytes()
    (repo / "ptr.bin").write_bytes(pointer_text)  # a pointer passes through clean unchanged
    git(env, repo, "add", "ptr.bin")
    assert git(env, repo, "cat-file", "blob", ":ptr.bin").stdout == pointer_text

    for name in data:
        (repo / name).unlink()
    git(env, repo, "checkout", "--", ".")
    for name, content in data.items():
        assert (repo / name).read_bytes() == content
    assert git(env, repo, "status", "--porcelain").stdout.strip() == b"A  ptr.bin"


def test_checkout_fetches_missing_objects_through_delay(tmp_path: Path, env: dict[str, str], hub) -> None:
    """Nothing prefetched: every object is delayed, fetched in the background (two batch calls) and checked
    out as it arrives."""
    files = {f"d{i % 3}/w{i}.bin": os.urandom(5000 + i) for i in range(130)}
    files["plain.txt"] = b"text\n"
    repo = hub_clone(env, hub, tmp_path, files)
    git(env, repo, "checkout", "-q", "main")
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    assert git(env, repo, "status", "--porcelain").stdout == b""
    assert git(env, repo, "fsck", "--full").returncode == 0


def test_skip_smudge_and_fetchexclude_leave_pointers(tmp_path: Path, env: dict[str, str], hub) -> None:
    files = {"keep.bin": os.urandom(4000), "skip/me.bin": os.urandom(4000)}
    repo = hub_clone(env, hub, tmp_path, files)
    git(env, repo, "config", "lfs.fetchexclude", "skip/")
    git(env, repo, "checkout", "-q", "main")
    assert (repo / "keep.bin").read_bytes() == files["keep.bin"]
    assert (repo / "skip/me.bin").read_bytes() == pointer_of(files["skip/me.bin"]).to_bytes()

    (repo / "keep.bin").unlink()
    (repo / "skip/me.bin").unlink()
    git({**env, "GIT_LFS_SKIP_SMUDGE": "1"}, repo, "checkout", "--", ".")
    assert (repo / "keep.bin").read_bytes() == pointer_of(files["keep.bin"]).to_bytes()


def test_corrupt_store_object_is_never_checked_out(tmp_path: Path, env: dict[str, str]) -> None:
    repo = _local_repo(env, tmp_path / "r")
    content = os.urandom(200_000)
    (repo / "w.bin").write_bytes(content)
    git(env, repo, "add", ".")
    git(env, repo, "commit", "-q", "-m", "w")
    obj = LfsStore(repo / ".git").path(pointer_of(content).oid)
    obj.write_bytes(b"\xff" * len(content))  # damaged on disk after it was stored
    (repo / "w.bin").unlink()
    proc = git(env, repo, "checkout", "--", "w.bin", check=False)
    assert proc.returncode != 0
    assert b"corrupt" in proc.stderr
    assert not (repo / "w.bin").exists() or (repo / "w.bin").read_bytes() != b"\xff" * len(content)


def test_a_non_pointer_under_filter_lfs_passes_through(tmp_path: Path, env: dict[str, str]) -> None:
    repo = _local_repo(env, tmp_path / "r")
    git(env, repo, "config", "filter.lfs.process", "cat-nothing")  # commit a raw blob with the filter off
    git(env, repo, "config", "filter.lfs.required", "false")
    (repo / "raw.bin").write_bytes(b"raw bytes, no pointer")
    git(env, repo, "-c", "filter.lfs.process=", "add", ".", check=False)
    git(env, repo, "commit", "-q", "-m", "raw")
    configure_repo(repo / ".git")
    (repo / "raw.bin").unlink()
    git(env, repo, "checkout", "--", "raw.bin")
    assert (repo / "raw.bin").read_bytes() == b"raw bytes, no pointer"


def test_hardlink_mode_keeps_one_copy(tmp_path: Path, env: dict[str, str], hub) -> None:
    files = {"a.bin": os.urandom(1_500_000), "b.bin": os.urandom(700_000)}
    repo = hub_clone(env, hub, tmp_path, files)
    git(env, repo, "config", "hf.lfs.linkMode", "hardlink")
    git(env, repo, "checkout", "-q", "main")
    store = LfsStore(repo / ".git")
    for name, content in files.items():
        work, obj = repo / name, store.path(pointer_of(content).oid)
        assert work.read_bytes() == content and obj.read_bytes() == content
        assert _one_copy(work, obj)
    used = _disk_usage(repo)
    assert used < 1.2 * sum(map(len, files.values())) + 512_000, used  # not doubled (git objects are small)
    assert git(env, repo, "status", "--porcelain").stdout == b""


def test_default_mode_reflinks_where_possible_else_copies(tmp_path: Path, env: dict[str, str], hub) -> None:
    files = {"a.bin": os.urandom(1_000_000)}
    repo = hub_clone(env, hub, tmp_path, files)
    git(env, repo, "checkout", "-q", "main")
    work, obj = repo / "a.bin", LfsStore(repo / ".git").path(pointer_of(files["a.bin"]).oid)
    assert work.read_bytes() == files["a.bin"] == obj.read_bytes()
    assert not os.path.samefile(work, obj)  # never a hard link unless asked
    probe = tmp_path / "probe"
    probe.write_bytes(b"x" * 8192)
    if reflink(probe, tmp_path / "probe2"):  # this filesystem clones (xfs, btrfs): the store shares the blocks
        assert _all_extents_shared(obj)
        assert _disk_usage(repo) < 1.2 * len(files["a.bin"]) + 512_000
    else:  # no reflinks here (ext4, tmpfs, overlay): two independent copies, as git-lfs keeps
        assert not _all_extents_shared(obj)
        assert _disk_usage(repo) > 2 * len(files["a.bin"])


def _disk_usage(path: Path) -> int:
    """Bytes allocated under ``path``: each inode once (what ``du`` counts), less store objects whose blocks
    are all shared with another file (a reflink: ``du`` counts it twice, the disk holds it once)."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        st = p.lstat()
        if p.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            if not ("lfs" in p.parts and _all_extents_shared(p)):
                total += st.st_blocks * 512
    return total


def _all_extents_shared(path: Path) -> bool:
    """FIEMAP: every extent of ``path`` is flagged shared (FIEMAP_EXTENT_SHARED) with another file."""
    count = 64
    buf = bytearray(struct.pack("=QQLLLL", 0, 2**64 - 1, 1, 0, count, 0) + b"\0" * 56 * count)
    with open(path, "rb") as f:
        try:
            fcntl.ioctl(f.fileno(), 0xC020660B, buf)  # FS_IOC_FIEMAP
        except OSError:
            return False
    mapped = struct.unpack_from("=L", buf, 20)[0]
    flags = [struct.unpack_from("=L", buf, 32 + 56 * i + 40)[0] for i in range(mapped)]
    return bool(flags) and all(f & 0x2000 for f in flags)


def _one_copy(work: Path, obj: Path) -> bool:
    return os.path.samefile(work, obj) or _all_extents_shared(obj)


def test_filter_speaks_the_protocol_for_delay_directly(tmp_path: Path, env: dict[str, str], hub) -> None:
    """list_available_blobs lists the delayed paths once fetched; a failed fetch ends in status=error."""
    files = {"a.bin": os.urandom(3000)}
    repo = hub_clone(env, hub, tmp_path, files)
    ghost = LfsPointer("ef" * 32, 10)

    def pkt(s: bytes) -> bytes:
        return b"%04x" % (len(s) + 4) + s

    req = pkt(b"git-filter-client\n") + pkt(b"version=2\n") + b"0000"
    req += pkt(b"capability=clean\n") + pkt(b"capability=smudge\n") + pkt(b"capability=delay\n") + b"0000"
    for name, ptr in (("a.bin", pointer_of(files["a.bin"])), ("ghost.bin", ghost)):
        req += pkt(b"command=smudge\n") + pkt(f"pathname={name}\n".encode()) + pkt(b"can-delay=1\n") + b"0000"
        req += pkt(ptr.to_bytes()) + b"0000"
    req += pkt(b"command=list_available_blobs\n") + b"0000"  # each answer lists at least one settled path
    req += pkt(b"command=list_available_blobs\n") + b"0000"
    for name in ("a.bin", "ghost.bin"):
        req += pkt(b"command=smudge\n") + pkt(f"pathname={name}\n".encode()) + b"0000" + b"0000"
    req += pkt(b"command=list_available_blobs\n") + b"0000"  # none left: an empty list
    out = subprocess.run(["git-remote-hf", "filter-process"], input=req, cwd=repo, env=env, capture_output=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.count(b"status=delayed") == 2
    assert b"pathname=a.bin\n" in text and b"pathname=ghost.bin\n" in text
    assert files["a.bin"] in text
    assert text.endswith(b"0011status=error\n0000" + b"0000" + b"0013status=success\n0000")
    assert ghost.oid.encode() in out.stderr


def test_local_filter_wins_over_a_global_git_lfs_install(tmp_path: Path, env: dict[str, str], hub) -> None:
    """With git-lfs installed globally (``git lfs install`` in HOME) the clone's local config still runs the
    helper's filter: the checkout works on a PATH without git-lfs."""
    lfs_env = git_env(tmp_path, lfs=True, endpoint=hub.endpoint, token=hub.admin_token)  # same HOME as env
    git(lfs_env, tmp_path, "lfs", "install", "--skip-repo")
    assert "git-lfs filter-process" in git(env, tmp_path, "config", "--global", "filter.lfs.process").stdout.decode()
    files = {"w.bin": os.urandom(3000)}
    repo = hub_clone(env, hub, tmp_path, files)
    git(env, repo, "checkout", "-q", "main")
    assert (repo / "w.bin").read_bytes() == files["w.bin"]


def _placing_server(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    data: bytes) -> tuple[FilterServer, LfsPointer, Path]:
    """A filter server on a local repo whose worktree holds ``data``'s pointer file (as git writes it) and
    whose store holds ``data`` itself."""
    repo = _local_repo(env, tmp_path / "r")
    pointer = pointer_of(data)
    LfsStore(repo / ".git").put_verified(data, pointer)
    (repo / "w.bin").write_bytes(pointer.to_bytes())
    monkeypatch.chdir(repo)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    server = FilterServer(PktLine(io.BytesIO(), io.BytesIO()), repo / ".git", repo)
    return server, pointer, repo / "w.bin"


def test_a_deferred_object_is_written_into_gits_pointer_file(tmp_path: Path, env: dict[str, str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Placing writes the object into the pointer file itself (same inode and mode, no inode freed)."""
    data = os.urandom(300_000)
    server, pointer, work = _placing_server(env, tmp_path, monkeypatch, data)
    work.chmod(0o755)
    old = work.lstat()
    assert server._place("w.bin", pointer, old, verify=True) is None
    assert work.read_bytes() == data
    now = work.lstat()
    assert (now.st_ino, stat.S_IMODE(now.st_mode)) == (old.st_ino, 0o755)


def test_a_placement_that_fails_puts_the_pointer_back(tmp_path: Path, env: dict[str, str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails half-way (a full disk: faked, the one fault a test cannot cause on demand) leaves
    git's pointer file as it was, and says why; a corrupt store object is refused before a byte is written."""
    data = os.urandom(300_000)
    server, pointer, work = _placing_server(env, tmp_path, monkeypatch, data)

    def half_then_full(src: Path, fd: int, size: int, clone: bool = True) -> bool:
        os.pwrite(fd, data[:size // 2], 0)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(filter_process, "_copy_into", half_then_full)
    why = server._place("w.bin", pointer, work.lstat(), verify=False)
    assert why is not None and "No space left on device" in why
    assert work.read_bytes() == pointer.to_bytes()
    monkeypatch.undo()
    server.store.path(pointer.oid).write_bytes(b"\0" * len(data))  # damaged behind the store's back
    why = server._place("w.bin", pointer, work.lstat(), verify=True)
    assert why is not None and "corrupt" in why
    assert work.read_bytes() == pointer.to_bytes()
