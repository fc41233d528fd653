"""Shared pieces of the LFS tests of git-remote-hf: a git environment with or without git-lfs on PATH, a hub
with a request log, repos with LFS files made through the REST API, and a no-checkout clone to fill."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from hubfs.client.api import HubClient
from hubfs.client.commit import Add
from hubfs.lfs import LfsPointer

sys.path.insert(0, str(Path(__file__).parent.parent))
from hub_server import HubServer, RequestLog

VENV_BIN = Path(sys.executable).parent
ATTRS = b"*.bin filter=lfs diff=lfs merge=lfs -text\n"


def pointer_of(data: bytes) -> LfsPointer:
    return LfsPointer(hashlib.sha256(data).hexdigest(), len(data))


def git_env(root: Path, *, lfs: bool, endpoint: str, token: str | None) -> dict[str, str]:
    """An environment whose PATH holds only git, git-remote-hf (the venv's) and, with ``lfs``, git-lfs;
    a fresh HOME and no system config, so nothing but the repo's own config drives the filters."""
    bin_dir = root / ("bin-lfs" if lfs else "bin")
    bin_dir.mkdir(parents=True, exist_ok=True)
    tools = {"git": shutil.which("git"), "git-remote-hf": str(VENV_BIN / "git-remote-hf")}
    if lfs:
        tools["git-lfs"] = shutil.which("git-lfs")
    for name, target in tools.items():
        assert target, f"{name} is not installed"
        if not (bin_dir / name).exists():
            (bin_dir / name).symlink_to(target)
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": str(bin_dir), "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "HF_ENDPOINT": endpoint, "HF_HOME": str(root / "hf_home"), "LANG": "C.UTF-8",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    if token:
        env["HF_TOKEN"] = token
    return env


def git(env: dict[str, str], cwd: Path, *args: str, check: bool = True, stdin: bytes | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, check=False,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc


def commit_files(client: HubClient, repo_id: str, files: dict[str, bytes], message: str = "add") -> str:
    """One commit of ``files`` through the REST API (``*.bin`` become LFS objects); its sha."""
    return client.commit("model", repo_id, [Add(p, data) for p, data in files.items()], message)


def new_repo(client: HubClient) -> str:
    repo_id = f"admin/lfs-{uuid.uuid4().hex[:10]}"
    client.create_repo("model", repo_id)
    return repo_id


def clone_no_checkout(env: dict[str, str], endpoint: str, repo_id: str, dest: Path) -> Path:
    """A stock git clone of the git part only (no checkout, so no filter runs); its ``.git``."""
    git(env, dest.parent, "clone", "-q", "--no-checkout", f"{endpoint}/{repo_id}.git", dest.name)
    return dest / ".git"


def hub_clone(env: dict[str, str], hub: HubServer, tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A no-checkout clone of a new hub repo holding ``files``, set up the way the helper sets up a clone."""
    from git_remote_hf.lfs_store import configure_repo

    with HubClient(hub.endpoint, hub.admin_token) as client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
    git_dir = clone_no_checkout(env, hub.endpoint, repo_id, tmp_path / "clone")
    git(env, git_dir.parent, "remote", "set-url", "origin", f"hf://{repo_id}")
    configure_repo(git_dir)
    return git_dir.parent


def head(env: dict[str, str], repo: Path) -> str:
    return git(env, repo, "rev-parse", "HEAD").stdout.decode().strip()


@contextlib.contextmanager
def log_hub(root: Path) -> Iterator[tuple[HubServer, RequestLog, HubClient]]:
    """A hub of its own in ``root``, with a request log and 1 MiB multipart chunks: (server, log, client)."""
    log = root / "requests.log"
    server = HubServer(root / "data", "--multipart-chunk-size", "1MiB",
                       env={"HUBFS_REQUEST_LOG": str(log)}).start()
    client = HubClient(server.endpoint, server.admin_token)
    try:
        yield server, RequestLog(log), client
    finally:
        client.close()
        server.stop()


def lfs_gets(log: RequestLog) -> list[tuple[str, str, str, str]]:
    """The LFS object downloads the hub served."""
    return [ln for ln in log.lines() if ln[0] == "GET" and "/info/lfs/objects/" in ln[1]]


def env_without(name: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != name}
