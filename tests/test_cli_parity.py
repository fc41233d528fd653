"""The documented ``hf`` command reference, run as ``hubfs`` against the session hub: auth login (hidden
prompt, git credential), logout, whoami, token; download/upload options; repo create/settings; cache
ls/rm with patterns and --all; --endpoint/--token everywhere; one-line errors."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from hubfs.cli import build_parser, main


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubfs.cli", *args], capture_output=True, text=True, check=False,
                          env=env if env is not None else dict(os.environ), input=input, timeout=120)


class Cli:
    """``hubfs ARGS`` in this process (faster than a subprocess): (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        import io

        self.monkeypatch.setattr(sys, "stdin", io.StringIO(input))
        self.capsys.readouterr()
        code = main(list(args))
        out = self.capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.fixture
def auth_env(tmp_path: Path) -> dict[str, str]:
    """No token anywhere; git's global config is a file of this test with a `store` credential helper."""
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f"[credential]\n\thelper = store --file={tmp_path / 'git-credentials'}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_TOKEN_PATH", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "home"), GIT_CONFIG_GLOBAL=str(gitconfig), GIT_CONFIG_NOSYSTEM="1")
    return env


def _run_in_pty(args: list[str], env: dict[str, str], answer: str, timeout: float = 60) -> tuple[int, str]:
    """Run ``hubfs ARGS`` on a pseudo-terminal, type ``answer`` at its prompt; (exit code, all it showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hubfs.cli", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, start_new_session=True)
    os.close(slave)
    shown, sent, deadline = b"", False, time.time() + timeout
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the program exited and the terminal closed
                    break
                if not data:
                    break
                shown += data
            if not sent and b"Token" in shown:
                os.write(master, answer.encode() + b"\n")
                sent = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout), shown.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_auth_login_prompt_is_hidden_and_git_credential(hub, auth_env: dict[str, str], tmp_path: Path) -> None:
    token = hub.admin_token
    assert run("auth", "token", env=auth_env).returncode == 1
    code, shown = _run_in_pty(["auth", "login", "--add-to-git-credential"], auth_env, token)
    assert code == 0, shown
    assert "Token (input hidden)" in shown and "logged in as admin" in shown
    assert token not in shown  # not echoed, not printed
    assert (tmp_path / "home" / "token").read_text().strip() == token
    stored = (tmp_path / "git-credentials").read_text()
    host = hub.endpoint.split("://", 1)[1]
    assert token in stored  # git-credential-store's file; git credential fill reads it back:
    fill = subprocess.run(["git", "credential", "fill"], input=f"protocol=http\nhost={host}\n\n", env=auth_env,
                          capture_output=True, text=True, check=True)
    assert f"password={token}" in fill.stdout and "username=admin" in fill.stdout

    printed = run("auth", "token", env=auth_env)
    assert printed.returncode == 0 and printed.stdout.strip() == token
    who = run("auth", "whoami", env=auth_env)
    assert who.returncode == 0 and who.stdout.splitlines()[0] == "admin" and token not in who.stdout
    out = run("auth", "logout", env=auth_env)
    assert out.returncode == 0 and not (tmp_path / "home" / "token").exists()
    assert token not in (tmp_path / "git-credentials").read_text()


def test_auth_login_refuses_a_bad_token_and_saves_nothing(hub, auth_env: dict[str, str], tmp_path: Path) -> None:
    bad = run("auth", "login", env=auth_env, input="hf_not_a_token\n")  # no terminal: read from stdin
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and bad.stderr.startswith("hubfs: ")
    assert "hf_not_a_token" not in bad.stderr and not (tmp_path / "home" / "token").exists()
    empty = run("auth", "login", env=auth_env, input="\n")
    assert empty.returncode == 1 and "No token" in empty.stderr
    nohelper = {**auth_env, "GIT_CONFIG_GLOBAL": str(tmp_path / "empty-gitconfig")}
    ok = run("auth", "login", "--token", hub.admin_token, "--add-to-git-credential", env=nohelper)
    assert ok.returncode == 0 and "no git credential helper" in ok.stderr


def test_upload_download_options(api: HfApi, tmp_path: Path, cli: Cli) -> None:
    run = cli
    rid = f"admin/par-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid, repo_type="dataset")
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "sub" / "b.json").write_text("{}")
    up = run("upload", rid, str(folder), "train", "--repo-type", "dataset", "--commit-message", "add train")
    assert up.returncode == 0, up.stderr
    assert api.list_repo_commits(rid, repo_type="dataset")[0].title == "add train"
    one = run("upload", rid, str(folder / "a.csv"), "top.csv", "--type", "dataset", "--quiet")
    assert one.returncode == 0, one.stderr

    local = tmp_path / "out"
    dl = run("download", rid, "--repo-type", "dataset", "--local-dir", str(local), "--include", "train/*",
             "--exclude", "*.json", "--resume", "--revision", "main", "--quiet")
    assert dl.returncode == 0, dl.stderr
    assert (local / "train" / "a.csv").read_text() == "x\n1\n"
    assert not (local / "train" / "sub" / "b.json").exists() and not (local / "top.csv").exists()
    files = run("download", rid, "top.csv", "train/sub/b.json", "--repo-type", "dataset", "--local-dir", str(local),
                "--quiet")
    assert files.returncode == 0 and (local / "top.csv").exists() and (local / "train" / "sub" / "b.json").exists()
    missing = run("download", f"admin/missing-{uuid.uuid4().hex[:6]}", "--quiet")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1


def test_repo_create_and_settings(api: HfApi, users: dict[str, str], cli: Cli) -> None:
    run = cli
    name = f"sp-{uuid.uuid4().hex[:8]}"
    made = run("repo", "create", name, "--type", "space", "--space-sdk", "gradio", "--organization", users["org"],
               "--private", "--token", users["alice_token"])
    assert made.returncode == 0, made.stderr
    rid = f"{users['org']}/{name}"
    alice = HfApi(endpoint=api.endpoint, token=users["alice_token"])
    info = alice.repo_info(rid, repo_type="space")
    assert info.private is True and info.sdk == "gradio"

    alias = run("repo", "create", f"admin/m-{name}", "--repo-type", "model")
    assert alias.returncode == 0, alias.stderr
    settings = run("repo", "settings", f"admin/m-{name}", "--private", "--gated", "manual")
    assert settings.returncode == 0, settings.stderr
    info = api.repo_info(f"admin/m-{name}")
    assert info.private is True and info.gated == "manual"
    assert run("repo", "settings", f"admin/m-{name}", "--public", "--gated", "false").returncode == 0
    info = api.repo_info(f"admin/m-{name}")
    assert info.private is False and info.gated is False

    for bad in (["repo", "settings", f"admin/m-{name}"],
                ["repo", "create", f"x/{name}", "--organization", "y"],
                ["repo", "create", f"admin/n-{name}", "--space-sdk", "gradio"],
                ["repo", "settings", f"admin/nope-{name}", "--public"]):
        out = run(*bad)
        assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, (bad, out.stderr)
    refused = run("repo", "settings", rid, "--public", "--repo-type", "space", "--token", users["bob_token"])
    assert refused.returncode == 1 and users["bob_token"] not in refused.stderr


def _fake_cached(cache: Path, folder: str, files: dict[str, bytes], ref: str = "main") -> None:
    """A repo in huggingface_hub's cache layout: blobs, one snapshot of links to them, a ref."""
    commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    for i, (name, data) in enumerate(files.items()):
        blob = cache / folder / "blobs" / f"{i:040x}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = cache / folder / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (cache / folder / "refs").mkdir(parents=True, exist_ok=True)
    (cache / folder / "refs" / ref).write_text(commit)


