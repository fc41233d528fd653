"""Webhooks of the signed-in user: ``create_webhook``, ``list_webhooks``, ``get_webhook``,
``update_webhook``, ``enable_webhook``, ``disable_webhook``, ``delete_webhook`` of huggingface_hub.

Routes under ``/api/settings/webhooks``; every answer that names a webhook is ``{"webhook": {id, url,
watched, domains, secret, disabled, job}}`` (a list for the listing). A webhook watches repos (it
must be able to see them), users or orgs, for the ``repo`` and/or ``discussion`` domains, and posts
to an http(s) URL. ``GET .../{id}/deliveries`` (a hubfs addition) shows each delivery's outcome.
Another user's webhook does not exist for the caller (404).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import AuthenticationError, BadRequestError, HubNotImplementedError, NotFoundError
from hubfs.server.community import community_of
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.webhooks_store import Webhook, WebhookStore
from hubfs.server.wire import caller_of, hub_of, iso, read_json, str_field

DOMAINS = ("repo", "discussion")
WATCH_TYPES = ("model", "dataset", "space", "user", "org")
MAX_WEBHOOKS = 100  # per user
MAX_WATCHED = 100
URL_MAX = 2048


def webhook_json(store: WebhookStore, hook: Webhook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url, "watched": hook.watched, "domains": hook.domains,
            "secret": hook.secret, "disabled": hook.disabled, "job": None,
            "createdAt": iso(hook.created_at), "failedDeliveries": store.failures(hook.id)}


def _user(caller: Caller) -> str:
    if caller.user is None:
        raise AuthenticationError("You must be authenticated to manage webhooks.")
    return caller.user


def _writer(hub: Hub, caller: Caller) -> str:
    return hub.require_signed_in_writer(caller, "manage webhooks")


def _own(store: WebhookStore, user: str, hook_id: str) -> Webhook:
    hook = store.get(hook_id)
    if hook is None or hook.owner != user:
        raise NotFoundError(f"Webhook {hook_id[:40]} not found.")
    return hook


def _url(body: dict[str, Any]) -> str:
    url = str_field(body, "url", None, max_len=URL_MAX)
    if not url:
        raise BadRequestError("A webhook needs a 'url' (jobs are not supported on this hub).")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError("The webhook URL must be an http:// or https:// URL with a host.")
    return url


def _watched(hub: Hub, caller: Caller, body: dict[str, Any]) -> list[dict[str, str]]:
    items = body.get("watched")
    if not isinstance(items, list) or not items:
        raise BadRequestError("'watched' must be a non-empty list of {type, name}.")
    if len(items) > MAX_WATCHED:
        raise BadRequestError(f"A webhook watches at most {MAX_WATCHED} items.")
    out = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") not in WATCH_TYPES or not isinstance(item.get("name"), str):
            raise BadRequestError(f"Each watched item is {{type: one of {', '.join(WATCH_TYPES)}; name: string}}.")
        kind, name = item["type"], item["name"]
        if kind in ("user", "org"):
            row = hub.meta.account(name)
            if row is None or bool(row["is_org"]) != (kind == "org"):
                raise NotFoundError(f"{'Organization' if kind == 'org' else 'User'} {name} not found.")
        else:
            name = hub.visible_repo(caller, kind, name).public_id  # private repos the caller cannot see: 404
        out.append({"type": kind, "name": name})
    return out


def _domains(body: dict[str, Any], default: list[str] | None) -> list[str]:
    domains = body.get("domains")
    if domains is None and default is not None:
        return default
    if not isinstance(domains, list) or not domains or any(d not in DOMAINS for d in domains):
        raise BadRequestError(f"'domains' must be a non-empty list of {', '.join(DOMAINS)}.")
    return list(dict.fromkeys(domains))


def _secret(body: dict[str, Any]) -> str | None:
    return str_field(body, "secret", None, max_len=256) or None


def list_webhooks(request: Request) -> Response:
    """GET /api/settings/webhooks -> [webhook]."""
    user = _user(caller_of(request))
    store = community_of(request).webhooks
    return json_response([webhook_json(store, h) for h in store.of_owner(user)])


async def create_webhook(request: Request) -> Response:
    """POST /api/settings/webhooks {watched, domains, url, secret?} -> {webhook}."""
    body = await read_json(request)
    return await run_in_threadpool(_create, request, body)


def _create(request: Request, body: dict[str, Any]) -> Response:
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).webhooks
    user = _writer(hub, caller)
    if body.get("jobSourceId") is not None:
        raise HubNotImplementedError("Webhooks that start jobs are not supported on this hub; give a 'url'.")
    url, watched, domains = _url(body), _watched(hub, caller, body), _domains(body, list(DOMAINS))
    if store.count(user) >= MAX_WEBHOOKS:
        raise BadRequestError(f"You have reached the limit of {MAX_WEBHOOKS} webhooks.")
    hook = store.create(user, url, watched, domains, _secret(body))
    return json_response({"webhook": webhook_json(store, hook)})


def get_webhook(request: Request, hook_id: str) -> Response:
    """GET /api/settings/webhooks/{id} -> {webhook}."""
    store = community_of(request).webhooks
    return json_response({"webhook": webhook_json(store, _own(store, _user(caller_of(request)), hook_id))})


async def update_webhook(request: Request, hook_id: str) -> Response:
    """POST /api/settings/webhooks/{id} {watched, url?, domains?, secret?} -> {webhook}; an empty
    ``watched`` (what the client sends when not changing it) keeps the current list."""
    body = await read_json(request)
    return await run_in_threadpool(_update, request, hook_id, body)


def _update(request: Request, hook_id: str, body: dict[str, Any]) -> Response:
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).webhooks
    hook = _own(store, _writer(hub, caller), hook_id)
    fields: dict[str, Any] = {}
    if body.get("jobSourceId") is not None:
        raise HubNotImplementedError("Webhooks that start jobs are not supported on this hub; give a 'url'.")
    if body.get("url") is not None:
        fields["url"] = _url(body)
    if body.get("watched"):
        fields["watched"] = _watched(hub, caller, body)
    if body.get("domains") is not None:
        fields["domains"] = _domains(body, None)
    if body.get("secret") is not None:
        fields["secret"] = _secret(body)
    updated = store.update(hook.id, **fields)
    assert updated is not None
    return json_response({"webhook": webhook_json(store, updated)})


def _set_disabled(request: Request, hook_id: str, disabled: bool) -> Response:
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).webhooks
    hook = _own(store, _writer(hub, caller), hook_id)
    updated = store.update(hook.id, disabled=disabled)
    assert updated is not None
    return json_response({"webhook": webhook_json(store, updated)})


def enable_webhook(request: Request, hook_id: str) -> Response:
    """POST /api/settings/webhooks/{id}/enable -> {webhook}."""
    return _set_disabled(request, hook_id, False)


def disable_webhook(request: Request, hook_id: str) -> Response:
    """POST /api/settings/webhooks/{id}/disable -> {webhook}."""
    return _set_disabled(request, hook_id, True)


def delete_webhook(request: Request, hook_id: str) -> Response:
    """DELETE /api/settings/webhooks/{id} -> {}."""
    hub, caller, store = hub_of(request), caller_of(request), community_of(request).webhooks
    store.delete(_own(store, _writer(hub, caller), hook_id).id)
    return json_response({})


def deliveries(request: Request, hook_id: str) -> Response:
    """GET /api/settings/webhooks/{id}/deliveries -> [{id, event, status, attempts, responseStatus,
    error, createdAt, doneAt, nextAttemptAt}], newest first (the last 200 finished, and all pending)."""
    store = community_of(request).webhooks
    hook = _own(store, _user(caller_of(request)), hook_id)
    out = []
    for d in store.deliveries(hook.id):
        out.append({"id": d.id, "event": {"action": d.action, "scope": d.scope}, "status": d.status,
                    "attempts": d.attempts, "responseStatus": d.response_status, "error": d.last_error,
                    "createdAt": iso(d.created_at), "doneAt": iso(d.done_at) if d.done_at else None,
                    "nextAttemptAt": iso(d.next_at) if d.status == "pending" else None})
    return json_response(out)


def register(router: Router) -> None:
    W = "/api/settings/webhooks"
    router.add(["GET"], W, list_webhooks)
    router.add(["POST"], W, create_webhook)
    router.add(["GET"], W + "/{hook_id}", get_webhook)
    router.add(["POST"], W + "/{hook_id}", update_webhook)
    router.add(["DELETE"], W + "/{hook_id}", delete_webhook)
    router.add(["POST"], W + "/{hook_id}/enable", enable_webhook)
    router.add(["POST"], W + "/{hook_id}/disable", disable_webhook)
    router.add(["GET"], W + "/{hook_id}/deliveries", deliveries)
