"""Gated-repo access requests through the official client: a user asks (POST /{id}/ask-access), the
owner lists pending / accepted / rejected requests with the Hub's fields, accepts, rejects (with a
reason), cancels, grants; the Hub's errors for non-gated repos, unknown users and read-only tokens."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

HTTP = httpx.Client(timeout=30)


def _status(exc: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert exc.value.response is not None
    return exc.value.response.status_code


def _ask(hub, repo_id: str, token: str | None, **fields: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return HTTP.post(f"{hub.endpoint}/{repo_id}/ask-access", data=fields, headers=headers)


def test_request_accept_reject_cancel(hub, api, users, tmp_path: Path):
    rid = f"admin/gated-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    api.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id=rid)
    api.update_repo_settings(rid, gated="manual")

    r = _ask(hub, rid, users["bob_token"], reason="research", company="acme")
    assert r.status_code == 200 and r.json() == {"status": "pending"}
    assert _ask(hub, rid, None).status_code == 401
    pending = list(api.list_pending_access_requests(rid))
    assert [(p.username, p.status) for p in pending] == [(users["bob"], "pending")]
    assert pending[0].fields == {"reason": "research", "company": "acme"}
    assert len(pending[0].request_id) == 24 and pending[0].timestamp is not None
    with pytest.raises(GatedRepoError):
        hf_hub_download(rid, "w.bin", endpoint=hub.endpoint, token=users["bob_token"], cache_dir=tmp_path / "a")

    api.accept_access_request(rid, users["bob"])
    assert [a.username for a in api.list_accepted_access_requests(rid)] == [users["bob"]]
    assert list(api.list_pending_access_requests(rid)) == []
    path = hf_hub_download(rid, "w.bin", endpoint=hub.endpoint, token=users["bob_token"], cache_dir=tmp_path / "b")
    assert Path(path).read_bytes() == b"weights"
    with pytest.raises(HfHubHTTPError) as exc:
        api.accept_access_request(rid, users["bob"])
    assert _status(exc) == 404, "already in the accepted list"

    api.reject_access_request(rid, users["bob"], rejection_reason="not this time")
    rejected = list(api.list_rejected_access_requests(rid))
    assert [(x.username, x.status) for x in rejected] == [(users["bob"], "rejected")]
    raw = HTTP.get(f"{hub.endpoint}/api/models/{rid}/user-access-request/rejected",
                   headers={"authorization": f"Bearer {hub.admin_token}"}).json()
    assert raw[0]["rejectionReason"] == "not this time" and raw[0]["user"]["user"] == users["bob"]
    with pytest.raises(GatedRepoError):
        hf_hub_download(rid, "w.bin", endpoint=hub.endpoint, token=users["bob_token"], cache_dir=tmp_path / "c")

    api.cancel_access_request(rid, users["bob"])
    assert [p.username for p in api.list_pending_access_requests(rid)] == [users["bob"]]
    # by request id too
    api._handle_access_request(rid, None, pending[0].request_id, "accepted")
    assert [a.username for a in api.list_accepted_access_requests(rid)] == [users["bob"]]


def test_grant_and_the_hubs_errors(hub, api, users, repo_id):
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    with pytest.raises(HfHubHTTPError) as exc:
        list(api.list_pending_access_requests(repo_id))
    assert _status(exc) == 400, "not gated"
    with pytest.raises(HfHubHTTPError) as exc:
        api.grant_access(repo_id, users["bob"])
    assert _status(exc) == 400
    assert _ask(hub, repo_id, users["bob_token"]).status_code == 400

    api.update_repo_settings(repo_id, gated="auto")
    assert _ask(hub, repo_id, users["alice_token"]).json() == {"status": "accepted"}, "auto gates accept at once"
    api.grant_access(repo_id, users["bob"])
    assert {a.username for a in api.list_accepted_access_requests(repo_id)} == {users["alice"], users["bob"]}
    with pytest.raises(HfHubHTTPError) as exc:
        api.grant_access(repo_id, users["bob"])
    assert _status(exc) == 400, "already has access"
    with pytest.raises(HfHubHTTPError) as exc:
        api.grant_access(repo_id, f"nobody-{uuid.uuid4().hex[:6]}")
    assert _status(exc) == 404
    with pytest.raises(HfHubHTTPError) as exc:
        api.accept_access_request(repo_id, f"nobody-{uuid.uuid4().hex[:6]}")
    assert _status(exc) == 404
    with pytest.raises(HfHubHTTPError) as exc:
        list(bob.list_pending_access_requests(repo_id))
    assert _status(exc) == 403
    read_only = HfApi(endpoint=hub.endpoint, token=users["bob_read"])
    with pytest.raises(HfHubHTTPError) as exc:
        read_only.grant_access(repo_id, users["alice"])
    assert _status(exc) == 403
