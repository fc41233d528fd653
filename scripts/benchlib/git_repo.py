"""The repository ``scripts/bench_git.py`` clones, and running git for it: a fresh HOME with git-lfs,
the content (small text files + LFS files of random bytes, seeded), the push to the hub, a bare copy
for git http-backend, and the check every clone passes."""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_NAME = "bench-git"
REPO_ID = f"admin/{REPO_NAME}"
MIB = 1 << 20
SMALL_DIRS = 40
LFS_DIR = "weights"
WORDS = ["tensor", "layer", "weight", "bias", "model", "token", "hub", "commit", "branch", "merge", "file", "shard",
         "config", "vocab", "embedding", "attention", "head", "norm", "dropout", "batch", "epoch", "gradient",
         "optimizer", "schedule"]


# -- processes and git ---------------------------------------------------------------------------


def git_env(home: Path) -> dict[str, str]:
    """This process's environment without git/LFS/proxy settings, with its own HOME and no system config."""
    drop = ("GIT_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    """Run a command, returning its stdout; on failure raise with its stderr."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    t0 = time.monotonic()
    run(argv, env, cwd)
    return time.monotonic() - t0


def setup_home(home: Path) -> dict[str, str]:
    """A fresh HOME with ``git lfs install`` done (the smudge/clean filters in its ~/.gitconfig)."""
    home.mkdir(parents=True)
    env = git_env(home)
    run(["git", "lfs", "install"], env)
    run(["git", "config", "--global", "init.defaultBranch", "main"], env)
    return env


# -- the content ---------------------------------------------------------------------------------


def lfs_size(args: argparse.Namespace) -> int:
    """Bytes of each LFS file: ``--lfs-kib`` when given, else ``--lfs-mib``."""
    return args.lfs_kib * 1024 if args.lfs_kib else args.lfs_mib * MIB


@dataclass
class Source:
    """The local repository pushed to both servers, and what a correct clone holds."""

    path: Path
    head: str = ""
    small: list[str] = field(default_factory=list)
    lfs: list[str] = field(default_factory=list)
    lfs_size: int = 0
    samples: dict[str, str] = field(default_factory=dict)  # LFS path -> sha256
    oids: list[str] = field(default_factory=list)  # sha256 of every LFS file, in path order

    @property
    def lfs_store(self) -> Path:
        return self.path / ".git" / "lfs" / "objects"


def small_text(i: int) -> bytes:
    """Deterministic text of 200 B to 4 KiB."""
    rng = random.Random(i)
    size = rng.randint(200, 4096)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word + ("\n" if rng.random() < 0.1 else " "))
        length += len(words[-1])
    return "".join(words).encode()[:size]


def write_small_files(root: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        rel = f"docs/part{i % SMALL_DIRS:02d}/file{i:05d}.txt"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(small_text(i))
        paths.append(rel)
    return paths


def write_lfs_files(root: Path, count: int, size: int) -> tuple[list[str], dict[str, str], list[str]]:
    """``count`` files of ``size`` seeded random bytes; returns their paths, the sha256 of three, and all oids."""
    (root / LFS_DIR).mkdir(exist_ok=True)
    paths, samples, oids = [], {}, []
    sample_idx = {0, count // 2, count - 1}
    for i in range(count):
        rel = f"{LFS_DIR}/w{i:03d}.bin"
        data = random.Random(1_000_000 + i).randbytes(size)
        (root / rel).write_bytes(data)
        paths.append(rel)
        oids.append(hashlib.sha256(data).hexdigest())
        if i in sample_idx:
            samples[rel] = oids[-1]
    return paths, samples, oids


def build_source(path: Path, hub_url: str, env: dict[str, str], args: argparse.Namespace) -> Source:
    """Clone the fresh hub repo (its initial commit and .gitattributes), add the files, commit."""
    run(["git", "clone", "-q", hub_url, str(path)], env)
    attrs = (path / ".gitattributes").read_text()
    if "*.bin" not in attrs or "filter=lfs" not in attrs:
        raise RuntimeError(f"the hub's .gitattributes does not route *.bin to LFS:\n{attrs}")
    run(["git", "lfs", "install", "--local"], env, path)
    src = Source(path, lfs_size=lfs_size(args))
    t0 = time.monotonic()
    src.small = write_small_files(path, args.files)
    src.lfs, src.samples, src.oids = write_lfs_files(path, args.lfs_objects, src.lfs_size)
    run(["git", "add", "-A"], env, path)
    run(["git", "commit", "-q", "-m", f"bench: {args.files} small files, {args.lfs_objects} LFS objects"], env, path)
    src.head = run(["git", "rev-parse", "HEAD"], env, path)
    stored = sum(1 for _ in src.lfs_store.glob("*/*/*"))
    if stored < len(src.lfs):
        raise RuntimeError(f"git-lfs stored {stored} objects, expected {len(src.lfs)}")
    print(f"built {len(src.small)} small + {len(src.lfs)} LFS files ({len(src.lfs) * src.lfs_size / MIB:.0f} MiB), "
          f"commit {src.head[:12]}, in {time.monotonic() - t0:.1f}s", flush=True)
    return src


def push_to_hub(src: Source, push_url: str, env: dict[str, str]) -> float:
    """``git push`` (credentials in the URL): the git objects, and the LFS objects via git-lfs pre-push."""
    run(["git", "remote", "set-url", "--push", "origin", push_url], env, src.path)
    seconds = timed(["git", "push", "origin", "main"], env, src.path)
    return seconds


def make_bare(src: Source, root: Path, env: dict[str, str]) -> Path:
    """A packed bare copy for git http-backend (``--no-local``: one pack, like a pushed repo)."""
    root.mkdir()
    bare = root / f"{REPO_NAME}.git"
    run(["git", "clone", "-q", "--bare", "--no-local", str(src.path), str(bare)], env)
    return bare


def create_hub_repo(endpoint: str, token: str) -> None:
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # must be set before huggingface_hub is imported
    from huggingface_hub import HfApi

    HfApi(endpoint=endpoint, token=token).create_repo(REPO_ID)


def check_clone(path: Path, src: Source, env: dict[str, str], smudged: bool) -> None:
    """HEAD is the source commit; every file is there; LFS files are content (sizes, 3 sha256) or pointers."""
    head = run(["git", "rev-parse", "HEAD"], env, path)
    if head != src.head:
        raise RuntimeError(f"{path}: HEAD {head} != source {src.head}")
    missing = [p for p in src.small + src.lfs if not (path / p).is_file()]
    if missing:
        raise RuntimeError(f"{path}: {len(missing)} files missing, e.g. {missing[:3]}")
    if not smudged:
        pointer = (path / src.lfs[0]).read_bytes()
        if not pointer.startswith(b"version https://git-lfs"):
            raise RuntimeError(f"{path}: {src.lfs[0]} is not an LFS pointer after a skip-smudge clone")
        return
    wrong = [p for p in src.lfs if (path / p).stat().st_size != src.lfs_size]
    if wrong:
        raise RuntimeError(f"{path}: {len(wrong)} LFS files have the wrong size, e.g. {wrong[:3]}")
    for rel, digest in src.samples.items():
        got = hashlib.sha256((path / rel).read_bytes()).hexdigest()
        if got != digest:
            raise RuntimeError(f"{path}: sha256 of {rel} is {got}, expected {digest}")
