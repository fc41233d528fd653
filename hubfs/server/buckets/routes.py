"""Bucket routes, as ``huggingface_hub`` calls them (``create_bucket``, ``bucket_info``, ``list_bucket_tree``,
``batch_bucket_files``; ``run_uv_job`` of a local script uses exactly these):

- ``POST /api/buckets/{ns}/{name}`` ``{private?}`` -> ``{url, id, name}``; 409 when it exists
- ``GET /api/buckets/{ns}/{name}`` -> ``{id, private, createdAt, size, totalFiles}``
- ``GET /api/buckets/{ns}/{name}/tree[/{path}][?recursive=true]`` -> ``[{type: "file", path, size, xetHash,
  mtime} | {type: "directory", path}]``
- ``GET /api/buckets/{ns}/{name}/xet-read-token|xet-write-token`` -> a CAS token (JSON and headers)
- ``POST /api/buckets/{ns}/{name}/batch`` (NDJSON of ``addFile``/``deleteFile``) -> ``{failed: [{path, error}]}``
- ``GET /buckets/{ns}/{name}/resolve/{path}``: the file's bytes
- the bucket CAS at ``/api/buckets-cas/{instance}``: ``POST /v1/xorbs/...``, ``/v1/shards``, ``/v2/shards``
  (xorbs are validated and stored by the hub's :class:`~hubfs.server.xet.cas.Cas`; a shard's files are
  checked against them and their sha256 computed here, since hf_xet sends none for buckets).

Access: a private bucket is visible to its namespace's members only (404 to anyone else); creating,
uploading and changing files need a write token with write rights on the namespace.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hubfs.errors import BadRequestError, ConflictError, NotFoundError, PayloadTooLargeError
from hubfs.paths import validate_name, validate_path_in_repo
from hubfs.server.buckets import tokens
from hubfs.server.buckets.store import MAX_FILES, BucketFile, BucketStore
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Hub
from hubfs.server.wire import caller_of, endpoint_of, hub_of, iso, read_body, read_json
from hubfs.server.xet.cas import Cas
from hubfs.server.xet.format import (
    XetFormatError,
    hash_to_str,
    str_to_hash,
)
from hubfs.server.xet.routes import MAX_SHARD_BODY, MAX_XORB_BODY, cas_instance
from hubfs.server.xet.store import XetFile

STATE_KEY = "hubfs.buckets"
CAS_PATH = "/api/buckets-cas"
MAX_BATCH_BODY = 16 << 20
MAX_BATCH_OPS = 10_000


class BucketExistsError(ConflictError):
    """409 that still names the bucket's URL (``create_bucket(exist_ok=True)`` reads it from the answer)."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.body = {"url": url}


class BatchFailedError(BadRequestError):
    """422: no operation of a batch applied; the body still names each failure (``failed``)."""

    def __init__(self, message: str, failed: list[dict[str, str]]) -> None:
        super().__init__(message, status=422)
        self.body = {"success": 0, "failed": failed}


def store_of(request: Request) -> BucketStore:
    return request.scope[STATE_KEY]  # type: ignore[no-any-return]


def _bucket_id(ns: str, name: str) -> str:
    validate_name(ns, "namespace")
    validate_name(name, "bucket name")
    return f"{ns}/{name}"


# -- buckets -------------------------------------------------------------------------------------

async def create_bucket(request: Request, ns: str, name: str) -> Response:
    body = await read_json(request, 1 << 20)
    return await run_in_threadpool(_create, request, ns, name, body)


def _create(request: Request, ns: str, name: str, body: dict[str, Any]) -> Response:
    hub, caller = hub_of(request), caller_of(request)  # a bad token is 401 before a bad name is 400
    bucket_id = _bucket_id(ns, name)
    hub.require_write(caller, bucket_id.split("/", 1)[0])
    private = body.get("private")
    if private is None:
        private = body.get("visibility") == "private"
    if not isinstance(private, bool):
        raise BadRequestError("'private' must be true or false.")
    assert caller.user is not None
    bucket = store_of(request).create(bucket_id, private, caller.user)
    url = f"{endpoint_of(request)}/buckets/{bucket_id}"
    if bucket is None:
        raise BucketExistsError(f"Bucket {bucket_id} already exists.", url)
    return json_response({"url": url, "id": bucket_id, "name": bucket_id}, status=200)


