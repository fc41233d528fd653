"""Webhooks through the official client (create, list, get, update, enable, disable, delete) and their
real delivery to a receiver on loopback: on a commit, a git push, a tag, a discussion, a comment and a
settings change, a JSON POST in the Hub's payload shape (``huggingface_hub.WebhookPayload``) with
``X-Webhook-Secret``; failures retried with back-off and visible in the API; privacy kept."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from huggingface_hub import HfApi, WebhookPayload, WebhookWatchedItem
from huggingface_hub.errors import HfHubHTTPError

SECRET = "s3cret-value"


class Receiver:
    """An HTTP server on loopback recording each POST (path, headers, JSON); the first ``fail_first``
    POSTs to a path ending in ``/flaky`` answer 500."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.fail_left = fail_first
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    failing = self.path.endswith("/flaky") and receiver.fail_left > 0
                    if failing:
                        receiver.fail_left -= 1
                    else:
                        receiver.posts.append((self.path, dict(self.headers.items()), json.loads(body)))
                self.send_response(500 if failing else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, predicate, timeout: float = 20) -> list[tuple[str, dict[str, str], dict[str, Any]]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                found = [p for p in self.posts if predicate(p)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no matching webhook delivery in {timeout}s; got {[p[2]['event'] for p in self.posts]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=2)
    yield r
    r.close()


@pytest.fixture
def hook_hub(tmp_hub):
    """A hub whose retries come fast: 0.2 s, 0.4 s, ... at most 3 attempts."""
    return tmp_hub("--gc-interval", "0", env={"HUBFS_WEBHOOK_RETRY_BASE": "0.2", "HUBFS_WEBHOOK_MAX_ATTEMPTS": "3"})


def _scope(scope: str, action: str | None = None):
    return lambda p: p[2]["event"]["scope"] == scope and (action is None or p[2]["event"]["action"] == action)


def test_crud_through_the_client(hub, api, users, repo_id):
    watched = [WebhookWatchedItem(type="model", name=repo_id), WebhookWatchedItem(type="user", name="admin")]
    hook = api.create_webhook(url="https://example.invalid/hook", watched=watched, domains=["repo"], secret=SECRET)
    assert hook.url == "https://example.invalid/hook" and hook.domains == ["repo"] and hook.secret == SECRET
    assert hook.disabled is False and [(w.type, w.name) for w in hook.watched] == [("model", repo_id), ("user", "admin")]
    assert hook.id in {h.id for h in api.list_webhooks()}
    assert api.get_webhook(hook.id).url == hook.url

    updated = api.update_webhook(hook.id, url="http://127.0.0.1:9/other", domains=["repo", "discussion"])
    assert updated.url == "http://127.0.0.1:9/other" and updated.domains == ["repo", "discussion"]
    assert [(w.type, w.name) for w in updated.watched] == [("model", repo_id), ("user", "admin")], "kept"
    assert api.disable_webhook(hook.id).disabled is True
    assert api.enable_webhook(hook.id).disabled is False

    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    with pytest.raises(HfHubHTTPError) as exc:
        bob.get_webhook(hook.id)
    assert exc.value.response.status_code == 404, "another user's webhook does not exist for bob"
    assert hook.id not in {h.id for h in bob.list_webhooks()}

    api.delete_webhook(hook.id)
    with pytest.raises(HfHubHTTPError) as exc:
        api.get_webhook(hook.id)
    assert exc.value.response.status_code == 404


def test_bad_webhooks_are_refused(hub, api, users):
    secret_repo = f"{users['alice']}/hidden-{uuid.uuid4().hex[:6]}"
    HfApi(endpoint=hub.endpoint, token=users["alice_token"]).create_repo(secret_repo, private=True)
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    for kwargs, status in (
        ({"url": "ftp://127.0.0.1/x", "watched": [{"type": "user", "name": "admin"}]}, 400),
        ({"url": "file:///etc/passwd", "watched": [{"type": "user", "name": "admin"}]}, 400),
        ({"url": "http://127.0.0.1/x", "watched": []}, 400),
        ({"url": "http://127.0.0.1/x", "watched": [{"type": "model", "name": secret_repo}]}, 404),
        ({"url": "http://127.0.0.1/x", "watched": [{"type": "user", "name": "admin"}], "domains": ["space"]}, 400),
    ):
        with pytest.raises(HfHubHTTPError) as exc:
            bob.create_webhook(**kwargs)
        assert exc.value.response.status_code == status, kwargs
    assert bob.list_webhooks() == []
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(endpoint=hub.endpoint, token=users["bob_read"]).create_webhook(
            url="http://127.0.0.1/x", watched=[{"type": "user", "name": "admin"}])
    assert exc.value.response.status_code == 403


def _git(*args: str, cwd: Path | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    out = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", *args], cwd=cwd, env=env, check=False,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_delivery_of_each_event_kind(hook_hub, receiver, tmp_path):
    hub = hook_hub
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    rid = f"admin/hooked-{uuid.uuid4().hex[:6]}"
    api.create_repo(rid)
    hook = api.create_webhook(url=receiver.url + "/ok", watched=[{"type": "model", "name": rid}],
                              domains=["repo", "discussion"], secret=SECRET)

    info = api.upload_file(path_or_fileobj=b"hello", path_in_repo="a.txt", repo_id=rid)
    (_path, headers, body), = receiver.wait(_scope("repo.content"))
    assert headers["X-Webhook-Secret"] == SECRET and headers["Content-Type"] == "application/json"
    payload = WebhookPayload.model_validate(body)
    assert payload.event.action == "update" and payload.repo.name == rid and payload.repo.type == "model"
    assert payload.webhook.id == hook.id and payload.webhook.version == 3
    assert payload.repo.url.web == f"{hub.endpoint}/{rid}"
    assert [(r.ref, r.newSha) for r in payload.updatedRefs or []] == [("refs/heads/main", info.oid)]

    api.create_tag(rid, tag="v1")
    receiver.wait(lambda p: any(r["ref"] == "refs/tags/v1" for r in p[2].get("updatedRefs", [])))

    work = tmp_path / "clone"
    remote = hub.endpoint.replace("http://", f"http://admin:{hub.admin_token}@") + f"/{rid}"
    _git("clone", "-q", remote, str(work))
    (work / "pushed.txt").write_text("by git")
    _git("add", "pushed.txt", cwd=work)
    _git("commit", "-qm", "pushed with git", cwd=work)
    _git("push", "-q", "origin", "main", cwd=work)
    head = api.model_info(rid).sha
    pushed = receiver.wait(lambda p: any(r.get("newSha") == head for r in p[2].get("updatedRefs", [])))
    assert WebhookPayload.model_validate(pushed[0][2]).event.scope == "repo.content"

    d = api.create_discussion(rid, "Question", description="how?")
    created = receiver.wait(_scope("discussion", "create"))
    disc = WebhookPayload.model_validate(created[0][2]).discussion
    assert disc is not None and disc.num == d.num and disc.title == "Question" and disc.isPullRequest is False
    api.comment_discussion(rid, d.num, "like this")
    comment = WebhookPayload.model_validate(receiver.wait(_scope("discussion.comment"))[0][2]).comment
    assert comment is not None and comment.content == "like this" and comment.hidden is False

    api.upload_file(path_or_fileobj=b"proposal", path_in_repo="p.txt", repo_id=rid, create_pr=True)
    opened = receiver.wait(lambda p: p[2]["event"] == {"action": "create", "scope": "discussion"}
                           and p[2]["discussion"]["isPullRequest"])
    pr = WebhookPayload.model_validate(opened[0][2]).discussion
    assert pr is not None and pr.changes is not None and pr.changes.base == "refs/heads/main"

    api.update_repo_settings(rid, private=True)
    config = WebhookPayload.model_validate(receiver.wait(_scope("repo.config"))[0][2])
    assert config.repo.private is True

    deliveries = httpx.get(f"{hub.endpoint}/api/settings/webhooks/{hook.id}/deliveries",
                           headers={"authorization": f"Bearer {hub.admin_token}"}).json()
    assert deliveries and all(d["status"] == "delivered" and d["attempts"] == 1 for d in deliveries)

    api.disable_webhook(hook.id)
    count = len(receiver.posts)
    api.upload_file(path_or_fileobj=b"quiet", path_in_repo="b.txt", repo_id=rid)
    time.sleep(1)
    assert len(receiver.posts) == count, "a disabled webhook receives nothing"


def test_retries_with_back_off_and_failures_are_visible(hook_hub, receiver):
    hub = hook_hub
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    rid = f"admin/retry-{uuid.uuid4().hex[:6]}"
    api.create_repo(rid)
    flaky = api.create_webhook(url=receiver.url + "/flaky", watched=[{"type": "user", "name": "admin"}],
                               domains=["repo"])
    dead = api.create_webhook(url=_dead_url(), watched=[{"type": "model", "name": rid}], domains=["repo"])
    started = time.time()
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=rid)
    receiver.wait(lambda p: p[0].endswith("/flaky"))
    assert time.time() - started >= 0.5, "two failures, then back-off of 0.2 s and 0.4 s before the third try"
    auth = {"authorization": f"Bearer {hub.admin_token}"}
    ok = httpx.get(f"{hub.endpoint}/api/settings/webhooks/{flaky.id}/deliveries", headers=auth).json()
    assert [(d["status"], d["attempts"]) for d in ok] == [("delivered", 3)]

    deadline = time.time() + 20
    while time.time() < deadline:
        failed = httpx.get(f"{hub.endpoint}/api/settings/webhooks/{dead.id}/deliveries", headers=auth).json()
        if failed and failed[0]["status"] == "failed":
            break
        time.sleep(0.1)
    assert failed[0]["status"] == "failed" and failed[0]["attempts"] == 3 and failed[0]["error"]
    raw = httpx.get(f"{hub.endpoint}/api/settings/webhooks/{dead.id}", headers=auth).json()["webhook"]
    assert raw["failedDeliveries"] == 1


def test_private_repos_events_reach_only_those_who_may_see_them(hook_hub, receiver):
    hub = hook_hub
    bob_token = hub.add_user(f"bob{uuid.uuid4().hex[:4]}")
    bob = HfApi(endpoint=hub.endpoint, token=bob_token)
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    public, private = f"admin/pub-{uuid.uuid4().hex[:6]}", f"admin/priv-{uuid.uuid4().hex[:6]}"
    api.create_repo(public)
    api.create_repo(private, private=True)
    bob.create_webhook(url=receiver.url + "/bob", watched=[{"type": "user", "name": "admin"}], domains=["repo"])
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=private)
    api.upload_file(path_or_fileobj=b"open", path_in_repo="o.txt", repo_id=public)
    receiver.wait(lambda p: p[2]["repo"]["name"] == public)
    time.sleep(0.5)
    assert not [p for p in receiver.posts if p[2]["repo"]["name"] == private]


def _dead_url() -> str:
    """A loopback URL nothing listens on (a port bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/dead"
