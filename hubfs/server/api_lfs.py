"""The Git LFS batch API and its transfers, at ``{E}/{P}{ns}/{name}.git/info/lfs/...``.

Wire contract: the git-lfs batch and basic-transfer specs plus the Hub's multipart extension
(``hub-api.md`` 5.4-5.5), and hubfs's own ``hubfs-stream`` download transfer (:func:`stream`). Upload, part, completion and verify hrefs are HMAC-signed and expire:
the official client sends no Authorization header on them. Every upload is hashed and its size
checked before it is stored. An object is served or accepted as "already there" only for a repo
that proved possession of it (uploaded or committed it): content ids carry no repo identity.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from hubfs.errors import BadRequestError, ConflictError, IntegrityError, NotFoundError, PayloadTooLargeError
from hubfs.lfs import is_valid_oid
from hubfs.paths import RepoType, public_repo_id
from hubfs.server.http import RangedBody, Router, Segment, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.lfs_store import ObjectWriter
from hubfs.server.metadata import Repo
from hubfs.server.wire import caller_of, endpoint_of, hub_of, read_json

if TYPE_CHECKING:
    from hubfs.server.s3_store import S3ObjectStore

LFS_JSON = "application/vnd.git-lfs+json"
MAX_PARTS = 10_000
STREAM_TRANSFER = "hubfs-stream"  # a download batch that offers it learns that .../objects/stream answers
MAX_STREAM_OBJECTS = 1000


def _repo_id(name_git: str, ns: str) -> str:
    if not name_git.endswith(".git"):
        raise NotFoundError("LFS endpoints live under {repo}.git/info/lfs.")
    return f"{ns}/{name_git[:-4]}"


def _lfs_json(data: Any, status: int = 200) -> Response:
    return json_response(data, status=status, headers={"Content-Type": LFS_JSON})


INVALID_OBJECT = "Invalid object: oid must be sha256 hex, size an integer >= 0."


def _object(obj: object) -> tuple[str | None, int | None]:
    """The (oid, size) of a batch or stream ``objects`` entry, or (None, None) when it is malformed."""
    oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
    if not isinstance(oid, str) or not is_valid_oid(oid) or not isinstance(size, int) or not 0 <= size < 1 << 63:
        return None, None
    return oid, size


def _base(endpoint: str, repo: Repo) -> str:
    return f"{endpoint}/{RepoType.parse(repo.type).url_prefix}{public_repo_id(repo.repo_id)}.git/info/lfs/objects"


async def batch(request: Request, prefix: str, ns: str, name_git: str) -> Response:
    """POST .../objects/batch {operation, transfers, objects:[{oid,size}], ref?} -> {transfer, objects}.

    Upload: objects this repo already holds (uploaded to it, or committed in it) get no actions; every
    other object, even one stored for another repo, gets a signed ``upload`` href
    (basic PUT, or the HF multipart header with ``chunk_size`` and numbered part URLs when the client
    offers ``multipart`` and the object is larger than one chunk) and a signed ``verify`` href.
    Download: a signed ``download`` href, or a per-object 404 error; the answer's ``transfer`` is
    ``hubfs-stream`` when the client offered it and the hub sends the bytes itself (not from S3): the
    objects' hrefs work all the same, and :func:`stream` sends many objects in one answer.
    """
    hub, caller, endpoint = hub_of(request), caller_of(request), endpoint_of(request)
    repo_type = RepoType.parse(prefix.rstrip("/") or "model").value
    repo_id = _repo_id(name_git, ns)
    body = await read_json(request)
    return _lfs_json(await run_in_threadpool(_batch, hub, caller, endpoint, repo_type, repo_id, body))


def _batch(hub: Hub, caller: Caller, endpoint: str, repo_type: str, repo_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The batch answer (blocking: access and store checks, upload sessions)."""
    operation = body.get("operation")
    objects = body.get("objects")
    if operation not in ("upload", "download") or not isinstance(objects, list):
        raise BadRequestError("LFS batch needs operation 'upload' or 'download' and an 'objects' list.")
    if body.get("hash_algo", "sha256") != "sha256":
        raise BadRequestError("Only the sha256 hash_algo is supported.", status=422)
    transfers = body.get("transfers") or ["basic"]
    ref_obj = body.get("ref") or {}
    if not isinstance(transfers, list) or not isinstance(ref_obj, dict):
        raise BadRequestError("LFS batch 'transfers' must be a list and 'ref' an object.")
    if operation == "upload":
        repo = hub.visible_repo(caller, repo_type, repo_id)
        hub.require_lfs_upload(caller, repo, str(ref_obj.get("name") or ""))
    else:
        repo = hub.visible_repo(caller, repo_type, repo_id)
        hub.check_gate(caller, repo)
    base = _base(endpoint, repo)
    out = []
    use_multipart = False
    for obj in objects:
        oid, size = _object(obj)
        if oid is None or size is None:
            raw_size = obj.get("size") if isinstance(obj, dict) else None
            out.append({"oid": str(obj.get("oid") if isinstance(obj, dict) else None),
                        "size": raw_size if isinstance(raw_size, int) else 0,
                        "error": {"code": 422, "message": INVALID_OBJECT}})
            continue
        linked = hub.meta.lfs_linked(repo, oid) and hub.objects.has(oid, size)
        if linked and operation == "upload":
            hub.lfs.touch(oid)  # "already there": gc's grace now covers the commit that follows
        entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
        if operation == "download":
            if not linked:
                entry["error"] = {"code": 404, "message": f"Object {oid} does not exist in this repository."}
            else:
                sig = hub.sign(f"download|{repo.id}|{oid}", ttl=3600)
                href = hub.lfs.download_url(oid) or f"{base}/{oid}?{sig}"  # presigned on the object store (S3)
                entry["actions"] = {"download": {"href": href, "expires_in": 3600}}
        elif not linked and hub.lfs.remote:  # straight into the object store, promoted by verify
            if size > hub.multipart_chunk_size * MAX_PARTS:
                raise PayloadTooLargeError(f"Object {oid} needs more than {MAX_PARTS} parts.")
            entry["actions"], multi = _s3(hub).upload_actions(hub.sign, base, repo.id, oid, size,
                                                              hub.multipart_chunk_size, "multipart" in transfers)
            use_multipart = use_multipart or multi
        elif not linked:
            verify = f"{base}/{oid}/{size}/verify?{hub.sign(f'verify|{repo.id}|{oid}|{size}')}"
            chunk = hub.multipart_chunk_size
            if "multipart" in transfers and size > chunk:
                use_multipart = True
                parts = math.ceil(size / chunk)
                if parts > MAX_PARTS:
                    raise PayloadTooLargeError(f"Object {oid} needs more than {MAX_PARTS} parts.")
                upload_id = hub.lfs.new_multipart()
                header = {"chunk_size": str(chunk)}
                for n in range(1, parts + 1):
                    header[str(n)] = f"{base}/{oid}/{size}/parts/{upload_id}/{n}?{hub.sign(f'part|{upload_id}|{n}')}"
                signed = hub.sign(f"complete|{repo.id}|{upload_id}|{oid}|{size}")
                complete = f"{base}/{oid}/{size}/parts/{upload_id}?{signed}"
                entry["actions"] = {"upload": {"href": complete, "header": header}, "verify": {"href": verify}}
            else:
                href = f"{base}/{oid}/{size}?{hub.sign(f'upload|{repo.id}|{oid}|{size}')}"
                entry["actions"] = {"upload": {"href": href}, "verify": {"href": verify}}
        out.append(entry)
    streams = operation == "download" and STREAM_TRANSFER in transfers and not hub.lfs.remote
    transfer = "multipart" if use_multipart else STREAM_TRANSFER if streams else "basic"
    return {"transfer": transfer, "objects": out, "hash_algo": "sha256"}