def bucket_info(request: Request, ns: str, name: str) -> Response:
    hub, store = hub_of(request), store_of(request)
    bucket = tokens.visible(hub, store, caller_of(request), _bucket_id(ns, name))
    count, size = store.usage(bucket.id)
    return json_response({"id": bucket.id, "private": bucket.private, "createdAt": iso(bucket.created_at),
                          "size": size, "totalFiles": count})


def bucket_tree(request: Request, ns: str, name: str, path: str = "") -> Response:
    """The files under the folder ``path`` (``?recursive=true``: at every depth; else its files and folders)."""
    hub, store = hub_of(request), store_of(request)
    bucket = tokens.visible(hub, store, caller_of(request), _bucket_id(ns, name))
    start = unquote(path).strip("/")
    base = f"{start}/" if start else ""
    recursive = request.query_params.get("recursive", "").lower() in ("true", "1")
    out: list[dict[str, Any]] = []
    folders: set[str] = set()
    for f in store.files(bucket.id, base):
        rest = f.path[len(base):]
        if not recursive and "/" in rest:
            folder = base + rest.split("/", 1)[0]
            if folder not in folders:
                folders.add(folder)
                out.append({"type": "directory", "path": folder})
            continue
        out.append({"type": "file", "path": f.path, "size": f.size, "xetHash": f.xet_hash,
                    "mtime": iso(f.mtime / 1000)})
    return json_response(out)


