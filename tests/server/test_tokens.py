"""Token lifecycle on a running hub: list (no secrets), revoke (instant), expiry; and access-log redaction."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from huggingface_hub import HfApi


def _whoami(hub, token: str) -> int:
    return httpx.get(f"{hub.endpoint}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}).status_code


def _token_id(hub, user: str, name: str) -> str:
    for line in hub.cli("token", "list", user).splitlines()[1:]:
        fields = line.split()
        if fields[1] == name:
            return fields[0]
    raise AssertionError(f"token {name} not listed")


def test_token_list_shows_ids_never_secrets(hub) -> None:
    user = f"lister{uuid.uuid4().hex[:6]}"
    hub.cli("user", "add", user)
    write = hub.cli("token", "create", user, "--name", "ci-write")
    read = hub.cli("token", "create", user, "--role", "read", "--name", "ci-read", "--expires-in", "30d")
    out = hub.cli("token", "list", user)
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "CREATED", "EXPIRES"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert set(rows) == {"ci-write", "ci-read"}
    assert " write " in rows["ci-write"] and rows["ci-write"].rstrip().endswith("never")
    assert " read " in rows["ci-read"] and not rows["ci-read"].rstrip().endswith("never")
    for token in (write, read):
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert token not in out and token[3:15] not in out
        assert digest not in out, "never the stored hash in full"
    assert re.fullmatch(r"[0-9a-f]{12}", _token_id(hub, user, "ci-write"))


def test_revoked_token_is_refused_by_the_running_server(hub) -> None:
    user = f"revoker{uuid.uuid4().hex[:6]}"
    token = hub.add_user(user)
    other = hub.cli("token", "create", user, "--name", "other")
    assert _whoami(hub, token) == 200
    token_id = _token_id(hub, user, f"{user}-write")
    out = hub.cli("token", "revoke", token_id)
    assert token_id in out and token not in out
    assert _whoami(hub, token) == 401, "revocation takes effect at the next request"
    api = HfApi(endpoint=hub.endpoint, token=token)
    try:
        api.create_repo(f"{user}/after-revoke")
        raise AssertionError("a revoked token must not create repos")
    except Exception as exc:  # noqa: BLE001 - the client's HTTP error
        assert "401" in str(exc)
    assert _whoami(hub, other) == 200, "the user's other tokens keep working"
    bad = subprocess.run([sys.executable, "-m", "hubfs.cli", "token", "revoke", token_id, "--data", str(hub.data_dir)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "No token" in bad.stderr


def test_expired_token_answers_401_like_an_invalid_one(hub) -> None:
    user = f"expirer{uuid.uuid4().hex[:6]}"
    hub.cli("user", "add", user)
    token = hub.cli("token", "create", user, "--expires-in", "2s")
    assert _whoami(hub, token) == 200
    time.sleep(2.5)
    expired = httpx.get(f"{hub.endpoint}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
    invalid = httpx.get(f"{hub.endpoint}/api/whoami-v2", headers={"Authorization": "Bearer hf_notatokenatall"})
    assert expired.status_code == invalid.status_code == 401
    assert expired.json() == invalid.json()
    git = httpx.get(f"{hub.endpoint}/{user}/x.git/info/refs?service=git-receive-pack", auth=("u", token))
    assert git.status_code == 401


def test_bad_expiry_is_a_usage_error(hub) -> None:
    out = subprocess.run([sys.executable, "-m", "hubfs.cli", "token", "create", "admin", "--expires-in", "soon",
                          "--data", str(hub.data_dir)], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid duration" in out.stderr


def test_tokens_of_an_older_hub_sqlite_keep_working(tmp_path: Path) -> None:
    """The expiry column is added to an existing database; its tokens stay valid and listable."""
    data = tmp_path / "old"
    data.mkdir()
    token = "hf_" + "x" * 34
    with sqlite3.connect(data / "hub.sqlite") as db:  # the schema before expiry existed
        db.executescript("""
            CREATE TABLE accounts (name TEXT PRIMARY KEY, is_org INTEGER NOT NULL DEFAULT 0, fullname TEXT,
                                   email TEXT, created_at REAL NOT NULL);
            CREATE TABLE tokens (hash TEXT PRIMARY KEY, user TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
                                 created_at REAL NOT NULL);""")
        db.execute("INSERT INTO accounts VALUES ('olduser', 0, 'olduser', 'o@x', 1)")
        db.execute("INSERT INTO tokens VALUES (?, 'olduser', 'legacy', 'write', 1)",
                   (hashlib.sha256(token.encode()).hexdigest(),))
    from hubfs.server.metadata import Metadata

    meta = Metadata(data / "hub.sqlite")
    info = meta.lookup_token(token)
    assert info is not None and info.user == "olduser"
    [row] = meta.list_tokens("olduser")
    assert row.name == "legacy" and row.expires_at is None
    meta.create_token("olduser", "new", expires_in=60)
    Metadata(data / "hub.sqlite")  # a second open (another process) finds nothing left to migrate
    assert [t.name for t in meta.list_tokens("olduser")] == ["legacy", "new"]


def test_access_log_redacts_signed_urls_and_tokens(tmp_hub, tmp_path: Path) -> None:
    hub = tmp_hub("--access-log", env={"HF_HUB_DISABLE_XET": "1"})
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/logged")
    data = os.urandom(200_000)
    api.upload_file(path_or_fileobj=data, path_in_repo="w.bin", repo_id="admin/logged")  # LFS: a signed PUT
    batch = httpx.post(f"{hub.endpoint}/admin/logged.git/info/lfs/objects/batch",
                       json={"operation": "download", "objects": [{"oid": hashlib.sha256(data).hexdigest(),
                                                                    "size": len(data)}]},
                       headers={"Authorization": f"Bearer {hub.admin_token}"}).json()
    href = batch["objects"][0]["actions"]["download"]["href"]
    assert httpx.get(href).content == data  # a signed GET
    httpx.get(f"{hub.endpoint}/api/models?token={hub.admin_token}&access_token={hub.admin_token}")
    hub.proc.terminate()  # uvicorn writes its access log to stdout, the rest of the log to stderr
    log = hub.proc.stdout.read() + hub.log_path.read_text()
    hub.stop()
    assert "sig=REDACTED" in log, "the signed requests are in the access log"
    assert not re.search(r"sig=(?!REDACTED)", log), [ln for ln in log.splitlines() if "sig=" in ln][:3]
    assert hub.admin_token not in log
    assert href.split("sig=")[1] not in log
