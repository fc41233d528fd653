"""One clear line for each way the helper can fail (what git's user reads after ``git-remote-hf:``)."""

from __future__ import annotations

from dulwich.errors import GitProtocolError, HangupException

from git_remote_hf.url import Remote
from hubfs.errors import (
    AuthenticationError,
    GatedRepoError,
    HubConnectionError,
    HubfsError,
    NotFoundError,
    PermissionDeniedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)

__all__ = ["describe"]

_TOKEN_HINT = "set HF_TOKEN, log in with `hf auth login`, or store it with a git credential helper"


def describe(exc: BaseException, remote: Remote | None, *, with_token: bool | None = None,
             pushing: bool = False) -> str:
    """The message for ``exc`` (never a token or a signed URL: hubfs errors carry safe URLs only).

    ``with_token``: whether the failed request carried a token (None: unknown); ``pushing``: whether
    it failed while pushing.
    """
    where = f"{remote} at {remote.endpoint}" if remote else "the repository"
    if isinstance(exc, RevisionNotFoundError):
        return str(exc)
    if isinstance(exc, AuthenticationError):
        if with_token:
            return f"the hub rejected the token for {where} (wrong or expired token?): {_TOKEN_HINT}."
        if pushing:
            return f"pushing to {where} needs a write token: {_TOKEN_HINT}."
        return f"{where}: repository not found, or it is private and needs a token: {_TOKEN_HINT}."
    if isinstance(exc, GatedRepoError):
        return f"{where} is gated: request access on its page first ({exc})."
    if isinstance(exc, PermissionDeniedError):
        return f"{where}: permission denied ({exc}); pushing needs a write token of the owner or a member."
    if isinstance(exc, RepoNotFoundError):
        return f"{where}: repository not found (check its name, and that your token may see it)."
    if isinstance(exc, NotFoundError):
        return f"{where}: not found ({exc})."
    if isinstance(exc, HubConnectionError):
        text = str(exc).rstrip()
        return f"{text}{'' if text.endswith('.') else '.'} The local repository is unchanged; run the command again to retry."
    if isinstance(exc, HangupException):
        return (f"the hub closed the connection in the middle of a transfer from {where}. "
                "The local repository is unchanged; run the command again to retry.")
    if isinstance(exc, GitProtocolError):
        return f"git protocol error talking to {where}: {exc}. The local repository is unchanged."
    if isinstance(exc, HubfsError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({getattr(exc, 'filename', None) or where})"
    return f"{type(exc).__name__}: {exc}"
