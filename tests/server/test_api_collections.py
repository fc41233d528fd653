"""Collections through the official client: create (public, private), get, list, update, add /
update / delete items, delete; private collections and private items invisible to others."""

from __future__ import annotations

import uuid

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError


def _status(exc: pytest.ExceptionInfo[HfHubHTTPError]) -> int:
    assert exc.value.response is not None
    return exc.value.response.status_code


def test_collection_lifecycle(hub, api, repo_id, dataset_id):
    title = f"Picks {uuid.uuid4().hex[:6]}"
    c = api.create_collection(title, description="my picks")
    assert c.slug.startswith("admin/picks-") and c.title == title and c.private is False and c.items == []
    assert c.url == f"{hub.endpoint}/collections/{c.slug}"
    again = api.create_collection(title, exists_ok=True)
    assert again.slug == c.slug
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_collection(title)
    assert _status(exc) == 409

    c = api.add_collection_item(c.slug, repo_id, "model", note="first")
    c = api.add_collection_item(c.slug, dataset_id, "dataset")
    api.add_collection_item(c.slug, dataset_id, "dataset", exists_ok=True)
    with pytest.raises(HfHubHTTPError) as exc:
        api.add_collection_item(c.slug, dataset_id, "dataset")
    assert _status(exc) == 409
    got = api.get_collection(c.slug)
    assert [(i.item_id, i.item_type, i.position, i.note) for i in got.items] == \
        [(repo_id, "model", 0, "first"), (dataset_id, "dataset", 1, None)]

    api.update_collection_item(c.slug, got.items[1].item_object_id, position=0, note="now first")
    got = api.get_collection(c.slug)
    assert [(i.item_id, i.position, i.note) for i in got.items] == [(dataset_id, 0, "now first"), (repo_id, 1, "first")]

    updated = api.update_collection_metadata(c.slug, title=title + " v2", theme="green", description="changed")
    assert updated.title == title + " v2" and updated.theme == "green" and updated.description == "changed"
    assert api.get_collection(c.slug).title == title + " v2", "the old slug still finds it"

    api.delete_collection_item(c.slug, got.items[0].item_object_id)
    assert [i.item_id for i in api.get_collection(updated.slug).items] == [repo_id]
    with pytest.raises(HfHubHTTPError) as exc:
        api.delete_collection_item(c.slug, got.items[0].item_object_id)
    assert _status(exc) == 404
    api.delete_collection_item(c.slug, got.items[0].item_object_id, missing_ok=True)

    assert c.slug.rsplit("-", 1)[1] in {x.slug.rsplit("-", 1)[1] for x in api.list_collections(owner="admin")}
    assert updated.slug in {x.slug for x in api.list_collections(item=f"models/{repo_id}")}

    api.delete_collection(c.slug)
    with pytest.raises(HfHubHTTPError) as exc:
        api.get_collection(c.slug)
    assert _status(exc) == 404
    api.delete_collection(c.slug, missing_ok=True)


def test_private_collections_and_items(hub, api, users):
    alice = HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    secret_repo = f"{users['alice']}/secret-{uuid.uuid4().hex[:6]}"
    public_repo = f"{users['alice']}/open-{uuid.uuid4().hex[:6]}"
    alice.create_repo(secret_repo, private=True)
    alice.create_repo(public_repo)

    hidden = alice.create_collection(f"Hidden {uuid.uuid4().hex[:6]}", private=True)
    shown = alice.create_collection(f"Shown {uuid.uuid4().hex[:6]}")
    for slug in (hidden.slug, shown.slug):
        alice.add_collection_item(slug, secret_repo, "model")
        alice.add_collection_item(slug, public_repo, "model")
    assert len(alice.get_collection(hidden.slug).items) == 2

    with pytest.raises(HfHubHTTPError) as exc:
        bob.get_collection(hidden.slug)
    assert _status(exc) == 404, "a private collection does not exist for others"
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(endpoint=hub.endpoint, token=False).get_collection(hidden.slug)
    assert _status(exc) == 404
    assert [i.item_id for i in bob.get_collection(shown.slug).items] == [public_repo], "private items are left out"
    listed = {c.slug for c in bob.list_collections(owner=users["alice"])}
    assert shown.slug in listed and hidden.slug not in listed
    assert hidden.slug in {c.slug for c in alice.list_collections(owner=users["alice"])}
    assert shown.slug in {c.slug for c in alice.list_collections(item=f"models/{secret_repo}")}
    assert list(bob.list_collections(item=f"models/{secret_repo}")) == [], "no hint that the private repo exists"

    # others cannot write, nor add what they cannot see
    with pytest.raises(HfHubHTTPError) as exc:
        bob.add_collection_item(shown.slug, public_repo, "model", note="x")
    assert _status(exc) == 403
    with pytest.raises(HfHubHTTPError) as exc:
        bob.delete_collection(shown.slug)
    assert _status(exc) == 403
    mine = bob.create_collection(f"Bob {uuid.uuid4().hex[:6]}")
    with pytest.raises(HfHubHTTPError) as exc:
        bob.add_collection_item(mine.slug, secret_repo, "model")
    assert _status(exc) == 404
    with pytest.raises(HfHubHTTPError) as exc:
        bob.create_collection("In alice's name", namespace=users["alice"])
    assert _status(exc) == 403

    # making it public shows it
    alice.update_collection_metadata(hidden.slug, private=False)
    assert bob.get_collection(hidden.slug).private is False


def test_collection_input_errors(api, repo_id):
    c = api.create_collection(f"Bad {uuid.uuid4().hex[:6]}")
    with pytest.raises(HfHubHTTPError) as exc:
        api.update_collection_metadata(c.slug, theme="plaid")
    assert _status(exc) == 400
    with pytest.raises(HfHubHTTPError) as exc:
        api.add_collection_item(c.slug, "admin/does-not-exist-xyz", "model")
    assert _status(exc) == 404
    with pytest.raises(HfHubHTTPError) as exc:
        api.add_collection_item(c.slug, repo_id, "bucket")  # type: ignore[arg-type]
    assert _status(exc) == 400
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_collection("x" * 200)
    assert _status(exc) == 400
    api.delete_collection(c.slug)
