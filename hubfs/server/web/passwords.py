"""Web sign-in passwords: scrypt hashes (memory-hard, per-user salt, parameters stored with the hash)
in the hub's SQLite file, table ``web_passwords`` (``hubfs user add --password-file``, ``hubfs user passwd``).

A password change bumps the user's ``epoch``, which signs out every browser session of that user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from hubfs.errors import BadRequestError, NotFoundError
from hubfs.server.db import DbTarget, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS web_passwords (
    user TEXT PRIMARY KEY, hash TEXT NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL);
"""
MIN_LENGTH = 8
MAX_LENGTH = 1024  # bounds the work one attempt can ask for
# scrypt N=2^15, r=8, p=1: 32 MiB and ~0.1 s per hash (OWASP's minimum is N=2^17 with r=8 for new
# systems; 2^15 keeps sign-in quick on small machines while staying memory-hard).
N, R, P = 1 << 15, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """``scrypt$N$r$p$salt$key`` (salt and key in unpadded base64url) for ``password``."""
    check_password_rules(password)
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time compare); False for any malformed hash."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        got = _scrypt(password, _unb64(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def check_password_rules(password: str) -> None:
    """Refuse (400) a password shorter than ``MIN_LENGTH`` or longer than ``MAX_LENGTH`` characters."""
    if len(password) < MIN_LENGTH:
        raise BadRequestError(f"A password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise BadRequestError(f"A password has at most {MAX_LENGTH} characters.")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = KEY_BYTES) -> bytes:
    if n > 1 << 20 or r > 32 or p > 16 or dklen > 64:
        raise ValueError("scrypt parameters out of range")
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * n * r + (1 << 20))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# A well-formed hash of a random password: checked when the user has none, so that an unknown user
# name costs as much time as a wrong password (no user enumeration by timing).
_DUMMY = f"scrypt${N}${R}${P}${_b64(b'0' * SALT_BYTES)}${_b64(b'1' * KEY_BYTES)}"


class PasswordStore:
    """The ``web_passwords`` table of ``DIR/hub.sqlite`` (safe beside a running server: WAL)."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    def set_password(self, user: str, password: str) -> None:
        """Set (or replace) ``user``'s password; existing browser sessions of the user end."""
        encoded = hash_password(password)
        with self._db.tx() as db:
            if not db.execute("SELECT 1 FROM accounts WHERE name=? AND is_org=0", (user,)).fetchone():
                raise NotFoundError(f"No user named {user}.")
            db.execute("INSERT INTO web_passwords (user, hash, epoch, updated_at) VALUES (?,?,0,?) "
                       "ON CONFLICT(user) DO UPDATE SET hash=excluded.hash, epoch=web_passwords.epoch+1, "
                       "updated_at=excluded.updated_at", (user, encoded, time.time()))

    def check(self, user: str, password: str) -> bool:
        """True when ``user`` exists, has a password, and it is ``password`` (same cost either way)."""
        rows = self._db.query("SELECT hash FROM web_passwords WHERE user=?", (user,))
        ok = verify_password(password, rows[0]["hash"] if rows else _DUMMY)
        return ok and bool(rows)

    def epoch(self, user: str) -> int | None:
        """The user's password generation (None: no password)."""
        rows = self._db.query("SELECT epoch FROM web_passwords WHERE user=?", (user,))
        return int(rows[0]["epoch"]) if rows else None

    def has_password(self, user: str) -> bool:
        return self.epoch(user) is not None
