"""What the git-remote-hf tests share besides fixtures (which live in conftest.py): running git in an
isolated environment, names, content and ref listings. Imported by its unique module name, never as
``conftest`` (several conftest.py files share that name in one pytest run)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from hub_server import HubServer

if TYPE_CHECKING:  # huggingface_hub reads HF_ENDPOINT at import, and the git_remote conftest (which imports
    from huggingface_hub import HfApi  # this module) loads before tests/conftest.py sets it when its folder is named

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
        proc = subprocess.run(["git", *args], cwd=cwd, env=self.env(**env), capture_output=True, timeout=120, check=False,
                              input=input.decode("latin-1") if input is not None else None, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    __call__ = run

    def out(self, *args: str, cwd: Path | None = None, **env: str | None) -> str:
        return self.run(*args, cwd=cwd, **env).stdout.strip()

    def with_token(self, token: str | None) -> Git:
        return Git(self.home, self.bin_dir, self.endpoint, token)


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
    return random.Random(seed).randbytes(n)


# files of the LFS fixture repos: small text, two LFS objects (by the default .gitattributes), nested paths
CONTENT: dict[str, bytes] = {
    "README.md": b"# test model\n",
    "config.json": b'{"hidden_size": 8}\n',
    "sub/dir/notes.txt": "caf\u00e9 \u2713\n".encode(),
    "model.safetensors": random_bytes(300_000, 1),
    "weights/w1.bin": random_bytes(150_000, 2),
}


def worktree_files(root: Path) -> dict[str, bytes]:
    """Every file of a worktree (not .git), by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".git/") and rel != ".git":
            out[rel] = path.read_bytes()
    return out


def hub_refs(api: HfApi, repo_id: str, repo_type: str | None = None) -> dict[str, str]:
    """The hub's branches and tags through its REST API (tags peeled to their commit), as git ref names."""
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    out = {b.ref: b.target_commit for b in refs.branches}
    out.update({t.ref: t.target_commit for t in refs.tags})
    return out
