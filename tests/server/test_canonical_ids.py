"""A canonical repo (no namespace, like ``gpt2``) is named ``gpt2`` in what users see: discussion answers
and webhook payloads (never the hub's internal spelling ``/gpt2``)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi, WebhookPayload

from hubfs.client.api import HubClient
from hubfs.client.commit import Add


class _Receiver:
    """Records the JSON bodies POSTed to it, on loopback."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(json.loads(self.rfile.read(int(self.headers.get("content-length", "0")))))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, scope: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [b for b in list(self.bodies) if b["event"]["scope"] == scope]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {scope} delivery in {timeout}s; got {[b['event'] for b in self.bodies]}")


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_discussion_answer_and_webhook_payloads_name_a_canonical_repo_plainly(hub, receiver) -> None:
    name = f"canon-{uuid.uuid4().hex[:8]}"
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    with HubClient(hub.endpoint, hub.admin_token) as admin:  # huggingface_hub refuses single-segment ids
        admin.create_repo("model", name)
        hook = api.create_webhook(url=receiver.url, watched=[{"type": "model", "name": name}],
                                  domains=["repo", "discussion"])
        try:
            admin.commit("model", name, [Add("a.txt", b"a")], "add a")
            content = WebhookPayload.model_validate(receiver.wait("repo.content"))
            assert content.repo.name == name
            assert content.repo.url.web == f"{hub.endpoint}/{name}"
            assert content.repo.url.api == f"{hub.endpoint}/api/models/{name}"

            r = httpx.post(f"{hub.endpoint}/api/models/{name}/discussions", json={"title": "hello"},
                           headers={"authorization": f"Bearer {hub.admin_token}"}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.json()["repo"] == {"name": name, "type": "model"}
            discussion = WebhookPayload.model_validate(receiver.wait("discussion"))
            assert discussion.repo.name == name and discussion.discussion is not None
            assert discussion.discussion.url.web == f"{hub.endpoint}/{name}/discussions/{r.json()['num']}"
        finally:
            api.delete_webhook(hook.id)
