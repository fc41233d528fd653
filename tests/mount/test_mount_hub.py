"""`hubfs mount --all`: the whole hub as one folder, repos appearing on first lookup, as each token sees it."""

from __future__ import annotations

import os
import uuid

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from mounting import hubfs

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse") or os.geteuid() != 0,
                                reason="needs /dev/fuse and root")


@pytest.fixture(scope="module")
def users(hub) -> dict[str, str]:
    """alice and bob of this module alone (the session's users own repos made by other test files), so a
    namespace listing holds exactly the repos made here."""
    suffix = uuid.uuid4().hex[:6]
    alice, bob = f"alice{suffix}", f"bob{suffix}"
    return {"alice": alice, "alice_token": hub.add_user(alice), "bob": bob, "bob_token": hub.add_user(bob)}


@pytest.fixture(scope="module")
def alice_repos(hub, users) -> dict[str, str]:
    """alice's public model, private model and public dataset, one file each."""
    api = HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    tag = uuid.uuid4().hex[:6]
    repos = {"public": f"{users['alice']}/pub-{tag}", "private": f"{users['alice']}/priv-{tag}",
             "dataset": f"{users['alice']}/ds-{tag}"}
    api.create_repo(repos["public"])
    api.create_repo(repos["private"], private=True)
    api.create_repo(repos["dataset"], repo_type="dataset")
    for kind, rid in repos.items():
        api.create_commit(rid, [CommitOperationAdd("dir/f.txt", f"{kind}\n".encode())], commit_message="f",
                          repo_type="dataset" if kind == "dataset" else None)
    repos["sha"] = api.model_info(repos["public"]).sha or ""
    return repos


def test_whole_hub_as_another_user(mounter, users, alice_repos) -> None:
    """bob sees alice's public repos, lazily; her private repo does not exist for him."""
    mount = mounter("", "--all", "--token", users["bob_token"])
    root, alice = mount.path, users["alice"]
    assert {"datasets", "spaces"} <= set(os.listdir(root))
    assert sorted(os.listdir(root / alice)) == [alice_repos["public"].split("/")[1]]  # what bob may see
    assert alice in os.listdir(root)  # a namespace looked up is listed from then on
    assert (root / alice_repos["public"] / "dir/f.txt").read_bytes() == b"public\n"
    assert sorted(os.listdir(root / alice_repos["public"])) == [".gitattributes", "dir"]
    with pytest.raises(FileNotFoundError):
        os.stat(root / alice_repos["private"])
    with pytest.raises(FileNotFoundError):
        (root / alice_repos["private"] / "dir/f.txt").read_bytes()
    assert (root / "datasets" / alice_repos["dataset"] / "dir/f.txt").read_bytes() == b"dataset\n"
    assert os.listdir(root / "datasets" / alice) == [alice_repos["dataset"].split("/")[1]]
    with pytest.raises(FileNotFoundError):
        os.stat(root / alice_repos["dataset"])  # a dataset is not a model
    with pytest.raises(FileNotFoundError):
        os.stat(root / "no-such-user-xyz")
    pinned = root / f"{alice_repos['public']}@{alice_repos['sha']}" / "dir/f.txt"
    assert pinned.read_bytes() == b"public\n"  # name@rev: any revision, on lookup


def test_whole_hub_as_the_owner(mounter, users, alice_repos) -> None:
    mount = mounter("", "--all", "--token", users["alice_token"])
    names = sorted(os.listdir(mount.path / users["alice"]))
    assert names == sorted(alice_repos[k].split("/")[1] for k in ("public", "private"))
    assert (mount.path / alice_repos["private"] / "dir/f.txt").read_bytes() == b"private\n"
    done = hubfs("umount", str(mount.path))
    assert done.returncode == 0