def test_cache_ls_and_rm_patterns(tmp_path: Path, cli: Cli) -> None:
    run = cli
    cache = tmp_path / "cache"
    _fake_cached(cache, "models--gpt2", {"config.json": b"{}", "model.safetensors": b"x" * 3070})
    _fake_cached(cache, "models--facebook--opt-125m", {"config.json": b"{}"})
    _fake_cached(cache, "models--facebook--bart", {"config.json": b"{}"})
    _fake_cached(cache, "datasets--facebook--data", {"d.csv": b"a\n"})
    c = ["--cache-dir", str(cache)]
    ls = run("cache", "ls", *c)
    assert ls.returncode == 0
    row = next(line for line in ls.stdout.splitlines() if line.startswith("gpt2 "))
    assert "3.0 KiB" in row and " 2 " in row and "seconds ago" in row and "main" in row
    assert "datasets/facebook/data" in ls.stdout and "4 repos" in ls.stdout
    verbose = run("cache", "ls", "--verbose", *c)
    assert verbose.returncode == 0 and "2 files" in verbose.stdout and str(cache) in verbose.stdout

    assert run("cache", "rm", "gpt2", *c, input="n\n").returncode == 1 and (cache / "models--gpt2").exists()
    assert run("cache", "rm", "gpt2", *c, input="y\n").returncode == 0 and not (cache / "models--gpt2").exists()
    rm = run("cache", "rm", "facebook/*", "-y", *c)
    assert rm.returncode == 0 and "removed 2 repos" in rm.stdout
    assert sorted(p.name for p in cache.iterdir() if "--" in p.name) == ["datasets--facebook--data"]
    unknown = run("cache", "rm", "nobody/*", "-y", *c)
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1
    assert run("cache", "rm", *c).returncode == 1  # neither repos nor --all
    assert run("cache", "rm", "--all", *c, input="").returncode == 1 and (cache / "datasets--facebook--data").exists()
    gone = run("cache", "rm", "--all", "-y", *c)
    assert gone.returncode == 0 and not (cache / "datasets--facebook--data").exists()


def test_every_client_command_takes_endpoint_and_token() -> None:
    parser = build_parser()
    commands = [["download"], ["upload"], ["ls"], ["cat"], ["mirror"], ["mount"], ["repo", "create"],
                ["repo", "delete"], ["repo", "info"], ["repo", "settings"], ["cache", "ls"], ["cache", "rm"],
                ["auth", "login"], ["auth", "logout"], ["auth", "whoami"], ["auth", "token"]]
    for words in commands:
        sub: object = parser
        for word in words:
            sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[word]  # type: ignore[attr-defined]
        options = {o for a in sub._actions for o in a.option_strings}  # type: ignore[attr-defined]
        assert {"--endpoint", "--token"} <= options, words
