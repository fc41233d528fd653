"""The server's concurrency rule: an ``async def`` handler only awaits the request body and hops to a
synchronous service call in the thread pool; git, SQLite and file work never runs on the event loop
(except the deliberate cached fast paths), and no dulwich object crosses threads.

Checked two ways: statically (the AST of every ``async def`` in the route modules) and in process
(an ASGI client on one event loop, with a slowed-down ``GitStore.open`` that records its threads).
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import inspect
import json
import textwrap
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from hubfs.server import (
    api_access_requests,
    api_collections,
    api_commit,
    api_discussions,
    api_files,
    api_lfs,
    api_likes,
    api_repos,
    api_settings,
    api_storage,
    api_webhooks,
    git_http,
)
from hubfs.server.app import create_app
from hubfs.server.buckets import routes as buckets_routes
from hubfs.server.git_store import GitStore
from hubfs.server.hub import Caller, Hub
from hubfs.server.web import forms as web_forms
from hubfs.server.web import upload as web_upload
from hubfs.server.xet import routes as xet_routes

MODULES = (api_commit, api_discussions, api_files, api_lfs, api_repos, git_http, xet_routes, api_access_requests,
           api_collections, api_likes, api_settings, api_storage, api_webhooks, web_forms, web_upload, buckets_routes)
# Awaited calls on the hub that are async themselves (they never block the loop).
AWAITED_HUB_CALLS = {"hub.reclaim.shared_async", "hub_of().cards.front_matter_async"}
# Plain helpers an async handler may call on the loop on purpose: a few cached reads, cheaper than a hop.
INLINE_FAST_PATHS = {("paths_info", "_paths_info")}
BLOCKING_MARKERS = (".git.open(", "hub.meta.", ".lfs.")


def _dotted(node: ast.AST) -> str:
    """``hub.git.open`` for an attribute chain; a call inside the chain shows as ``name()``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return f"{_dotted(node.func)}()"
    return "?"


def _async_functions(module: ModuleType) -> list[tuple[str, ast.AsyncFunctionDef]]:
    tree = ast.parse(Path(inspect.getfile(module)).read_text())
    return [(n.name, n) for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef)]


def _violations(module: ModuleType, name: str, fn: ast.AsyncFunctionDef) -> list[str]:
    """Calls in ``fn`` that do blocking hub work on the event loop."""
    awaited = {id(n.value) for n in ast.walk(fn) if isinstance(n, ast.Await)}
    found = []
    for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call)):
        dotted = _dotted(call.func)
        if dotted.startswith(("hub.", "hub_of().", "g.", "target.hub.")) or ".git.open" in dotted or ".meta." in dotted:
            if not (id(call) in awaited and dotted in AWAITED_HUB_CALLS):
                found.append(f"{module.__name__}.{name}: {dotted}() on the event loop")
            continue
        helper = getattr(module, dotted, None) if "." not in dotted else None
        if inspect.isfunction(helper) and not inspect.iscoroutinefunction(helper) \
                and (name, dotted) not in INLINE_FAST_PATHS:
            source = inspect.getsource(helper)
            if any(marker in source for marker in BLOCKING_MARKERS):
                found.append(f"{module.__name__}.{name}: calls blocking helper {dotted}() on the event loop")
    return found


def test_async_handlers_only_read_the_body_and_hop(tmp_path: Path) -> None:
    app = create_app(Hub(tmp_path / "hub"))
    handlers = {route.handler for route in app.router.routes}
    async_handlers = {h.__name__ for h in handlers if inspect.iscoroutinefunction(h)}
    # the rule has teeth: the write routes named in the issue are async handlers and get checked
    assert {"preupload", "commit", "create_branch", "delete_branch", "create_tag", "delete_tag", "merge",
            "paths_info", "upload", "info_refs"} <= async_handlers
    checked: set[str] = set()
    problems: list[str] = []
    for module in MODULES:
        for name, fn in _async_functions(module):
            checked.add(name)
            problems += _violations(module, name, fn)
    assert async_handlers <= checked | {"not_implemented"}
    assert not problems, "\n".join(problems)


def test_ast_check_catches_blocking_work() -> None:
    """The checker itself: the old shape of a handler (git and SQLite on the loop) is flagged."""
    source = textwrap.dedent('''
        async def create_branch(request, t, ns, name, branch):
            hub = hub_of(request)
            repo = hub.writable_repo(caller_of(request), t, f"{ns}/{name}")
            body = await read_json(request)
            with hub.git.open(repo.type, repo.repo_id) as g:
                g.set_ref(branch, body["start"], None)
            hub.meta.touch(repo)
    ''')
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.AsyncFunctionDef)
    problems = _violations(api_commit, fn.name, fn)
    assert len(problems) == 4, problems


# -- in process: the loop stays free ------------------------------------------------------------------

SLOW = 0.4  # seconds each GitStore.open takes off the loop in the behavioural test


