"""``hubfs mirror``: copy a repo from another Hub-compatible endpoint into a hub with the same commit shas.

Git objects travel verbatim through git smart HTTP (:class:`~hubfs.client.git_wire.GitWire`: fetch from
the source into a local staging repo, push to the destination with receive-pack), so every commit, tree
and tag keeps its sha. LFS content travels through the LFS batch API: downloaded from the source,
sha256- and size-verified, uploaded to the destination *before* the push (the hub's pre-receive hook
refuses pointers to objects it lacks).

Incremental and resumable: the staging repo (``$HF_HOME/hubfs/mirrors/<source host>/<repo>``) keeps what
was fetched, so a re-run asks the source only for new objects; LFS objects the destination already holds
are neither downloaded nor sent again; a partly downloaded LFS object resumes with a Range request; a
pack cut off half-way is discarded (never half-stored) and fetched again; a push cut off changes nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from dulwich.object_store import MissingObjectFinder
from dulwich.objects import ZERO_SHA
from dulwich.repo import Repo
from filelock import FileLock

from hubfs.client.api import HubClient
from hubfs.client.commit import Add, upload_lfs_objects
from hubfs.client.git_wire import GitWire, git_errors, git_path
from hubfs.client.policy import safe_url
from hubfs.config import hf_home
from hubfs.errors import (
    BadRequestError,
    HubConnectionError,
    HubfsError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    RevisionNotFoundError,
)
from hubfs.lfs import POINTER_MAX_SIZE, LfsPointer
from hubfs.paths import RepoRef, RepoType, validate_name

__all__ = ["MirrorResult", "mirror", "parse_source"]

LFS_JSON = "application/vnd.git-lfs+json"
BATCH = 100  # objects per LFS batch request
CHUNK_BYTES = 2 << 30  # LFS content staged on local disk at a time (downloaded, uploaded, then removed)
MIRRORED = (b"refs/heads/", b"refs/tags/")


def _repo_id(text: str) -> str:
    """``ns/name`` or a canonical ``name``, validated."""
    parts = text.strip("/").removesuffix(".git").split("/")
    if not 1 <= len(parts) <= 2:
        raise InvalidNameError(f"Invalid repo id {text!r}: expected 'namespace/name' or a canonical 'name'.")
    return "/".join(validate_name(p, "namespace" if i == 0 and len(parts) == 2 else "repo name")
                    for i, p in enumerate(parts))


def parse_source(spec: str) -> tuple[str, RepoRef]:
    """``https://host[:port]/[datasets/|spaces/]ns/name`` (or ``.../name``) -> (endpoint, repo)."""
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequestError(f"Invalid source {spec!r}: expected SRC_ENDPOINT/REPO, e.g. "
                              "https://huggingface.co/gpt2 or http://127.0.0.1:8080/datasets/ns/name.")
    if parts.username or parts.password:
        raise BadRequestError("Put no credentials in the source URL: pass --src-token.")
    path = parts.path.strip("/")
    repo_type = RepoType.MODEL
    for candidate in (RepoType.DATASET, RepoType.SPACE):
        if path.startswith(candidate.url_prefix):
            repo_type, path = candidate, path[len(candidate.url_prefix):]
            break
    if not path:
        raise BadRequestError(f"Invalid source {spec!r}: no repo after the endpoint.")
    return f"{parts.scheme}://{parts.netloc}", RepoRef(repo_type, _repo_id(path))


@dataclass
class MirrorResult:
    """What one run did: refs moved on the destination (ref -> (old, new), None for absent), LFS objects
    copied (and bytes downloaded for them), LFS objects the destination already had, git requests
    sent to the source and pack bytes received from it."""

    source: str
    dest: RepoRef
    updated: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    lfs_copied: int = 0
    lfs_bytes: int = 0
    lfs_present: int = 0
    git_requests: int = 0
    git_bytes: int = 0

    def lines(self) -> list[str]:
        out = []
        for ref, (old, new) in sorted(self.updated.items()):
            if new is None:
                out.append(f"  deleted {ref} (was {(old or '')[:12]})")
            else:
                out.append(f"  {ref}: {old[:12] if old else '(new)'} -> {new[:12]}")
        state = f"{len(self.updated)} refs updated" if self.updated else "already up to date"
        out.append(f"mirrored {self.source} into {self.dest}: {state}; LFS: {self.lfs_copied} objects copied "
                   f"({self.lfs_bytes} bytes), {self.lfs_present} already there; git: {self.git_requests} "
                   f"requests, {self.git_bytes} bytes from the source")
        return out


def default_work_dir(src_endpoint: str, repo: RepoRef) -> Path:
    """Where the staging repo of a source repo lives: ``$HF_HOME/hubfs/mirrors/<host_port>/<folder>``."""
    host = urlsplit(src_endpoint).netloc.replace(":", "_")
    return hf_home() / "hubfs" / "mirrors" / host / repo.folder


