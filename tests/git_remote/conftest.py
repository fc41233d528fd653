"""Fixtures of the git-remote-hf tests: stock git (Debian's 2.39) and the venv's ``git-remote-hf`` against a
hub of these tests (its requests logged, for request budgets), on a PATH without git-lfs.

git finds helpers and git-lfs through PATH, so each PATH is a folder of symlinks: ``git`` and
``git-remote-hf`` (and ``git-lfs`` in :func:`lfs_git` only, for the interop and stock-clone references).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from hub_server import HubServer, RequestLog

HELPER = Path(sys.executable).parent / "git-remote-hf"
MiB = 1 << 20


class Git:
    """Runs git with an isolated HOME, a PATH of only ``bin_dir`` and the hub's endpoint and token."""

    def __init__(self, home: Path, bin_dir: Path, endpoint: str, token: str | None) -> None:
        self.home, self.bin_dir, self.endpoint, self.token = home, bin_dir, endpoint, token

    def env(self, **extra: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GIT_", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"))}
        env.update(HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"), PATH=str(self.bin_dir),
                   GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", HF_ENDPOINT=self.endpoint,
                   HF_TOKEN_PATH=str(self.home / "no-token-file"))
        if self.token:
            env["HF_TOKEN"] = self.token
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, *args: str, cwd: Path | None = None, check: bool = True, input: bytes | None = None,
            **env: str | None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["git", *args], cwd=cwd, env=self.env(**env), capture_output=True, timeout=120,
                              input=input.decode("latin-1") if input is not None else None, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    __call__ = run

    def out(self, *args: str, cwd: Path | None = None, **env: str | None) -> str:
        return self.run(*args, cwd=cwd, **env).stdout.strip()

    def with_token(self, token: str | None) -> Git:
        return Git(self.home, self.bin_dir, self.endpoint, token)


def _bin_dir(root: Path, tools: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, target in tools.items():
        (root / name).symlink_to(target)
    return root


@pytest.fixture(scope="session")
def ghub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A hub for these tests, logging every request it serves (``ghub.log``, a :class:`RequestLog`)."""
    root = tmp_path_factory.mktemp("ghub")
    log = root / "requests.log"
    server = HubServer(root / "hub", env={"HUBFS_REQUEST_LOG": str(log)}).start()
    server.log = RequestLog(log)  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gapi(ghub: HubServer) -> HfApi:
    return HfApi(endpoint=ghub.endpoint, token=ghub.admin_token)


@pytest.fixture(scope="session")
def git_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME with a git identity and nothing about LFS (no `git lfs install`)."""
    home = tmp_path_factory.mktemp("git-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Tester\n\temail = tester@example.com\n"
                                     "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    return home


@pytest.fixture(scope="session")
def git_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PATH folder: git and git-remote-hf, no git-lfs."""
    git = shutil.which("git")
    assert git, "git is needed"
    assert HELPER.exists(), "git-remote-hf is not installed in the venv (pip install -e .)"
    return _bin_dir(tmp_path_factory.mktemp("bin-nolfs"), {"git": git, "git-remote-hf": str(HELPER)})


@pytest.fixture
def hfgit(git_home: Path, git_bin: Path, ghub: HubServer) -> Git:
    """git without git-lfs, with the admin token in HF_TOKEN."""
    assert not (git_bin / "git-lfs").exists()
    return Git(git_home, git_bin, ghub.endpoint, ghub.admin_token)


@pytest.fixture(scope="session")
def lfs_git(tmp_path_factory: pytest.TempPathFactory, ghub: HubServer) -> Git:
    """Stock git with git-lfs installed (`git lfs install` in its own HOME), for reference clones and interop."""
    git, lfs = shutil.which("git"), shutil.which("git-lfs")
    assert git and lfs, "git and git-lfs are needed"
    bin_dir = _bin_dir(tmp_path_factory.mktemp("bin-lfs"), {"git": git, "git-lfs": lfs, "git-remote-hf": str(HELPER)})
    home = tmp_path_factory.mktemp("lfs-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Tester\n\temail = tester@example.com\n"
                                     "[init]\n\tdefaultBranch = main\n")
    g = Git(home, bin_dir, ghub.endpoint, ghub.admin_token)
    g.run("lfs", "install", "--skip-repo")
    return g


def http_url(hub: HubServer, repo_id: str, token: str | None = None, prefix: str = "") -> str:
    """The plain smart-HTTP URL stock git uses (token as the password when given)."""
    netloc = hub.endpoint.split("://", 1)[1]
    auth = f"user:{token}@" if token else ""
    return f"http://{auth}{netloc}/{prefix}{repo_id}"


def fresh_id(prefix: str = "g") -> str:
    return f"admin/{prefix}-{uuid.uuid4().hex[:10]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_bytes(n: int, seed: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


# files of the LFS fixture repos: small text, two LFS objects (by the default .gitattributes), nested paths
CONTENT: dict[str, bytes] = {
    "README.md": b"# test model\n",
    "config.json": b'{"hidden_size": 8}\n',
    "sub/dir/notes.txt": "caf\u00e9 \u2713\n".encode(),
    "model.safetensors": random_bytes(300_000, 1),
    "weights/w1.bin": random_bytes(150_000, 2),
}


@pytest.fixture
def lfs_repo(gapi: HfApi) -> tuple[str, dict[str, bytes]]:
    """A fresh public model repo with CONTENT (two LFS files) uploaded through the REST API."""
    rid = fresh_id("m")
    gapi.create_repo(rid)
    gapi.create_commit(rid, [CommitOperationAdd(path, data) for path, data in CONTENT.items()], commit_message="files")
    return rid, dict(CONTENT)


def worktree_files(root: Path) -> dict[str, bytes]:
    """Every file of a worktree (not .git), by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".git/") and rel != ".git":
            out[rel] = path.read_bytes()
    return out
