"""Fixtures of the git-remote-hf tests: stock git (Debian's 2.39) and the venv's ``git-remote-hf`` against a
hub of these tests (its requests logged, for request budgets), on a PATH without git-lfs.

git finds helpers and git-lfs through PATH, so each PATH is a folder of symlinks: ``git`` and
``git-remote-hf`` (and ``git-lfs`` in :func:`lfs_git` only, for the interop and stock-clone references).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # huggingface_hub reads HF_ENDPOINT at import: only inside fixtures (this conftest
    from huggingface_hub import HfApi  # loads before tests/conftest.py sets it when its folder is named)
from hub_server import HubServer, RequestLog
from test_helper_common import CONTENT, HELPER, Git, fresh_id


def _bin_dir(root: Path, tools: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, target in tools.items():
        (root / name).symlink_to(target)
    return root


@pytest.fixture(scope="session")
def ghub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A hub for these tests, logging every request it serves (``ghub.log``, a :class:`RequestLog`)."""
    root = tmp_path_factory.mktemp("ghub")
    log = root / "requests.log"
    server = HubServer(root / "hub", env={"HUBFS_REQUEST_LOG": str(log)}).start()
    server.log = RequestLog(log)  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gapi(ghub: HubServer) -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(endpoint=ghub.endpoint, token=ghub.admin_token)


@pytest.fixture(scope="session")
def git_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME with a git identity and nothing about LFS (no `git lfs install`)."""
    home = tmp_path_factory.mktemp("git-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Tester\n\temail = tester@example.com\n"
                                     "[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
    return home


@pytest.fixture(scope="session")
def git_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PATH folder: git and git-remote-hf, no git-lfs."""
    git = shutil.which("git")
    assert git, "git is needed"
    assert HELPER.exists(), "git-remote-hf is not installed in the venv (pip install -e .)"
    return _bin_dir(tmp_path_factory.mktemp("bin-nolfs"), {"git": git, "git-remote-hf": str(HELPER)})


@pytest.fixture
def hfgit(git_home: Path, git_bin: Path, ghub: HubServer) -> Git:
    """git without git-lfs, with the admin token in HF_TOKEN."""
    assert not (git_bin / "git-lfs").exists()
    return Git(git_home, git_bin, ghub.endpoint, ghub.admin_token)


@pytest.fixture(scope="session")
def lfs_git(tmp_path_factory: pytest.TempPathFactory, ghub: HubServer) -> Git:
    """Stock git with git-lfs installed (`git lfs install` in its own HOME), for reference clones and interop."""
    git, lfs = shutil.which("git"), shutil.which("git-lfs")
    assert git and lfs, "git and git-lfs are needed"
    bin_dir = _bin_dir(tmp_path_factory.mktemp("bin-lfs"), {"git": git, "git-lfs": lfs, "git-remote-hf": str(HELPER)})
    home = tmp_path_factory.mktemp("lfs-home")
    (home / ".gitconfig").write_text("[user]\n\tname = Tester\n\temail = tester@example.com\n"
                                     "[init]\n\tdefaultBranch = main\n")
    g = Git(home, bin_dir, ghub.endpoint, ghub.admin_token)
    g.run("lfs", "install", "--skip-repo")
    return g


@pytest.fixture
def lfs_repo(gapi: HfApi) -> tuple[str, dict[str, bytes]]:
    """A fresh public model repo with CONTENT (two LFS files) uploaded through the REST API."""
    rid = fresh_id("m")
    gapi.create_repo(rid)
    from huggingface_hub import CommitOperationAdd

    gapi.create_commit(rid, [CommitOperationAdd(path, data) for path, data in CONTENT.items()], commit_message="files")
    return rid, dict(CONTENT)


