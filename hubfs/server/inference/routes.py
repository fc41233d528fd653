"""Inference routes (``hubfs serve --inference``), as ``InferenceClient`` calls them against the hub:

- ``POST /models/{ns}/{name}`` and ``/models/{ns}/{name}/pipeline/{task}``: the task API (the task from
  the URL, else the card's ``pipeline_tag``); ``"stream": true`` on text-generation answers server-sent events;
- ``POST /v1/chat/completions`` (``model`` in the body) and ``/models/{ns}/{name}/v1/chat/completions``:
  OpenAI-compatible chat, streamed as server-sent events when ``stream`` is true;
- ``GET /v1/models``: the runnable models this caller may see; ``GET /api/inference/stats``: the admin's view.

Errors have the Hub's shapes: unknown or invisible model 404 (401 anonymous), no runnable task 400, too
large for ``--max-memory`` 503, malformed body 422, past the per-request timeout 504. Heavy work runs
in threads, at most ``concurrency`` at once. A stream's first event (its first token) is made in the
same worker call that prepared the model, within the timeout; the rest in threads as they are read.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import anyio
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hubfs.errors import HubfsError, PermissionDeniedError
from hubfs.server.http import Router, json_response
from hubfs.server.hub import ADMIN
from hubfs.server.inference import chat, tasks
from hubfs.server.inference.service import InferenceService, Prepared
from hubfs.server.wire import INLINE_JSON, caller_of, read_body

BODY_MAX = 32 << 20
STATE_KEY = "hubfs.inference"
T = TypeVar("T")
Event = dict[str, Any] | str  # one server-sent event: a JSON object, or a literal such as "[DONE]"
Started = tuple[list[Event], Iterator[Event]]  # a stream's events made already, and the rest


def service_of(request: Request) -> InferenceService:
    return request.scope[STATE_KEY]  # type: ignore[no-any-return]


async def _off_loop(request: Request, fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread, at most ``concurrency`` at once, within the per-request timeout (504)."""
    svc = service_of(request)
    if svc.limiter is None:  # made on the loop (anyio needs one), once per service
        svc.limiter = anyio.CapacityLimiter(svc.options.concurrency)
    limiter = svc.limiter
    try:
        with anyio.fail_after(svc.options.timeout):
            return await anyio.to_thread.run_sync(fn, limiter=limiter, abandon_on_cancel=True)
    except TimeoutError:
        raise HubfsError(f"Inference took longer than this hub's limit of {svc.options.timeout:g} s.",
                         status=504) from None


async def _parse(raw: bytes, content_type: str) -> Any:
    """The JSON body (None for raw bytes); large ones are parsed in the thread pool, not on the loop."""
    if len(raw) <= INLINE_JSON:
        return tasks.body_of(raw, content_type)
    return await run_in_threadpool(tasks.body_of, raw, content_type)


async def task_api(request: Request, ns: str, name: str, task: str | None = None) -> Response:
    """The task API: ``{"inputs", "parameters"}`` (or raw image bytes) -> the task's output."""
    svc = service_of(request)
    raw = bytes(await read_body(request, BODY_MAX))
    body = await _parse(raw, request.headers.get("content-type", ""))
    repo_id = f"{ns}/{name}"
    if isinstance(body, dict) and body.get("stream") and (task or "") in ("", "text-generation"):
        def start() -> Started:
            prepared = svc.prepare(caller_of(request), repo_id, task, body, None)
            if prepared.task != "text-generation":
                raise HubfsError(f"Streaming is for text-generation, not {prepared.task}.", status=400)
            req = chat.parse_stream_generation(prepared.inputs, body.get("parameters") or {})
            return _started(_generation_events(prepared, req))

        return _sse(*await _off_loop(request, start))

    def run() -> Any:
        prepared = svc.prepare(caller_of(request), repo_id, task, body, raw if body is None else None)
        return svc.run(prepared)

    return json_response(await _off_loop(request, run))


async def chat_completions(request: Request, ns: str | None = None, name: str | None = None) -> Response:
    """OpenAI-compatible chat; the model is the URL's, else the body's ``model``."""
    svc = service_of(request)
    body = await _parse(bytes(await read_body(request, BODY_MAX)), "application/json")
    if not isinstance(body, dict):
        raise tasks.Unprocessable("The body must be a JSON object.")
    model_id = f"{ns}/{name}" if ns is not None and name is not None else body.get("model")
    if not isinstance(model_id, str) or "/" not in model_id or model_id.startswith(("http://", "https://")):
        raise tasks.Unprocessable("Name the model as 'namespace/name' in the body's 'model' "
                                  "(or call /models/{namespace}/{name}/v1/chat/completions).")
    req, streamed = chat.parse_chat(body)

    def start() -> Prepared:
        prepared = svc.chat_model(caller_of(request), model_id)
        if not getattr(prepared.model.pipeline.tokenizer, "chat_template", None):
            raise HubfsError(f"Model {model_id}'s tokenizer has no chat template: use text generation.", status=400)
        return prepared

    if streamed:
        def start_stream() -> Started:
            prepared = start()
            return _started(_chat_events(prepared, req, prepared.repo.public_id))

        return _sse(*await _off_loop(request, start_stream))
    prepared = await _off_loop(request, start)
    public = prepared.repo.public_id
    return json_response(await _off_loop(request, lambda: chat.complete(prepared.model.pipeline, req, public)))


