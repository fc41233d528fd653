"""Access rules of the embedded hub, driven through the official client and raw HTTP.

Who may see a repo (public, private, gated), who may write to it (owner, org member, write token
only), how bad credentials are answered, and that tokens never leak into files or logs.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

BAD_CREDENTIALS = "Invalid credentials in Authorization header"
HTTP = httpx.Client(timeout=30)  # one connection pool for all raw requests (a new client per call is slow)


def _uid() -> str:
    return uuid.uuid4().hex[:10]


def _client(hub, token) -> HfApi:
    """An HfApi acting as ``token`` (False: anonymous, nothing sent)."""
    return HfApi(endpoint=hub.endpoint, token=token)


def _auth(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _download(hub, repo_id: str, filename: str, token, cache: Path) -> bytes:
    path = hf_hub_download(repo_id, filename, endpoint=hub.endpoint, token=token, cache_dir=cache)
    return Path(path).read_bytes()


def _status(exc: BaseException) -> int:
    assert isinstance(exc, HfHubHTTPError), exc
    assert exc.response is not None
    return exc.response.status_code


def _files(api: HfApi, repo_id: str) -> list[str]:
    return sorted(s.rfilename for s in api.model_info(repo_id).siblings or [])


# -- public repos -------------------------------------------------------------------------------


def test_anonymous_reads_public_repo(hub, api, repo_id, tmp_path):
    api.upload_file(path_or_fileobj=b"hello world", path_in_repo="hello.txt", repo_id=repo_id)
    anon = _client(hub, False)
    info = anon.model_info(repo_id)
    assert info.id == repo_id
    assert info.private is False
    assert "hello.txt" in [s.rfilename for s in info.siblings]
    assert anon.repo_exists(repo_id) is True
    assert _download(hub, repo_id, "hello.txt", False, tmp_path) == b"hello world"

    r = HTTP.get(f"{hub.endpoint}/api/models/{repo_id}")
    assert r.status_code == 200
    assert r.json()["id"] == repo_id
    r = HTTP.get(f"{hub.endpoint}/{repo_id}/resolve/main/hello.txt")
    assert r.status_code == 200 and r.content == b"hello world"


def test_anonymous_cannot_write_public_repo(hub, api, repo_id):
    sha = api.model_info(repo_id).sha
    with pytest.raises(HfHubHTTPError) as exc:
        _client(hub, False).create_commit(
            repo_id, [CommitOperationAdd("x.txt", b"x")], commit_message="anon")
    assert _status(exc.value) == 401
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main",
                  content=b'{"key":"header","value":{"summary":"x"}}\n',
                  headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 401
    assert r.headers["x-error-code"] == "Unauthorized"
    assert api.model_info(repo_id).sha == sha


# -- private repos ------------------------------------------------------------------------------


@pytest.fixture
def private_repo(api) -> str:
    rid = f"admin/p-{_uid()}"
    api.create_repo(rid, private=True)
    api.upload_file(path_or_fileobj=b"top secret", path_in_repo="secret.txt", repo_id=rid)
    return rid


def test_private_repo_raw_status_codes(hub, users, private_repo):
    info_url = f"{hub.endpoint}/api/models/{private_repo}"
    resolve_url = f"{hub.endpoint}/{private_repo}/resolve/main/secret.txt"

    # anonymous: 401 + RepoNotFound, on GET and on HEAD (no body: the header is the only signal)
    r = HTTP.get(info_url)
    assert r.status_code == 401
    assert r.headers["x-error-code"] == "RepoNotFound"
    r = HTTP.head(resolve_url)
    assert r.status_code == 401
    assert r.headers["x-error-code"] == "RepoNotFound"
    r = HTTP.get(resolve_url)
    assert r.status_code == 401 and b"top secret" not in r.content

    # another signed-in user: 404 + RepoNotFound, indistinguishable from a missing repo
    for token in (users["bob_token"], users["bob_read"], users["alice_token"]):
        r = HTTP.get(info_url, headers=_auth(token))
        assert r.status_code == 404
        assert r.headers["x-error-code"] == "RepoNotFound"
        r = HTTP.head(resolve_url, headers=_auth(token))
        assert r.status_code == 404
        assert r.headers["x-error-code"] == "RepoNotFound"
        r = HTTP.get(f"{hub.endpoint}/api/models/{private_repo}/tree/main", headers=_auth(token))
        assert r.status_code == 404
        assert r.headers["x-error-code"] == "RepoNotFound"
        r = HTTP.get(f"{hub.endpoint}/api/models/{private_repo}/tree/main?hubfs_lfs=all", headers=_auth(token))
        assert r.status_code == 404 and "x-hubfs-lfs" not in r.headers
        assert r.headers["x-error-code"] == "RepoNotFound"
    missing = HTTP.get(f"{hub.endpoint}/api/models/admin/never-{_uid()}", headers=_auth(users["bob_token"]))
    assert missing.status_code == 404
    assert missing.headers["x-error-code"] == "RepoNotFound"

    # the owner sees it
    r = HTTP.get(info_url, headers=_auth(hub.admin_token))
    assert r.status_code == 200 and r.json()["private"] is True
    r = HTTP.get(resolve_url, headers=_auth(hub.admin_token))
    assert r.status_code == 200 and r.content == b"top secret"


def test_private_repo_official_client(hub, api, users, private_repo, tmp_path):
    anon, bob = _client(hub, False), _client(hub, users["bob_token"])
    for client in (anon, bob):
        with pytest.raises(RepositoryNotFoundError) as exc:
            client.model_info(private_repo)
        assert not isinstance(exc.value, GatedRepoError)
        with pytest.raises(RepositoryNotFoundError):
            client.list_repo_files(private_repo)
    for token, sub in ((False, "anon"), (users["bob_token"], "bob")):
        with pytest.raises(RepositoryNotFoundError) as exc:
            _download(hub, private_repo, "secret.txt", token, tmp_path / sub)
        assert not isinstance(exc.value, GatedRepoError)

    assert bob.repo_exists(private_repo) is False
    assert anon.repo_exists(private_repo) is False
    assert api.repo_exists(private_repo) is True
    assert bob.file_exists(private_repo, "secret.txt") is False
    assert api.file_exists(private_repo, "secret.txt") is True
    assert _download(hub, private_repo, "secret.txt", hub.admin_token, tmp_path / "admin") == b"top secret"

    # listings do not show it to others
    name = private_repo.split("/")[1]
    assert private_repo not in [m.id for m in bob.list_models(author="admin", search=name)]
    assert private_repo not in [m.id for m in anon.list_models(author="admin", search=name)]
    assert private_repo in [m.id for m in api.list_models(author="admin", search=name)]


def test_private_org_repo_visible_to_members_only(hub, users):
    alice, bob = _client(hub, users["alice_token"]), _client(hub, users["bob_token"])
    rid = f"{users['org']}/priv-{_uid()}"
    alice.create_repo(rid, private=True)
    assert alice.repo_exists(rid) is True
    assert alice.model_info(rid).private is True
    assert bob.repo_exists(rid) is False
    with pytest.raises(RepositoryNotFoundError):
        bob.model_info(rid)


# -- writes -------------------------------------------------------------------------------------


def test_other_user_cannot_write_admin_repo(hub, api, users, repo_id):
    before = api.model_info(repo_id).sha
    bob = _client(hub, users["bob_token"])
    with pytest.raises(HfHubHTTPError) as exc:
        bob.upload_file(path_or_fileobj=b"pwned", path_in_repo="pwned.txt", repo_id=repo_id)
    assert _status(exc.value) == 403
    with pytest.raises(HfHubHTTPError) as exc:
        bob.create_commit(repo_id, [CommitOperationAdd("pwned.txt", b"pwned")], commit_message="x")
    assert _status(exc.value) == 403

    # raw commit: 403 Forbidden, branch untouched
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main",
                  content=b'{"key":"header","value":{"summary":"x"}}\n'
                           b'{"key":"file","value":{"path":"pwned.txt","content":"cHduZWQ=","encoding":"base64"}}\n',
                   headers={"content-type": "application/x-ndjson", **_auth(users["bob_token"])})
    assert r.status_code == 403
    assert r.headers["x-error-code"] == "Forbidden"

    # nor any other write: branches, tags, settings, deletion, renaming
    for call in (
        lambda: bob.create_branch(repo_id, branch="evil"),
        lambda: bob.create_tag(repo_id, tag="evil"),
        lambda: bob.update_repo_settings(repo_id, private=True),
        lambda: bob.delete_repo(repo_id),
        lambda: bob.move_repo(repo_id, f"{users['bob']}/stolen-{_uid()}"),
    ):
        with pytest.raises(HfHubHTTPError) as exc:
            call()
        assert _status(exc.value) == 403

    info = api.model_info(repo_id)
    assert info.sha == before
    assert info.private is False
    assert "pwned.txt" not in _files(api, repo_id)
    refs = api.list_repo_refs(repo_id)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []


def test_read_only_token_cannot_write_own_repo(hub, users):
    bob = _client(hub, users["bob_token"])
    bob_read = _client(hub, users["bob_read"])
    rid = f"{users['bob']}/r-{_uid()}"
    bob.create_repo(rid)
    before = bob.model_info(rid).sha

    with pytest.raises(HfHubHTTPError) as exc:
        bob_read.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=rid)
    assert _status(exc.value) == 403
    with pytest.raises(HfHubHTTPError) as exc:
        bob_read.create_repo(f"{users['bob']}/r-{_uid()}")
    assert _status(exc.value) == 403
    with pytest.raises(HfHubHTTPError) as exc:
        bob_read.delete_repo(rid)
    assert _status(exc.value) == 403
    r = HTTP.post(f"{hub.endpoint}/api/models/{rid}/commit/main",
                  content=b'{"key":"header","value":{"summary":"x"}}\n',
                  headers={"content-type": "application/x-ndjson", **_auth(users["bob_read"])})
    assert r.status_code == 403
    assert r.headers["x-error-code"] == "Forbidden"

    # the read token still reads, and the write token still writes
    assert bob_read.model_info(rid).sha == before
    bob.upload_file(path_or_fileobj=b"ok", path_in_repo="ok.txt", repo_id=rid)
    assert "ok.txt" in _files(bob_read, rid)


def test_org_member_creates_and_uploads_in_org(hub, users, tmp_path):
    alice = _client(hub, users["alice_token"])
    rid = f"{users['org']}/m-{_uid()}"
    url = alice.create_repo(rid)
    assert url.repo_id == rid
    alice.upload_file(path_or_fileobj=b"org data", path_in_repo="data.txt", repo_id=rid)
    assert "data.txt" in _files(alice, rid)
    assert _download(hub, rid, "data.txt", False, tmp_path) == b"org data"
    assert alice.model_info(rid).author == users["org"]


def test_non_member_cannot_create_or_write_in_org(hub, users):
    alice, bob = _client(hub, users["alice_token"]), _client(hub, users["bob_token"])
    rid = f"{users['org']}/b-{_uid()}"
    with pytest.raises(HfHubHTTPError) as exc:
        bob.create_repo(rid)
    assert _status(exc.value) == 403
    assert alice.repo_exists(rid) is False

    r = HTTP.post(f"{hub.endpoint}/api/repos/create", json={"name": rid.split("/")[1], "organization": users["org"]},
                  headers=_auth(users["bob_token"]))
    assert r.status_code == 403
    assert r.headers["x-error-code"] == "Forbidden"
    assert alice.repo_exists(rid) is False

    # nor write into an existing org repo
    alice.create_repo(rid)
    sha = alice.model_info(rid).sha
    with pytest.raises(HfHubHTTPError) as exc:
        bob.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=rid)
    assert _status(exc.value) == 403
    assert alice.model_info(rid).sha == sha


def test_user_cannot_create_in_another_users_namespace(hub, users):
    bob = _client(hub, users["bob_token"])
    rid = f"{users['alice']}/b-{_uid()}"
    with pytest.raises(HfHubHTTPError) as exc:
        bob.create_repo(rid)
    assert _status(exc.value) == 403
    assert _client(hub, users["alice_token"]).repo_exists(rid) is False


# -- credentials --------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [
    "Bearer hf_thisIsNotAValidToken",
    "Bearer",
    "Basic dXNlcjpoZl9ub3BlX25vcGU=",  # user:hf_nope_nope
    "Token hf_whatever",
])
def test_bad_credentials_get_401_even_on_public_repo(hub, repo_id, authorization):
    for method, url in (
        ("GET", f"{hub.endpoint}/api/models/{repo_id}"),
        ("HEAD", f"{hub.endpoint}/{repo_id}/resolve/main/.gitattributes"),
        ("GET", f"{hub.endpoint}/{repo_id}/resolve/main/.gitattributes"),
        ("GET", f"{hub.endpoint}/api/whoami-v2"),
    ):
        r = HTTP.request(method, url, headers={"authorization": authorization})
        assert r.status_code == 401, (method, url)
        assert r.headers["x-error-message"] == BAD_CREDENTIALS


def test_bad_token_through_official_client(hub, repo_id, tmp_path):
    bad = _client(hub, "hf_thisIsNotAValidToken")
    with pytest.raises(HfHubHTTPError) as exc:
        bad.model_info(repo_id)
    assert _status(exc.value) == 401
    # an http:// endpoint with this exact message must not be mistaken for a missing repo
    assert not isinstance(exc.value, RepositoryNotFoundError)
    with pytest.raises(HfHubHTTPError) as exc:
        _download(hub, repo_id, ".gitattributes", "hf_thisIsNotAValidToken", tmp_path)
    assert _status(exc.value) == 401


def test_basic_auth_with_token_as_password(hub, private_repo):
    cred = base64.b64encode(f"anyone:{hub.admin_token}".encode()).decode()
    r = HTTP.get(f"{hub.endpoint}/api/models/{private_repo}", headers={"authorization": f"Basic {cred}"})
    assert r.status_code == 200 and r.json()["id"] == private_repo


# -- gated repos --------------------------------------------------------------------------------


def test_gated_repo_needs_a_grant(hub, api, users, repo_id, tmp_path):
    api.upload_file(path_or_fileobj=b"gated weights", path_in_repo="w.txt", repo_id=repo_id)
    api.update_repo_settings(repo_id, gated="manual")
    bob_token, alice_token = users["bob_token"], users["alice_token"]
    bob = _client(hub, bob_token)

    # the info stays readable by everyone
    assert bob.model_info(repo_id).gated == "manual"
    assert _client(hub, False).model_info(repo_id).gated == "manual"
    assert bob.repo_exists(repo_id) is True

    # files are not
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, "w.txt", bob_token, tmp_path / "bob")
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, "w.txt", False, tmp_path / "anon")
    url = f"{hub.endpoint}/{repo_id}/resolve/main/w.txt"
    r = HTTP.head(url, headers=_auth(bob_token))
    assert r.status_code == 403 and r.headers["x-error-code"] == "GatedRepo"
    r = HTTP.get(url, headers=_auth(bob_token))
    assert r.status_code == 403 and b"gated weights" not in r.content
    r = HTTP.head(url)
    assert r.status_code == 401 and r.headers["x-error-code"] == "GatedRepo"

    # the owner always can
    assert _download(hub, repo_id, "w.txt", hub.admin_token, tmp_path / "admin") == b"gated weights"

    api.grant_access(repo_id, users["bob"])
    assert _download(hub, repo_id, "w.txt", bob_token, tmp_path / "bob") == b"gated weights"
    assert HTTP.get(url, headers=_auth(bob_token)).content == b"gated weights"

    # the grant is bob's alone
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, "w.txt", alice_token, tmp_path / "alice")
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, "w.txt", False, tmp_path / "anon2")
    # and only the owner may grant
    with pytest.raises(HfHubHTTPError) as exc:
        bob.grant_access(repo_id, users["alice"])
    assert _status(exc.value) == 403
    with pytest.raises(GatedRepoError):
        _download(hub, repo_id, "w.txt", alice_token, tmp_path / "alice2")


# -- delete / move ------------------------------------------------------------------------------


def test_delete_missing_repo(api):
    missing = f"admin/missing-{_uid()}"
    api.delete_repo(missing, missing_ok=True)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(missing)


def test_delete_repo(api, hub):
    rid = f"admin/del-{_uid()}"
    api.create_repo(rid)
    api.delete_repo(rid)
    assert api.repo_exists(rid) is False
    r = HTTP.get(f"{hub.endpoint}/api/models/{rid}", headers=_auth(hub.admin_token))
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"


def test_move_repo_redirects_old_resolve_urls(hub, api, repo_id, tmp_path):
    api.upload_file(path_or_fileobj=b"moved content", path_in_repo="f.txt", repo_id=repo_id)
    new_id = f"admin/moved-{_uid()}"
    api.move_repo(repo_id, new_id)
    assert api.model_info(new_id).id == new_id
    assert api.repo_exists(new_id) is True

    old_url = f"{hub.endpoint}/{repo_id}/resolve/main/f.txt"
    r = HTTP.get(old_url, follow_redirects=False)
    assert r.status_code in (301, 302, 307, 308)
    assert r.headers["location"].endswith(f"/{new_id}/resolve/main/f.txt")
    r = HTTP.get(old_url, follow_redirects=True)
    assert r.status_code == 200
    assert r.content == b"moved content"
    assert r.url.path == f"/{new_id}/resolve/main/f.txt"
    # the official client follows the same-origin redirect too
    assert _download(hub, repo_id, "f.txt", hub.admin_token, tmp_path) == b"moved content"


def test_moved_private_repo_does_not_leak_its_new_name(hub, api, users, private_repo):
    new_id = f"admin/pm-{_uid()}"
    api.move_repo(private_repo, new_id)
    old_url = f"{hub.endpoint}/{private_repo}/resolve/main/secret.txt"
    assert HTTP.get(old_url, headers=_auth(hub.admin_token), follow_redirects=True).content == b"top secret"
    for headers, status in (({}, 401), (_auth(users["bob_token"]), 404)):
        r = HTTP.get(old_url, headers=headers, follow_redirects=False)
        assert r.status_code == status
        assert r.headers["x-error-code"] == "RepoNotFound"
        assert new_id not in r.headers.get("location", "")


# -- tokens on disk and in logs -----------------------------------------------------------------


def test_admin_token_file_is_private(hub):
    path = hub.data_dir / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert hub.admin_token.startswith("hf_")


def test_tokens_never_logged(hub, users, repo_id, private_repo):
    # exercise successes and failures with every token, so that anything logging headers would show
    for token in (hub.admin_token, users["bob_token"], users["bob_read"], users["alice_token"]):
        HTTP.get(f"{hub.endpoint}/api/models/{private_repo}", headers=_auth(token))
        HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main", content=b"not json\n",
                  headers={"content-type": "application/x-ndjson", **_auth(token)})
        HTTP.get(f"{hub.endpoint}/api/whoami-v2", headers=_auth(token))
    HTTP.get(f"{hub.endpoint}/api/models/{repo_id}", headers=_auth(hub.admin_token + "x"))
    log = hub.log_path.read_text(errors="replace")
    for token in (hub.admin_token, users["bob_token"], users["bob_read"], users["alice_token"]):
        assert token not in log
    # nor on disk in clear anywhere in the hub's database
    db = (hub.data_dir / "hub.sqlite").read_bytes()
    for token in (hub.admin_token, users["bob_token"], users["bob_read"], users["alice_token"]):
        assert token.encode() not in db


def test_serve_output_does_not_show_the_token(tmp_path):
    data = tmp_path / "hub"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubfs.cli", "serve", "--data", str(data), "--port", "0", "--access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        endpoint = next(line.split()[1] for line in lines if line.startswith("endpoint:"))
        token = (data / "admin.token").read_text().strip()
        assert stat.S_IMODE((data / "admin.token").stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600
        assert any("admin token file:" in line and "(new)" in line for line in lines)
        # a few requests, so the access log has something to show
        for _ in range(50):
            try:
                HTTP.get(f"{endpoint}/api/whoami-v2", headers=_auth(token), timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        HTTP.get(f"{endpoint}/api/models/admin/nope", headers=_auth(token + "bad"), timeout=5)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    shown = "".join(lines) + out + err
    assert token not in shown
    assert str((data / "admin.token").resolve()) in "".join(lines)
