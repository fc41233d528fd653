"""The speed paths of a clone, each with its off switch, with real git and no git-lfs on PATH: the LFS download
in a background process that the checkout overlaps (and the filter's fallback when it leaves objects out),
smudged bytes framed in large writes, and the lean imports of the executable."""

from __future__ import annotations

import fcntl
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from lfs_fixtures import VENV_BIN, commit_files, git, git_env, hub_clone, new_repo, pointer_of
from proxy import Proxy

from git_remote_hf.background import STATUS_FILE
from git_remote_hf.lfs_store import LfsStore
from git_remote_hf.pktline import MAX_DATA, PktLine
from git_remote_hf.trace import TRACE_ENV
from hubfs.client.api import HubClient


@pytest.fixture
def env(tmp_path: Path, hub) -> dict[str, str]:
    return git_env(tmp_path, lfs=False, endpoint=hub.endpoint, token=hub.admin_token)


def marks(trace: Path) -> list[tuple[int, str, str, str]]:
    """``(pid, role, phase, detail)`` of each line of a GIT_REMOTE_HF_TRACE file."""
    out = []
    for line in trace.read_text().splitlines():
        _, pid, role, phase, *detail = line.split(" ", 4)
        out.append((int(pid), role, phase, detail[0] if detail else ""))
    return out


def own_fetches(trace: Path) -> int:
    """How many objects the filter fetched itself (the fallback)."""
    return sum(int(detail.split()[0]) for _, role, phase, detail in marks(trace) if (role, phase) == ("filter", "own-fetch"))