def _token(request: Request, ns: str, name: str, scope: str) -> Response:
    hub, store, caller = hub_of(request), store_of(request), caller_of(request)
    bucket = tokens.visible(hub, store, caller, _bucket_id(ns, name))
    if scope == "write":
        hub.require_write(caller, bucket.namespace)
    token, exp = tokens.mint(hub, caller, bucket, scope)
    cas = f"{endpoint_of(request)}{CAS_PATH}/{cas_instance(hub)}"
    return json_response({"casUrl": cas, "accessToken": token, "exp": exp},
                         headers={"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)})


def read_token(request: Request, ns: str, name: str, rest: str = "") -> Response:
    return _token(request, ns, name, "read")


def write_token(request: Request, ns: str, name: str, rest: str = "") -> Response:
    return _token(request, ns, name, "write")


async def batch(request: Request, ns: str, name: str) -> Response:
    """POST /api/buckets/{id}/batch: NDJSON operations applied together; failures listed, not raised."""
    raw = bytes(await read_body(request, MAX_BATCH_BODY, "A batch"))
    return await run_in_threadpool(_batch, request, ns, name, raw)


def _batch(request: Request, ns: str, name: str, raw: bytes) -> Response:
    hub, store, caller = hub_of(request), store_of(request), caller_of(request)
    bucket = tokens.visible(hub, store, caller, _bucket_id(ns, name))
    hub.require_write(caller, bucket.namespace)
    ops = _operations(raw)
    adds: list[BucketFile] = []
    deletes: list[str] = []
    failed: list[dict[str, str]] = []
    for op in ops:
        path = str(op.get("path") or "")
        try:
            path = validate_path_in_repo(path)
            if op.get("type") == "deleteFile":
                deletes.append(path)
            elif op.get("type") == "addFile":
                adds.append(_added(hub, store, bucket.id, path, op))
            else:
                raise BadRequestError(f"operation {str(op.get('type'))[:40]!r} is not supported by this hub")
        except (BadRequestError, NotFoundError) as exc:
            failed.append({"path": path, "error": exc.message})
    count, _ = store.usage(bucket.id)
    if count + len(adds) > MAX_FILES:
        raise PayloadTooLargeError(f"A bucket holds at most {MAX_FILES} files on this hub.")
    store.put(bucket.id, adds, deletes)
    if failed and not (adds or deletes):  # nothing applied: the Hub's error shape, still listing each failure
        raise BatchFailedError(f"No operation was applied: {failed[0]['path'] or '(no path)'}: {failed[0]['error']}",
                               failed)
    return json_response({"success": len(adds) + len(deletes), "failed": failed})


def _operations(raw: bytes) -> list[dict[str, Any]]:
    ops = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            op = json.loads(line)
        except (ValueError, RecursionError):
            raise BadRequestError("The batch body must be NDJSON: one JSON object a line.") from None
        if not isinstance(op, dict):
            raise BadRequestError("Each line of a batch must be a JSON object.")
        ops.append(op)
    if len(ops) > MAX_BATCH_OPS:
        raise BadRequestError(f"At most {MAX_BATCH_OPS} operations per batch (got {len(ops)}).")
    return ops


def _added(hub: Hub, store: BucketStore, bucket_id: str, path: str, op: dict[str, Any]) -> BucketFile:
    xet_hash = op.get("xetHash")
    if not isinstance(xet_hash, str):
        raise BadRequestError("addFile needs a 'xetHash'.")
    try:
        known = hub.xet.file(str_to_hash(xet_hash))
    except (ValueError, XetFormatError):
        raise BadRequestError(f"{xet_hash[:80]!r} is not a Xet file hash.") from None
    if known is None or not store.was_uploaded(bucket_id, xet_hash):
        raise NotFoundError(f"Xet file {xet_hash} was not uploaded to this bucket.")
    mtime = op.get("mtime")
    return BucketFile(path, xet_hash, known.size, float(mtime) if isinstance(mtime, int | float) else 0.0)


async def resolve(request: Request, ns: str, name: str, path: str) -> Response:
    """GET /buckets/{id}/resolve/{path}: the file's bytes, streamed from the xorbs."""
    f, chunks = await run_in_threadpool(_resolved, request, ns, name, path)
    return StreamingResponse(iterate_in_threadpool(chunks), media_type="application/octet-stream",
                             headers={"Content-Length": str(f.size), "X-Xet-Hash": f.xet_hash})


def _resolved(request: Request, ns: str, name: str, path: str) -> tuple[BucketFile, Iterator[bytes]]:
    hub, store = hub_of(request), store_of(request)
    bucket = tokens.visible(hub, store, caller_of(request), _bucket_id(ns, name))
    f = store.file(bucket.id, validate_path_in_repo(path))
    stored = hub.xet.file(str_to_hash(f.xet_hash)) if f is not None else None
    if f is None or stored is None:
        raise NotFoundError(f"{path} is not in bucket {bucket.id}.")
    return f, hub.xet.chunk_data(stored.terms)


# -- the bucket CAS --------------------------------------------------------------------------------

def _check_instance(request: Request, instance: str) -> None:
    if instance != cas_instance(hub_of(request)):
        raise NotFoundError("This bucket CAS address belongs to an earlier data folder of this hub; ask for a new token.")


async def _grant(request: Request, need_write: bool = False) -> tokens.BucketGrant:
    return await run_in_threadpool(tokens.verify, hub_of(request), store_of(request),
                                   request.headers.get("authorization"), need_write)


async def post_xorb(request: Request, instance: str, cas_prefix: str, xorb: str) -> Response:
    _check_instance(request, instance)
    await _grant(request, need_write=True)
    h = str_to_hash(xorb)
    cas: Cas = request.scope["hubfs.cas"]
    async with request.scope["hubfs.xet_uploads"]:
        body = await read_body(request, MAX_XORB_BODY, "A xorb")
        inserted = await run_in_threadpool(cas.accept_xorb, h, memoryview(body))
    return json_response({"was_inserted": inserted})


async def post_shard(request: Request, instance: str) -> Response:
    await _shard(request, instance)
    return json_response({"result": 1})


async def post_shard_v2(request: Request, instance: str) -> Response:
    """Like v1, answered as the NDJSON progress stream hf_xet reads (the work is done before it starts)."""
    total = await _shard(request, instance)
    lines = [{"type": "validating", "verified": total, "total": total}, {"type": "committing", "stage": "uploading"},
             {"type": "result"}]
    return Response(b"".join(json.dumps(x).encode() + b"\n" for x in lines), media_type="application/x-ndjson")


async def _shard(request: Request, instance: str) -> int:
    _check_instance(request, instance)
    grant = await _grant(request, need_write=True)
    cas: Cas = request.scope["hubfs.cas"]
    async with request.scope["hubfs.xet_uploads"]:
        body = bytes(await read_body(request, MAX_SHARD_BODY, "A shard"))
        return await run_in_threadpool(commit_shard, cas, store_of(request), grant.bucket.id, body)


def commit_shard(cas: Cas, store: BucketStore, bucket_id: str, body: bytes) -> int:
    """Check a shard against the stored xorbs, hash each file's content, record the files in the Xet
    store and as uploads of the bucket; the number of files. 400 on the first problem."""
    checked = cas.check_shard(body, sha256_given=False)  # hf_xet sends no sha256 for bucket files
    xet = cas.store
    files = []
    with cas.hub.reclaim.shared():
        for f, size in zip(checked.shard.files, checked.sizes):
            known = xet.file(f.file_hash)
            if known is None:
                digest = hashlib.sha256()
                for piece in xet.chunk_data(f.terms):
                    digest.update(piece)
                known = XetFile(f.file_hash, digest.hexdigest(), size, tuple(f.terms))
                xet.add_file(known)
            files.append(hash_to_str(known.hash))
    store.uploaded(bucket_id, files)
    return len(files)


async def get_chunk(request: Request, instance: str, cas_prefix: str, chunk: str) -> Response:
    """No deduplication against other uploads for buckets: every chunk is new to the client."""
    _check_instance(request, instance)
    await _grant(request)
    raise NotFoundError(f"Chunk {chunk[:80]} is not known to this bucket CAS.")


async def post_telemetry(request: Request, instance: str) -> Response:
    _check_instance(request, instance)
    await _grant(request)
    await read_body(request, 1 << 20, "Telemetry")
    return json_response({})


def not_served(request: Request, instance: str, rest: str) -> Response:
    """Other CAS routes (xorb grants, batch reconstructions): 404, which hf_xet takes as "use the older route"."""
    raise NotFoundError("This CAS route is not served by this hub.")


def register(router: Router) -> None:
    """Add the bucket routes (before the ``/api`` catch-all and the web pages)."""
    b = "/api/buckets/{ns}/{name}"
    router.add(["POST"], b, create_bucket)
    router.add(["GET"], b, bucket_info)
    router.add(["GET"], b + "/tree", bucket_tree)
    router.add(["GET"], b + "/tree/{path:path}", bucket_tree)
    router.add(["GET"], b + "/xet-read-token{rest:path}", read_token)
    router.add(["GET"], b + "/xet-read-token", read_token)
    router.add(["GET"], b + "/xet-write-token{rest:path}", write_token)
    router.add(["GET"], b + "/xet-write-token", write_token)
    router.add(["POST"], b + "/batch", batch)
    router.add(["GET"], "/buckets/{ns}/{name}/resolve/{path:path}", resolve)
    c = CAS_PATH + "/{instance}"
    router.add(["POST"], c + "/v1/xorbs/{cas_prefix}/{xorb}", post_xorb)
    router.add(["POST"], c + "/v1/shards", post_shard)
    router.add(["POST"], c + "/v2/shards", post_shard_v2)
    router.add(["GET"], c + "/v1/chunks/{cas_prefix}/{chunk}", get_chunk)
    router.add(["POST"], c + "/v1/telemetry", post_telemetry)
    router.add(["GET", "POST", "PUT"], c + "/{rest:path}", not_served)


def state(hub: Hub) -> dict[str, Any]:
    """What the bucket routes need in the app's state: the hub's :class:`BucketStore`."""
    return {STATE_KEY: BucketStore(hub.db)}
