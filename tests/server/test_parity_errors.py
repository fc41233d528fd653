"""Hub parity, errors: the Hub's status codes and messages for refs, moves, deletes, stale parents and
missing repos; empty LFS files, folder deletes, bad paths; whoami orgs, org default visibility, the
caller's repo list and ``X-Request-Id`` on every answer. Driven through the unmodified official client
where it can send the request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

HTTP = httpx.Client(timeout=60)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def ndjson(endpoint: str, token: str, repo_id: str, *ops: dict, rev: str = "main") -> httpx.Response:
    lines = [{"key": "header", "value": {"summary": "raw", "description": ""}}, *ops]
    return HTTP.post(f"{endpoint}/api/models/{repo_id}/commit/{rev}", content="\n".join(map(json.dumps, lines)),
                     headers={"content-type": "application/x-ndjson", **_auth(token)})


def test_branches_and_tags_answer_like_the_hub(api: HfApi, repo_id: str) -> None:
    sha = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo_id).oid
    api.create_branch(repo_id, branch="dev")
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_branch(repo_id, branch="dev")
    assert exc.value.response.status_code == 409 and "Reference already exists" in str(exc.value)
    api.create_branch(repo_id, branch="dev", exist_ok=True)
    with pytest.raises(BadRequestError, match="Invalid reference for a branch: refs/pr/1"):
        api.create_branch(repo_id, branch="refs/pr/1")
    with pytest.raises(RevisionNotFoundError, match="Invalid rev id: nope"):
        api.create_branch(repo_id, branch="from-nowhere", revision="nope")
    # tags on a commit oid, full or short; a tag on a missing revision is RevisionNotFound
    api.create_tag(repo_id, tag="v1", revision=sha)
    api.create_tag(repo_id, tag="v1-short", revision=sha[:7], tag_message="annotated")
    tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id).tags}
    assert tags == {"v1": sha, "v1-short": sha}
    with pytest.raises(RevisionNotFoundError):
        api.create_tag(repo_id, tag="v2", revision="0" * 40)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_tag(repo_id, tag="v1", revision="main")
    assert exc.value.response.status_code == 409 and "Reference already exists" in str(exc.value)
    api.create_tag(repo_id, tag="v1", revision="main", exist_ok=True)
    with pytest.raises(RevisionNotFoundError, match="Invalid rev id: v9"):
        api.delete_tag(repo_id, tag="v9")
    # deleting main is refused; deleting a missing branch is RevisionNotFound
    with pytest.raises(BadRequestError, match="default branch"):
        api.delete_branch(repo_id, branch="main")
    with pytest.raises(RevisionNotFoundError, match="Invalid rev id: ghost"):
        api.delete_branch(repo_id, branch="ghost")
    api.delete_branch(repo_id, branch="dev")
    assert [b.name for b in api.list_repo_refs(repo_id).branches] == ["main"]


def test_moves_deletes_and_missing_repos(api: HfApi) -> None:
    a, b = f"admin/mv-a-{_uid()}", f"admin/mv-b-{_uid()}"
    api.create_repo(a)
    api.create_repo(b)
    with pytest.raises(HfHubHTTPError) as exc:
        api.move_repo(a, b)
    assert exc.value.response.status_code == 409 and "already have a model repo" in str(exc.value)
    assert api.repo_exists(a) and api.repo_exists(b)
    api.move_repo(a, a.upper())  # a change of case is a rename, not a conflict
    assert api.model_info(a).id == "admin/" + a.split("/")[1].upper()
    missing = f"admin/gone-{_uid()}"
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(missing)
    api.delete_repo(missing, missing_ok=True)
    with pytest.raises(RepositoryNotFoundError):
        api.move_repo(missing, f"admin/else-{_uid()}")
    with pytest.raises(RepositoryNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=missing)
    with pytest.raises(RepositoryNotFoundError):
        api.create_branch(missing, branch="b")


def test_a_stale_parent_commit_is_412_with_the_hubs_message(api: HfApi, repo_id: str) -> None:
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo_id).oid
    api.upload_file(path_or_fileobj=b"2", path_in_repo="a.txt", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(repo_id, [CommitOperationAdd("b.txt", b"b")], commit_message="stale", parent_commit=first)
    assert exc.value.response.status_code == 412
    assert "A commit has happened since. Please refresh and try again." in str(exc.value)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit(repo_id, [CommitOperationAdd("b.txt", b"b")], commit_message="stale pr",
                          parent_commit=first, create_pr=True)
    assert exc.value.response.status_code == 412
    assert api.list_repo_files(repo_id) == [".gitattributes", "a.txt"]


def test_empty_lfs_file_folder_delete_and_dot_paths(hub, api: HfApi, repo_id: str) -> None:
    token = hub.admin_token
    r = ndjson(hub.endpoint, token, repo_id, {"key": "lfsFile", "value": {"path": "empty.bin", "algo": "sha256",
                                                                          "oid": EMPTY_SHA256, "size": 0}},
               {"key": "file", "value": {"path": "also-empty.safetensors", "content": "", "encoding": "base64"}})
    assert r.status_code == 200, r.text
    for entry in api.get_paths_info(repo_id, ["empty.bin", "also-empty.safetensors"]):
        assert entry.size == 0 and entry.lfs is None and entry.blob_id == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    api.upload_file(path_or_fileobj=b"x", path_in_repo="sub/deep/x.txt", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"y", path_in_repo="sub/y.txt", repo_id=repo_id)
    api.delete_file("sub/deep", repo_id=repo_id)  # a folder, named without its trailing slash
    assert "sub/deep/x.txt" not in api.list_repo_files(repo_id) and "sub/y.txt" in api.list_repo_files(repo_id)
    api.create_commit(repo_id, [CommitOperationDelete("sub")], commit_message="rm sub")
    assert not [f for f in api.list_repo_files(repo_id) if f.startswith("sub")]
    before = api.model_info(repo_id).sha
    for bad in ("./a.txt", "a/../b.txt", "a/./b.txt", ".."):
        r = ndjson(hub.endpoint, token, repo_id, {"key": "file", "value": {"path": bad, "content": "eA=="}})
        assert r.status_code == 422, (bad, r.text)
        r = ndjson(hub.endpoint, token, repo_id, {"key": "deletedFile", "value": {"path": bad}})
        assert r.status_code == 422, (bad, r.text)
        r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/preupload/main", headers=_auth(token),
                      json={"files": [{"path": bad, "size": 1, "sample": "eA=="}]})
        assert r.status_code == 422, (bad, r.text)
    assert api.model_info(repo_id).sha == before


def test_every_answer_carries_a_request_id(hub, api: HfApi, repo_id: str) -> None:
    answers = [HTTP.get(f"{hub.endpoint}/api/models/{repo_id}"), HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/main/x"),
               HTTP.get(f"{hub.endpoint}/{repo_id}/resolve/main/.gitattributes"),
               HTTP.get(f"{hub.endpoint}/{repo_id}.git/info/refs?service=git-upload-pack"),
               HTTP.get(f"{hub.endpoint}/api/no-such-route"), HTTP.post(f"{hub.endpoint}/api/repos/create")]
    ids = [r.headers.get("x-request-id") for r in answers]
    assert all(ids) and len(set(ids)) == len(ids), ids
    traced = HTTP.get(f"{hub.endpoint}/api/models/{repo_id}", headers={"X-Amzn-Trace-Id": "Root=1-abc-def"})
    assert traced.headers["x-request-id"] == "Root=1-abc-def"
    odd = HTTP.get(f"{hub.endpoint}/api/models/{repo_id}", headers={"X-Request-Id": "<odd> id" * 30})
    assert odd.headers["x-request-id"].startswith("Root=1-")
    with pytest.raises(RepositoryNotFoundError) as exc:
        api.model_info(f"admin/none-{_uid()}")
    assert exc.value.request_id


def test_whoami_lists_orgs_with_role_and_full_name(hub, users) -> None:
    me = HfApi(endpoint=hub.endpoint, token=users["alice_token"]).whoami()
    orgs = {o["name"]: o for o in me["orgs"]}
    assert orgs[users["org"]]["roleInOrg"] == "write" and orgs[users["org"]]["fullname"] == users["org"]
    assert orgs[users["org"]]["type"] == "org"
    out = subprocess.run([str(Path(sys.executable).parent / "hf"), "auth", "whoami"], check=False,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HF_TOKEN": users["alice_token"], "HF_ENDPOINT": hub.endpoint})
    assert out.returncode == 0 and users["alice"] in out.stdout and users["org"] in out.stdout, out.stderr


def test_org_default_private_and_the_callers_repo_list(hub, users) -> None:
    org, alice = users["org"], HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    url = f"{hub.endpoint}/api/organizations/{org}/settings"
    r = HTTP.put(url, json={"defaultRepoVisibility": "private"}, headers=_auth(users["alice_token"]))
    assert r.status_code == 403, "a write member is not an org admin"
    r = HTTP.put(url, json={"defaultRepoVisibility": "sometimes"}, headers=_auth(hub.admin_token))
    assert r.status_code == 400
    try:
        r = HTTP.put(url, json={"defaultRepoVisibility": "private"}, headers=_auth(hub.admin_token))
        assert r.status_code == 200, r.text
        assert HTTP.get(url, headers=_auth(users["alice_token"])).json() == {"defaultRepoVisibility": "private"}
        hidden, shown = f"{org}/p-{_uid()}", f"{org}/q-{_uid()}"
        alice.create_repo(hidden)
        alice.create_repo(shown, private=False)
        assert alice.model_info(hidden).private is True and alice.model_info(shown).private is False
        own = f"{users['alice']}/mine-{_uid()}"
        alice.create_repo(own)
        assert alice.model_info(own).private is False, "the org default does not touch personal repos"
    finally:
        HTTP.put(url, json={"defaultRepoVisibility": "public"}, headers=_auth(hub.admin_token))
    listed = {r.id: r for r in alice.list_user_repos()}
    assert own in listed and hidden not in listed
    assert listed[own].type == "model" and listed[own].visibility == "public" and listed[own].storage > 0
    out = subprocess.run([str(Path(sys.executable).parent / "hf"), "repos", "ls", "--format", "json"], check=False,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HF_TOKEN": users["alice_token"], "HF_ENDPOINT": hub.endpoint})
    assert out.returncode == 0, out.stderr
    assert own in {item["id"] for item in json.loads(out.stdout)}
    in_org = {r.id: r.visibility for r in alice.list_user_repos(namespace=org)}
    assert in_org[hidden] == "private" and in_org[shown] == "public"
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    with pytest.raises(HfHubHTTPError) as exc:
        list(bob.list_user_repos(namespace=org))
    assert exc.value.response.status_code == 403
    assert HTTP.get(f"{hub.endpoint}/api/settings/repositories").status_code == 401
