"""Likes through the official client: like (raw POST: the client has no `like`), unlike,
list_liked_repos, list_repo_likers, `likes` in repo info, `sort=likes`, and private repos' privacy."""

from __future__ import annotations

import uuid

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

HTTP = httpx.Client(timeout=30)


def _like(hub, repo_id: str, token: str | None, *, repo_type: str = "model", method: str = "POST") -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return HTTP.request(method, f"{hub.endpoint}/api/{repo_type}s/{repo_id}/like", headers=headers)


def test_like_unlike_counts_and_listings(hub, api, users, repo_id, dataset_id):
    alice = HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    assert _like(hub, repo_id, users["alice_token"]).json() == {"likes": 1}
    assert _like(hub, repo_id, users["alice_token"]).json() == {"likes": 1}, "liking twice counts once"
    assert _like(hub, repo_id, users["bob_token"]).json() == {"likes": 2}
    assert _like(hub, dataset_id, users["alice_token"], repo_type="dataset").status_code == 200

    assert api.model_info(repo_id).likes == 2
    assert api.dataset_info(dataset_id).likes == 1
    assert sorted(u.username for u in api.list_repo_likers(repo_id)) == sorted([users["alice"], users["bob"]])

    liked = alice.list_liked_repos()
    assert liked.user == users["alice"]
    assert repo_id in liked.models and dataset_id in liked.datasets
    assert api.list_liked_repos(users["bob"]).models == [repo_id]

    bob.unlike(repo_id)
    bob.unlike(repo_id)  # idempotent, as on the Hub
    assert api.model_info(repo_id).likes == 1
    assert [u.username for u in api.list_repo_likers(repo_id)] == [users["alice"]]
    assert repo_id not in api.list_liked_repos(users["bob"]).models


def test_sort_by_likes(hub, api, users):
    tag = uuid.uuid4().hex[:8]
    ids = [f"admin/likes-{tag}-{i}" for i in range(3)]
    for rid in ids:
        api.create_repo(rid)
    for token in (users["alice_token"], users["bob_token"]):
        assert _like(hub, ids[2], token).status_code == 200
    assert _like(hub, ids[0], users["alice_token"]).status_code == 200
    found = [m.id for m in api.list_models(search=f"likes-{tag}", sort="likes")]
    assert found == [ids[2], ids[0], ids[1]]
    assert [m.likes for m in api.list_models(search=f"likes-{tag}", sort="likes", expand=["likes"])] == [2, 1, 0]


def test_likes_need_a_signed_in_writer(hub, users, repo_id):
    assert _like(hub, repo_id, None).status_code == 401
    assert _like(hub, repo_id, users["bob_read"]).status_code == 403
    assert _like(hub, f"admin/missing-{uuid.uuid4().hex[:8]}", users["bob_token"]).status_code == 404


def test_private_repos_stay_invisible(hub, api, users):
    rid = f"{users['alice']}/private-{uuid.uuid4().hex[:8]}"
    alice = HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    alice.create_repo(rid, private=True)
    assert _like(hub, rid, users["alice_token"]).status_code == 200
    assert rid in alice.list_liked_repos().models
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    assert rid not in bob.list_liked_repos(users["alice"]).models, "another user's listing hides private repos"
    assert _like(hub, rid, users["bob_token"]).status_code == 404, "liking an invisible repo: not found"
    with pytest.raises(RepositoryNotFoundError):
        list(bob.list_repo_likers(rid))
    with pytest.raises(HfHubHTTPError) as exc:
        bob.list_liked_repos(f"nobody-{uuid.uuid4().hex[:6]}")
    assert exc.value.response.status_code == 404


def test_likes_follow_a_renamed_repo_and_die_with_a_deleted_one(hub, api, users):
    rid = f"admin/ren-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    assert _like(hub, rid, users["bob_token"]).status_code == 200
    new = rid + "-new"
    api.move_repo(rid, new)
    assert new in api.list_liked_repos(users["bob"]).models
    assert api.model_info(new).likes == 1
    api.delete_repo(new)
    assert new not in api.list_liked_repos(users["bob"]).models