async def stream(request: Request, prefix: str, ns: str, name_git: str) -> Response:
    """POST .../objects/stream {objects:[{oid,size}]} -> the objects' bytes back to back, in the order asked.

    hubfs's extension for many small objects in one round trip (a clone's LFS files): the same access
    rules as a download batch (the repo visible to the caller, its gate passed, every object one this
    repo holds); at most ``MAX_STREAM_OBJECTS`` objects, none twice. The whole request fails before a
    byte is sent: 404 naming an object the repo does not hold, 422 for a malformed one or a wrong size,
    409 for an object only in the object store (S3: use the batch hrefs). ``Content-Length`` is the sum
    of the sizes; Range is honoured, so a cut answer is resumed where it broke off.
    """
    hub, caller = hub_of(request), caller_of(request)
    repo_type = RepoType.parse(prefix.rstrip("/") or "model").value
    repo_id = _repo_id(name_git, ns)
    body = await read_json(request)
    layout, size = await run_in_threadpool(_stream_layout, hub, caller, repo_type, repo_id, body)
    return RangedBody(request, size, {"Content-Type": "application/octet-stream", "Cache-Control": "no-store"},
                      layout=layout)


def _stream_layout(hub: Hub, caller: Caller, repo_type: str, repo_id: str,
                   body: dict[str, Any]) -> tuple[list[Segment], int]:
    """The layout and size of a stream answer (blocking: access and store checks); see :func:`stream`."""
    objects = body.get("objects")
    if not isinstance(objects, list) or not objects:
        raise BadRequestError("An LFS stream needs a non-empty 'objects' list.")
    if len(objects) > MAX_STREAM_OBJECTS:
        raise BadRequestError(f"An LFS stream sends at most {MAX_STREAM_OBJECTS} objects, not {len(objects)}.",
                              status=413)
    repo = hub.visible_repo(caller, repo_type, repo_id)
    hub.check_gate(caller, repo)
    if hub.lfs.remote:
        raise ConflictError("This hub keeps LFS objects in its object store: download them through the batch API.")
    layout: list[Segment] = []
    seen: set[str] = set()
    total = 0
    for obj in objects:
        oid, size = _object(obj)
        if oid is None or size is None:
            raise BadRequestError(INVALID_OBJECT, status=422)
        if oid in seen:
            raise BadRequestError(f"Object {oid} is asked for twice.", status=422)
        seen.add(oid)
        stored = hub.objects.get(oid) if hub.meta.lfs_linked(repo, oid) else None
        if stored is None:
            raise NotFoundError(f"Object {oid} does not exist in this repository.")
        if stored.size != size:
            raise BadRequestError(f"Object {oid} has {stored.size} bytes, not {size}.", status=422)
        layout.extend(stored.layout)
        total += size
    return layout, total


