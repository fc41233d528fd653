"""Xet CAS access tokens: what ``xet-read-token`` / ``xet-write-token`` hand out and the CAS checks.

A token is ``xet1.<payload>.<mac>``: the payload names one repo (by its numeric id, so a rename
or a delete-and-recreate cannot redirect it), the revision it was asked for, the scope (``read``
or ``write``; write includes read), the user and the public id of the Hub token that asked for it,
and an expiry. It is signed with a key derived from the hub's secret and checked on every CAS
request, where access is decided again: a revoked Hub token, a repo made private, a user removed
from an org or a deleted repo stop the CAS token at once. Tokens never appear in logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from hubfs.errors import AuthenticationError, PermissionDeniedError
from hubfs.server.hub import Caller, Hub
from hubfs.server.metadata import Repo

TOKEN_TTL = 2 * 3600  # hf_xet refreshes 30 s before expiry; a 401 from the CAS is fatal, never retried
PREFIX = "xet1"


@dataclass(frozen=True)
class CasGrant:
    """What a verified CAS token allows: ``scope`` on ``repo``, on behalf of ``caller``."""

    repo: Repo
    caller: Caller
    scope: str
    ref: str  # the ref uploads are for: ``refs/heads/<branch>``, or "" for a pull request

    @property
    def can_write(self) -> bool:
        return self.scope == "write"


def _key(hub: Hub) -> bytes:
    return hub.derive_key("xet-cas-token")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(hub: Hub, caller: Caller, repo: Repo, ref: str, scope: str, ttl: int = TOKEN_TTL) -> tuple[str, int]:
    """A signed token for ``scope`` on ``repo`` (the caller's access was checked already); (token, expiry).

    ``ref`` is the branch ref uploads are for, or "" when they are for a pull request."""
    exp = int(time.time()) + ttl
    body = json.dumps({"r": repo.id, "v": ref, "s": scope, "u": caller.user, "t": caller.token_id,
                       "k": caller.role, "e": exp}, separators=(",", ":")).encode()
    payload = _b64(body)
    mac = hmac.new(_key(hub), payload.encode(), hashlib.sha256).digest()
    return f"{PREFIX}.{payload}.{_b64(mac)}", exp


def verify(hub: Hub, authorization: str | None, need_write: bool = False) -> CasGrant:
    """The grant behind ``Authorization: Bearer <token>``, after access is decided again (blocking:
    SQLite reads). 401 for a missing, malformed, forged or expired token; 401/404 when the repo is
    gone or no longer visible; 403 when a write is asked with a read token or rights were lost."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3 or parts[0] != PREFIX:
        raise AuthenticationError("A Xet CAS token is required (ask /api/{type}s/{repo}/xet-read-token/{rev}).")
    expected = hmac.new(_key(hub), parts[1].encode(), hashlib.sha256).digest()
    try:
        valid = hmac.compare_digest(_unb64(parts[2]), expected)
        claims = json.loads(_unb64(parts[1])) if valid else None
    except (ValueError, UnicodeDecodeError):
        valid, claims = False, None
    if not valid or not isinstance(claims, dict):
        raise AuthenticationError("Invalid Xet CAS token.")
    if not isinstance(claims.get("e"), int) or claims["e"] < time.time():
        raise AuthenticationError("This Xet CAS token has expired; request a new one.")
    user, token_id = claims.get("u"), claims.get("t")
    if user is not None and (not isinstance(token_id, str) or not hub.meta.token_alive(token_id)):
        raise AuthenticationError("The Hub token this Xet CAS token was issued for is revoked or expired.")
    caller = Caller(user, claims.get("k"), token_id) if user is not None else Caller()
    repo = hub.meta.repo_by_id(int(claims.get("r", -1)))
    if repo is None:
        raise AuthenticationError("The repository this Xet CAS token was issued for no longer exists.")
    repo = hub.visible_repo(caller, repo.type, repo.repo_id)
    grant = CasGrant(repo, caller, str(claims.get("s")), str(claims.get("v")))
    if need_write:
        if not grant.can_write:
            raise PermissionDeniedError("This Xet CAS token is read-only: uploads need a xet-write-token.")
        hub.require_lfs_upload(caller, repo, grant.ref)
    else:
        hub.check_gate(caller, repo)
    return grant
