"""Collections: ``create_collection``, ``get_collection``, ``list_collections``,
``update_collection_metadata``, ``add_collection_item``, ``update_collection_item``,
``delete_collection_item`` and ``delete_collection`` of huggingface_hub.

Routes under ``/api/collections`` (a slug is ``{namespace}/{title-slug}-{id}``; only the id is
looked up, so a slug from before a rename still works). A private collection exists only for members
of its namespace (404 for everyone else); items the caller may not see (a private repo, a private
collection) are left out. Writing needs a write token of the namespace.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, ConflictError, NotFoundError
from hubfs.server.collections_store import CollectionRow, CollectionsStore, ItemRow
from hubfs.server.community import community_of
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.wire import bool_field, caller_of, hub_of, int_param, iso, page, read_json, str_field

THEMES = ("orange", "blue", "green", "purple", "pink", "indigo")
TITLE_MAX, DESCRIPTION_MAX, NOTE_MAX = 60, 150, 500
REPO_KINDS = ("model", "dataset", "space")
MAX_ITEMS = 1000


def _may_see(hub: Hub, caller: Caller, c: CollectionRow) -> bool:
    return not c.private or bool(caller.user and hub.meta.is_member(caller.user, c.namespace))


def _find(hub: Hub, store: CollectionsStore, caller: Caller, slug: str) -> CollectionRow:
    cid = slug.rsplit("-", 1)[-1]
    c = store.get(cid) if len(cid) == 24 else None
    if c is None or not _may_see(hub, caller, c):
        raise NotFoundError(f"Collection {slug[:200]} not found.")
    return c


def _writable(hub: Hub, store: CollectionsStore, caller: Caller, slug: str) -> CollectionRow:
    c = _find(hub, store, caller, slug)
    hub.require_write(caller, c.namespace)
    return c


def _owner(hub: Hub, namespace: str) -> dict[str, Any]:
    row = hub.meta.account(namespace)
    is_org = bool(row and row["is_org"])
    return {"_id": namespace, "name": namespace, "fullname": (row["fullname"] if row else None) or namespace,
            "type": "org" if is_org else "user", "avatarUrl": ""}


def _item_json(hub: Hub, store: CollectionsStore, caller: Caller, item: ItemRow) -> dict[str, Any] | None:
    """An item as the client reads it; None when the caller may not see it (or it is gone)."""
    out: dict[str, Any] = {"_id": item.id, "type": item.kind, "position": item.position}
    if item.note:
        out["note"] = {"text": item.note, "html": item.note}
    if item.kind in REPO_KINDS:
        repo = hub.meta.repo_by_uid(item.ref)
        if repo is None or (repo.private and not (caller.user and hub.meta.is_member(caller.user, repo.namespace))):
            return None
        out.update(id=repo.public_id, author=repo.namespace or None, private=repo.private, gated=repo.gated,
                   likes=repo.likes, downloads=repo.downloads, lastModified=iso(repo.last_modified))
    elif item.kind == "collection":
        inner = store.get(item.ref)
        if inner is None or not _may_see(hub, caller, inner):
            return None
        out.update(id=inner.id, slug=inner.slug, title=inner.title)
    else:
        out["id"] = item.ref
    return out


def collection_json(hub: Hub, store: CollectionsStore, caller: Caller, c: CollectionRow,
                    max_items: int | None = None) -> dict[str, Any]:
    items = [j for j in (_item_json(hub, store, caller, i) for i in store.items(c.id)) if j is not None]
    return {"slug": c.slug, "_id": c.id, "title": c.title, "description": c.description,
            "owner": _owner(hub, c.namespace), "items": items[:max_items] if max_items else items,
            "lastUpdated": iso(c.updated_at), "position": c.position, "private": c.private, "theme": c.theme,
            "upvotes": 0, "isUpvotedByUser": False, "gating": False}


def _title(body: dict[str, Any], required: bool) -> str | None:
    title = str_field(body, "title", None, max_len=TITLE_MAX)
    if title is not None and not title.strip():
        raise BadRequestError("A collection needs a non-empty title.")
    if required and title is None:
        raise BadRequestError("A collection needs a 'title'.")
    return title.strip() if title else None


async def create(request: Request) -> Response:
    """POST /api/collections {title, namespace, private, description?} -> collection; 409 {slug} when a
    collection with that title exists in the namespace."""
    body = await read_json(request)
    return await run_in_threadpool(_create, request, body)


def _create(request: Request, body: dict[str, Any]) -> Response:
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    title = _title(body, True)
    assert title is not None
    namespace = str_field(body, "namespace", None) or caller.user or ""
    hub.require_write(caller, namespace)
    description = str_field(body, "description", None, max_len=DESCRIPTION_MAX)
    private = bool(bool_field(body, "private"))
    existing = store.by_title(namespace, title)
    if existing is not None:
        exc = ConflictError(f"A collection named {title!r} already exists in {namespace}.")
        exc.body = {"slug": existing.slug}  # type: ignore[attr-defined]
        raise exc
    c = store.create(namespace, title, description, private)
    return json_response(collection_json(hub, store, caller, c))


def get(request: Request, ns: str, slug: str) -> Response:
    """GET /api/collections/{ns}/{slug} -> collection."""
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    return json_response(collection_json(hub, store, caller, _find(hub, store, caller, f"{ns}/{slug}")))


def listing(request: Request) -> Response:
    """GET /api/collections[?owner&item=models/ns/name&sort=lastModified|trending|upvotes&limit] ->
    [collection (first 4 items)], Link-paginated; only collections the caller may see."""
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    q = request.query_params
    item = None
    if q.get("item"):
        kind, _, rest = q["item"].partition("/")
        kind = kind.removesuffix("s")
        if kind not in REPO_KINDS:
            raise BadRequestError("item must look like models/ns/name, datasets/ns/name or spaces/ns/name.")
        repo = hub.meta.get_repo(kind, rest if "/" in rest else f"/{rest}")
        if repo is None or (repo.private and not (caller.user and hub.meta.is_member(caller.user, repo.namespace))):
            return json_response([])  # a private repo the caller cannot see is in no collection
        item = (kind, repo.uid)
    rows = [c for c in store.listing(q.get("owner"), item) if _may_see(hub, caller, c)]
    limit = int_param(q.get("limit") or "100", "limit", 1000) or 100
    chunk, headers = page(request, rows, limit)
    out = [collection_json(hub, store, caller, c, max_items=4) for c in chunk]
    for body in out:
        del body["position"]  # the client numbers listed collections itself (and refuses a second one)
    return json_response(out, headers=headers)


async def update(request: Request, ns: str, slug: str) -> Response:
    """PATCH /api/collections/{ns}/{slug} {title?, description?, position?, private?, theme?} -> {data: collection}."""
    body = await read_json(request)
    return await run_in_threadpool(_update, request, f"{ns}/{slug}", body)


def _update(request: Request, slug: str, body: dict[str, Any]) -> Response:
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    c = _writable(hub, store, caller, slug)
    theme = str_field(body, "theme", None)
    if theme is not None and theme not in THEMES:
        raise BadRequestError(f"theme must be one of {', '.join(THEMES)}.")
    position = body.get("position")
    if position is not None and (not isinstance(position, int) or isinstance(position, bool) or position < 0):
        raise BadRequestError("position must be a non-negative integer.")
    title = _title(body, False)
    if title is not None and title.lower() != c.title.lower() and store.by_title(c.namespace, title) is not None:
        raise ConflictError(f"A collection named {title!r} already exists in {c.namespace}.")
    store.update(c.id, title=title, description=str_field(body, "description", None, max_len=DESCRIPTION_MAX),
                 private=bool_field(body, "private", None), theme=theme, position=position)
    updated = store.get(c.id)
    assert updated is not None
    return json_response({"success": True, "data": collection_json(hub, store, caller, updated)})


def delete(request: Request, ns: str, slug: str) -> Response:
    """DELETE /api/collections/{ns}/{slug}; 404 when missing."""
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    store.delete(_writable(hub, store, caller, f"{ns}/{slug}").id)
    return json_response({"success": True})


async def add_item(request: Request, ns: str, slug: str) -> Response:
    """POST /api/collections/{ns}/{slug}/items {item: {id, type}, note?} -> collection; 409 if already in it."""
    body = await read_json(request)
    return await run_in_threadpool(_add_item, request, f"{ns}/{slug}", body)


def _add_item(request: Request, slug: str, body: dict[str, Any]) -> Response:
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    c = _writable(hub, store, caller, slug)
    item = body.get("item")
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("type"), str):
        raise BadRequestError("The body needs 'item': {id, type}.")
    kind, item_id = item["type"], item["id"]
    note = str_field(body, "note", None, max_len=NOTE_MAX)
    if kind in REPO_KINDS:
        ref = hub.visible_repo(caller, kind, item_id).uid
    elif kind == "collection":
        inner = _find(hub, store, caller, item_id)
        if inner.id == c.id:
            raise BadRequestError("A collection cannot contain itself.")
        ref = inner.id
    elif kind == "paper":
        if not item_id or len(item_id) > 64:
            raise BadRequestError("A paper id is 1 to 64 characters.")
        ref = item_id
    else:
        raise BadRequestError("item.type must be model, dataset, space, paper or collection.")
    if len(store.items(c.id)) >= MAX_ITEMS:
        raise BadRequestError(f"A collection holds at most {MAX_ITEMS} items.")
    if store.add_item(c.id, kind, ref, note) is None:
        raise ConflictError(f"{item_id} is already in this collection.")
    updated = store.get(c.id)
    assert updated is not None
    return json_response(collection_json(hub, store, caller, updated))


def _item(store: CollectionsStore, c: CollectionRow, item_id: str) -> ItemRow:
    found = store.item(c.id, item_id)
    if found is None:
        raise NotFoundError(f"Item {item_id[:40]} not found in this collection.")
    return found


async def update_item(request: Request, ns: str, slug: str, item_id: str) -> Response:
    """PATCH /api/collections/{ns}/{slug}/items/{item_id} {note?, position?} -> {success}."""
    body = await read_json(request)
    return await run_in_threadpool(_update_item, request, f"{ns}/{slug}", item_id, body)


def _update_item(request: Request, slug: str, item_id: str, body: dict[str, Any]) -> Response:
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    c = _writable(hub, store, caller, slug)
    item = _item(store, c, item_id)
    position = body.get("position")
    if position is not None and (not isinstance(position, int) or isinstance(position, bool) or position < 0):
        raise BadRequestError("position must be a non-negative integer.")
    store.update_item(c.id, item.id, note=str_field(body, "note", None, max_len=NOTE_MAX), position=position)
    return json_response({"success": True})


def delete_item(request: Request, ns: str, slug: str, item_id: str) -> Response:
    """DELETE /api/collections/{ns}/{slug}/items/{item_id}; 404 when it is not in the collection."""
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).collections
    c = _writable(hub, store, caller, f"{ns}/{slug}")
    store.delete_item(c.id, _item(store, c, item_id).id)
    return json_response({"success": True})


def register(router: Router) -> None:
    C = "/api/collections"
    router.add(["GET"], C, listing)
    router.add(["POST"], C, create)
    router.add(["GET"], C + "/{ns}/{slug}", get)
    router.add(["PATCH"], C + "/{ns}/{slug}", update)
    router.add(["DELETE"], C + "/{ns}/{slug}", delete)
    router.add(["POST"], C + "/{ns}/{slug}/items", add_item)
    router.add(["PATCH"], C + "/{ns}/{slug}/items/{item_id}", update_item)
    router.add(["DELETE"], C + "/{ns}/{slug}/items/{item_id}", delete_item)
