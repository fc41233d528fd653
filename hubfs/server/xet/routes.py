"""Xet on the wire: the Hub's token routes and the CAS routes hf_xet calls (``{endpoint}/cas/...``).

Wire contract: ``shared/anchors/xet.md`` sections 1-3. Every handler checks its token off the event
loop first, then reads a bounded body, then hands the work to :class:`~hubfs.server.xet.cas.Cas` in
the thread pool. CAS routes this hub does not implement (xorb grants, batch reconstructions) answer
404, which hf_xet takes as "fall back to the older route".
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hubfs.errors import BadRequestError, HubfsError, NotFoundError
from hubfs.paths import RepoType, is_pr_ref, validate_revision
from hubfs.server.api_repos import repo_type_of
from hubfs.server.http import RangedBody, Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.metadata import Repo
from hubfs.server.wire import caller_of, endpoint_of, flag, hub_of, read_body, read_json
from hubfs.server.xet import tokens
from hubfs.server.xet.cas import Cas, CheckedShard
from hubfs.server.xet.format import MAX_XORB_BYTES, MAX_XORB_CHUNKS, str_to_hash

CAS_PATH = "/cas"
MAX_XORB_BODY = MAX_XORB_BYTES + 8 * MAX_XORB_CHUNKS + (1 << 20)  # scheme 0 is never larger than its chunks
MAX_SHARD_BODY = 64 << 20
MAX_TELEMETRY_BODY = 1 << 20
HEARTBEAT = 10.0  # seconds between progress lines while a /v2/shards upload is verified
log = logging.getLogger("hubfs.server")


def cas_of(request: Request) -> Cas:
    return request.scope["hubfs.cas"]  # type: ignore[no-any-return]


def cas_instance(hub: Hub) -> str:
    """This data folder's CAS name. hf_xet keys its shard cache by the CAS URL and trusts the xorbs it
    lists without asking; a hub started afresh on the same address must not look like the old one."""
    return hub.derive_key("xet-cas-instance").hex()[:16]


def cas_url(request: Request) -> str:
    return f"{endpoint_of(request)}{CAS_PATH}/{cas_instance(hub_of(request))}"


def _check_instance(request: Request, instance: str) -> None:
    if instance != cas_instance(hub_of(request)):
        raise NotFoundError("This Xet CAS address belongs to an earlier data folder of this hub; ask for a new token.")


def xet_auth_link(request: Request, repo_type: str, repo_id: str, commit: str) -> str:
    """The ``Link`` header value (``rel="xet-auth"``) that points downloads at the read-token route."""
    return (f"<{endpoint_of(request)}/api/{RepoType.parse(repo_type).value}s/{repo_id}/xet-read-token/{commit}>; "
            'rel="xet-auth"')


# -- token routes (Hub side) -------------------------------------------------------------------------

def _token_response(request: Request, token: str, exp: int) -> Response:
    """Both forms: hf_xet reads the JSON body, huggingface_hub's Python side reads the headers."""
    cas = cas_url(request)
    return json_response({"casUrl": cas, "accessToken": token, "exp": exp},
                         headers={"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)})


def xet_read_token(request: Request, t: str, ns: str, name: str, rest: str = "") -> Response:
    """GET /api/{T}/{id}/xet-read-token/{rev}: a CAS read token for anyone who may read the repo's files
    (anonymous callers too, for public repos)."""
    hub, caller = hub_of(request), caller_of(request)
    repo = hub.visible_repo(caller, repo_type_of(t), f"{ns}/{name}")
    hub.check_gate(caller, repo)
    if rest.strip("/"):
        validate_revision(rest.strip("/"))
    token, exp = tokens.mint(hub, caller, repo, "", "read")
    return _token_response(request, token, exp)


def xet_write_token(request: Request, t: str, ns: str, name: str, rest: str = "") -> Response:
    """GET /api/{T}/{id}/xet-write-token/{rev}[?create_pr=1]: a CAS write token under the commit rules
    of ``rev`` (``None`` with ``create_pr``: uploads for a new pull request)."""
    hub, caller = hub_of(request), caller_of(request)
    create_pr = flag(request, "create_pr")
    rev = rest.strip("/") or "main"
    if create_pr and rev == "None":
        rev = "main"
    validate_revision(rev)
    repo = hub.repo_for_commit(caller, repo_type_of(t), f"{ns}/{name}", rev, create_pr)
    ref = "" if create_pr or is_pr_ref(rev) else (rev if rev.startswith("refs/heads/") else f"refs/heads/{rev}")
    token, exp = tokens.mint(hub, caller, repo, ref, "write")
    return _token_response(request, token, exp)


MAX_DUPLICATES = 1000  # files per lfs-files/duplicate request (huggingface_hub sends batches of 500)


async def duplicate_lfs_files(request: Request, t: str, ns: str, name: str) -> Response:
    """POST /api/{T}/{id}/lfs-files/duplicate {target:{type,name}, files:[{xetHash,sha256,filename}]}
    -> {failed: [{sha256, error}]}: lets a cross-repo ``CommitOperationCopy`` commit the source's Xet
    files in the target. The caller must read the source and may upload to the target (a write token
    of its namespace, or any signed-in write token, as for pull request uploads)."""
    hub = hub_of(request)
    # Access first (a bad token is 401, a hidden source 404), then the body.
    await run_in_threadpool(_readable, hub, caller_of(request), repo_type_of(t), f"{ns}/{name}")
    body = await read_json(request)
    target, files = body.get("target"), body.get("files")
    if not isinstance(target, dict) or not isinstance(target.get("name"), str) or not isinstance(files, list):
        raise BadRequestError("The body needs 'target' {type, name} and a 'files' list.")
    if len(files) > MAX_DUPLICATES:
        raise BadRequestError(f"At most {MAX_DUPLICATES} files per request (got {len(files)}).")
    failed = await run_in_threadpool(_duplicate, cas_of(request), caller_of(request), repo_type_of(t),
                                     f"{ns}/{name}", str(target.get("type") or "model"), target["name"], files)
    return json_response({"failed": failed})


def _readable(hub: Hub, caller: Caller, repo_type: str, repo_id: str) -> Repo:
    repo = hub.visible_repo(caller, repo_type, repo_id)
    hub.check_gate(caller, repo)
    return repo


def _duplicate(cas: Cas, caller: Caller, src_type: str, src_id: str, target_type: str, target_id: str,
               files: list[Any]) -> list[dict[str, str]]:
    hub = cas.hub
    source = _readable(hub, caller, src_type, src_id)
    target = hub.visible_repo(caller, RepoType.parse(target_type).value, target_id)
    hub.require_lfs_upload(caller, target, "")
    return cas.duplicate(source, target, files)


# -- CAS routes ------------------------------------------------------------------------------------------

async def _grant(request: Request, need_write: bool = False) -> tokens.CasGrant:
    return await run_in_threadpool(tokens.verify, hub_of(request), request.headers.get("authorization"), need_write)


async def get_chunk(request: Request, instance: str, cas_prefix: str, chunk: str) -> Response:
    """GET /cas/v1/chunks/{prefix}/{hash}: a dedup shard naming the xorb that holds the chunk, or 404."""
    _check_instance(request, instance)
    await _grant(request)
    h = str_to_hash(chunk)
    shard = await run_in_threadpool(cas_of(request).dedup_shard, h)
    if shard is None:
        raise NotFoundError(f"Chunk {chunk} is not known to this hub.")
    return Response(shard, media_type="application/octet-stream")


async def post_xorb(request: Request, instance: str, cas_prefix: str, xorb: str) -> Response:
    """POST /cas/v1/xorbs/{prefix}/{hash}: validate and store a xorb -> ``{"was_inserted": bool}``."""
    _check_instance(request, instance)
    await _grant(request, need_write=True)
    h = str_to_hash(xorb)
    async with request.scope["hubfs.xet_uploads"]:  # bounds the xorb and shard bodies held in memory at once
        body = await read_body(request, MAX_XORB_BODY, "A xorb")
        inserted = await run_in_threadpool(cas_of(request).accept_xorb, h, memoryview(body))
    return json_response({"was_inserted": inserted})


async def post_shard(request: Request, instance: str) -> Response:
    """POST /cas/v1/shards: check a shard and verify its files -> ``{"result": 1}``; 400 on any problem."""
    _check_instance(request, instance)
    grant = await _grant(request, need_write=True)
    cas = cas_of(request)
    checked = await _read_shard(request, cas)
    await run_in_threadpool(cas.commit_shard, grant.repo, checked)
    return json_response({"result": 1})


async def _read_shard(request: Request, cas: Cas) -> CheckedShard:
    """Read and check a shard body (held in memory like a xorb's, under the same bound)."""
    async with request.scope["hubfs.xet_uploads"]:
        body = bytes(await read_body(request, MAX_SHARD_BODY, "A shard"))
        return await run_in_threadpool(cas.check_shard, body)


async def post_shard_v2(request: Request, instance: str) -> Response:
    """POST /cas/v2/shards: like v1, but the answer streams NDJSON progress (``validating`` lines as
    heartbeats while files are verified, then ``committing`` and ``result``, or a terminal ``error``).
    A shard that fails the structural checks is refused with 400 before the stream starts."""
    _check_instance(request, instance)
    grant = await _grant(request, need_write=True)
    cas = cas_of(request)
    checked = await _read_shard(request, cas)
    total = len(checked.shard.files)
    done = [0]

    def progress(verified: int, _total: int) -> None:
        done[0] = verified

    async def events() -> AsyncIterator[bytes]:
        yield _event({"type": "validating", "verified": 0, "total": total})
        task = asyncio.ensure_future(run_in_threadpool(cas.commit_shard, grant.repo, checked, progress))
        while not task.done():
            await asyncio.wait({task}, timeout=HEARTBEAT)
            if not task.done():
                yield _event({"type": "validating", "verified": done[0], "total": total})
        try:
            task.result()
        except HubfsError as exc:
            yield _event({"type": "error", "message": exc.message, "retryable": False})
            return
        except Exception:
            log.exception("shard upload failed")
            yield _event({"type": "error", "message": "Internal error while storing the shard.", "retryable": True})
            return
        yield _event({"type": "validating", "verified": total, "total": total})
        yield _event({"type": "committing", "stage": "uploading"})
        yield _event({"type": "committing", "stage": "syncing"})
        yield _event({"type": "result"})

    return StreamingResponse(events(), media_type="application/x-ndjson")


def _event(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def get_reconstruction(request: Request, instance: str, version: str, file: str) -> Response:
    """GET /cas/v{1,2}/reconstructions/{file hash} (``Range`` honoured, 416 past the end)."""
    _check_instance(request, instance)
    if version not in ("1", "2"):
        raise NotFoundError(f"Reconstruction API v{version} is not served here.")
    grant = await _grant(request)
    h = str_to_hash(file)
    body = await run_in_threadpool(cas_of(request).reconstruction, grant, h, request.headers.get("range"),
                                   cas_url(request), int(version))
    return json_response(body)


def get_xorb(request: Request, instance: str, xorb: str) -> Response:
    """GET /cas/xorb/{hash}?r=&expires=&sig= (no token): the signed byte ranges of a stored xorb,
    one range as 206, several as ``multipart/byteranges``; any other range is refused (403)."""
    _check_instance(request, instance)
    q = request.query_params
    hub: Hub = hub_of(request)
    x, allowed = cas_of(request).signed_xorb(xorb, q.get("r"), q.get("expires"), q.get("sig"))
    headers = {"Content-Type": "application/octet-stream", "Cache-Control": "private, max-age=3600"}
    return RangedBody(request, x.stream_size, headers, layout=hub.xet.xorb_layout(x), allowed=allowed)


async def post_telemetry(request: Request, instance: str) -> Response:
    """POST /cas/v1/telemetry: accepted and dropped (bounded body)."""
    _check_instance(request, instance)
    await _grant(request)
    await read_body(request, MAX_TELEMETRY_BODY, "Telemetry")
    return json_response({})


def register(router: Router) -> None:
    R = "/api/{t:type}/{ns}/{name}"
    router.add(["GET"], R + "/xet-read-token{rest:path}", xet_read_token)
    router.add(["GET"], R + "/xet-read-token", xet_read_token)
    router.add(["GET"], R + "/xet-write-token{rest:path}", xet_write_token)
    router.add(["GET"], R + "/xet-write-token", xet_write_token)
    router.add(["POST"], R + "/lfs-files/duplicate", duplicate_lfs_files)
    C = CAS_PATH + "/{instance}"
    router.add(["GET"], C + "/v1/chunks/{cas_prefix}/{chunk}", get_chunk)
    router.add(["POST"], C + "/v1/xorbs/{cas_prefix}/{xorb}", post_xorb)
    router.add(["POST"], C + "/v1/shards", post_shard)
    router.add(["POST"], C + "/v2/shards", post_shard_v2)
    router.add(["GET"], C + "/v{version:int}/reconstructions/{file}", get_reconstruction)
    router.add(["GET"], C + "/xorb/{xorb}", get_xorb)
    router.add(["POST"], C + "/v1/telemetry", post_telemetry)
