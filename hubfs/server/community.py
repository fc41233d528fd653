"""The stores of the API families beside repos and files (likes, collections, webhooks, access-request
details, permanently deleted LFS objects), all in the hub's own ``hub.sqlite``.

One :class:`Community` per app, in the ASGI state (``hubfs.community``); routes reach it with
:func:`community_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from hubfs.server.access_store import AccessStore
from hubfs.server.collections_store import CollectionsStore
from hubfs.server.db import Database, DbTarget
from hubfs.server.lfs_tombstones import LfsDeletions
from hubfs.server.likes_store import LikesStore
from hubfs.server.webhooks_store import WebhookStore


@dataclass(frozen=True)
class Community:
    likes: LikesStore
    collections: CollectionsStore
    webhooks: WebhookStore
    access: AccessStore
    lfs_deletions: LfsDeletions

    @classmethod
    def open(cls, data_dir: Path, database: Database | None = None) -> Community:
        """The stores of the hub in ``data_dir``, on its open ``database`` when given (one pool)."""
        db: DbTarget = database if database is not None else Path(data_dir) / "hub.sqlite"
        return cls(LikesStore(db), CollectionsStore(db), WebhookStore(db), AccessStore(db), LfsDeletions(db))


def community_of(request: Request) -> Community:
    return request.scope["hubfs.community"]  # type: ignore[no-any-return]
