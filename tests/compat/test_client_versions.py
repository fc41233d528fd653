"""The compatibility subset (client_versions_script.py: create, upload, download, list, HfFileSystem,
branches, tags; then a stock `git clone` of what it made) with three official clients: huggingface_hub
0.36.2 (the last 0.x), 1.33.0 (the last 1.x), each in its own virtual environment under .venv/ (made by
scripts/test.sh, or here when missing), and 2.4.0 (the main venv)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("client_versions_script.py")
# (version, transfer): "xet" is each client's default with hf_xet installed; "lfs" sets HF_HUB_DISABLE_XET
VERSIONS = [("0.36.2", "xet"), ("0.36.2", "lfs"), ("1.33.0", "xet"), ("2.4.0", "xet")]
MAIN = "2.4.0"  # the one in the main venv (pyproject's test extra)


def client_python(version: str) -> str:
    """The Python with huggingface_hub ``version``: the main venv's, or ``.venv/hf_hub-VERSION`` (made
    the way scripts/test.sh makes it, when missing)."""
    if version == MAIN:
        return sys.executable
    venv = ROOT / ".venv" / f"hf_hub-{version}"
    python = venv / "bin" / "python"
    if not python.with_name("hf").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"huggingface_hub=={version}"], check=True, timeout=600)
    return str(python)


@pytest.mark.parametrize(("version", "transfer"), VERSIONS)
def test_client_version_subset(version: str, transfer: str, hub, api, tmp_path: Path) -> None:
    python = client_python(version)
    tag = version.replace(".", "")
    rid, did = f"admin/v{tag}-{uuid.uuid4().hex[:8]}", f"admin/vd{tag}-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "PYTHONPATH": "", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    if transfer == "lfs":
        env["HF_HUB_DISABLE_XET"] = "1"
    done = subprocess.run([python, str(SCRIPT), rid, did, str(tmp_path / "work")], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    weights = bytes(range(256)) * 64

    assert out["version"] == version
    assert out["url_repo_id"] == rid and out["whoami"] == "admin"
    assert out["files"] == [".gitattributes", "README.md", "config.json", "sub/notes.txt", "weights.bin"]
    assert out["tree_lfs"] == ["weights.bin"]
    assert out["sha"] == out["commit"]
    assert out["dataset_private"] is True and out["listed"] is True
    assert (out["branches"], out["tags"]) == (["dev", "main"], ["v1"])
    assert out["download_sha256"] == hashlib.sha256(weights).hexdigest() and out["download_revision_ok"]
    assert out["snapshot"] == ["config.json", "sub/notes.txt"]
    assert out["dataset_csv"] == out["fs_dataset"] == "a,b\n1,2\n"
    assert out["fs_ls"] == sorted(f"{rid}/{n}" for n in (".gitattributes", "README.md", "config.json", "sub",
                                                          "weights.bin"))
    assert out["fs_range"] == "00010203" and out["fs_glob"] == [f"{rid}/sub/notes.txt"]
    assert out["exists"] == [True, True, False, False] and out["commits"] == 4
    assert out["paths_info"] == ["config.json", "sub"]
    assert out["metadata"] == [len(weights), hashlib.sha256(weights).hexdigest(), out["commit"]]
    assert out["tag_download"] == '{"model_type": "gpt2"}'
    assert out["fs_written"] == "written through HfFileSystem"
    assert out["large_files"] == [f"shards/part-{i}.bin" for i in range(3)]
    assert out["files_after_delete"] == [".gitattributes", "README.md", "config.json", *out["large_files"],
                                         "weights.bin"]

    # the version's own command line: `hf download` and `hf upload`
    hf = str(Path(python).with_name("hf"))
    got = subprocess.run([hf, "download", rid, "config.json", "--local-dir", str(tmp_path / "cli")], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 0, got.stderr[-2000:]
    assert (tmp_path / "cli" / "config.json").read_text() == '{"model_type": "gpt2"}'
    (tmp_path / "cli" / "extra.txt").write_text("from the cli")
    put = subprocess.run([hf, "upload", rid, str(tmp_path / "cli" / "extra.txt"), "extra.txt"], env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert put.returncode == 0, put.stderr[-2000:]
    assert "extra.txt" in api.list_repo_files(rid)

    # what the old client made is a plain git repo with LFS content: stock git + git-lfs clone it
    clone = tmp_path / "clone"
    git_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
               "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig")}
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=git_env, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", f"{hub.endpoint}/{rid}", str(clone)], env=git_env, check=True,
                   capture_output=True, timeout=120)
    head = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert head == api.model_info(rid).sha
    assert subprocess.run(["git", "-C", str(clone), "merge-base", "--is-ancestor", out["commit"], "HEAD"],
                          check=False).returncode == 0
    assert (clone / "weights.bin").read_bytes() == weights
    tags = subprocess.run(["git", "-C", str(clone), "tag"], capture_output=True, text=True, check=True).stdout.split()
    assert tags == ["v1"]
