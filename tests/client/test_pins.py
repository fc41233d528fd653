"""Branch pins belong to a client identity (endpoint + token), and a miss under an old pin re-checks the branch.

Writers: the official client, stock git and another process; the reader is a fresh ``HubFileSystem`` whose
pin of the branch was learnt (by another filesystem of the same identity) before the write.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubfs.client.api import HubClient
from hubfs.fs import HubFileSystem


def _fs(hub) -> HubFileSystem:
    return HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)


@pytest.fixture
def earlier(hub):
    """A filesystem of the same identity opened earlier (a notebook's): it holds the pins it learnt."""
    with _fs(hub) as fs:
        yield fs


def _pinned_before(earlier: HubFileSystem, dataset_id: str) -> str:
    """Pin the dataset's main branch in this process (through the earlier filesystem); the commit."""
    earlier.ls(f"datasets/{dataset_id}")
    sha = earlier.client.pinned("dataset", dataset_id)
    assert sha is not None
    return sha


def _read_at_once(hub, dataset_id: str, old_sha: str, data: bytes) -> None:
    with _fs(hub) as fs:
        assert fs.client.pinned("dataset", dataset_id) == old_sha  # the reader starts from the old pin
        assert fs.cat(f"hf://datasets/{dataset_id}/b.txt") == data
        assert fs.client.pinned("dataset", dataset_id) != old_sha
        assert fs.exists(f"hf://datasets/{dataset_id}/b.txt")


def test_upload_with_the_official_client_then_read_at_once(hub, api, dataset_id: str, earlier) -> None:
    old = _pinned_before(earlier, dataset_id)
    api.upload_file(path_or_fileobj=b"from hf", path_in_repo="b.txt", repo_id=dataset_id, repo_type="dataset")
    _read_at_once(hub, dataset_id, old, b"from hf")


def test_upload_by_another_process_then_read_at_once(hub, dataset_id: str, earlier) -> None:
    old = _pinned_before(earlier, dataset_id)
    code = ("import sys; from huggingface_hub import HfApi; HfApi().upload_file(path_or_fileobj=b'other process', "
            "path_in_repo='b.txt', repo_id=sys.argv[1], repo_type='dataset')")
    subprocess.run([sys.executable, "-c", code, dataset_id], check=True, timeout=120,
                   env={**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.admin_token})
    _read_at_once(hub, dataset_id, old, b"other process")


def test_git_push_then_read_at_once(hub, dataset_id: str, tmp_path: Path, earlier) -> None:
    old = _pinned_before(earlier, dataset_id)
    netloc = hub.endpoint.split("://", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args], cwd=tmp_path / "w",
                       env=env, check=True, capture_output=True, timeout=120)

    (tmp_path / "w").mkdir()
    git("clone", "-q", f"http://user:{hub.admin_token}@{netloc}/datasets/{dataset_id}", ".")
    (tmp_path / "w" / "b.txt").write_bytes(b"pushed")
    git("add", "b.txt")
    git("commit", "-q", "-m", "add b")
    git("push", "-q", "origin", "HEAD:main")
    _read_at_once(hub, dataset_id, old, b"pushed")


def test_a_missing_file_is_still_missing(hub, dataset_id: str) -> None:
    with _fs(hub) as fs:
        fs.ls(f"datasets/{dataset_id}")
        for call in (fs.cat, fs.info, fs.ls, fs.open):
            with pytest.raises(FileNotFoundError):
                call(f"hf://datasets/{dataset_id}/nope.txt")
        assert not fs.exists(f"hf://datasets/{dataset_id}/nope.txt")
        assert fs.find(f"hf://datasets/{dataset_id}/nope") == []


def test_invalidate_cache_touches_only_its_own_filesystem(hub, repo_id: str) -> None:
    with _fs(hub) as a, _fs(hub) as b:
        a.ls(repo_id)
        sha = b.client.pinned("model", repo_id)
        assert sha is not None and a.client.pins is b.client.pins
        a.invalidate_cache()
        assert a.client.pinned("model", repo_id) is None
        assert b.client.pinned("model", repo_id) == sha  # b keeps its pin
        a.ls(repo_id)  # a learns the branch again; b still trusts its own
        assert a.client.pinned("model", repo_id) == sha == b.client.pinned("model", repo_id)


def test_a_write_through_hubfs_is_seen_at_once_by_its_identity(hub, repo_id: str) -> None:
    with _fs(hub) as a, _fs(hub) as b:
        b.ls(repo_id)
        a.pipe(f"{repo_id}/new.txt", b"new")
        assert b.client.pinned("model", repo_id) is None  # the writer dropped the pin for all of its identity
        assert b.cat(f"{repo_id}/new.txt") == b"new"


def test_clients_with_different_tokens_do_not_share_pins(hub, users, repo_id: str) -> None:
    with HubClient(hub.endpoint, hub.admin_token) as admin, HubClient(hub.endpoint, users["alice_token"]) as alice, \
            HubClient(hub.endpoint, hub.admin_token) as admin2:
        assert admin.pins is admin2.pins and admin.pins is not alice.pins
        sha = admin.resolve("model", repo_id)
        assert admin2.pinned("model", repo_id) == sha
        assert alice.pinned("model", repo_id) is None
        alice.pin("model", repo_id, "main", "0" * 40)
        assert admin.pinned("model", repo_id) == sha


def test_recheck_costs_nothing_for_a_pin_learnt_during_the_call(hub, repo_id: str) -> None:
    with HubClient(hub.endpoint, hub.admin_token) as client:
        client.forget_pins()
        since = client.pin_stamp()
        sha = client.resolve("model", repo_id)
        assert client.recheck("model", repo_id, None, since) is False  # learnt since: no request
        assert client.recheck("model", repo_id, sha, 0) is False  # a commit never moves
        assert client.recheck("model", repo_id, None, client.pin_stamp()) is False  # re-resolved: same commit
