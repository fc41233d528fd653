"""Stock git-lfs keeps working on a repo whose LFS content git-remote-hf fetched and cleaned: ``git lfs
ls-files``, ``fsck``, ``pull`` and ``push`` read the same store layout and pointer bytes."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from lfs_fixtures import clone_no_checkout, commit_files, git, git_env, head, new_repo, pointer_of

from git_remote_hf.lfs_store import LfsStore, configure_repo
from git_remote_hf.lfs_transfer import fetch_objects, prefetch
from hubfs.client.api import HubClient


def test_git_lfs_commands_on_a_repo_filled_by_the_helper(tmp_path: Path, hub) -> None:
    files = {"a.bin": os.urandom(120_000), "dir/b.bin": os.urandom(50_000), "readme.txt": b"hello\n"}
    client = HubClient(hub.endpoint, hub.admin_token)
    with client:
        repo_id = new_repo(client)
        commit_files(client, repo_id, files)
        plain = git_env(tmp_path, lfs=False, endpoint=hub.endpoint, token=hub.admin_token)
        git_dir = clone_no_checkout(plain, hub.endpoint, repo_id, tmp_path / "clone")
        repo = git_dir.parent
        git(plain, repo, "remote", "set-url", "origin", f"hf://{repo_id}")
        configure_repo(git_dir)  # also sets remote.origin.lfsurl: git-lfs cannot derive it from hf://
        lfs_url = f"{hub.endpoint}/{repo_id}.git/info/lfs"
        assert git(plain, repo, "config", "remote.origin.lfsurl").stdout.decode().strip() == lfs_url
        prefetch(git_dir, client, lfs_url, [head(plain, repo)])
        git(plain, repo, "checkout", "-q", "main")

        env = git_env(tmp_path, lfs=True, endpoint=hub.endpoint, token=hub.admin_token)
        store_file = tmp_path / "credentials"
        parts = urlsplit(hub.endpoint)
        store_file.write_text(f"{parts.scheme}://admin:{hub.admin_token}@{parts.netloc}\n")
        store_file.chmod(0o600)
        git(env, repo, "config", "credential.helper", f"store --file={store_file}")

        listed = git(env, repo, "lfs", "ls-files", "--long").stdout.decode()
        for name in ("a.bin", "dir/b.bin"):
            assert f"{pointer_of(files[name]).oid} * {name}" in listed, listed
        assert "readme.txt" not in listed
        fsck = git(env, repo, "lfs", "fsck")
        assert b"fsck OK" in fsck.stdout, fsck.stdout + fsck.stderr

        store = LfsStore(git_dir)
        gone = store.path(pointer_of(files["dir/b.bin"]).oid)
        gone.unlink()
        git(env, repo, "lfs", "pull")
        assert gone.read_bytes() == files["dir/b.bin"]

        new = os.urandom(90_000)
        (repo / "c.bin").write_bytes(new)  # cleaned by git-remote-hf (the repo's local filter.lfs.process)
        git(env, repo, "add", "c.bin")
        git(env, repo, "commit", "-q", "-m", "c")
        assert git(env, repo, "cat-file", "blob", "HEAD:c.bin").stdout == pointer_of(new).to_bytes()
        git(env, repo, "lfs", "push", "origin", "main")
        assert git(env, repo, "lfs", "fsck").returncode == 0

        other = tmp_path / "other" / ".git"
        other.mkdir(parents=True)
        fetch_objects(other, client, lfs_url, [pointer_of(new)])  # the hub has what git-lfs pushed
        assert LfsStore(other).path(pointer_of(new).oid).read_bytes() == new
