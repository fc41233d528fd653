"""One hub started with ``--jobs`` for this package, with two users (alice, bob) and their tokens."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))
from hub_server import HubServer


@dataclass
class JobsHub:
    server: HubServer
    alice: str
    alice_token: str
    bob: str
    bob_token: str

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def api(self, token: str | bool | None) -> object:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=token)


@pytest.fixture(scope="package")
def jobs_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobsHub]:
    root = tmp_path_factory.mktemp("jobs-hub")
    server = HubServer(root / "hub", "--jobs", "--max-jobs", "4").start()
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"alice{suffix}", f"bob{suffix}"
    try:
        yield JobsHub(server, alice, server.add_user(alice), bob, server.add_user(bob))
    finally:
        server.stop()