def mirror(source: str, dest: HubClient, *, src_token: str | None = None, to: str | None = None,
           revisions: Iterable[str] | None = None, work_dir: Path | None = None, prune: bool = True,
           staged_bytes: int = CHUNK_BYTES, log: Callable[[str], None] | None = None) -> MirrorResult:
    """Mirror the repo at ``source`` (``SRC_ENDPOINT/REPO``) into ``dest``'s hub as ``to`` (default: the
    same id), creating it (same type and visibility) when missing.

    Every branch and tag is copied, or only ``revisions`` (branch or tag names); with ``prune`` (and no
    ``revisions``) branches and tags the source no longer has are deleted from the destination (never
    ``main``). ``src_token`` is sent to the source only (default: anonymous). LFS content is staged on
    local disk about ``staged_bytes`` at a time (downloaded, uploaded, then removed).
    """
    say = log or (lambda line: None)
    src_endpoint, src_repo = parse_source(source)
    dest_repo = RepoRef(src_repo.type, _repo_id(to) if to else src_repo.id)
    result = MirrorResult(f"{safe_url(src_endpoint)}/{src_repo}", dest_repo)
    folder = work_dir or default_work_dir(src_endpoint, src_repo)
    with HubClient(src_endpoint, src_token or False) as src:
        info = src.repo_info(src_repo.type.value, src_repo.id)  # a missing or unreadable source fails here
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / "mirror.lock")):
            return _mirror(src, src_repo, info, dest, dest_repo, folder, list(revisions or []), prune, staged_bytes,
                           result, say)


def _mirror(src: HubClient, src_repo: RepoRef, info: dict[str, Any], dest: HubClient, dest_repo: RepoRef,
            folder: Path, revisions: list[str], prune: bool, staged_bytes: int, result: MirrorResult,
            say: Callable[[str], None]) -> MirrorResult:
    """The mirror itself, holding the staging folder's lock."""
    git_dir = folder / "git"
    local = Repo(str(git_dir)) if (git_dir / "objects").is_dir() else Repo.init_bare(str(git_dir), mkdir=True)
    try:
        wire = GitWire(dest.transport)
        dest_refs = _dest_refs(wire, dest, dest_repo)
        if dest_refs and not any(r.startswith(MIRRORED) for r in local.refs.allkeys()):
            _seed(wire, dest_repo, local, dest_refs, say)  # a new staging folder: start from the destination
        selected = _fetch(src, src_repo, local, revisions, result, say)
        if dest_refs is None:
            sdk = info.get("sdk") if src_repo.type is RepoType.SPACE else None
            dest.create_repo(dest_repo.type.value, dest_repo.id, private=bool(info.get("private")),
                             exist_ok=True, space_sdk=sdk)
        store: Any = local.object_store
        haves = {sha for sha in (dest_refs or {}).values() if sha in store}
        pointers = _new_pointers(local, haves, set(selected.values()))
        _copy_lfs(src, src_repo, dest, dest_repo, pointers, folder / "lfs", staged_bytes, result, say)
        say(f"pushing to {dest_repo} at {safe_url(dest.endpoint)}")
        _push(wire, dest_repo, local, selected, prune and not revisions, result)
    finally:
        local.close()
    return result


def _dest_refs(wire: GitWire, dest: HubClient, repo: RepoRef) -> dict[bytes, bytes] | None:
    """The destination's branches and tags (ref -> sha), or None when the repo does not exist there."""
    try:
        with git_errors(f"Listing the refs of {repo} at {safe_url(dest.endpoint)}"):
            listed = wire.get_refs(git_path(repo.type.value, repo.id), ref_prefix=list(MIRRORED))  # type: ignore[arg-type]
    except FileNotFoundError:
        return None
    return {bytes(k): bytes(v) for k, v in listed.refs.items()
            if v is not None and k.startswith(MIRRORED) and not k.endswith(b"^{}")}


def _seed(wire: GitWire, repo: RepoRef, local: Repo, refs: dict[bytes, bytes], say: Callable[[str], None]) -> None:
    """Fetch what the destination already has into an empty staging repo, so that the source is asked only
    for what the destination lacks (a mirror re-run from another machine or a fresh --work-dir)."""
    store: Any = local.object_store
    refs_of: Any = local.refs
    wants: Any = lambda advertised, depth=None: [sha for sha in set(refs.values()) if sha not in store]
    say(f"reading what {repo} already has at the destination")
    with git_errors(f"Fetching {repo} from the destination"):
        wire.fetch(git_path(repo.type.value, repo.id), local, determine_wants=wants,
                   ref_prefix=list(MIRRORED))  # type: ignore[arg-type]
    for ref, sha in refs.items():
        refs_of[ref] = sha