def _signed_repo(hub: Hub, q: QueryParams, prefix: str, ns: str, name_git: str, action: str, *fields: object) -> Repo:
    """The repo of a signed transfer URL, once its signature for ``action|repo|fields`` checks out.

    A missing repo fails the signature check exactly like an existing one, so these routes tell
    nobody which (private) repos exist.
    """
    repo_type = RepoType.parse(prefix.rstrip("/") or "model").value
    repo_id = _repo_id(name_git, ns)
    repo = hub.meta.get_repo(repo_type, repo_id)
    payload = "|".join([action, str(repo.id) if repo else f"missing:{repo_type}/{repo_id}", *map(str, fields)])
    hub.verify_signature(payload, q.get("expires"), q.get("sig"))
    assert repo is not None  # no signature is ever issued for a missing repo
    return repo


async def _pieces(request: Request, size: int = 1 << 20) -> AsyncIterator[bytes]:
    """The request body in pieces of about ``size`` bytes, so that hashing and disk writes can run
    off the event loop without a thread hop per network chunk."""
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


async def upload(request: Request, prefix: str, ns: str, name_git: str, oid: str, size: str) -> Response:
    """PUT .../objects/{oid}/{size}?expires&sig (raw bytes, no auth header): stored once verified."""
    hub = hub_of(request)
    repo, writer = await run_in_threadpool(_start_upload, hub, request.query_params, prefix, ns, name_git, oid, size)
    # The bytes are hashed even when the object is stored already: an upload is how a repo proves it
    # holds an object, and an empty body must not tell anyone whether an (oid, size) exists.
    try:
        async for piece in _pieces(request):
            await run_in_threadpool(writer.write, piece)
    except BaseException:
        writer.abort()
        raise
    await run_in_threadpool(_finish_upload, hub, repo, writer, oid, int(size))
    return Response(status_code=200)


