"""Shared pieces of the Hub wire format: caller lookup, endpoint URLs, dates, pagination links."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from hubfs.errors import BadRequestError, PayloadTooLargeError
from hubfs.paths import RepoType
from hubfs.server.hub import Caller, Hub


def hub_of(request: Request) -> Hub:
    return request.scope["hubfs.hub"]  # type: ignore[no-any-return]


def caller_of(request: Request) -> Caller:
    """The authenticated caller (cached on the request)."""
    cached = request.scope.get("hubfs.caller")
    if cached is None:
        cached = hub_of(request).authenticate(request.headers.get("authorization"))
        request.scope["hubfs.caller"] = cached
    return cached


def endpoint_of(request: Request) -> str:
    """The hub's base URL as this client sees it (or ``--public-url``)."""
    hub = hub_of(request)
    if hub.public_url:
        return hub.public_url
    return str(request.base_url).rstrip("/")


def repo_url(request: Request, repo_type: str, repo_id: str) -> str:
    """``{E}/{P}ns/name``, the form ``RepoUrl`` parses."""
    return f"{endpoint_of(request)}/{RepoType.parse(repo_type).url_prefix}{repo_id}"


def iso(ts: float) -> str:
    """A Hub date: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (the client refuses offsets like +00:00)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


INLINE_JSON = 256 << 10  # JSON bodies up to this size parse on the event loop (well under a millisecond)


async def read_body(request: Request, limit: int, what: str = "Request body") -> bytearray:
    """The whole body, refused with 413 as soon as it grows past ``limit`` bytes (also when a
    Content-Length header already says so, before anything is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"{what} of {declared} bytes is larger than the limit of {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"{what} larger than {limit} bytes.")
    return body


async def read_json(request: Request, limit: int = 16 << 20) -> dict[str, Any]:
    """Parse a JSON object body (at most ``limit`` bytes); an empty body is ``{}``.

    Anything else (malformed JSON, or a list, string, number or null at the top) answers 400; larger
    bodies answer 413. Bodies over ``INLINE_JSON`` bytes are parsed in the thread pool, not on the loop.
    """
    body = await read_body(request, limit, "JSON body")
    if not body:
        return {}
    try:
        data = json.loads(body) if len(body) <= INLINE_JSON else await run_in_threadpool(json.loads, bytes(body))
    except (ValueError, RecursionError) as exc:
        raise BadRequestError(f"Malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"The JSON body must be an object, not {_json_kind(data)}.")
    return data


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), "null")


def str_field(body: dict[str, Any], key: str, default: str | None = "", *, max_len: int | None = None,
              what: str | None = None) -> str | None:
    """``body[key]`` as a string (``default`` when absent or null); 400 for any other type, and for a
    string longer than ``max_len`` characters."""
    value = body.get(key)
    if value is None:
        return default
    name = what or f"'{key}'"
    if not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string, not {_json_kind(value)}.")
    if max_len is not None and len(value) > max_len:
        raise BadRequestError(f"{name} is longer than {max_len} characters ({len(value)}).")
    return value


def text_field(body: dict[str, Any], key: str, max_len: int, what: str | None = None) -> str:
    """A free-text field (summary, description, title, comment, message): a string of at most
    ``max_len`` characters, '' when absent."""
    return str_field(body, key, "", max_len=max_len, what=what) or ""


def bool_field(body: dict[str, Any], key: str, default: bool | None = False) -> bool | None:
    """``body[key]`` as a boolean (``default`` when absent or null); 400 for any other type."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequestError(f"'{key}' must be true or false, not {_json_kind(value)}.")
    return value


MAX_INT64 = (1 << 63) - 1
SUMMARY_MAX = 1000  # characters of a commit summary or a discussion title
TEXT_MAX = 64 << 10  # characters of a commit description, a tag message or a comment


def int_param(text: str, what: str, maximum: int = MAX_INT64) -> int:
    """A decimal number from a URL segment or query parameter, 0..``maximum``; 400 otherwise (also for
    numbers too long for ``int()``)."""
    digits = (text or "").lstrip("0") or ("0" if text else "")
    if not digits.isascii() or not digits.isdigit() or len(digits) > len(str(maximum)) or int(digits) > maximum:
        raise BadRequestError(f"{what} must be an integer from 0 to {maximum}, not {text[:40]!r}.")
    return int(digits)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offset = json.loads(base64.urlsafe_b64decode(padded))["o"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except Exception:  # noqa: BLE001, S110 - any undecodable cursor is a client error, answered below
        pass
    raise BadRequestError("Invalid pagination cursor.")


def page(request: Request, items: list[Any], page_size: int) -> tuple[list[Any], dict[str, str]]:
    """Slice one page at the request's cursor; add an absolute ``Link: <next>; rel="next"`` with every
    original query parameter when more remain."""
    start = decode_cursor(request.query_params.get("cursor"))
    chunk = items[start:start + page_size]
    headers: dict[str, str] = {}
    if start + page_size < len(items):
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        params.append(("cursor", encode_cursor(start + page_size)))
        raw_path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1").split("?")[0]
        url = f"{endpoint_of(request)}{raw_path}?{urlencode(params)}"
        headers["Link"] = f'<{url}>; rel="next"'
    return chunk, headers


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")