def _fetch(src: HubClient, repo: RepoRef, local: Repo, revisions: list[str], result: MirrorResult,
           say: Callable[[str], None]) -> dict[bytes, bytes]:
    """Fetch the source's branches and tags (or ``revisions``) into ``local``; returns ref -> sha."""
    wire = GitWire(src.transport)
    selected: dict[bytes, bytes] = {}
    store: Any = local.object_store
    refs_of: Any = local.refs

    def wants(refs: dict[Any, Any], depth: int | None = None) -> list[Any]:
        mirrored = {bytes(k): bytes(v) for k, v in refs.items()
                    if v is not None and k.startswith(MIRRORED) and not k.endswith(b"^{}")}
        if revisions:
            for rev in revisions:
                names = [rev.encode()] if rev.startswith("refs/") else [b"refs/heads/" + rev.encode(),
                                                                        b"refs/tags/" + rev.encode()]
                hit = next((n for n in names if n in mirrored), None)
                if hit is None:
                    raise RevisionNotFoundError(f"{repo} has no branch or tag {rev!r} at the source.")
                selected[hit] = mirrored[hit]
        else:
            selected.update(mirrored)
        return [sha for sha in set(selected.values()) if sha not in store]

    say(f"fetching git objects of {repo} from {safe_url(src.endpoint)}")
    with git_errors(f"Fetching {repo} from {safe_url(src.endpoint)}"):
        wire.fetch(git_path(repo.type.value, repo.id), local, determine_wants=wants,  # type: ignore[arg-type]
                   ref_prefix=list(MIRRORED))  # type: ignore[arg-type]
    result.git_requests, result.git_bytes = wire.requests, wire.bytes_received
    for ref in [r for r in refs_of.allkeys() if r.startswith(MIRRORED)]:
        if ref not in selected and not revisions:
            del refs_of[ref]
    for ref, sha in selected.items():
        refs_of[ref] = sha
    return selected


def _new_pointers(local: Repo, haves: set[bytes], wants: set[bytes]) -> dict[str, int]:
    """oid -> size of the LFS pointers among the objects reachable from ``wants`` and not from ``haves``."""
    store = local.object_store
    out: dict[str, int] = {}
    for sha, hint in MissingObjectFinder(store, haves=haves, wants=wants):  # type: ignore[arg-type]
        if hint is not None and hint[0] not in (None, 3):
            continue
        type_num, data = store.get_raw(sha)
        if type_num != 3 or len(data) > POINTER_MAX_SIZE:
            continue
        pointer = LfsPointer.parse(data)
        if pointer is not None:
            out[pointer.oid] = pointer.size
    return out


def _batch(client: HubClient, repo: RepoRef, operation: str, objects: dict[str, int]) -> list[dict[str, Any]]:
    url = client.lfs_batch_url(repo.type.value, repo.id)
    items = sorted(objects.items())
    out: list[dict[str, Any]] = []
    for i in range(0, len(items), BATCH):
        body = {"operation": operation, "transfers": ["basic"], "hash_algo": "sha256",
                "objects": [{"oid": oid, "size": size} for oid, size in items[i:i + BATCH]]}
        answer = client.transport.request("POST", url, json_body=body,
                                          headers={"Accept": LFS_JSON, "Content-Type": LFS_JSON}).json()
        out.extend(answer.get("objects", []))
    return out


def _copy_lfs(src: HubClient, src_repo: RepoRef, dest: HubClient, dest_repo: RepoRef, pointers: dict[str, int],
              store: Path, staged_bytes: int, result: MirrorResult, say: Callable[[str], None]) -> None:
    """Copy the LFS objects of ``pointers`` the destination lacks: download (verified), upload, forget."""
    if not pointers:
        return
    lacking = {o["oid"]: pointers[o["oid"]] for o in _batch(dest, dest_repo, "upload", pointers)
               if o.get("oid") in pointers and (o.get("actions") or {}).get("upload")}
    result.lfs_present = len(pointers) - len(lacking)
    for oid in pointers.keys() - lacking.keys():  # staged by a run that stopped after uploading it
        (store / oid).unlink(missing_ok=True)
        (store / f"{oid}.incomplete").unlink(missing_ok=True)
    if not lacking:
        return
    say(f"copying {len(lacking)} LFS objects ({sum(lacking.values())} bytes)")
    store.mkdir(parents=True, exist_ok=True)
    chunk: dict[str, int] = {}
    staged = 0
    for oid, size in sorted(lacking.items()):
        chunk[oid] = size
        staged += size
        if staged >= staged_bytes:
            _copy_chunk(src, src_repo, dest, dest_repo, chunk, store, result)
            chunk, staged = {}, 0
    if chunk:
        _copy_chunk(src, src_repo, dest, dest_repo, chunk, store, result)