def _slow_open(monkeypatch: pytest.MonkeyPatch, loop_threads: list[str]) -> None:
    """Make every ``GitStore.open`` slow, and record the ones made on the event loop's thread."""
    real_open = GitStore.open

    def open_slowly(self: GitStore, repo_type: str, repo_id: str) -> Any:
        if threading.current_thread() is threading.main_thread():
            loop_threads.append(f"{repo_type}/{repo_id}")
        else:
            time.sleep(SLOW)
        return real_open(self, repo_type, repo_id)

    monkeypatch.setattr(GitStore, "open", open_slowly)


def _ndjson(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def _slow_requests(client: httpx.AsyncClient, auth: dict[str, str]) -> list[httpx.Response]:
    """One of each write route that does git work, all at once."""
    r = "/api/models/admin/r"
    commit = _ndjson([{"key": "header", "value": {"summary": "s"}},
                      {"key": "file", "value": {"path": "a.txt", "content": base64.b64encode(b"a").decode()}}])
    paths = {"paths": [f"p{i}" for i in range(100)], "expand": False}
    data = b"lfs bytes"
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "objects": [{"oid": oid, "size": len(data)}]}
    jobs = [
        client.post(f"{r}/preupload/main", json={"files": [{"path": "x.bin", "size": 10, "sample": ""}]}, headers=auth),
        client.post(f"{r}/commit/main", content=commit, headers={**auth, "Content-Type": "application/x-ndjson"}),
        client.post(f"{r}/commit/main?create_pr=1", content=commit,
                    headers={**auth, "Content-Type": "application/x-ndjson"}),
        client.post(f"{r}/paths-info/main", json=paths, headers=auth),
        client.post(f"{r}/tag/main", json={"tag": "v1"}, headers=auth),
        client.delete(f"{r}/branch/old", headers=auth),
        client.post("/admin/r.git/info/lfs/objects/batch", json=batch, headers=auth),
        client.get("/admin/r.git/info/refs?service=git-upload-pack", headers=auth),
        client.post("/api/models/admin/r/discussions", json={"title": "pr", "pullRequest": True}, headers=auth),
        *[client.post(f"{r}/branch/b{i}", json={}, headers=auth) for i in range(6)],
    ]
    return list(await asyncio.gather(*jobs))


async def _ping(client: httpx.AsyncClient, auth: dict[str, str], until: asyncio.Future[Any]) -> list[float]:
    """Latencies of a cheap GET, repeated while the slow requests run."""
    latencies = []
    while not until.done():
        start = time.monotonic()
        resp = await client.get("/api/whoami-v2", headers=auth)
        assert resp.status_code == 200
        latencies.append(time.monotonic() - start)
        await asyncio.sleep(0.02)
    return latencies


def test_git_work_runs_off_the_loop_and_a_cheap_get_answers_promptly(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    hub = Hub(tmp_path / "hub")
    hub.bootstrap()
    token = (hub.data_dir / "admin.token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    hub.create_repo(Caller("admin", "write"), "model", "admin/r", private=False)
    with hub.git.open("model", "admin/r") as g:
        g.set_ref("refs/heads/old", g.resolve("main"), None)
    app = create_app(hub)
    loop_threads: list[str] = []

    async def scenario() -> tuple[list[httpx.Response], list[float], float]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub", timeout=60) as client:
            _slow_open(monkeypatch, loop_threads)
            start = time.monotonic()
            slow = asyncio.ensure_future(_slow_requests(client, auth))
            latencies = await _ping(client, auth, slow)
            return await slow, latencies, time.monotonic() - start

    responses, latencies, elapsed = asyncio.run(scenario())
    assert [r.status_code for r in responses if r.status_code != 200] == [], [r.text for r in responses]
    assert loop_threads == [], f"GitStore.open ran on the event loop for {loop_threads}"
    assert elapsed >= SLOW  # the slow work did run while the pings went on
    assert latencies and max(latencies) < 2.0, latencies  # 15 slow requests in a row would take > 6 s


def test_merge_opens_its_repo_in_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PR merge: access, git and metadata all in one hop, no repo handle made on the loop."""
    hub = Hub(tmp_path / "hub")
    hub.bootstrap()
    token = (hub.data_dir / "admin.token").read_text().strip()
    auth = {"Authorization": f"Bearer {token}"}
    hub.create_repo(Caller("admin", "write"), "model", "admin/r", private=False)
    app = create_app(hub)
    commit = _ndjson([{"key": "header", "value": {"summary": "s"}},
                      {"key": "file", "value": {"path": "pr.txt", "content": base64.b64encode(b"pr").decode()}}])
    loop_threads: list[str] = []

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub", timeout=60) as client:
            _slow_open(monkeypatch, loop_threads)
            opened = await client.post("/api/models/admin/r/commit/main?create_pr=1", content=commit,
                                       headers={**auth, "Content-Type": "application/x-ndjson"})
            merged = await client.post("/api/models/admin/r/discussions/1/merge", headers=auth)
            again = await client.post("/api/models/admin/r/discussions/1/merge", headers=auth)
            return [opened.status_code, merged.status_code, again.status_code]

    assert asyncio.run(scenario()) == [200, 200, 400]
    assert loop_threads == []
    with hub.git.open("model", "admin/r") as g:
        assert g.lookup(g.resolve("main"), "pr.txt") is not None
