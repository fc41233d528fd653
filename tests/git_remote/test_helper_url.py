"""The remote URLs git hands git-remote-hf, parsed with hubfs's repo-id grammar."""

from __future__ import annotations

import pytest

from git_remote_hf.url import Remote, parse_remote_url
from hubfs.errors import InvalidNameError

ENV = {"HF_ENDPOINT": "http://127.0.0.1:9999/"}


@pytest.mark.parametrize(("url", "expected"), [
    ("hf://user/model", Remote("http://127.0.0.1:9999", "model", "user/model", None)),
    ("hf://datasets/user/ds", Remote("http://127.0.0.1:9999", "dataset", "user/ds", None)),
    ("hf://spaces/user/app@dev", Remote("http://127.0.0.1:9999", "space", "user/app", "dev")),
    ("hf://user/model@feat%2Fx", Remote("http://127.0.0.1:9999", "model", "user/model", "feat/x")),
    ("hf://user/model@refs/pr/3", Remote("http://127.0.0.1:9999", "model", "user/model", "refs/pr/3")),
    ("hf://gpt2", Remote("http://127.0.0.1:9999", "model", "gpt2", None)),  # a canonical repo (no namespace)
    ("https://hub.example.org/user/model.git", Remote("https://hub.example.org", "model", "user/model", None)),
    ("https://hub.example.org/datasets/user/ds", Remote("https://hub.example.org", "dataset", "user/ds", None)),
    ("http://host:8080/mirror/spaces/u/s.git", Remote("http://host:8080/mirror", "space", "u/s", None)),
])
def test_parse(url: str, expected: Remote) -> None:
    assert parse_remote_url(url, ENV) == expected


def test_urls_and_default_endpoint() -> None:
    remote = parse_remote_url("hf://datasets/user/ds@v1", {})
    assert remote.endpoint == "https://huggingface.co"
    assert remote.git_url == "https://huggingface.co/datasets/user/ds.git"
    assert remote.lfs_url == "https://huggingface.co/datasets/user/ds.git/info/lfs"
    assert str(remote) == "hf://datasets/user/ds@v1"
    assert parse_remote_url("hf://user/m", ENV).git_url == "http://127.0.0.1:9999/user/m.git"


@pytest.mark.parametrize(("url", "words"), [
    ("hf://", "Invalid"),
    ("hf://user/model/sub/file.txt", "whole repository"),
    ("https://user:hf_secret@hub.example.org/u/m", "credentials"),
    ("ssh://git@hf.co/u/m", "expected hf://"),
    ("hf://user/bad..name", "Invalid"),
])
def test_bad_urls_get_one_clear_error(url: str, words: str) -> None:
    with pytest.raises(InvalidNameError) as err:
        parse_remote_url(url, ENV)
    assert words in str(err.value)
    assert "hf_secret" not in str(err.value)
