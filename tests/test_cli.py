"""The ``hubfs`` command end to end against the session hub."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

from huggingface_hub import HfApi


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hubfs.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input, timeout=120)


def test_upload_download_ls_cat(api: HfApi, tmp_path: Path) -> None:
    rid = f"admin/cli-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"x": 1}')
    (folder / "sub" / "notes.txt").write_text("notes")
    (folder / "weights.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    up = run("upload", rid, str(folder), "--commit-message", "first upload", "--quiet")
    assert up.returncode == 0, up.stderr
    commits = api.list_repo_commits(rid)
    assert commits[0].title == "first upload" and len(commits) == 2, "one commit for the whole folder"
    entries = {e.path: e for e in api.list_repo_tree(rid, recursive=True)}
    assert entries["weights.bin"].lfs is not None
    cache = tmp_path / "cache"
    dl = run("download", rid, "--cache-dir", str(cache), "--exclude", "*.bin", "--quiet")
    assert dl.returncode == 0, dl.stderr
    snap = Path(dl.stdout.strip())
    assert (snap / "config.json").read_text() == '{"x": 1}' and not (snap / "weights.bin").exists()
    one = run("download", rid, "sub/notes.txt", "--cache-dir", str(cache), "--quiet")
    assert Path(one.stdout.strip()).read_text() == "notes"
    local = tmp_path / "local"
    assert run("download", rid, "--local-dir", str(local), "--include", "sub/*", "--quiet").returncode == 0
    assert (local / "sub" / "notes.txt").read_text() == "notes"
    assert (local / ".cache" / "huggingface" / "download" / "sub" / "notes.txt.metadata").exists()
    ls = run("ls", f"hf://{rid}", "-l")
    assert "weights.bin" in ls.stdout and "lfs" in ls.stdout and f"{rid}/sub/" in ls.stdout
    assert run("ls", f"hf://{rid}", "-R").stdout.split() == sorted(
        [f"{rid}/.gitattributes", f"{rid}/config.json", f"{rid}/sub/", f"{rid}/sub/notes.txt", f"{rid}/weights.bin"])
    assert run("cat", f"hf://{rid}/sub/notes.txt").stdout == "notes"
    cache_ls = run("cache", "ls", "--cache-dir", str(cache))
    assert rid in cache_ls.stdout and "main" in cache_ls.stdout
    assert run("cache", "rm", rid, "--cache-dir", str(cache), "-y").returncode == 0
    assert rid not in run("cache", "ls", "--cache-dir", str(cache)).stdout


def test_repo_commands_and_errors(api: HfApi) -> None:
    rid = f"admin/cli-repo-{uuid.uuid4().hex[:8]}"
    created = run("repo", "create", rid, "--repo-type", "dataset", "--private")
    assert created.returncode == 0 and created.stdout.strip().endswith(f"/datasets/{rid}")
    assert api.dataset_info(rid).private
    assert run("repo", "create", rid, "--repo-type", "dataset").returncode == 1
    assert run("repo", "create", rid, "--repo-type", "dataset", "--exist-ok").returncode == 0
    info = run("repo", "info", rid, "--repo-type", "dataset")
    assert f'"id": "{rid}"' in info.stdout
    assert run("repo", "delete", rid, "--repo-type", "dataset", "-y").returncode == 0
    missing = run("repo", "delete", rid, "--repo-type", "dataset", "-y")
    assert missing.returncode == 1 and "not found" in missing.stderr.lower()
    assert run("repo", "delete", rid, "--repo-type", "dataset", "-y", "--missing-ok").returncode == 0
    nope = run("download", "admin/does-not-exist", "--quiet")
    assert nope.returncode == 1 and "Repository Not Found" in nope.stderr and "Traceback" not in nope.stderr
    assert run("download").returncode == 2
    assert run("cat", f"hf://{rid}/x").returncode == 1


def test_auth_login_whoami_logout(hub, tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "home"), "HF_TOKEN": "", "HF_TOKEN_PATH": ""}
    env.pop("HF_TOKEN_PATH")
    assert run("auth", "whoami", env=env).returncode == 1
    bad = run("auth", "login", "--token", "hf_wrong", env=env)
    assert bad.returncode == 1 and "Invalid credentials" in bad.stderr
    login = run("auth", "login", "--token", hub.admin_token, env=env)
    assert login.returncode == 0 and hub.admin_token not in login.stdout + login.stderr
    token_file = tmp_path / "home" / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    who = run("auth", "whoami", env=env)
    assert who.returncode == 0 and who.stdout.splitlines()[0] == "admin"
    assert run("auth", "logout", env=env).returncode == 0 and not token_file.exists()
