"""CAS tokens for one bucket: what the bucket's ``xet-read-token`` / ``xet-write-token`` hand out and the
bucket CAS routes check. Same form as repo CAS tokens (``bxet1.<payload>.<mac>``, signed with a key
derived from the hub's secret for this purpose only, so neither kind passes for the other); access is
decided again on every use, so a revoked Hub token or lost rights stop the CAS token at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from hubfs.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from hubfs.server.buckets.store import Bucket, BucketStore
from hubfs.server.hub import Caller, Hub

TOKEN_TTL = 2 * 3600
PREFIX = "bxet1"


@dataclass(frozen=True)
class BucketGrant:
    bucket: Bucket
    caller: Caller
    scope: str  # "read" or "write"


def _key(hub: Hub) -> bytes:
    return hub.derive_key("bucket-cas-token")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def may_read(hub: Hub, caller: Caller, bucket: Bucket) -> bool:
    return not bucket.private or (caller.user is not None and hub.meta.is_member(caller.user, bucket.namespace))


def visible(hub: Hub, store: BucketStore, caller: Caller, bucket_id: str) -> Bucket:
    """The bucket if the caller may read it; 404 otherwise (a private bucket does not exist to others)."""
    bucket = store.get(bucket_id)
    if bucket is None or not may_read(hub, caller, bucket):
        raise NotFoundError(f"Bucket {bucket_id} not found.")
    return bucket


def mint(hub: Hub, caller: Caller, bucket: Bucket, scope: str, ttl: int = TOKEN_TTL) -> tuple[str, int]:
    """A signed token for ``scope`` on ``bucket`` (access checked already): (token, expiry)."""
    exp = int(time.time()) + ttl
    body = json.dumps({"b": bucket.id, "c": bucket.created_at, "s": scope, "u": caller.user, "t": caller.token_id,
                       "k": caller.role, "e": exp}, separators=(",", ":")).encode()
    payload = _b64(body)
    mac = hmac.new(_key(hub), payload.encode(), hashlib.sha256).digest()
    return f"{PREFIX}.{payload}.{_b64(mac)}", exp


def verify(hub: Hub, store: BucketStore, authorization: str | None, need_write: bool = False) -> BucketGrant:
    """The grant behind ``Authorization: Bearer <token>`` (blocking). 401 for a missing, forged or expired
    token or a revoked Hub token; 404 when the bucket is gone or hidden now; 403 for a write with a read
    token or without write rights any more."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    parts = token.strip().split(".")
    if scheme.lower() != "bearer" or len(parts) != 3 or parts[0] != PREFIX:
        raise AuthenticationError("A bucket CAS token is required (ask /api/buckets/{id}/xet-read-token).")
    expected = hmac.new(_key(hub), parts[1].encode(), hashlib.sha256).digest()
    try:
        claims = json.loads(_unb64(parts[1])) if hmac.compare_digest(_unb64(parts[2]), expected) else None
    except (ValueError, UnicodeDecodeError):
        claims = None
    if not isinstance(claims, dict):
        raise AuthenticationError("Invalid bucket CAS token.")
    if not isinstance(claims.get("e"), int) or claims["e"] < time.time():
        raise AuthenticationError("This bucket CAS token has expired; request a new one.")
    user, token_id = claims.get("u"), claims.get("t")
    if user is not None and (not isinstance(token_id, str) or not hub.meta.token_alive(token_id)):
        raise AuthenticationError("The Hub token this bucket CAS token was issued for is revoked or expired.")
    caller = Caller(user, claims.get("k"), token_id) if user is not None else Caller()
    bucket = visible(hub, store, caller, str(claims.get("b")))
    if bucket.created_at != claims.get("c"):  # deleted and made again: not the bucket the token was for
        raise NotFoundError(f"Bucket {bucket.id} not found.")
    grant = BucketGrant(bucket, caller, str(claims.get("s")))
    if need_write:
        if grant.scope != "write":
            raise PermissionDeniedError("This bucket CAS token is read-only: uploads need a xet-write-token.")
        hub.require_write(caller, bucket.namespace)
    return grant
