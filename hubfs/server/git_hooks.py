"""Git hooks run by ``git receive-pack`` on the hub (``python -m hubfs.server.git_hooks pre-receive``).

pre-receive applies the Hub's push rules to the objects of the push, which git keeps in a
quarantine until every hook agrees, so a refused push changes nothing:

- only branches and tags may be pushed, with valid names, and the default branch is never deleted;
- a file of ``HUBFS_REGULAR_MAX`` bytes (10 MiB) or more must be stored with Git LFS;
- every LFS pointer must name an object this repo uploaded to the hub's LFS store.

post-receive (the push is in) queues the push's webhook deliveries (:mod:`hubfs.server.events`).

Messages go to stderr, which git shows to the pusher as ``remote:`` lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hubfs.config import HookEnv
from hubfs.errors import InvalidNameError
from hubfs.lfs import POINTER_MAX_SIZE, LfsPointer
from hubfs.paths import validate_ref_name
from hubfs.server.db import open_database
from hubfs.server.db.url import database_url
from hubfs.server.lfs_store import LfsStore
from hubfs.server.metadata import Metadata
from hubfs.server.objects import Objects
from hubfs.server.xet.store import XetStore

ZERO = "0" * 40


def write_hook(hooks: Path, name: str, script: str) -> Path:
    """Make ``hooks/name`` the executable ``script``, atomically: a push running the hook while another
    process (re)installs it sees the old file or the new one, never half of one. No-op when unchanged."""
    hooks.mkdir(exist_ok=True)
    path = hooks / name
    try:
        if path.read_text() == script and os.access(path, os.X_OK):
            return path
    except OSError:
        pass
    tmp = hooks / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(script)
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return path


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def check_ref_updates(updates: list[tuple[str, str, str]]) -> list[str]:
    """Problems with the refs themselves (names, kinds, deleting main)."""
    problems = []
    for _, new, ref in updates:
        prefix = next((p for p in ("refs/heads/", "refs/tags/") if ref.startswith(p)), None)
        if prefix is None:
            problems.append(f"{ref}: only branches (refs/heads/*) and tags (refs/tags/*) can be pushed.")
            continue
        try:
            validate_ref_name(ref[len(prefix):], "branch" if prefix == "refs/heads/" else "tag")
        except InvalidNameError as exc:
            problems.append(f"{ref}: {exc}")
        if new == ZERO and ref == "refs/heads/main":
            problems.append("refs/heads/main: the default branch cannot be deleted.")
    return problems


def new_objects(tips: list[str]) -> list[tuple[str, str]]:
    """(sha, path) of every object reachable from ``tips`` and from no existing ref."""
    if not tips:
        return []
    out = subprocess.run(["git", "rev-list", "--objects", *tips, "--not", "--all"],
                         capture_output=True, text=True, check=True).stdout
    objects = []
    for line in out.splitlines():
        sha, _, path = line.partition(" ")
        objects.append((sha, path))
    return objects


def _git(git_dir: Path | None) -> list[str]:
    return ["git", f"--git-dir={git_dir}"] if git_dir is not None else ["git"]


def object_sizes(shas: list[str], git_dir: Path | None = None) -> list[tuple[str, str, int]]:
    """(sha, type, size) of each object, from ``git cat-file --batch-check`` (in GIT_DIR or ``git_dir``)."""
    if not shas:
        return []
    out = subprocess.run([*_git(git_dir), "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)"],
                         input="\n".join(shas) + "\n", capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        sha, kind, size = line.split()
        rows.append((sha, kind, int(size)))
    return rows


def read_pointers(blob_shas: list[str], git_dir: Path | None = None) -> list[tuple[str, LfsPointer]]:
    """(blob sha, pointer) for each blob (of at most POINTER_MAX_SIZE bytes) that is an LFS pointer."""
    if not blob_shas:
        return []
    raw = subprocess.run([*_git(git_dir), "cat-file", "--batch"], input=("\n".join(blob_shas) + "\n").encode(),
                         capture_output=True, check=True).stdout
    found, pos = [], 0
    while pos < len(raw):
        header_end = raw.index(b"\n", pos)
        sha, _, size = raw[pos:header_end].decode().split()
        data = raw[header_end + 1: header_end + 1 + int(size)]
        pos = header_end + 1 + int(size) + 1
        pointer = LfsPointer.parse(data)
        if pointer is not None:
            found.append((sha, pointer))
    return found


def check_blobs(objects: list[tuple[str, str]], regular_max: int,
                lfs_ok: Callable[[LfsPointer], bool]) -> list[str]:
    """Problems with pushed files: big non-LFS blobs, and LFS pointers whose object the hub lacks."""
    if not objects:
        return []
    paths = {sha: path for sha, path in objects if path}
    problems, small = [], []
    for sha, kind, size in object_sizes([sha for sha, _ in objects]):
        if kind != "blob":
            continue
        if size >= regular_max:
            problems.append(f"{paths.get(sha, sha)} is {_mib(size)}: files of {_mib(regular_max)} or more must be "
                            f"stored with Git LFS. Run `git lfs track \"{_pattern(paths.get(sha, ''))}\"`, "
                            "`git add .gitattributes`, re-add the file and commit again (or `git lfs migrate import`).")
        elif size <= POINTER_MAX_SIZE:
            small.append(sha)
    for sha, pointer in read_pointers(small):
        if not lfs_ok(pointer):
            problems.append(f"{paths.get(sha, sha)}: its Git LFS object {pointer.oid} ({pointer.size} bytes) was "
                            "not uploaded to this hub. Install git-lfs (`git lfs install`) and push again.")
    return problems


def _pattern(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return f"*.{name.rsplit('.', 1)[1]}" if "." in name else (path or "FILE")


def pre_receive(stdin: str, env: dict[str, str]) -> list[str]:
    updates = [tuple(line.split()) for line in stdin.splitlines() if line.strip()]
    problems = check_ref_updates(updates)  # type: ignore[arg-type]
    hook = HookEnv.read(env)
    db = open_database(database_url(hook.data))  # the hub's database: hub.sqlite or PostgreSQL
    try:
        meta = Metadata(db)
        repo = meta.get_repo(hook.repo_type, hook.repo_id)
        lfs = LfsStore(hook.data)
        objects = Objects(lfs, XetStore(hook.data, lfs.tmp_dir, db))

        def lfs_ok(pointer: LfsPointer) -> bool:
            return repo is not None and objects.has(pointer.oid, pointer.size) and meta.lfs_linked(repo, pointer.oid)

        tips = [new for _, new, _ in updates if new != ZERO]
        problems += check_blobs(new_objects(tips), hook.regular_max, lfs_ok)
    finally:
        db.close()
    return problems


def main(argv: list[str]) -> int:
    if argv[1:] == ["post-receive"]:  # the push is in: queue its webhook deliveries (never fails the push)
        from hubfs.server.events import post_receive  # only here: pre-receive stays light

        try:
            post_receive(sys.stdin.read(), dict(os.environ))
        except Exception as exc:  # noqa: BLE001 - a webhook problem must not look like a failed push
            print(f"hubfs: webhook events of this push were not queued: {exc}", file=sys.stderr)
        return 0
    if argv[1:] != ["pre-receive"]:
        print(f"hubfs git hook: unknown hook {argv[1:]}", file=sys.stderr)
        return 1
    problems = pre_receive(sys.stdin.read(), dict(os.environ))
    if problems:
        print("hubfs: push rejected:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
