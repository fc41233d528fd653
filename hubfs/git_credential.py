"""Storing a hub token in git's credential helpers (``git credential approve|reject``), as ``hf auth login
--add-to-git-credential`` does: git then pushes to and clones from the hub's https URLs without asking.

The token travels on git's stdin, never on a command line or in an environment variable.
"""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

from hubfs.errors import HubfsError

__all__ = ["approve", "helpers", "reject"]


def _fields(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"protocol={parts.scheme}\nhost={parts.netloc}\n"


def helpers(endpoint: str) -> list[str]:
    """The credential helpers git uses for ``endpoint`` (empty: ``approve`` would store nothing)."""
    try:
        out = subprocess.run(["git", "config", "--get-urlmatch", "credential.helper", endpoint], capture_output=True,
                             text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HubfsError(f"Could not run git: {exc}") from exc
    return [line for line in out.stdout.splitlines() if line.strip()]


def _run(action: str, text: str) -> None:
    try:
        done = subprocess.run(["git", "credential", action], input=text, capture_output=True, text=True,
                              check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HubfsError(f"Could not run `git credential {action}`: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise HubfsError(f"`git credential {action}` failed: {last}")


def approve(endpoint: str, username: str, token: str) -> None:
    """Store ``token`` as the password of ``username`` for ``endpoint``'s scheme and host."""
    _run("approve", f"{_fields(endpoint)}username={username}\npassword={token}\n\n")


def reject(endpoint: str) -> None:
    """Erase the stored credentials of ``endpoint``'s scheme and host."""
    _run("reject", f"{_fields(endpoint)}\n")
