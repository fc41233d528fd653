"""Assembles the embedded hub's ASGI app and runs it with uvicorn (`hubfs serve`)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from hubfs import config
from hubfs.errors import BadRequestError
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
from hubfs.server.buckets import routes as buckets_routes
from hubfs.server.community import Community
from hubfs.server.gc import ReclaimLock
from hubfs.server.generations import share_git_generations
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
STARTUP_LOCK = "startup.lock"  # hubs sharing a data folder do their start-up work one at a time


def create_app(hub: Hub, file_sender: FileSender | None = None, *, allow_signup: bool = False,
               inference: InferenceOptions | None = None, jobs: JobsOptions | None = None,
               install_hooks: bool = True) -> App:
    """The hub's routes, most specific first; other ``/api/`` paths answer 501 NotImplemented.

    ``file_sender`` decides how file bodies go out (zero-copy, send timeout); the default's settings
    come from the environment (``HUBFS_NO_SENDFILE``). ``allow_signup``: visitors may make accounts at /join.
    ``inference``: serve the task API and chat for the hub's models (``hubfs serve --inference``).
    ``jobs``: serve the Jobs API and run jobs (``hubfs serve --jobs``). ``install_hooks``: write the data
    folder's git hooks (``serve`` does it once, before any worker starts)."""
    router = Router()
    if install_hooks:
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
    buckets_routes.register(router)  # /api/buckets/..., the bucket CAS: before the /api/ catch-all
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
             "hubfs.xet_uploads": asyncio.Semaphore(XET_UPLOADS), "hubfs.community": Community.open(hub.data_dir, hub.db),
             "hubfs.web.auth": WebAuth(hub, allow_signup=allow_signup), "hubfs.web": web.Site()}
    state.update(buckets_routes.state(hub))
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
          s3_endpoint_url: str | None = None, workers: int = 1) -> None:
    """Bind, print the endpoint and the admin token file's path (never the token), and serve forever.

    ``inference``: also run the hub's models (torch and transformers must be installed; checked first).
    ``object_store``: ``s3://bucket/prefix`` keeps LFS objects and Xet xorbs there (remembered in the data folder).
    Every ``gc_interval`` seconds (0: never) a background gc removes garbage older than ``gc_grace``
    seconds. The access log never shows signed-URL signatures or tokens.

    ``workers`` > 1: that many worker processes accept on the one listening socket (see :mod:`hubfs.server.workers`).
    """
    if workers < 1:
        raise BadRequestError(f"--workers must be 1 or more (got {workers}).")
    if workers > 1 and jobs is not None:
        raise BadRequestError("--jobs runs jobs in one process (their live state is in memory): use --workers 1 "
                              "for the hub that runs jobs.")
    if inference is not None:
        check_inference_deps()
    settings = ServeSettings(str(data_dir), public_url=public_url, cdn_url=cdn_url, regular_max_size=regular_max_size,
                             multipart_chunk_size=multipart_chunk_size, send_timeout=send_timeout,
                             allow_signup=allow_signup, access_log=access_log,
                             inference=dataclasses.asdict(inference) if inference is not None else None)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with ReclaimLock(Path(data_dir) / STARTUP_LOCK).exclusive():  # hubs sharing the folder start in turn
        configure_object_store(Path(data_dir), object_store, s3_endpoint_url)
        hub = settings.open_hub()
        created = hub.bootstrap()
        git_http.install_hooks(hub)
        webhooks.install_hook(hub.data_dir)
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
    configure_logging()
    gc.start_periodic(hub, gc_interval, gc_grace)
    webhooks.start_delivery(hub.data_dir, endpoint)
    if workers > 1:
        from hubfs.server.workers import run_workers

        run_workers(settings, sock, workers, uvicorn_options(access_log, date_header=True))
        return
    app = create_app(hub, FileSender(send_timeout=send_timeout), allow_signup=allow_signup, inference=inference,
                     jobs=jobs, install_hooks=False)
    asgi: Any = app
    if jobs is not None:  # job log replays compare event times with Date: uvicorn's lags up to 2 s
        from hubfs.server.jobs.http_date import AccurateDate

        asgi = AccurateDate(app)
    uv_config = uvicorn.Config(asgi, **uvicorn_options(access_log, date_header=jobs is None))
    redact.install("uvicorn.access")  # after uvicorn.Config, which (re)configures its loggers
    uvicorn.Server(uv_config).run(sockets=[sock])


def uvicorn_options(access_log: bool, date_header: bool) -> dict[str, Any]:
    """The uvicorn settings of every hub process (one, or each of ``--workers``)."""
    return {"log_level": "info" if access_log else "warning", "access_log": access_log, "lifespan": "off",
            "date_header": date_header, "timeout_keep_alive": 75, "http": _http_impl(), "loop": _loop_impl()}


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")


@dataclass(frozen=True)
class ServeSettings:
    """What a hub process needs to build its app; a worker of ``--workers`` reads it from the environment
    (``HUBFS_SERVE_SETTINGS``: :func:`hubfs.config.serve_settings`), so :func:`worker_app` can be a uvicorn
    app factory."""

    data_dir: str
    public_url: str | None = None
    cdn_url: str | None = None
    regular_max_size: int | None = None
    multipart_chunk_size: int | None = None
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    allow_signup: bool = False
    access_log: bool = False
    inference: dict[str, Any] | None = None  # InferenceOptions' fields

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))

    def open_hub(self) -> Hub:
        """The hub of ``data_dir`` with these settings (no start-up work: see :func:`serve`)."""
        kwargs = {}
        if self.regular_max_size is not None:
            kwargs["regular_max_size"] = self.regular_max_size
        if self.multipart_chunk_size is not None:
            kwargs["multipart_chunk_size"] = self.multipart_chunk_size
        hub = Hub(Path(self.data_dir), public_url=self.public_url, cdn_url=self.cdn_url, **kwargs)
        share_git_generations(hub)
        return hub


def worker_app() -> App:
    """The uvicorn app factory of one ``--workers`` process (``hubfs.server.app:worker_app``): the
    settings come from ``HUBFS_SERVE_SETTINGS``; the parent did the start-up work once."""
    settings = ServeSettings.from_json(config.serve_settings())
    configure_logging()
    redact.install("uvicorn.access")
    inference = InferenceOptions(**settings.inference) if settings.inference is not None else None
    return create_app(settings.open_hub(), FileSender(send_timeout=settings.send_timeout),
                      allow_signup=settings.allow_signup, inference=inference, install_hooks=False)


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
