"""Names git or the Hub refuse are refused by every write route of the embedded hub.

Paths: git's ``verify_path`` with its NTFS and HFS+ protections (``.GIT``, ``git~1``, ``.git.``,
``.g\\u200cit``) and fsck's ``.gitmodules`` look-alikes. Repo names: the Hub's rules (no ``.``, ``..``,
leading or trailing ``.``/``-``). Branches and tags: ``check-ref-format`` plus ``HEAD``. Commit summaries,
descriptions, tag messages, discussion titles and comments are capped.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import HfHubHTTPError

HTTP = httpx.Client(timeout=120)
LOOK_ALIKES = [".GIT/config", ".Git/hooks/post-checkout", "git~1/config", ".git./config", ".git /config",
               ".g\u200cit/config", "sub/.GIT/x", ".gitmodules/x", "GITMOD~1", ".git::$INDEX_ALLOCATION/x"]


def _auth(hub, token: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {token or hub.admin_token}"}


def ndjson(*lines: dict) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def header(summary: str = "names", description: str = "") -> dict:
    return {"key": "header", "value": {"summary": summary, "description": description}}


def file_op(path: str, data: bytes = b"data") -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}


def post_commit(hub, repo_id: str, body: bytes) -> httpx.Response:
    return HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main", content=body,
                     headers={"content-type": "application/x-ndjson", **_auth(hub)})


def head_and_files(api, repo_id: str) -> tuple[str, list[str]]:
    info = api.model_info(repo_id)
    return info.sha, sorted(s.rfilename for s in info.siblings or [])


def git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0", GIT_LFS_SKIP_SMUDGE="1")
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path", LOOK_ALIKES)
def test_git_look_alike_paths_are_refused_by_commit_and_preupload(hub, api, repo_id, path):
    before = head_and_files(api, repo_id)
    for op in (file_op(path), {"key": "deletedFile", "value": {"path": path}},
               {"key": "deletedFolder", "value": {"path": path}},
               {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": "0" * 64, "size": 1}}):
        r = post_commit(hub, repo_id, ndjson(header(), op))
        assert r.status_code == 400, (path, op["key"], r.status_code, r.text[:200])
        assert r.headers["x-error-code"] == "InvalidName"
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/preupload/main", headers=_auth(hub),
                  json={"files": [{"path": path, "size": 4, "sample": "ZGF0YQ=="}]})
    assert r.status_code == 400 and r.headers["x-error-code"] == "InvalidName", (path, r.status_code)
    assert head_and_files(api, repo_id) == before


def test_dot_GIT_commit_is_refused_and_a_normal_commit_clones(hub, api, repo_id, tmp_path):
    r = post_commit(hub, repo_id, ndjson(header(), file_op("ok.txt"), file_op(".GIT/config", b"[core]\n")))
    assert r.status_code == 400 and r.headers["x-error-code"] == "InvalidName", r.text
    with pytest.raises(HfHubHTTPError):
        api.create_commit(repo_id, [CommitOperationAdd(".Git/hooks/post-checkout", b"#!/bin/sh\n")],
                          commit_message="hook")
    ops = [file_op("ok.txt", b"fine"), file_op(".github/workflows/ci.yml", b"on: push\n"),
           file_op(".gitmodules", b""), file_op("dir/.gitkeep", b""), file_op("git~2/x.txt", b"x")]
    r = post_commit(hub, repo_id, ndjson(header("normal"), *ops))
    assert r.status_code == 200, r.text
    netloc = hub.endpoint.split("://", 1)[1]
    work = tmp_path / "clone"
    proc = git("clone", "-q", f"http://{netloc}/{repo_id}", str(work))
    assert proc.returncode == 0, proc.stderr
    assert (work / "ok.txt").read_bytes() == b"fine"
    assert (work / "git~2" / "x.txt").read_bytes() == b"x"
    git_dir = hub.data_dir / "repos" / "model" / f"{repo_id}.git"
    fsck = git("--git-dir", str(git_dir), "fsck", "--full", "--no-dangling")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.mark.parametrize("name", [".", "..", ".hidden", "x.", "-x", "x-", "a--b", "a..b", "x.git", ".git"])
def test_odd_repo_names_are_refused(hub, api, name):
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", json={"name": name, "organization": "admin"},
                  headers=_auth(hub))
    assert r.status_code == 400 and r.headers["x-error-code"] == "InvalidName", (name, r.status_code, r.text[:200])
    assert name not in {m.id.split("/", 1)[1] for m in api.list_models(author="admin")}


def test_move_to_an_odd_name_is_refused(hub, api, repo_id):
    for to in ("admin/.", "admin/.x", "admin/x."):
        r = HTTP.post(f"{hub.endpoint}/api/repos/move", json={"fromRepo": repo_id, "toRepo": to, "type": "model"},
                      headers=_auth(hub))
        assert r.status_code == 400 and r.headers["x-error-code"] == "InvalidName", (to, r.status_code)
    assert api.repo_exists(repo_id)


@pytest.mark.parametrize("name", ["HEAD", "a" * 40, "refs/heads/x"])
def test_reserved_branch_and_tag_names_are_refused(hub, api, repo_id, name):
    refs = api.list_repo_refs(repo_id)
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/branch/{quote(name, safe='')}", json={}, headers=_auth(hub))
    assert r.status_code == 400 and r.headers["x-error-code"] == "InvalidName", (name, r.status_code)
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/tag/main", json={"tag": name}, headers=_auth(hub))
    assert r.status_code == 400 and r.headers["x-error-code"] == "InvalidName", (name, r.status_code)
    assert api.list_repo_refs(repo_id) == refs


def test_push_of_a_HEAD_branch_is_refused(hub, repo_id, tmp_path):
    netloc = hub.endpoint.split("://", 1)[1]
    remote = f"http://user:{hub.admin_token}@{netloc}/{repo_id}"
    work = tmp_path / "w"
    assert git("clone", "-q", remote, str(work)).returncode == 0
    proc = git("push", remote, "HEAD:refs/heads/HEAD", cwd=work)
    assert proc.returncode != 0
    assert "HEAD" in proc.stderr


@pytest.mark.parametrize("summary, description", [("s" * 1001, ""), ("ok", "d" * (64 * 1024 + 1)),
                                                   ("s" * (60 << 20), "")])
def test_oversized_commit_messages_are_refused(hub, api, repo_id, summary, description):
    before = head_and_files(api, repo_id)
    r = post_commit(hub, repo_id, ndjson(header(summary, description), file_op("x.txt")))
    assert r.status_code in (400, 413), r.status_code
    assert r.headers.get("x-error-message")
    assert head_and_files(api, repo_id) == before


def test_commit_summary_at_the_limit_is_accepted(api, repo_id):
    info = api.create_commit(repo_id, [CommitOperationAdd("x.txt", b"x")], commit_message="s" * 1000,
                             commit_description="d" * (64 * 1024))
    assert info.oid


def test_oversized_tag_message_title_and_comment(hub, api, repo_id):
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/tag/main", json={"tag": "v1", "message": "m" * (64 * 1024 + 1)},
                  headers=_auth(hub))
    assert r.status_code == 400 and "message" in r.headers["x-error-message"], r.status_code
    assert not api.list_repo_refs(repo_id).tags
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/discussions", json={"title": "t" * 1001}, headers=_auth(hub))
    assert r.status_code == 400, r.status_code
    num = api.create_discussion(repo_id, title="ok").num
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/discussions/{num}/comment",
                  json={"comment": "c" * (64 * 1024 + 1)}, headers=_auth(hub))
    assert r.status_code == 400, r.status_code
