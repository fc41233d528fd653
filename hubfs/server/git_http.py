"""Git smart HTTP on the hub's repositories: ``{E}/{P}ns/name[.git]/info/refs``, ``git-upload-pack``
and ``git-receive-pack``, protocol v0 and v2.

The packs are made and taken by git's own ``upload-pack`` and ``receive-pack --stateless-rpc`` (the
engine of ``git http-backend``) on the same bare repositories the REST API writes with dulwich, so
both see one history with the same SHAs. Request and response bodies stream through pipes. A
pre-receive hook (``hubfs.server.git_hooks``) applies the Hub's push rules inside git's quarantine,
so a refused push changes nothing; ref updates take the same ``ref.lock`` files as REST commits.

Auth as on the Hub: the user name is ignored and the token is the password (Basic), Bearer works
too. Errors are ``text/plain``, which git prints as ``remote:`` lines.
"""

from __future__ import annotations

import asyncio
import os
import sys
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hubfs.config import HookEnv
from hubfs.errors import AuthenticationError, HubfsError, RepoNotFoundError
from hubfs.paths import RepoType, public_repo_id
from hubfs.server.git_hooks import write_hook
from hubfs.server.http import Router, json_response
from hubfs.server.hub import Caller, Hub
from hubfs.server.metadata import Repo
from hubfs.server.wire import caller_of, hub_of

SERVICES = ("git-upload-pack", "git-receive-pack")
GIT_CONFIG = [
    "-c", "uploadpack.allowFilter=true",
    "-c", "uploadpack.allowAnySHA1InWant=false",
    "-c", "uploadpack.allowReachableSHA1InWant=true",
    "-c", "receive.autogc=false",
    "-c", "gc.auto=0",
    "-c", "receive.fsckObjects=true",
    "-c", "core.filesRefLockTimeout=10000",
    "-c", "receive.denyDeleteCurrent=refuse",
]
HOOK_SCRIPT = """#!/bin/sh
# Installed by hubfs serve: the Hub's push rules, checked inside git's quarantine.
exec "{python}" -m hubfs.server.git_hooks "$(basename "$0")"
"""


def install_hooks(hub: Hub) -> Path:
    """Write ``DATA/hooks/pre-receive`` for this Python; every receive-pack points core.hooksPath here."""
    hooks = hub.data_dir / "hooks"
    write_hook(hooks, "pre-receive", HOOK_SCRIPT.format(python=sys.executable))
    return hooks


def _pkt_line(text: str) -> bytes:
    data = text.encode()
    return b"%04x" % (len(data) + 4) + data


def git_error(exc: HubfsError) -> Response:
    """A plain-text error git shows to the user; 401 asks git for credentials."""
    headers = {"X-Error-Code": exc.code, "Cache-Control": "no-cache"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="hubfs"'
    return Response(exc.message.rstrip() + "\n", status_code=exc.status, headers=headers, media_type="text/plain")


def _authorize(request: Request, prefix: str, ns: str, name: str, service: str) -> tuple[Hub, Caller, Repo]:
    hub = hub_of(request)
    caller = hub.authenticate(request.headers.get("authorization"))
    repo_type = RepoType.parse(prefix.rstrip("/") or "model").value
    repo_id = f"{ns}/{name.removesuffix('.git')}"
    try:
        repo = hub.visible_repo(caller, repo_type, repo_id)
    except RepoNotFoundError as exc:
        if caller.user is None:
            raise AuthenticationError("Repository not found, or you must authenticate (the token is the password).") from exc
        raise RepoNotFoundError(f"Repository {public_repo_id(repo_id)} not found.") from exc
    if service == "git-receive-pack":
        if caller.user is None:
            raise AuthenticationError("Authentication required to push: use a write token as the password.")
        hub.require_write(caller, repo.namespace)
    else:
        hub.check_gate(caller, repo)
    return hub, caller, repo


@dataclass(frozen=True)
class _Target:
    """What a git request runs against, decided off the event loop."""

    hub: Hub
    repo: Repo
    path: Path
    env: dict[str, str]
    before: dict[str, str]  # the refs before a push ({} for fetches)


def _prepare(request: Request, prefix: str, ns: str, name: str, service: str, *, refs_before: bool = False) -> _Target:
    """Authorize the request and gather what git needs (blocking: SQLite, refs): run it in the pool."""
    hub, caller, repo = _authorize(request, prefix, ns, name, service)
    before: dict[str, str] = {}
    if refs_before:
        with hub.git.open(repo.type, repo.repo_id) as g:
            before = g.refs()
    return _Target(hub, repo, hub.git.path(repo.type, repo.repo_id), _env(request, hub, repo, caller), before)


def _env(request: Request, hub: Hub, repo: Repo, caller: Caller) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "HUBFS_FAULT"))}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               **HookEnv(hub.data_dir, repo.type, repo.repo_id, caller.user or "", hub.regular_max_size).variables())
    protocol = request.headers.get("git-protocol")
    if protocol:
        env["GIT_PROTOCOL"] = protocol
    return env


