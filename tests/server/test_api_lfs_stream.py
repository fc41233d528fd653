"""hubfs's LFS stream transfer on a real hub: offered by download batches that ask for it, many objects back to
back in one answer with the same access rules as a batch, resumable with Range, refused whole on bad input."""

from __future__ import annotations

import hashlib
import os
import uuid

import httpx
import pytest

from hubfs.client.api import HubClient
from hubfs.client.commit import Add

LFS_JSON = "application/vnd.git-lfs+json"


def _oid(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _repo_with(hub, token: str, owner: str, files: dict[str, bytes], *, private: bool = False) -> str:
    repo_id = f"{owner}/s-{uuid.uuid4().hex[:10]}"
    with HubClient(hub.endpoint, token) as client:
        client.create_repo("model", repo_id, private=private)
        client.commit("model", repo_id, [Add(p, d) for p, d in files.items()], "add")
    return repo_id


def _lfs(hub, repo_id: str) -> str:
    return f"{hub.endpoint}/{repo_id}.git/info/lfs/objects"


def _objects(*blobs: bytes) -> list[dict[str, object]]:
    return [{"oid": _oid(b), "size": len(b)} for b in blobs]


def _post(url: str, body: object, token: str | None, **headers: str) -> httpx.Response:
    auth = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url, json=body, headers={"content-type": LFS_JSON, **auth, **headers}, timeout=30)


@pytest.fixture(scope="module")
def blobs() -> list[bytes]:
    return [os.urandom(n) for n in (1000, 300_000, 5, 70_000)]


@pytest.fixture(scope="module")
def public_repo(hub, blobs: list[bytes]) -> str:
    return _repo_with(hub, hub.admin_token, "admin", {f"w{i}.bin": b for i, b in enumerate(blobs)})


def test_download_batches_offer_the_stream_only_to_clients_that_ask(hub, public_repo: str, blobs: list[bytes]) -> None:
    url = _lfs(hub, public_repo) + "/batch"
    for transfers, expected in ((["hubfs-stream", "basic"], "hubfs-stream"), (["basic"], "basic"), (None, "basic")):
        body = {"operation": "download", "objects": _objects(*blobs), **({"transfers": transfers} if transfers else {})}
        answer = _post(url, body, hub.admin_token).json()
        assert answer["transfer"] == expected
        assert all(o["actions"]["download"]["href"] for o in answer["objects"])  # basic hrefs work either way
    upload = _post(url, {"operation": "upload", "transfers": ["hubfs-stream", "basic"],
                         "objects": _objects(b"new")}, hub.admin_token).json()
    assert upload["transfer"] == "basic"


def test_stream_sends_the_objects_back_to_back_in_the_order_asked_and_resumes(hub, public_repo: str,
                                                                              blobs: list[bytes]) -> None:
    order = [blobs[3], blobs[0], blobs[2], blobs[1]]
    whole = b"".join(order)
    answer = _post(_lfs(hub, public_repo) + "/stream", {"objects": _objects(*order)}, hub.admin_token)
    assert answer.status_code == 200
    assert answer.headers["content-length"] == str(len(whole))
    assert answer.content == whole
    cut = 71_234  # resume where an answer broke off
    rest = _post(_lfs(hub, public_repo) + "/stream", {"objects": _objects(*order)}, hub.admin_token,
                 range=f"bytes={cut}-")
    assert rest.status_code == 206 and rest.content == whole[cut:]
    assert rest.headers["content-range"] == f"bytes {cut}-{len(whole) - 1}/{len(whole)}"


def test_stream_is_refused_whole_for_an_object_this_repo_does_not_hold(hub, users, public_repo: str,
                                                                       blobs: list[bytes]) -> None:
    foreign = os.urandom(2000)  # stored on the hub, but for alice's repo only
    _repo_with(hub, users["alice_token"], users["alice"], {"f.bin": foreign})
    for asked in ([foreign], [blobs[0], foreign], [blobs[0], os.urandom(10)]):
        answer = _post(_lfs(hub, public_repo) + "/stream", {"objects": _objects(*asked)}, hub.admin_token)
        assert answer.status_code == 404, answer.text
        assert _oid(asked[-1]) in answer.json()["error"]
        assert blobs[0] not in answer.content  # nothing was sent before the refusal


def test_stream_of_a_private_repo_follows_its_access_rules(hub, users) -> None:
    data = os.urandom(4000)
    repo_id = _repo_with(hub, users["alice_token"], users["alice"], {"p.bin": data}, private=True)
    url, body = _lfs(hub, repo_id) + "/stream", {"objects": _objects(data)}
    assert _post(url, body, None).status_code == 401
    assert _post(url, body, users["bob_token"]).status_code == 404  # invisible, not just unreadable
    assert _post(url, body, "hf_garbage").status_code == 401
    owner = _post(url, body, users["alice_token"])
    assert owner.status_code == 200 and owner.content == data


@pytest.mark.parametrize(("body", "status", "says"), [
    ({}, 400, "non-empty 'objects' list"),
    ({"objects": []}, 400, "non-empty 'objects' list"),
    ({"objects": "x"}, 400, "non-empty 'objects' list"),
    ({"objects": [{"oid": "zz", "size": 1}]}, 422, "sha256 hex"),
    ({"objects": [{"oid": "a" * 64, "size": -1}]}, 422, "sha256 hex"),
    ({"objects": [{"oid": "a" * 64, "size": 1}] * 1001}, 413, "at most 1000"),
])
def test_stream_rejects_malformed_requests(hub, public_repo: str, body: dict, status: int, says: str) -> None:
    answer = _post(_lfs(hub, public_repo) + "/stream", body, hub.admin_token)
    assert answer.status_code == status and says in answer.json()["error"], answer.text


def test_stream_rejects_a_wrong_size_a_repeat_and_a_body_that_is_not_json(hub, public_repo: str,
                                                                          blobs: list[bytes]) -> None:
    url = _lfs(hub, public_repo) + "/stream"
    wrong = _post(url, {"objects": [{"oid": _oid(blobs[0]), "size": len(blobs[0]) + 1}]}, hub.admin_token)
    assert wrong.status_code == 422 and f"{len(blobs[0])} bytes" in wrong.json()["error"]
    twice = _post(url, {"objects": _objects(blobs[0], blobs[1], blobs[0])}, hub.admin_token)
    assert twice.status_code == 422 and "twice" in twice.json()["error"]
    junk = httpx.post(url, content=b"{not json", headers={"authorization": f"Bearer {hub.admin_token}"})
    assert junk.status_code == 400
