"""Test session set-up: one real embedded hub on loopback for the whole run.

``HUBFS_TEST_BACKEND=postgres-s3`` starts that hub with its metadata in a throwaway PostgreSQL
cluster (``tests/pg_cluster.py``) and its objects in moto's S3 server (``tests/server/moto_s3.py``);
unset, it keeps SQLite and the local object store.

huggingface_hub reads HF_ENDPOINT and HF_HOME at import, so the server is started (and the
environment set) in ``pytest_configure``, before any test module imports it. Xet is on, as in a
default install; ``HF_XET_CACHE`` belongs to this session's server (hf_xet caches shards per
endpoint and would reuse xorbs that another server never saw).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import HubServer  # noqa: E402

_SESSION: dict[str, object] = {}
BACKEND = os.environ.get("HUBFS_TEST_BACKEND", "")


def _backend_args(root: Path) -> tuple[list[str], dict[str, str]]:
    """The session hub's ``serve`` flags and environment for ``HUBFS_TEST_BACKEND`` (its servers are
    kept in ``_SESSION["backend"]`` and stopped at the end)."""
    if not BACKEND:
        return [], {}
    if BACKEND != "postgres-s3":
        raise pytest.UsageError(f"HUBFS_TEST_BACKEND={BACKEND!r}: the only other backend is postgres-s3")
    import contextlib

    sys.path.insert(0, str(Path(__file__).parent / "server"))
    from moto_s3 import s3_server
    from pg_cluster import PgCluster

    stack = contextlib.ExitStack()
    _SESSION["backend"] = stack
    cluster = PgCluster().start()
    stack.callback(cluster.close)
    s3 = stack.enter_context(s3_server(root))
    # The store under another host name than the hub's 127.0.0.1, as in a deployment: huggingface_hub
    # follows a HEAD redirect to the same host name (any port) and would ask the store for X-Repo-Commit.
    store = s3.endpoint.replace("//127.0.0.1:", "//localhost:")
    args = ["--database-url", cluster.new_database("session"), "--object-store", f"s3://{s3.bucket()}/hub",
            "--s3-endpoint-url", store]
    return args, s3.hub_env


def _xdist_controller(config: pytest.Config) -> bool:
    """This process only hands tests to pytest-xdist workers (``-n N``, N > 0): each worker starts its own hub."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if _xdist_controller(config):
        return
    root = Path(tempfile.mkdtemp(prefix="hubfs-tests-"))
    _SESSION.update(root=root)
    args, env = _backend_args(root)
    server = HubServer(root / "hub", *args, env=env).start()
    _SESSION.update(server=server)
    os.environ.pop("HF_HUB_DISABLE_XET", None)
    os.environ.update(
        HF_ENDPOINT=server.endpoint,
        HF_HOME=str(root / "hf_home"),
        HF_TOKEN=server.admin_token,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_XET_CACHE=str(root / "xet_cache"),
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the session's hub and remove its data, caches and logs (HUBFS_KEEP_TEST_DATA=1 keeps them)."""
    server = _SESSION.get("server")
    if isinstance(server, HubServer):
        server.stop()
    backend = _SESSION.get("backend")
    if backend is not None:
        backend.close()  # type: ignore[attr-defined]
    root = _SESSION.get("root")
    if isinstance(root, Path) and not os.environ.get("HUBFS_KEEP_TEST_DATA"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def hub() -> HubServer:
    """The session's running hub (admin token in HF_TOKEN)."""
    return _SESSION["server"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def api(hub: HubServer):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.endpoint, token=hub.admin_token)


@pytest.fixture
def repo_id(api) -> str:
    """A fresh public model repo of admin's."""
    rid = f"admin/t-{uuid.uuid4().hex[:10]}"
    api.create_repo(rid)
    return rid


@pytest.fixture
def dataset_id(api) -> str:
    rid = f"admin/d-{uuid.uuid4().hex[:10]}"
    api.create_repo(rid, repo_type="dataset")
    return rid


@pytest.fixture(scope="session")
def users(hub: HubServer) -> dict[str, str]:
    """Two more users with write tokens (alice in org 'acme'), and a read-only token of bob's."""
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"alice{suffix}", f"bob{suffix}"
    return {
        "alice": alice, "alice_token": hub.add_user(alice, org=f"acme{suffix}"), "org": f"acme{suffix}",
        "bob": bob, "bob_token": hub.add_user(bob), "bob_read": hub.cli("token", "create", bob, "--role", "read"),
    }


@pytest.fixture
def tmp_hub(tmp_path: Path):
    """A private hub process for tests that kill or restart it."""
    servers: list[HubServer] = []

    def start(*args: str, env: dict[str, str] | None = None, data: Path | None = None) -> HubServer:
        s = HubServer(data or tmp_path / "hub", *args, env=env).start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