def _copy_chunk(src: HubClient, src_repo: RepoRef, dest: HubClient, dest_repo: RepoRef, objects: dict[str, int],
                store: Path, result: MirrorResult) -> None:
    answers = {o.get("oid"): o for o in _batch(src, src_repo, "download", objects)}
    jobs = []
    for oid, size in objects.items():
        answer = answers.get(oid) or {}
        action = (answer.get("actions") or {}).get("download")
        if not action:
            why = (answer.get("error") or {}).get("message", "no download action")
            raise NotFoundError(f"The source cannot serve LFS object {oid} ({size} bytes): {why}")
        jobs.append((oid, size, action))
    with ThreadPoolExecutor(max(1, min(4, len(jobs)))) as pool:
        result.lfs_bytes += sum(pool.map(lambda job: _download(src, store, *job), jobs))
    adds = []
    for oid in objects:
        add = Add(oid, store / oid)  # size and sha256 checked by _download
        add.sha256, add.mode = oid, "lfs"
        adds.append(add)
    upload_lfs_objects(dest, dest.lfs_batch_url(dest_repo.type.value, dest_repo.id), adds, None)
    result.lfs_copied += len(adds)
    for oid in objects:
        (store / oid).unlink(missing_ok=True)


def _download(src: HubClient, store: Path, oid: str, size: int, action: dict[str, Any], tries: int = 3) -> int:
    """Fetch one LFS object into ``store/oid`` (resuming ``oid.incomplete``), checking size and sha256;
    returns the bytes received."""
    target, part = store / oid, store / f"{oid}.incomplete"
    if target.exists():
        return 0
    received = 0
    for attempt in range(tries):
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            have = 0
        headers = {**(action.get("header") or {}), "Accept-Encoding": "identity"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            if have < size or size == 0:
                resp = src.transport.request("GET", action["href"], headers=headers, stream=True)
                try:
                    mode = "ab" if have and resp.status_code == 206 else "wb"
                    with open(part, mode) as f:
                        for piece in resp.iter_bytes(1 << 20):
                            f.write(piece)
                            received += len(piece)
                finally:
                    resp.close()
            break
        except (httpx.HTTPError, HubConnectionError) as exc:
            if attempt == tries - 1:
                raise HubConnectionError(f"Downloading LFS object {oid} from the source failed ({exc}); run the "
                                         "mirror again: it resumes.") from exc
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        for piece in iter(lambda: f.read(8 << 20), b""):
            digest.update(piece)
    got = part.stat().st_size
    if got != size or digest.hexdigest() != oid:
        part.unlink()
        raise IntegrityError(f"LFS object {oid} from the source does not match its pointer "
                             f"(got {got} bytes with sha256 {digest.hexdigest()}, expected {size} bytes).")
    os.replace(part, target)
    return received


def _push(wire: GitWire, repo: RepoRef, local: Repo, selected: dict[bytes, bytes], prune: bool,
          result: MirrorResult) -> None:
    """Make the destination's branches and tags those of ``selected`` (deleting others when ``prune``)."""
    changes: dict[bytes, bytes] = {}

    def update_refs(old: dict[Any, Any]) -> dict[Any, Any]:
        new = dict(old)
        for ref, sha in selected.items():
            if old.get(ref) != sha:
                new[ref] = changes[ref] = sha
        if prune:
            for ref in old:
                if ref.startswith(MIRRORED) and ref not in selected and ref != b"refs/heads/main":
                    new[ref] = changes[ref] = ZERO_SHA
        for ref, sha in changes.items():
            before = old.get(ref)
            result.updated[ref.decode()] = (before.decode() if before else None,
                                            None if sha == ZERO_SHA else sha.decode())
        return new

    def pack_data(have: Any, want: Any, ofs_delta: bool = False, progress: Any = None) -> Any:
        return local.generate_pack_data({h for h in have if h in local.object_store}, want, ofs_delta=ofs_delta)

    remote: list[bytes] = []  # what the hub said on the side band (its pre-receive hook's reasons)
    with git_errors(f"Pushing to {repo}"):
        sent = wire.send_pack(git_path(repo.type.value, repo.id), update_refs, pack_data, progress=remote.append)
    refused = {ref.decode(): why for ref, why in (sent.ref_status or {}).items() if why}
    if refused:
        said = " ".join(b"".join(remote).decode(errors="replace").split())
        raise HubfsError(f"The destination refused {', '.join(f'{r} ({w})' for r, w in sorted(refused.items()))}"
                         + (f": {said[:2000]}" if said else "."))