def _start_upload(hub: Hub, q: QueryParams, prefix: str, ns: str, name_git: str, oid: str,
                  size: str) -> tuple[Repo, ObjectWriter]:
    """Check the upload URL's signature and open the object's writer."""
    repo = _signed_repo(hub, q, prefix, ns, name_git, "upload", oid, size)
    return repo, hub.lfs.writer(oid, int(size))


def _finish_upload(hub: Hub, repo: Repo, writer: ObjectWriter, oid: str, size: int) -> None:
    """Verify and store the object, and link it to the repo that proved it holds it."""
    writer.commit()
    hub.meta.link_lfs(repo, oid, size)


async def upload_part(request: Request, prefix: str, ns: str, name_git: str, oid: str, size: str,
                      upload_id: str, part: str) -> Response:
    """PUT .../objects/{oid}/{size}/parts/{upload_id}/{n}?sig: one multipart slice -> 200 with an ETag."""
    hub = hub_of(request)
    fh, final = await run_in_threadpool(_start_part, hub, request.query_params, upload_id, part)
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    try:
        async for piece in _pieces(request):
            written += len(piece)
            if written > hub.multipart_chunk_size:
                raise PayloadTooLargeError(f"Part {part} is larger than the chunk size {hub.multipart_chunk_size}.")
            await run_in_threadpool(_absorb, digest, fh, piece)
        await run_in_threadpool(_finish_part, fh, final, part)
    except BaseException:
        fh.close()
        (final.parent / f"{part}.partial").unlink(missing_ok=True)
        raise
    return Response(status_code=200, headers={"ETag": f'"{digest.hexdigest()}"'})


def _start_part(hub: Hub, q: QueryParams, upload_id: str, part: str) -> tuple[BinaryIO, Path]:
    """Check the part URL's signature and open the part's file."""
    hub.verify_signature(f"part|{upload_id}|{part}", q.get("expires"), q.get("sig"))
    return hub.lfs.part_writer(upload_id, int(part))


def _finish_part(fh: BinaryIO, final: Path, part: str) -> None:
    fh.close()
    (final.parent / f"{part}.partial").replace(final)


def _absorb(digest: Any, fh: BinaryIO, piece: bytes) -> None:
    digest.update(piece)
    fh.write(piece)


async def complete(request: Request, prefix: str, ns: str, name_git: str, oid: str, size: str,
                   upload_id: str) -> Response:
    """POST .../objects/{oid}/{size}/parts/{upload_id}?sig {oid, parts:[{partNumber, etag}]}:
    concatenates the parts in order, verifies sha256 and size, stores the object."""
    hub, q = hub_of(request), request.query_params
    body = await read_json(request)
    await run_in_threadpool(_complete, hub, q, prefix, ns, name_git, oid, size, upload_id, body)
    return _lfs_json({"oid": oid, "size": int(size)})


def _complete(hub: Hub, q: QueryParams, prefix: str, ns: str, name_git: str, oid: str, size: str, upload_id: str,
              body: dict[str, Any]) -> None:
    s3_upload = q.get("s3")  # set by upload_actions: an S3 multipart upload
    repo = _signed_repo(hub, q, prefix, ns, name_git, "complete", upload_id, oid, size,
                        *([s3_upload] if s3_upload is not None else []))
    parts = body.get("parts")
    if body.get("oid") != oid or not isinstance(parts, list) or not parts:
        raise BadRequestError("Completion body needs this object's oid and a non-empty 'parts' list.")
    if not all(isinstance(p, dict) and type(p.get("partNumber")) is int for p in parts):
        raise BadRequestError("Each completed part needs an integer 'partNumber'.")
    numbers = sorted(p["partNumber"] for p in parts)
    if numbers != list(range(1, len(numbers) + 1)) or len(numbers) != len(parts):
        raise BadRequestError("Parts must be numbered 1..N without gaps.")
    if s3_upload is not None:  # parts went straight to the object store: join them there, then verify
        if not all(isinstance(p.get("etag"), str) for p in parts):
            raise BadRequestError("Each completed part needs its 'etag'.")
        store = _s3(hub)
        store.complete_multipart(store.check_upload_id(upload_id), s3_upload,
                                 sorted((p["partNumber"], p["etag"]) for p in parts))
        store.promote(upload_id, oid, int(size))
        hub.meta.link_lfs(repo, oid, int(size))
        return
    hub.lfs.complete_multipart(upload_id, oid, int(size), numbers)
    hub.meta.link_lfs(repo, oid, int(size))