def _command(hub: Hub, service: str, path: Path, *extra: str) -> list[str]:
    hooks = ["-c", f"core.hooksPath={hub.data_dir / 'hooks'}"] if service == "git-receive-pack" else []
    return ["git", *GIT_CONFIG, *hooks, service.removeprefix("git-"), "--stateless-rpc", *extra, str(path)]


async def info_refs(request: Request, prefix: str, ns: str, name: str) -> Response:
    """GET .../info/refs?service=git-upload-pack|git-receive-pack -> the ref advertisement
    (v0: ``# service=...`` pkt-line + flush first; v2: the capability list)."""
    service = request.query_params.get("service", "")
    if service not in SERVICES:
        return git_error(HubfsError("Only the smart HTTP protocol is served: use git 1.6.6 or newer.", status=403))
    try:
        target = await run_in_threadpool(_prepare, request, prefix, ns, name, service)
    except HubfsError as exc:
        return git_error(exc)
    env = target.env
    proc = await asyncio.create_subprocess_exec(*_command(target.hub, service, target.path, "--advertise-refs"), env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        return git_error(HubfsError(f"git {service} failed: {err.decode(errors='replace').strip()[:500]}", status=500))
    v2 = "version=2" in env.get("GIT_PROTOCOL", "") and service == "git-upload-pack"
    head = b"" if v2 else _pkt_line(f"# service={service}\n") + b"0000"
    return Response(head + out, media_type=f"application/x-{service}-advertisement",
                    headers={"Cache-Control": "no-cache", "Expires": "Fri, 01 Jan 1980 00:00:00 GMT"})


class PipeResponse(Response):
    """Streams a subprocess's stdout while the request body streams into its stdin."""

    def __init__(self, body: AsyncIterator[bytes], media_type: str) -> None:
        super().__init__(None, media_type=media_type, headers={"Cache-Control": "no-cache"})
        del self.headers["content-length"]
        self.body_iter = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iter:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def rpc(request: Request, prefix: str, ns: str, name: str, service: str) -> Response:
    """POST .../git-upload-pack | git-receive-pack: the request (gzip allowed) is piped to git and
    git's answer streamed back; after a push, the REST side (info, card index) is updated."""
    try:
        target = await run_in_threadpool(_prepare, request, prefix, ns, name, service,
                                         refs_before=service == "git-receive-pack")
    except HubfsError as exc:
        return git_error(exc)
    hub, repo, before = target.hub, target.repo, target.before
    # a push may reference existing objects: gc waits until receive-pack is gone (released in body())
    held = await hub.reclaim.shared_async() if service == "git-receive-pack" else None
    try:
        proc = await asyncio.create_subprocess_exec(*_command(hub, service, target.path), env=target.env,
                                                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
    except BaseException:
        if held is not None:
            held.release()
        raise
    gzipped = request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip")

    async def feed() -> None:
        assert proc.stdin is not None
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        try:
            async for chunk in request.stream():
                data = inflate.decompress(chunk) if inflate else chunk
                if data:
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            if inflate:
                proc.stdin.write(inflate.flush())
        # RuntimeError: asyncio refuses writes once git has exited and its stdin transport is closed
        except (ClientDisconnect, BrokenPipeError, ConnectionResetError, RuntimeError, zlib.error):
            if proc.returncode is None:  # git may have stopped reading because it already exited
                try:
                    proc.kill()  # a cut-off push must not be applied: git never sees a complete pack
                except ProcessLookupError:
                    pass
        finally:
            try:
                proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError):
                pass

    async def body() -> AsyncIterator[bytes]:
        feeder = asyncio.ensure_future(feed())
        try:
            assert proc.stdout is not None
            while chunk := await proc.stdout.read(1 << 16):
                yield chunk
            await feeder
            await proc.wait()
        finally:
            feeder.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if held is not None:
                held.release()
            if service == "git-receive-pack":
                await asyncio.get_running_loop().run_in_executor(None, _after_push, hub, repo, before)

    return PipeResponse(body(), media_type=f"application/x-{service}-result")


def _after_push(hub: Hub, repo: Repo, before: dict[str, str]) -> None:
    """Bring the metadata (card index, last modified) in line with the refs a push moved."""
    with hub.git.open(repo.type, repo.repo_id) as g:
        after = g.refs()
        for ref in sorted(set(before) | set(after)):
            if before.get(ref) != after.get(ref):
                hub.after_ref_update(repo, g, ref, after.get(ref))


def _lfs_repo(request: Request, prefix: str, ns: str, name_git: str) -> Repo:
    """The repo of an LFS locks route, under the same access rules as every other route."""
    hub = hub_of(request)
    if not name_git.endswith(".git"):
        raise RepoNotFoundError("LFS endpoints live under {repo}.git/info/lfs.")
    repo_type = RepoType.parse(prefix.rstrip("/") or "model").value
    return hub.visible_repo(caller_of(request), repo_type, f"{ns}/{name_git[:-4]}")


async def lfs_locks_verify(request: Request, prefix: str, ns: str, name_git: str) -> Response:
    """POST .../info/lfs/locks/verify: no file locking on this hub, so nobody holds a lock."""
    async for _ in request.stream():
        pass
    await run_in_threadpool(_lfs_repo, request, prefix, ns, name_git)
    return json_response({"ours": [], "theirs": []}, headers={"Content-Type": "application/vnd.git-lfs+json"})


def lfs_locks(request: Request, prefix: str, ns: str, name_git: str) -> Response:
    """GET .../info/lfs/locks: an empty list (a plain handler: the access check runs in the pool)."""
    _lfs_repo(request, prefix, ns, name_git)
    return json_response({"locks": []}, headers={"Content-Type": "application/vnd.git-lfs+json"})


async def upload_pack(request: Request, prefix: str, ns: str, name: str) -> Response:
    return await rpc(request, prefix, ns, name, "git-upload-pack")


async def receive_pack(request: Request, prefix: str, ns: str, name: str) -> Response:
    return await rpc(request, prefix, ns, name, "git-receive-pack")


def register(router: Router) -> None:
    base = "/{prefix:prefix}{ns}/{name}"
    router.add(["GET"], base + "/info/refs", info_refs)
    router.add(["POST"], base + "/git-upload-pack", upload_pack)
    router.add(["POST"], base + "/git-receive-pack", receive_pack)
    router.add(["POST"], "/{prefix:prefix}{ns}/{name_git}/info/lfs/locks/verify", lfs_locks_verify)
    router.add(["GET"], "/{prefix:prefix}{ns}/{name_git}/info/lfs/locks", lfs_locks)
