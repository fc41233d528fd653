"""fsspec's own abstract test suite (``fsspec/tests/abstract``) against HubFileSystem on the session hub.

Wired like s3fs's ``tests/derived/s3fs_fixtures.py``: a derived ``AbstractFixtures`` gives ``fs``,
``fs_path`` (a fresh repo per test), ``fs_join`` and ``supports_empty_directories=False`` (git has no
empty folders; ``mkdir``/``makedirs`` are no-ops), then each mixin is declared as a test class.
Every write is a commit on the repo's main branch.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from fsspec.tests import abstract

from hubfs.fs import HubFileSystem


def _join(*parts: str) -> str:
    """Like ``os.path.join`` with '/' always (a trailing slash on the last part is kept)."""
    return "/".join([p.rstrip("/") for p in parts[:-1]] + [parts[-1]])


def _one_commit(some_fs):
    return some_fs.transaction if isinstance(some_fs, HubFileSystem) else contextlib.nullcontext()


class HubFixtures(abstract.AbstractFixtures):
    @pytest.fixture(scope="class")
    @classmethod
    def fs(cls, hub):
        return HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)

    @pytest.fixture
    def fs_path(self, fs):
        repo_id = f"admin/abstract-{uuid.uuid4().hex[:10]}"
        fs.client.create_repo("model", repo_id)
        yield repo_id
        fs.client.delete_repo("model", repo_id)

    @pytest.fixture
    def fs_join(self):
        return _join

    @pytest.fixture
    def supports_empty_directories(self):
        return False

    @pytest.fixture
    def fs_sanitize_path(self):
        return lambda path: path.rstrip("/")

    # The scenarios the suite builds on the hub (5-12 files each) are written in one transaction, so one
    # commit each instead of one per file; the tests' own writes still go through the plain paths.

    def _bulk_operations_scenario_0(self, some_fs, some_join, some_path):
        with _one_commit(some_fs):
            return super()._bulk_operations_scenario_0(some_fs, some_join, some_path)

    def _glob_edge_cases_files(self, some_fs, some_join, some_path):
        with _one_commit(some_fs):
            return super()._glob_edge_cases_files(some_fs, some_join, some_path)

    def _dir_and_file_with_same_name_prefix(self, some_fs, some_join, some_path):
        with _one_commit(some_fs):
            return super()._dir_and_file_with_same_name_prefix(some_fs, some_join, some_path)

    def _10_files_with_hashed_names(self, some_fs, some_join, some_path):
        with _one_commit(some_fs):
            return super()._10_files_with_hashed_names(some_fs, some_join, some_path)


class TestHubCopy(abstract.AbstractCopyTests, HubFixtures):
    pass


class TestHubGet(abstract.AbstractGetTests, HubFixtures):
    pass


class TestHubPut(abstract.AbstractPutTests, HubFixtures):
    pass


class TestHubPipe(abstract.AbstractPipeTests, HubFixtures):
    pass


class TestHubOpen(abstract.AbstractOpenTests, HubFixtures):
    pass