async def verify(request: Request, prefix: str, ns: str, name_git: str, oid: str, size: str) -> Response:
    """POST .../objects/{oid}/{size}/verify?sig {oid, size}: 200 when the object is stored with that size."""
    hub, q = hub_of(request), request.query_params
    body = await read_json(request)
    await run_in_threadpool(_verify, hub, q, prefix, ns, name_git, oid, size, body)
    return _lfs_json({"oid": oid, "size": int(size)})


def _verify(hub: Hub, q: QueryParams, prefix: str, ns: str, name_git: str, oid: str, size: str,
            body: dict[str, Any]) -> None:
    staged = q.get("upload")  # set by upload_actions: the object's bytes wait in the object store's staging
    repo = _signed_repo(hub, q, prefix, ns, name_git, "verify", oid, size, *([staged] if staged is not None else []))
    if body.get("oid") not in (None, oid) or body.get("size") not in (None, int(size)):
        raise BadRequestError("Verify body does not match the object of this URL.")
    if staged is not None and hub.lfs.remote:
        try:
            store = _s3(hub)
            store.promote(store.check_upload_id(staged), oid, int(size))  # size and sha256, or deleted
            hub.meta.link_lfs(repo, oid, int(size))
        except IntegrityError as exc:
            if exc.status != 404:  # 404: nothing staged (verified already, or never sent): checked below
                raise
    if not (hub.objects.has(oid, int(size)) and hub.meta.lfs_linked(repo, oid)):
        raise IntegrityError(f"Object {oid} of size {size} is not stored.", status=404)


def download(request: Request, prefix: str, ns: str, name_git: str, oid: str) -> Response:
    """GET .../objects/{oid}?sig: the object's bytes (Range honoured); a plain handler: the pool runs it."""
    hub = hub_of(request)
    _signed_repo(hub, request.query_params, prefix, ns, name_git, "download", oid)
    stored = hub.objects.get(oid)
    if stored is None:
        location = hub.lfs.download_url(oid)  # in S3: the store sends the bytes
        if location is not None:
            return Response(status_code=302, headers={"Location": location, "ETag": f'"{oid}"'})
        raise NotFoundError(f"Object {oid} is not stored.")
    return RangedBody(request, stored.size, {"Content-Type": "application/octet-stream", "ETag": f'"{oid}"'},
                      layout=stored.layout)


def _s3(hub: Hub) -> S3ObjectStore:
    """The hub's S3 object store (callers checked ``hub.lfs.remote``; boto3 is an optional extra)."""
    from hubfs.server.s3_store import S3ObjectStore

    store = hub.lfs.store
    if not isinstance(store, S3ObjectStore):
        raise BadRequestError("This hub keeps its objects on local disk.")
    return store


def register(router: Router) -> None:
    L = "/{prefix:prefix}{ns}/{name_git}/info/lfs/objects"
    router.add(["POST"], L + "/batch", batch)
    router.add(["POST"], L + "/stream", stream)
    router.add(["PUT"], L + "/{oid}/{size:int}", upload)
    router.add(["POST"], L + "/{oid}/{size:int}/verify", verify)
    router.add(["PUT"], L + "/{oid}/{size:int}/parts/{upload_id}/{part:int}", upload_part)
    router.add(["POST"], L + "/{oid}/{size:int}/parts/{upload_id}", complete)
    router.add(["GET"], L + "/{oid}", download)