def list_models(request: Request) -> Response:
    """GET /v1/models (OpenAI's shape)."""
    return json_response({"object": "list", "data": service_of(request).list_models(caller_of(request))})


def stats(request: Request) -> Response:
    """GET /api/inference/stats: loads, evictions, loaded models (the hub's admin only)."""
    if caller_of(request).user != ADMIN:
        raise PermissionDeniedError("Only the hub's admin can read inference stats.")
    return json_response(service_of(request).stats())


# -- server-sent events --------------------------------------------------------------------------


def _started(events: Iterator[Event]) -> Started:
    """``events`` with its first event made now (blocking: in the worker that prepared the model, so the
    first token goes out without another trip to a thread); the generation's errors become events."""
    first = next(events, None)
    return ([] if first is None else [first]), events


def _sse(first: list[Event], events: Iterator[Event]) -> Response:
    """Server-sent events: ``first`` (made already), then ``events``, each made in a worker thread."""
    def encode(event: Event) -> bytes:
        text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
        return f"data: {text}\n\n".encode()

    async def body() -> AsyncIterator[bytes]:
        for event in first:
            yield encode(event)
        async for event in iterate_in_threadpool(events):
            yield encode(event)

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _error_event(exc: BaseException) -> dict[str, Any]:
    message = exc.message if isinstance(exc, HubfsError) else f"generation failed: {type(exc).__name__}"
    return {"error": message, "error_type": "generation"}


def _chat_events(prepared: Prepared, req: chat.GenRequest, model_id: str) -> Iterator[Event]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    count = 0
    try:
        for piece in chat.stream(prepared.model.pipeline, req):
            count += 1
            yield chat.chunk(model_id, cid, created, piece, None)
    except Exception as exc:  # noqa: BLE001 - the stream has started: report it in the stream
        yield _error_event(exc)
        return
    yield chat.chunk(model_id, cid, created, None, "length" if count >= req.max_new_tokens else "stop")
    yield "[DONE]"


def _generation_events(prepared: Prepared, req: chat.GenRequest) -> Iterator[Event]:
    """TGI's stream: one ``{"token": ...}`` event per piece, the last one with ``generated_text`` and
    ``details``. The first piece goes out as soon as it is made (when more may follow); each later one
    once the next is known, so that the last can say it is. When the first piece turns out to be the
    only one, an end event follows it (TGI's end-of-sequence token: special, empty text) with those fields."""
    text, count = "", 0

    def event(piece: str, last: bool, special: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"index": count, "token": {"id": count, "text": piece, "logprob": 0.0,
                                                         "special": special},
                               "generated_text": None, "details": None}
        if last:
            made = count - 1 if special else count
            out["generated_text"] = text
            out["details"] = {"finish_reason": "length" if made >= req.max_new_tokens else "eos_token",
                              "generated_tokens": made, "seed": req.seed}
        return out

    held: str | None = None  # a piece made but not sent yet: the next one tells whether it is the last
    try:
        for piece in chat.stream(prepared.model.pipeline, req):
            if held is not None:
                yield event(held, False)
            text += piece
            count += 1
            if count == 1 and req.max_new_tokens > 1:
                yield event(piece, False)  # the first token, at once
                continue
            held = piece
    except Exception as exc:  # noqa: BLE001 - the stream has started: report it in the stream
        yield _error_event(exc)
        return
    if held is not None:
        yield event(held, True)
    elif count:
        count += 1
        yield event("", True, special=True)


def register(router: Router) -> None:
    """Add the inference routes; call before the web pages and the ``/api`` catch-all."""
    router.add(["POST"], "/models/{ns}/{name}/v1/chat/completions", chat_completions)
    router.add(["POST"], "/models/{ns}/{name}/pipeline/{task}", task_api)
    router.add(["POST"], "/models/{ns}/{name}", task_api)
    router.add(["POST"], "/v1/chat/completions", chat_completions)
    router.add(["GET"], "/v1/models", list_models)
    router.add(["GET"], "/api/inference/stats", stats)
