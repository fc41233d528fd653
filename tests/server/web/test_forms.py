"""The web forms over HTTP (a cookie-keeping client, as a browser without JavaScript): create, upload
(with LFS), card edit, settings, tokens and the gated flow, each checked with the official client."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from auth_helpers import add_web_user, csrf_of, post_form, signed_in_client, unique, web_client
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError


@pytest.fixture(scope="module")
def owner(hub) -> dict[str, object]:
    """A user with a web password and an org, signed in; and a second user (bob)."""
    org = unique("org")
    name, token = add_web_user(hub, org=org)
    bob, bob_token = add_web_user(hub)
    return {"name": name, "token": token, "org": org, "client": signed_in_client(hub, name),
            "bob": bob, "bob_token": bob_token}


def _api(hub, token: str) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=token)


def _create(client: httpx.Client, path: str = "/new", **fields: str) -> httpx.Response:
    return post_form(client, path, **fields)


def _new_model(hub, owner, private: bool = False) -> str:
    name = unique("m")
    r = _create(owner["client"], name=name, owner=owner["name"], visibility="private" if private else "public")
    assert r.status_code == 303, r.text
    return f"{owner['name']}/{name}"


def test_create_repos_of_each_kind(hub, owner) -> None:
    client, user, org = owner["client"], owner["name"], owner["org"]
    page = client.get("/new")
    assert page.status_code == 200 and f'value="{org}"' in page.text  # the user's orgs are offered
    name = unique("m")
    r = _create(client, name=name, owner=user, visibility="public")
    assert r.status_code == 303 and r.headers["location"] == f"/{user}/{name}"
    info = _api(hub, owner["token"]).model_info(f"{user}/{name}")
    assert info.private is False
    r = _create(client, "/new-dataset", name=name, owner=org, visibility="private")
    assert r.status_code == 303 and r.headers["location"] == f"/datasets/{org}/{name}"
    assert _api(hub, owner["token"]).dataset_info(f"{org}/{name}").private is True
    with pytest.raises(RepositoryNotFoundError):  # private: invisible to bob
        _api(hub, owner["bob_token"]).dataset_info(f"{org}/{name}")
    r = _create(client, "/new-space", name=name, owner=user, visibility="public", sdk="static")
    assert r.status_code == 303 and r.headers["location"] == f"/spaces/{user}/{name}"
    assert _api(hub, owner["token"]).space_info(f"{user}/{name}").sdk == "static"
    # The same checks as the API: a name taken, a namespace not one's own, a bad name.
    again = _create(client, name=name, owner=user)
    assert again.status_code == 409 and "already created" in again.text
    assert _create(client, name=unique("m"), owner=owner["bob"]).status_code == 403
    assert _create(client, name="bad name!", owner=user).status_code == 400
    assert web_client(hub).get("/new").status_code == 303  # anonymous: to the sign-in page


def test_upload_folder_with_lfs_file_read_back_with_official_client(hub, owner, tmp_path: Path) -> None:
    repo_id = _new_model(hub, owner)
    client = owner["client"]
    page = client.get(f"/{repo_id}/upload/main")
    assert page.status_code == 200 and 'type="file"' in page.text and "webkitdirectory" in page.text
    big = os.urandom(11 << 20)  # past the regular-file limit (10 MiB): an LFS object
    files = [("files", ("weights/model.bin", big)), ("files", ("weights/config.json", b'{"a": 1}')),
             ("files", ("notes.txt", b"hello"))]
    r = client.post(f"/{repo_id}/upload/main", data={"csrf_token": csrf_of(page.text), "summary": "Add weights"},
                    files=files)
    assert r.status_code == 303 and r.headers["location"] == f"/{repo_id}/tree/main", r.text[:500]
    api = _api(hub, owner["token"])
    commits = api.list_repo_commits(repo_id)
    assert commits[0].title == "Add weights" and len(commits) == 2  # one commit for all files
    infos = {i.path: i for i in api.get_paths_info(repo_id, ["weights/model.bin", "weights/config.json"])}
    assert infos["weights/model.bin"].lfs is not None
    assert infos["weights/model.bin"].lfs.sha256 == hashlib.sha256(big).hexdigest()
    assert infos["weights/config.json"].lfs is None
    got = Path(hf_hub_download(repo_id, "weights/model.bin", endpoint=hub.endpoint, token=owner["token"],
                               cache_dir=tmp_path / "cache"))
    assert got.read_bytes() == big
    # JavaScript's request (Accept: application/json) gets the commit as JSON.
    page = client.get(f"/{repo_id}/upload/main")
    r = client.post(f"/{repo_id}/upload/main", headers={"Accept": "application/json"},
                    data={"csrf_token": csrf_of(page.text)}, files=[("files", ("more.txt", b"more"))])
    assert r.status_code == 200 and r.json()["url"] == f"/{repo_id}/tree/main" and len(r.json()["commitOid"]) == 40


def test_failed_upload_leaves_the_repo_unchanged(hub, owner) -> None:
    repo_id = _new_model(hub, owner)
    client = owner["client"]
    api = _api(hub, owner["token"])
    head = api.model_info(repo_id).sha
    token = csrf_of(client.get(f"/{repo_id}/upload/main").text)
    big = os.urandom(11 << 20)
    bad_card = b"---\nlicense: 42\ntags: {nested: true}\n---\n# card\n"
    r = client.post(f"/{repo_id}/upload/main", data={"csrf_token": token},
                    files=[("files", ("big.bin", big)), ("files", ("README.md", bad_card))])
    assert r.status_code == 400 and "Invalid metadata in README.md" in r.text and 'id="upload-form"' in r.text
    r = client.post(f"/{repo_id}/upload/main", data={"csrf_token": token},
                    files=[("files", ("ok.txt", b"x")), ("files", ("a/../../etc/passwd", b"x"))])
    assert r.status_code == 422
    r = client.post(f"/{repo_id}/upload/main", data={"csrf_token": "forged"}, files=[("files", ("ok.txt", b"x"))])
    assert r.status_code == 403
    r = client.post(f"/{repo_id}/upload/main", data={"csrf_token": token},
                    files=[("files", ("", b""))])  # a browser's empty file input
    assert r.status_code == 400 and "at least one file" in r.text
    r = client.post(f"/{repo_id}/upload/main", data={"csrf_token": token})
    assert r.status_code == 400 and "multipart/form-data" in r.text
    assert api.model_info(repo_id).sha == head
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    # Someone who may not write the repo is refused before the body is read.
    bob = signed_in_client(hub, owner["bob"])
    r = bob.post(f"/{repo_id}/upload/main", data={"csrf_token": csrf_of(bob.get("/settings/tokens").text)},
                 files=[("files", ("x.txt", b"x"))])
    assert r.status_code == 403 and api.model_info(repo_id).sha == head


def test_edit_card_checks_yaml_then_commits(hub, owner) -> None:
    repo_id = _new_model(hub, owner)
    client = owner["client"]
    api = _api(hub, owner["token"])
    path = f"/{repo_id}/edit/main/README.md"
    head = api.model_info(repo_id).sha
    bad = "---\nlicense: [1, 2]\nlibrary_name: {a: b}\n---\n# Hi\n"
    r = post_form(client, path, content=bad, summary="bad", action="commit")
    assert r.status_code == 400 and 'id="card-errors"' in r.text
    assert api.model_info(repo_id).sha == head
    # The same answer as /api/validate-yaml gives.
    check = httpx.post(f"{hub.endpoint}/api/validate-yaml", json={"content": bad, "repoType": "model"})
    assert check.status_code == 400
    for e in check.json()["errors"]:
        assert e["message"].replace("'", "&#39;").replace('"', "&#34;") in r.text
    card = "---\nlicense: mit\npipeline_tag: fill-mask\n---\n# Hello\n\n<script>alert(1)</script>\n\n**bold**\n"
    r = post_form(client, path, content=card, action="preview")
    assert r.status_code == 200 and "<strong>bold</strong>" in r.text and "<script>alert" not in r.text
    assert api.model_info(repo_id).sha == head
    r = post_form(client, path, content=card, summary="Write the card", action="commit")
    assert r.status_code == 303 and r.headers["location"] == f"/{repo_id}"
    info = api.model_info(repo_id)
    assert info.card_data["license"] == "mit" and info.pipeline_tag == "fill-mask"
    assert api.list_repo_commits(repo_id)[0].title == "Write the card"
    # An edit begun before another commit is refused (412), not silently merged.
    stale = client.get(path).text
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
    r = client.post(path, data={"csrf_token": csrf_of(stale), "content": "# other\n", "action": "commit",
                                "parent": info.sha})
    assert r.status_code == 412


def test_settings_visibility_gating_move_delete(hub, owner) -> None:
    repo_id = _new_model(hub, owner)
    client = owner["client"]
    api = _api(hub, owner["token"])
    settings = f"/{repo_id}/settings"
    r = post_form(client, settings, action="visibility", visibility="private")
    assert r.status_code == 303 and api.model_info(repo_id).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.endpoint, token=False).model_info(repo_id)
    assert post_form(client, settings, action="visibility", visibility="public").status_code == 303
    assert post_form(client, settings, action="gating", gated="auto").status_code == 303
    assert api.model_info(repo_id).gated == "auto"
    assert post_form(client, settings, action="gating", gated="false").status_code == 303
    assert api.model_info(repo_id).gated is False
    # Others cannot even see the settings page of a repo they may not write.
    bob = signed_in_client(hub, owner["bob"])
    assert bob.get(settings).status_code == 403
    new_id = f"{owner['name']}/{unique('renamed')}"
    r = post_form(client, settings, action="move", new_id=new_id)
    assert r.status_code == 303 and r.headers["location"] == f"/{new_id}/settings?done=moved"
    assert api.model_info(new_id).id == new_id
    settings = f"/{new_id}/settings"
    r = post_form(client, settings, action="delete", confirm="wrong/name")
    assert r.status_code == 400 and api.model_info(new_id)
    r = post_form(client, settings, action="delete", confirm=new_id)
    assert r.status_code == 303
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(new_id)


def test_tokens_created_in_the_browser_work_with_hfapi(hub, owner) -> None:
    client = owner["client"]
    name = unique("laptop")
    r = post_form(client, "/settings/tokens", name=name, role="write")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = r.text.split('id="new-token" class="secret">', 1)[1].split("<", 1)[0]
    assert token.startswith("hf_")
    who = HfApi(endpoint=hub.endpoint, token=token).whoami()
    assert who["name"] == owner["name"] and who["auth"]["accessToken"]["role"] == "write"
    listing = client.get("/settings/tokens")
    assert name in listing.text and token not in listing.text  # shown once
    r = post_form(client, "/settings/tokens", name=unique("ro"), role="read")
    read_token = r.text.split('id="new-token" class="secret">', 1)[1].split("<", 1)[0]
    assert HfApi(endpoint=hub.endpoint, token=read_token).whoami()["auth"]["accessToken"]["role"] == "read"
    token_id = hashlib.sha256(token.encode()).hexdigest()[:len(_token_ids(client)[0])]
    assert token_id in _token_ids(client)
    # bob cannot revoke it; its owner can.
    bob = signed_in_client(hub, owner["bob"])
    assert post_form(bob, "/settings/tokens", "/settings/tokens/revoke", token_id=token_id).status_code == 404
    r = post_form(client, "/settings/tokens", "/settings/tokens/revoke", token_id=token_id)
    assert r.status_code == 303 and token_id not in _token_ids(client)
    with pytest.raises(HfHubHTTPError):
        HfApi(endpoint=hub.endpoint, token=token).whoami()


def _token_ids(client: httpx.Client) -> list[str]:
    text = client.get("/settings/tokens").text
    return [part.split('"', 1)[0] for part in text.split('name="token_id" value="')[1:]]


def test_gated_flow_with_two_users(hub, owner, tmp_path: Path) -> None:
    repo_id = _new_model(hub, owner)
    client = owner["client"]
    api = _api(hub, owner["token"])
    api.upload_file(path_or_fileobj=b"secret weights", path_in_repo="w.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"---\nextra_gated_prompt: Use it kindly.\n---\n# Gated\n",
                    path_in_repo="README.md", repo_id=repo_id)
    assert post_form(client, f"/{repo_id}/settings", action="gating", gated="manual").status_code == 303
    bob_name, bob_token = owner["bob"], owner["bob_token"]

    def bob_download() -> bytes:
        cache = tmp_path / unique("bob")  # a fresh cache each time: every call asks the hub
        return Path(hf_hub_download(repo_id, "w.bin", endpoint=hub.endpoint, token=bob_token,
                                    cache_dir=cache)).read_bytes()

    with pytest.raises(GatedRepoError):
        bob_download()
    anon = web_client(hub).get(f"/{repo_id}/access")
    assert anon.status_code == 200 and "Sign in" in anon.text and "Use it kindly." in anon.text
    bob = signed_in_client(hub, bob_name)
    page = bob.get(f"/{repo_id}/access")
    assert page.status_code == 200 and 'id="agree-access"' in page.text and "Use it kindly." in page.text
    r = post_form(bob, f"/{repo_id}/access")
    assert r.status_code == 303
    assert "pending" in bob.get(f"/{repo_id}/access").text
    with pytest.raises(GatedRepoError):
        bob_download()
    settings = client.get(f"/{repo_id}/settings")
    assert f'id="accept-{bob_name}"' in settings.text
    r = post_form(client, f"/{repo_id}/settings", action="access", user=bob_name, status="accepted")
    assert r.status_code == 303
    assert bob_download() == b"secret weights"
    assert "Access granted" in bob.get(f"/{repo_id}/access").text
    # Rejected again: 403 once more.
    assert post_form(client, f"/{repo_id}/settings", action="access", user=bob_name,
                     status="rejected").status_code == 303
    with pytest.raises(GatedRepoError):
        bob_download()


def test_private_repo_pages_are_invisible_to_others(hub, owner) -> None:
    repo_id = _new_model(hub, owner, private=True)
    bob = signed_in_client(hub, owner["bob"])
    anon = web_client(hub)
    for client in (bob, anon):
        for path in ("access", "settings", "upload/main", "edit/main/README.md"):
            r = client.get(f"/{repo_id}/{path}")
            if client is anon and path != "access":
                assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
                continue
            assert r.status_code == 404, path
            assert repo_id.split("/")[1] not in r.text.replace(f"/{repo_id}/{path}", "")
    # the same answer as for a repo that does not exist
    assert bob.get(f"/{owner['name']}/{unique('nothing')}/settings").status_code == 404


def test_upload_size_is_bounded(tmp_path: Path) -> None:
    """Past the app's upload limit the body is refused (413) and nothing is committed."""
    import asyncio

    from hubfs.server.app import create_app
    from hubfs.server.hub import Hub
    from hubfs.server.web.passwords import PasswordStore

    hub = Hub(tmp_path / "hub")
    hub.bootstrap()
    hub.add_user("dora")
    PasswordStore(hub.data_dir / "hub.sqlite").set_password("dora", "dora's password")
    app = create_app(hub)
    app.state["hubfs.web.upload_max"] = 64 << 10

    async def run() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub.test") as c:
            page = await c.get("/login")
            await c.post("/login", data={"username": "dora", "password": "dora's password",
                                         "csrf_token": csrf_of(page.text)})
            page = await c.get("/new")
            assert (await c.post("/new", data={"name": "m", "owner": "dora",
                                               "csrf_token": csrf_of(page.text)})).status_code == 303
            token = csrf_of((await c.get("/dora/m/upload/main")).text)
            small = await c.post("/dora/m/upload/main", data={"csrf_token": token},
                                 files=[("files", ("a.bin", b"a" * 1000))])
            big = await c.post("/dora/m/upload/main", data={"csrf_token": token},
                               files=[("files", ("b.bin", b"b" * (100 << 10)))])
            return [small.status_code, big.status_code]

    assert asyncio.run(run()) == [303, 413]
    with hub.git.open("model", "dora/m") as g:
        head = g.branch_head("refs/heads/main")
        assert g.lookup(head, "a.bin") is not None and g.lookup(head, "b.bin") is None
