"""What the ``git clone`` running this helper was asked, from its command line: whether it checks files out.

git tells a remote helper it is cloning (``option cloning true``) but not whether the clone checks out.
A ``--no-checkout`` clone (then perhaps a sparse checkout of a few files) or a ``--sparse`` one must not
download every LFS object of the tree in the background: as with git-lfs, the objects come when a
checkout smudges them. :func:`checks_out` reads the arguments of the ``git clone`` among this process's
nearest ancestors (git starts the helper through ``git remote-hf``; ``/proc/<pid>/cmdline``, Linux); where
they cannot be read, it says yes (the clone's usual case).
"""

from __future__ import annotations

import os

__all__ = ["checks_out", "clone_args", "clone_process"]

NO_CHECKOUT = {"--no-checkout", "--sparse", "--bare", "--mirror"}
FLAG_LETTERS = set("lsqvn")  # git clone's short options that take no value: -n may hide in -qn


ANCESTORS = 4  # git clone -> git remote-hf -> git-remote-hf, with room for a wrapper


def parent_args(pid: int | None = None) -> list[str] | None:
    """The arguments of process ``pid`` (default: the parent), or None when they cannot be read."""
    try:
        with open(f"/proc/{pid or os.getppid()}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")[:-1]]


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def clone_process() -> tuple[int, list[str]] | None:
    """The pid and command line of the nearest ``git ... clone ...`` among this process's ancestors, or None."""
    pid: int | None = os.getppid()
    for _ in range(ANCESTORS):
        if not pid or pid <= 1:
            return None
        args = parent_args(pid)
        if args and "clone" in args and any(os.path.basename(a).startswith("git") for a in args[:args.index("clone")]):
            return pid, args
        pid = _parent_of(pid)
    return None


def clone_args() -> list[str] | None:
    """The command line of the nearest ``git ... clone ...`` among this process's ancestors, or None."""
    found = clone_process()
    return found[1] if found is not None else None


def checks_out(args: list[str] | None = None) -> bool:
    """Whether the ``git clone`` command line ``args`` (default: :func:`clone_args`) checks a tree out: False for
    ``-n``/``--no-checkout``, ``--sparse``, ``--bare`` and ``--mirror`` given to ``clone``; True otherwise,
    and when ``args`` is no clone or cannot be read."""
    args = clone_args() if args is None else args
    if not args or "clone" not in args:
        return True
    for arg in args[args.index("clone") + 1:]:
        if arg == "--":
            break
        if arg in NO_CHECKOUT:
            return False
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 1 and "n" in arg[1:] \
                and set(arg[1:]) <= FLAG_LETTERS:
            return False
    return True
