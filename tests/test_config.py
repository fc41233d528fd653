"""hubfs/config.py is the one place HUBFS_* settings are read, and each of them is in its table."""

from __future__ import annotations

import re
from pathlib import Path

from hubfs import config

ROOT = Path(__file__).parent.parent / "hubfs"
READ = re.compile(r"""(environ(\.get)?\(|environ\[|getenv\()\s*["'](HUBFS_\w+)""")


def test_hubfs_settings_are_read_only_in_config() -> None:
    readers = {str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if READ.search(p.read_text())}
    assert readers == {"config.py"}


def test_every_setting_read_is_documented() -> None:
    source = (ROOT / "config.py").read_text()
    table = config.__doc__ or ""
    names = set(re.findall(r"HUBFS_\w+", source.split('"""', 2)[2]))
    assert names and all(f"| {name}" in table for name in names)


def test_hook_environment_round_trips(tmp_path: Path) -> None:
    hook = config.HookEnv(tmp_path, "model", "a/b", "alice", 123)
    assert config.HookEnv.read(hook.variables()) == hook
