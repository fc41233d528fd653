"""Assembles the embedded hub's ASGI app and runs it with uvicorn (`hubfs serve`)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn

from hubfs.server import (
    api_access_requests,
    api_collections,
    api_commit,
    api_discussions,
    api_files,
    api_lfs,
    api_likes,
    api_repos,
    api_storage,
    api_webhooks,
    canonical,
    gc,
    git_http,
    health,
    redact,
    web,
    webhooks,
)
from hubfs.server.community import Community
from hubfs.server.http import App, Router
from hubfs.server.hub import Hub
from hubfs.server.inference.models import InferenceOptions
from hubfs.server.jobs.runner import JobsOptions
from hubfs.server.object_store import configure as configure_object_store
from hubfs.server.web.session import WebAuth
from hubfs.server.xet import routes as xet_routes
from hubfs.server.xet.cas import Cas
from hubfs.server.zero_copy import DEFAULT_SEND_TIMEOUT, FileSender

XET_UPLOADS = 4  # xorb bodies (up to 64 MiB each) buffered and validated at once


def create_app(hub: Hub, file_sender: FileSender | None = None, *, allow_signup: bool = False,
               inference: InferenceOptions | None = None, jobs: JobsOptions | None = None) -> App:
    """The hub's routes, most specific first; other ``/api/`` paths answer 501 NotImplemented.

    ``file_sender`` decides how file bodies go out (zero-copy, send timeout); the default's settings
    come from the environment (``HUBFS_NO_SENDFILE``). ``allow_signup``: visitors may make accounts at /join.
    ``inference``: serve the task API and chat for the hub's models (``hubfs serve --inference``).
    ``jobs``: serve the Jobs API and run jobs (``hubfs serve --jobs``)."""
    router = Router()
    git_http.install_hooks(hub)
    webhooks.install_hook(hub.data_dir)
    git_http.register(router)
    health.register(router)
    api_lfs.register(router)
    api_discussions.register(router)
    for family in (api_access_requests, api_likes, api_collections, api_storage, api_webhooks):
        family.register(router)
    api_commit.register(router)
    api_files.register(router)
    xet_routes.register(router)
    api_repos.register(router)
    if inference is not None:
        from hubfs.server.inference import routes as inference_routes

        inference_routes.register(router)  # POST /models/{ns}/{name}...: no other route takes these
    if jobs is not None:
        from hubfs.server.jobs import routes as jobs_routes

        jobs_routes.register(router)  # /api/jobs/...: before the /api/ catch-all
    canonical.add_canonical_routes(router)  # after every namespaced route: /gpt2/..., /api/models/gpt2
    router.add(["GET", "POST", "PUT", "DELETE", "PATCH"], "/api/{rest:path}", api_repos.not_implemented)
    web.register(router)  # web pages last: no API, git or resolve route is shadowed
    state = {"hubfs.hub": hub, "hubfs.file_sender": file_sender or FileSender(), "hubfs.cas": Cas(hub),
             "hubfs.xet_uploads": asyncio.Semaphore(XET_UPLOADS), "hubfs.community": Community.open(hub.data_dir),
             "hubfs.web.auth": WebAuth(hub, allow_signup=allow_signup), "hubfs.web": web.Site()}
    if inference is not None:
        from hubfs.server.inference.service import InferenceService

        state["hubfs.inference"] = InferenceService(hub, inference)
    if jobs is not None:
        from hubfs.server import jobs as jobs_service

        state["hubfs.jobs"] = jobs_service.start(hub, jobs)
    return App(router, state)


def serve(data_dir: Path, host: str = "127.0.0.1", port: int = 8080, *, public_url: str | None = None,
          regular_max_size: int | None = None, multipart_chunk_size: int | None = None,
          access_log: bool = False, cdn_url: str | None = None, send_timeout: float = DEFAULT_SEND_TIMEOUT,
          gc_interval: float = gc.DEFAULT_INTERVAL, gc_grace: float = gc.DEFAULT_GRACE,
          allow_signup: bool = False, inference: InferenceOptions | None = None,
          jobs: JobsOptions | None = None, object_store: str | None = None,
          s3_endpoint_url: str | None = None) -> None:
    """Bind, print the endpoint and the admin token file's path (never the token), and serve forever.

    ``inference``: also run the hub's models (torch and transformers must be installed; checked first).
    ``object_store``: ``s3://bucket/prefix`` keeps LFS objects there (remembered in the data folder).
    Every ``gc_interval`` seconds (0: never) a background gc removes garbage older than ``gc_grace``
    seconds. The access log never shows signed-URL signatures or tokens.
    """
    kwargs = {}
    if regular_max_size is not None:
        kwargs["regular_max_size"] = regular_max_size
    if multipart_chunk_size is not None:
        kwargs["multipart_chunk_size"] = multipart_chunk_size
    if inference is not None:
        check_inference_deps()
    configure_object_store(data_dir, object_store, s3_endpoint_url)
    hub = Hub(data_dir, public_url=public_url, cdn_url=cdn_url, **kwargs)
    created = hub.bootstrap()
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only for such sockets, and without it
    # every response after the first on a keep-alive connection waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    endpoint = public_url or f"http://{shown_host}:{bound_port}"
    token_file = hub.data_dir / "admin.token"
    print(f"hubfs hub serving {hub.data_dir.resolve()}", flush=True)
    print(f"endpoint: {endpoint}", flush=True)
    print(f"admin token file: {token_file.resolve()}{' (new)' if created else ''}", flush=True)
    print(f"use it with: HF_ENDPOINT={endpoint} HF_TOKEN=$(cat {token_file.resolve()})", flush=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(hub, FileSender(send_timeout=send_timeout), allow_signup=allow_signup, inference=inference,
                     jobs=jobs)
    asgi: Any = app
    if jobs is not None:  # job log replays compare event times with Date: uvicorn's lags up to 2 s
        from hubfs.server.jobs.http_date import AccurateDate

        asgi = AccurateDate(app)
    config = uvicorn.Config(asgi, log_level="info" if access_log else "warning", access_log=access_log,
                            lifespan="off", date_header=jobs is None,
                            timeout_keep_alive=75, http=_http_impl(), loop=_loop_impl())
    redact.install("uvicorn.access")  # after uvicorn.Config, which (re)configures its loggers
    gc.start_periodic(hub, gc_interval, gc_grace)
    webhooks.start_delivery(hub.data_dir, endpoint)
    uvicorn.Server(config).run(sockets=[sock])


def check_inference_deps() -> None:
    """Import what ``--inference`` needs now (torch, transformers' pipelines), so that a missing or broken
    install is a one-line startup error and the first request does not pay for the imports."""
    import importlib

    from hubfs.errors import HubfsError

    for module in ("torch", "transformers", "transformers.pipelines"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise HubfsError(f"--inference needs torch and transformers ({exc}): "
                             "pip install 'hubfs[inference]'") from None


def _http_impl() -> str:
    """httptools writes bodies without copying them; h11 (pure Python) is the fallback."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _loop_impl() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
