"""pyproject.toml lists its packages by hand (``git-remote-hf/`` is the package ``git_remote_hf``, which
setuptools' ``find`` cannot combine with): every package folder of the tree must be in that list, and the
``git-remote-hf`` executable must be installed."""

from __future__ import annotations

from pathlib import Path

import tomllib
from test_helper_common import HELPER

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_and_the_helper_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "hubfs").rglob("__init__.py")}
    assert on_disk - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert setuptools["package-dir"]["git_remote_hf"] == "git-remote-hf" and "git_remote_hf" in listed
    assert config["project"]["scripts"]["git-remote-hf"] == "git_remote_hf.__main__:main"
    assert HELPER.exists()
