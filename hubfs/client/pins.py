"""Branch pins: which commit a branch or tag pointed to when last asked, for a few seconds.

A :class:`PinTable` belongs to one client identity, an endpoint and a token: two clients with
different tokens may see different repos and never share one. Clients of the same identity in one
process share a table, so a write made through one (a pandas write) is seen at once by the others
(a datasets read): the writer drops the branch's pin and every reader resolves it again.

Sharing goes through a :class:`PinRegistry` that holds its tables weakly: a table lives exactly as
long as some client uses it, and the registry itself owns no pins. :data:`PROCESS_PINS` is the one
registry clients use unless given another (tests and embedders may pass their own, or a table).

Every pin carries a sequence number from its table, so a client can ask "was this pin learnt before
that moment?" exactly (see :meth:`HubClient.recheck <hubfs.client.api.HubClient.recheck>`) and can
stop trusting everything learnt so far without touching the other clients (``forget_pins``).
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from dataclasses import dataclass

PinKey = tuple[str, str, str]  # (repo type, repo id, revision)


@dataclass(frozen=True)
class Pin:
    sha: str
    seq: int  # the table's sequence number when learnt: later pins have larger ones
    until: float  # time.monotonic() after which the pin has expired


class PinTable:
    """The pins of one endpoint + token. Thread-safe."""

    def __init__(self) -> None:
        self._pins: dict[PinKey, Pin] = {}
        self._seq = 0
        self._lock = threading.Lock()

    def stamp(self) -> int:
        """The current sequence number: pins learnt from now on have larger ones."""
        with self._lock:
            return self._seq

    def get(self, key: PinKey) -> Pin | None:
        """The pin of ``key`` if it has not expired."""
        with self._lock:
            pin = self._pins.get(key)
        return pin if pin is not None and pin.until > time.monotonic() else None

    def put(self, key: PinKey, sha: str, ttl: float) -> Pin:
        with self._lock:
            self._seq += 1
            pin = self._pins[key] = Pin(sha, self._seq, time.monotonic() + ttl)
        return pin

    def drop(self, key: PinKey) -> None:
        with self._lock:
            self._pins.pop(key, None)


class PinRegistry:
    """One :class:`PinTable` per (endpoint, token) while any client holds it (weak values)."""

    def __init__(self) -> None:
        self._tables: weakref.WeakValueDictionary[tuple[str, str], PinTable] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def table(self, endpoint: str, token: str | None) -> PinTable:
        """The table of this identity (the token is kept only as a hash)."""
        key = (endpoint.rstrip("/"), hashlib.sha256((token or "").encode()).hexdigest() if token else "")
        with self._lock:
            table = self._tables.get(key)
            if table is None:
                table = self._tables[key] = PinTable()
            return table


# Holds no pins of its own (weak values): the tables belong to the clients that use them.
PROCESS_PINS = PinRegistry()
