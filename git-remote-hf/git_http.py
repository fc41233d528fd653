"""The helper's git client: :class:`hubfs.client.git_wire.GitWire` (dulwich over hubfs's one Transport,
no second HTTP stack) for one repository URL, remembering its last ref advertisement.

The transport adds the token (only for the hub's origin), retries and error mapping: a 401, 404 or
5xx answer raises the matching :mod:`hubfs.errors` exception. A body that breaks off mid-stream raises
:class:`~hubfs.errors.HubConnectionError`. The last ref advertisement is kept and answers the next
discovery of the same service once, so ``list`` followed by ``fetch`` (or ``list for-push`` then
``push``) costs one advertisement, as in git's own remote-curl.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hubfs.client.git_wire import GitWire
from hubfs.client.http import Transport

__all__ = ["HubGitClient"]


class HubGitClient(GitWire):
    """A :class:`GitWire` for the repository at ``git_url`` that answers a repeated discovery from memory."""

    def __init__(self, transport: Transport, git_url: str, *, thin_packs: bool = True, quiet: bool = True) -> None:
        super().__init__(transport, git_url, thin_packs=thin_packs, quiet=quiet)
        self._memo: dict[tuple[bytes, str], Any] = {}
        self.fetch_protocol = 0

    def _discover_references(self, service: bytes, base_url: str, protocol_version: int | None = None,
                             ref_prefix: Sequence[bytes] | None = None) -> Any:
        """dulwich's discovery, answered once from the previous advertisement of the same service."""
        key = (service, base_url)
        if key in self._memo:
            result, self.protocol_version = self._memo.pop(key)
            return result
        return super()._discover_references(service, base_url, protocol_version, ref_prefix)

    def remember(self, service: bytes, result: Any) -> None:
        """Keep ``result`` (of :meth:`discover`) to answer the next discovery of ``service`` once."""
        self._memo[(service, self._get_url(""))] = (result, self.protocol_version)

    def discover(self, service: bytes) -> Any:
        """(refs, capabilities, url, symrefs, peeled) of the repository for ``service``; remembered once.

        Protocol v0: its advertisement carries the refs in the first answer (v2 needs a second request,
        ``ls-refs``), so a no-op fetch costs one request and a clone two.
        """
        result = super()._discover_references(service, self._get_url(""), protocol_version=self.fetch_protocol)
        self.remember(service, result)
        return result