def checkout_until_first_smudge(repo: Path, env: dict[str, str], trace: Path,
                                options: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """``git checkout -q main`` in ``repo``, started, once its filter has had its first smudge (and 0.2 s
    more: the answers to the first requests are given)."""
    checkout = subprocess.Popen(["git", *options, "checkout", "-q", "main"], cwd=repo,
                                env={**env, TRACE_ENV: str(trace)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (trace.exists() and "first-smudge" in trace.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    return checkout


@pytest.mark.parametrize("switch", ["default", "config-once-off", "early-env-off", "early-config-off", "env-off",
                                    "config-off"])
def test_clone_downloads_lfs_in_the_background_or_in_the_helper(tmp_path: Path, env: dict[str, str], hub,
                                                                switch: str) -> None:
    """By default a child process, started from the hub's tree listing before the pack arrives, downloads
    while git fetches and checks out (with parallel checkout), and the filter takes every object from it;
    with the early start off the child starts once the pack is in (from the trees); with the background
    download off, the helper downloads before it answers. Same worktree every way."""
    files = {f"w/{i:02d}.bin": os.urandom(20_000 + i) for i in range(40)}
    files.update({f"t/{i:02d}.txt": b"text %d\n" % i for i in range(60)})
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
    trace = tmp_path / "trace"
    run_env, options = {**env, TRACE_ENV: str(trace)}, []
    if switch == "env-off":
        run_env["GIT_REMOTE_HF_BACKGROUND"] = "0"
    elif switch == "config-off":
        options = ["-c", "hf.lfs.background=false", "-c", "checkout.workers=1"]
    elif switch == "config-once-off":  # a git config call per lookup and per setting: the same clone
        run_env["GIT_REMOTE_HF_CONFIG_ONCE"] = "0"
    elif switch == "early-env-off":
        run_env["GIT_REMOTE_HF_EARLY"] = "0"
    elif switch == "early-config-off":
        options = ["-c", "hf.lfs.early=false"]
    git(run_env, tmp_path, "clone", "-q", *options, f"hf://{repo_id}", "c")
    repo = tmp_path / "c"
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    assert git(env, repo, "status", "--porcelain").stdout == b""
    git(env, repo, "fsck", "--full")
    seen = marks(trace)
    helper = {pid for pid, role, _, _ in seen if role == "helper"}
    child = [(pid, phase, detail) for pid, role, phase, detail in seen if role == "prefetch"]
    phases = [phase for _, _, phase, _ in seen]
    if switch in ("default", "config-once-off"):
        assert "early-prefetch" in phases and "background-prefetch" not in phases
        assert phases.index("early-prefetch") < phases.index("pack-received")  # before the pack was in
        assert ("listed", "40 objects") in [(phase, detail) for _, phase, detail in child]
    elif switch.startswith("early"):
        assert any(phase == "background-prefetch" and detail.endswith("40 objects") for _, _, phase, detail in seen)
        assert "early-prefetch" not in phases
    if switch in ("env-off", "config-off"):
        assert not child and "background-prefetch" not in phases and "early-prefetch" not in phases
    else:
        assert child and {pid for pid, _, _ in child}.isdisjoint(helper)  # another process
        assert ("done", "0 failed") in [(phase, detail) for _, phase, detail in child]
    assert own_fetches(trace) == 0  # the filter found every object stored, or brought by the child
    # parallel checkout (one worker per core) unless the user chose a number of workers
    workers = git(env, repo, "config", "--local", "checkout.workers").stdout.strip()
    assert workers == (b"1" if switch == "config-off" else b"0")
    assert not (repo / ".git/lfs" / STATUS_FILE).exists()


def test_filter_follows_the_background_download_and_fetches_what_it_left(tmp_path: Path, env: dict[str, str],
                                                                         hub) -> None:
    """The checkout waits for objects the running child brings; one it failed, and the ones it had not
    reached when it ended, the filter fetches itself. This test plays the child (the status file and its lock)."""
    files = {f"w{i}.bin": os.urandom(5000 + i) for i in range(6)}
    files["plain.txt"] = b"plain\n"
    repo = hub_clone(env, hub, tmp_path, files)
    store, ptr = LfsStore(repo / ".git"), {name: pointer_of(data) for name, data in files.items()}
    fd = os.open(repo / ".git/lfs" / STATUS_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"".join(b"want %s\n" % ptr[f"w{i}.bin"].oid.encode() for i in range(6)))
        store.put_verified(files["w0.bin"], ptr["w0.bin"])
        os.write(fd, b"ok %s\n" % ptr["w0.bin"].oid.encode())
        trace = tmp_path / "trace"
        checkout = checkout_until_first_smudge(repo, env, trace)  # the filter answered "delayed" for w1..w5
        assert checkout.poll() is None
        store.put_verified(files["w1.bin"], ptr["w1.bin"])
        os.write(fd, b"ok %s\n" % ptr["w1.bin"].oid.encode())
        os.write(fd, b"fail %s the server said no\n" % ptr["w2.bin"].oid.encode())
    finally:
        os.close(fd)  # the child ends, w3..w5 never came
    _, err = checkout.communicate(timeout=60)
    assert checkout.returncode == 0, err
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    assert git(env, repo, "status", "--porcelain").stdout == b""
    assert own_fetches(trace) == 4  # w2..w5; w0 and w1 came from the child


@pytest.mark.parametrize("verify", [False, True])
def test_objects_the_clone_downloaded_are_not_hashed_twice_unless_asked(tmp_path: Path, env: dict[str, str], hub,
                                                                       verify: bool) -> None:
    """An object the running child reported stored (it hashed it as it arrived) is sent without a second
    hash; with hf.lfs.verifySmudge=true every object is hashed again, and one damaged since is refused.
    The store object is damaged behind the child's back here to tell the two apart."""
    files = {"w.bin": os.urandom(200_000)}
    repo = hub_clone(env, hub, tmp_path, files)
    if verify:
        git(env, repo, "config", "hf.lfs.verifySmudge", "true")
    pointer = pointer_of(files["w.bin"])
    damaged = b"\xff" * pointer.size
    LfsStore(repo / ".git").path(pointer.oid).parent.mkdir(parents=True)
    LfsStore(repo / ".git").path(pointer.oid).write_bytes(damaged)
    fd = os.open(repo / ".git/lfs" / STATUS_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"want %s\nok %s\n" % (pointer.oid.encode(), pointer.oid.encode()))
        proc = git(env, repo, "checkout", "-q", "main", check=False)
    finally:
        os.close(fd)
    if verify:
        assert proc.returncode != 0 and b"corrupt" in proc.stderr
        assert not (repo / "w.bin").exists() or (repo / "w.bin").read_bytes() != damaged
    else:
        assert proc.returncode == 0, proc.stderr
        assert (repo / "w.bin").read_bytes() == damaged  # trusted: the download's own check stands


START_CHILD = """import sys
from pathlib import Path
from git_remote_hf import background
from git_remote_hf.lfs_select import wanted_objects
from hubfs.client.api import HubClient
git_dir, tip, endpoint, token = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
client = HubClient(endpoint, token)
assert background.start(git_dir, client, endpoint + "/" + sys.argv[5] + ".git/info/lfs", wanted_objects(git_dir, [tip]))
"""


def test_the_child_ends_when_the_repository_is_removed(tmp_path: Path, env: dict[str, str], hub) -> None:
    """A helper that started the background download exits while the child still downloads (here through a
    slow link); removing the clone ends the child, which recreates nothing there."""
    files = {f"w{i}.bin": os.urandom(300_000 + i) for i in range(12)}
    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
    proxy = Proxy(int(hub.endpoint.rsplit(":", 1)[1]), rate=100_000)  # 3 s per object and connection
    trace = tmp_path / "trace"
    try:
        git(env, tmp_path, "clone", "-q", "--no-checkout", f"hf://{repo_id}", "c")  # downloads no LFS object
        assert not any(p.is_file() for p in (tmp_path / "c/.git/lfs").rglob("*"))
        tip = git(env, tmp_path / "c", "rev-parse", "HEAD").stdout.decode().strip()
        subprocess.run([sys.executable, "-c", START_CHILD, str(tmp_path / "c/.git"), tip, proxy.endpoint,
                        hub.admin_token, repo_id], env={**os.environ, TRACE_ENV: str(trace)}, check=True, timeout=60)
        child = {int(detail.split()[1].rstrip(",")) for _, _, phase, detail in marks(trace)
                 if phase == "background-prefetch"}  # "pid N, M objects", at the fork
        assert len(child) == 1 and _alive(*child) and (tmp_path / "c/.git/lfs" / STATUS_FILE).exists()
        subprocess.run(["rm", "-rf", str(tmp_path / "c")], check=True)
        deadline = time.monotonic() + 3  # the download itself would take 6 s more
        while _alive(*child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(*child)
        time.sleep(0.3)
        assert not (tmp_path / "c").exists()
    finally:
        proxy.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child not yet reaped by init counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.parametrize("size", [0, 1, MAX_DATA, MAX_DATA + 1, 16 * MAX_DATA, 16 * MAX_DATA + 7, 40 * MAX_DATA - 3])
def test_content_from_frames_a_file_as_git_reads_it(tmp_path: Path, size: int) -> None:
    """Packets of at most 65,516 bytes, many to a write, that read back as the file's bytes."""
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    out, seen = io.BytesIO(), []
    with open(tmp_path / "f", "rb", buffering=0) as f:
        sent = PktLine(io.BytesIO(), out).content_from(f, lambda view: seen.append(bytes(view)))
    assert sent == size and b"".join(seen) == data
    out.write(b"0000")
    packets = list(PktLine(io.BytesIO(out.getvalue()), io.BytesIO()).read_content())
    assert b"".join(packets) == data and all(0 < len(p) <= MAX_DATA for p in packets)


def test_content_from_reuses_its_buffer_without_leaking_an_earlier_file(tmp_path: Path) -> None:
    """One PktLine sends a large file, then a small one: the second answer carries only its own bytes."""
    big, small = os.urandom(3 * MAX_DATA + 5), os.urandom(10)
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "small").write_bytes(small)
    out = io.BytesIO()
    pkt = PktLine(io.BytesIO(), out)
    for name in ("big", "small"):
        with open(tmp_path / name, "rb", buffering=0) as f:
            pkt.content_from(f)
        out.write(b"0000")
    reader = PktLine(io.BytesIO(out.getvalue()), io.BytesIO())
    assert b"".join(reader.read_content()) == big
    assert b"".join(reader.read_content()) == small


def test_an_answer_held_for_sending_reaches_git_in_one_write() -> None:
    """Status, content and flushes written with ``send=False`` go out together, at the last flush."""
    writes: list[bytes] = []

    class Pipe(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            writes.append(bytes(data))
            return len(data)

    pkt = PktLine(io.BytesIO(), io.BufferedWriter(Pipe()))
    pkt.text("status=success", send=False)
    pkt.content([b"x" * 100])
    pkt.flush(send=False)
    assert writes == []
    pkt.flush()
    assert len(writes) == 1
    reader = PktLine(io.BytesIO(writes[0]), io.BytesIO())
    assert reader.read_list() == ["status=success"]
    assert b"".join(reader.read_content()) == b"x" * 100
    assert reader.read_list() == []


@pytest.mark.parametrize("lean", ["1", "0"])
def test_the_executable_skips_async_backends_unless_told_not_to(tmp_path: Path, lean: str) -> None:
    """git starts the helper and the filter for every clone: httpcore's async backends (trio, anyio) stay
    unimported; GIT_REMOTE_HF_LEAN_IMPORTS=0 leaves the imports as they are."""
    probe = ("import sys\nfrom git_remote_hf.__main__ import main\nmain(['origin', 'hf://a/b'])\n"
             "import httpcore\nprint(sorted(m for m in ('trio', 'anyio') if sys.modules.get(m) is not None))\n")
    out = subprocess.run([str(VENV_BIN / "python"), "-c", probe], input=b"", capture_output=True, check=True,
                         env={**os.environ, "GIT_REMOTE_HF_LEAN_IMPORTS": lean, "GIT_DIR": str(tmp_path)}).stdout
    loaded = out.decode().strip()
    if lean == "1":
        assert loaded == "[]"
    else:  # as installed: the test environment has both (selenium brings trio)
        assert loaded == str(sorted(m for m in ("trio", "anyio") if _importable(m)))


def _importable(name: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, check=False).returncode == 0


def index_sizes(env: dict[str, str], repo: Path) -> dict[str, int]:
    """Path -> the size git's index caches for it (``git ls-files --debug``; it does not refresh)."""
    out, path = {}, ""
    for line in git(env, repo, "ls-files", "--debug").stdout.decode().splitlines():
        if not line.startswith(" "):
            path = line
        elif line.strip().startswith("size:"):
            out[path] = int(line.split()[1])
    return out


@pytest.mark.parametrize("switch", ["default", "env-off", "config-off"])
def test_a_checkout_during_the_download_writes_pointers_and_places_objects_when_git_is_done(
        tmp_path: Path, env: dict[str, str], hub, switch: str) -> None:
    """Deferred checkout: while the clone's download runs (played here: the status file and its lock), git
    writes each LFS file's pointer and the filter puts the object in its place when git is done, with the
    pointer file's mode, and gives its index entry the new file's stat: the worktree, ``git status`` and
    ``fsck`` are as after a plain checkout. One object the download failed the filter fetches itself. Off:
    git writes the objects it gets through the filter."""
    files = {f"w/{i:02d}.bin": os.urandom(300_000 + i) for i in range(8)}
    files["t.txt"] = b"text\n"
    files["small.bin"] = os.urandom(5_000)  # under DEFER_MIN, still to come: deferred too (not delayed)
    files["here.bin"] = os.urandom(5_000)  # under DEFER_MIN and stored already: through git's pipe
    repo = hub_clone(env, hub, tmp_path, files)
    store = LfsStore(repo / ".git")
    store.put_verified(files["here.bin"], pointer_of(files["here.bin"]))
    ptr = {name: pointer_of(data) for name, data in files.items() if name.endswith(".bin") and name != "here.bin"}
    trace = tmp_path / "trace"
    run_env, options = dict(env), ()
    if switch == "env-off":
        run_env["GIT_REMOTE_HF_DEFER"] = "0"
    elif switch == "config-off":
        options = ("-c", "hf.lfs.deferCheckout=false")
    fd = os.open(repo / ".git/lfs" / STATUS_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"".join(b"want %s\n" % p.oid.encode() for p in ptr.values()))
        checkout = checkout_until_first_smudge(repo, run_env, trace, options)
        for name, pointer in ptr.items():
            if name != "w/07.bin":
                store.put_verified(files[name], pointer)
                os.write(fd, b"ok %s\n" % pointer.oid.encode())
        os.write(fd, b"fail %s the server said no\n" % ptr["w/07.bin"].oid.encode())
    finally:
        os.close(fd)  # the download ends
    _, err = checkout.communicate(timeout=60)
    assert checkout.returncode == 0, err
    for name, content in files.items():
        assert (repo / name).read_bytes() == content
    seen = [(phase, detail) for _, role, phase, detail in marks(trace) if role == "filter"]
    if switch == "default":
        assert ("placed", "9 files, 0 left") in seen  # w/*.bin and small.bin; here.bin came through the pipe
        sizes = index_sizes(env, repo)
        # the placed files' own stat (0 would be git's "racily clean" mark; git never wrote 300 KB there)
        assert all(sizes[name] == len(files[name]) for name in ptr if name.startswith("w/"))
        assert not list(repo.glob("w/.*.hf-*"))  # no temporary file left behind
    else:
        assert not any(phase == "place-start" for phase, _ in seen)
    assert own_fetches(trace) == 1  # w/07.bin, which the download failed
    assert git(env, repo, "status", "--porcelain").stdout == b""
    git(env, repo, "fsck", "--full")


def test_an_object_that_cannot_be_had_leaves_its_pointer_and_says_so(tmp_path: Path, env: dict[str, str],
                                                                     hub) -> None:
    """The download failed an object and the hub no longer answers for it (the remote points nowhere):
    the checkout ends, the file stays its pointer (consistent with the index), and stderr names it."""
    files = {"w.bin": os.urandom(400_000), "v.bin": os.urandom(400_001)}
    repo = hub_clone(env, hub, tmp_path, files)
    git(env, repo, "remote", "set-url", "origin", "hf://nobody/nothing-here")
    store, ptr = LfsStore(repo / ".git"), {n: pointer_of(d) for n, d in files.items()}
    fd = os.open(repo / ".git/lfs" / STATUS_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"want %s\nwant %s\n" % (ptr["w.bin"].oid.encode(), ptr["v.bin"].oid.encode()))
        checkout = checkout_until_first_smudge(repo, env, tmp_path / "trace")  # both pointers written, deferred
        store.put_verified(files["v.bin"], ptr["v.bin"])
        os.write(fd, b"ok %s\nfail %s gone\n" % (ptr["v.bin"].oid.encode(), ptr["w.bin"].oid.encode()))
    finally:
        os.close(fd)
    _, err = checkout.communicate(timeout=60)
    assert checkout.returncode == 0, err  # git was done before the object failed
    assert (repo / "v.bin").read_bytes() == files["v.bin"]
    assert (repo / "w.bin").read_bytes() == ptr["w.bin"].to_bytes()
    assert b"w.bin" in err and b"left as its LFS pointer" in err
    assert git(env, repo, "status", "--porcelain").stdout == b""  # the index holds the pointer git wrote
