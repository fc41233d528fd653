"""git_remote_hf.gitconfig: one ``git config --list`` answers what ``git config --get`` would, and settings
written in one locked write read back through git itself; both ways of the GIT_REMOTE_HF_CONFIG_ONCE switch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from git_remote_hf.gitconfig import ENV, GitConfig, add_local, normalize, parse_bool


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                          env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path / "r")], check=True)
    return tmp_path / "r"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No global or system config: only what the tests set."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_PARAMETERS", raising=False)
    monkeypatch.delenv(ENV, raising=False)
    (tmp_path / "home").mkdir()
    return {}


@pytest.mark.parametrize(("text", "value"), [(None, True), ("true", True), ("Yes", True), ("on", True), ("1", True),
                                             ("false", False), ("NO", False), ("off", False), ("", False), ("0", False),
                                             ("2", True), ("maybe", None)])
def test_parse_bool_follows_git(text: str | None, value: bool | None) -> None:
    assert parse_bool(text) is value


def test_normalize_keeps_the_subsection_case() -> None:
    assert normalize("HF.LFS.verifySmudge") == "hf.LFS.verifysmudge"
    assert normalize("Checkout.Workers") == "checkout.workers"
    assert normalize('remote.My.Remote.URL') == "remote.My.Remote.url"


@pytest.mark.parametrize("once", ["1", "0"])
def test_lookups_match_git_config(repo: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, once: str) -> None:
    """Values, last-one-wins, booleans (a key without '='), subsections and -c settings, read once or live."""
    monkeypatch.setenv(ENV, once)
    (repo / ".git/config").write_text(
        (repo / ".git/config").read_text()
        + '[hf "lfs"]\n\tverifySmudge\n[lfs]\n\tfetchexclude = a,b\n\tfetchexclude = c\n'
        + '[remote "Up"]\n\turl = hf://x/y\n[remote "origin"]\n\turl = https://h/x/y\n[hf]\n\tlfs = off\n')
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'checkout.workers'='3'")
    config = GitConfig.read(repo / ".git")
    assert config.live is (once == "0")
    assert config.get_bool("hf.lfs.verifySmudge") is True
    assert config.get_bool("hf.lfs") is False
    assert config.get_all("lfs.fetchExclude") == ["a,b", "c"] and config.get("lfs.fetchexclude") == "c"
    assert config.get("checkout.workers") == "3" and config.has("checkout.workers")
    assert config.get("nope.nothing") is None and config.get_bool("nope.nothing") is None
    assert not config.has("nope.nothing")
    assert config.matching("remote", "url") == {"Up": "hf://x/y", "origin": "https://h/x/y"}


@pytest.mark.parametrize("once", [True, False])
def test_add_local_reads_back_through_git(repo: Path, env: dict[str, str], once: bool) -> None:
    """Quotes, backslashes, a tab, '#', ';' and a subsection with a quote survive; git reads the last value."""
    _git(repo, "config", "core.tricky", "old")
    settings = [("filter.lfs.process", "git-remote-hf filter-process"), ("remote.we\"ird.lfsurl", 'http://h/a#b;c "q" \\ \t'),
                ("core.tricky", "new")]
    if once:
        add_local(repo / ".git", settings)
    else:
        add_local(repo / ".git", settings[:2], one_write=False)
        add_local(repo / ".git", settings[2:], one_write=False)
    assert _git(repo, "config", "--get", "filter.lfs.process") == "git-remote-hf filter-process\n"
    assert _git(repo, "config", "--get", 'remote.we"ird.lfsurl') == 'http://h/a#b;c "q" \\ \t\n'
    assert _git(repo, "config", "--get", "core.tricky") == "new\n"
    assert not (repo / ".git/config.lock").exists()
    _git(repo, "fsck")  # the repository still opens


def test_set_local_replaces_a_value_that_exists_and_appends_the_new_ones(repo: Path, env: dict[str, str]) -> None:
    _git(repo, "config", "checkout.workers", "2")
    config = GitConfig.read(repo / ".git")
    config.set_local([("checkout.workers", "5"), ("hf.lfs.early", "false")])
    assert _git(repo, "config", "--get-all", "checkout.workers") == "5\n"  # replaced, not a second value
    assert _git(repo, "config", "--get", "hf.lfs.early") == "false\n"
    assert config.get("checkout.workers") == "5" and config.get_bool("hf.lfs.early") is False


def test_a_held_lock_is_an_error_not_a_lost_setting(repo: Path, env: dict[str, str]) -> None:
    """Someone holds config.lock: the write fails with git's reason (nothing half-written), as git config would."""
    (repo / ".git/config.lock").write_text("")
    before = (repo / ".git/config").read_bytes()
    with pytest.raises(OSError, match="lock"):
        add_local(repo / ".git", [("hf.x", "1")])
    assert (repo / ".git/config").read_bytes() == before
    assert (repo / ".git/config.lock").exists()  # not ours to remove
