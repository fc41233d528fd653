"""super_squash_history through the official client: on a branch and on a PR ref, same files after,
one commit, other refs untouched; the rules (write access, missing branch)."""

from __future__ import annotations

import uuid

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError


def _files(api: HfApi, repo_id: str, revision: str) -> dict[str, bytes]:
    out = {}
    for name in api.list_repo_files(repo_id, revision=revision):
        with open(api.hf_hub_download(repo_id, name, revision=revision), "rb") as f:
            out[name] = f.read()
    return out


def test_squash_a_branch(api, repo_id):
    for i in range(3):
        api.upload_file(path_or_fileobj=f"v{i}".encode(), path_in_repo=f"f{i % 2}.txt", repo_id=repo_id)
    api.create_branch(repo_id, branch="dev")
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=repo_id, revision="dev")
    before_main = _files(api, repo_id, "main")
    dev_head = api.list_repo_refs(repo_id).branches
    dev_sha = next(b.target_commit for b in dev_head if b.name == "dev")
    assert len(api.list_repo_commits(repo_id)) == 4

    api.super_squash_history(repo_id, commit_message="one commit now")
    commits = api.list_repo_commits(repo_id)
    assert [c.title for c in commits] == ["one commit now"]
    assert _files(api, repo_id, "main") == before_main
    assert next(b.target_commit for b in api.list_repo_refs(repo_id).branches if b.name == "dev") == dev_sha, \
        "other branches keep their history"
    assert len(api.list_repo_commits(repo_id, revision="dev")) == 5

    api.super_squash_history(repo_id, branch="dev")
    dev_commits = api.list_repo_commits(repo_id, revision="dev")
    assert len(dev_commits) == 1 and dev_commits[0].title == "Super-squash branch 'dev' using huggingface_hub"
    assert "dev.txt" in api.list_repo_files(repo_id, revision="dev")


def test_squash_a_pr_ref_and_the_rules(hub, api, users, repo_id):
    bob = HfApi(endpoint=hub.endpoint, token=users["bob_token"])
    for i in range(2):
        bob.upload_file(path_or_fileobj=f"pr {i}".encode(), path_in_repo="p.txt", repo_id=repo_id,
                        revision="refs/pr/1" if i else None, create_pr=not i)
    assert len(api.list_repo_commits(repo_id, revision="refs/pr/1")) == 3
    bob.super_squash_history(repo_id, branch="refs/pr/1", commit_message="squashed PR")  # the PR's author may
    assert [c.title for c in api.list_repo_commits(repo_id, revision="refs/pr/1")] == ["squashed PR"]
    assert len(api.list_repo_commits(repo_id)) == 1, "main untouched"

    with pytest.raises(HfHubHTTPError) as exc:
        bob.super_squash_history(repo_id)
    assert exc.value.response.status_code == 403, "squashing main needs write access"
    with pytest.raises(RevisionNotFoundError):
        api.super_squash_history(repo_id, branch=f"nope-{uuid.uuid4().hex[:6]}")
