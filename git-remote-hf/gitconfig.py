"""A repository's git configuration read once (``git config -z --list``: every level, ``-c`` included), and
settings added to its local config file in one locked write.

git starts a process per ``git config`` call (20-60 ms each on a busy machine); a clone used to make a dozen.
:class:`GitConfig` answers every lookup of one run from a single read, with git's own rules for names
(section and key case-insensitive, subsection exact) and booleans. :func:`add_local` appends settings as
git itself writes them (``config.lock``, then a rename), and falls back to one ``git config`` per setting
when the lock is taken. ``GIT_REMOTE_HF_CONFIG_ONCE=0`` turns both off: each lookup and write runs
``git config`` as before (the switch for comparing the two).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ENV", "GitConfig", "add_local", "enabled", "parse_bool"]

ENV = "GIT_REMOTE_HF_CONFIG_ONCE"
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off", "")
_ERE_SPECIAL = set("\\.^$|?*+()[]{}")


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether lookups come from one read (not turned off by ``GIT_REMOTE_HF_CONFIG_ONCE``)."""
    value = (os.environ if env is None else env).get(ENV, "").strip().lower()
    return value not in ("0", "false", "no", "off")


def parse_bool(value: str | None) -> bool | None:
    """git's boolean: a key without ``=`` is true; true/yes/on, false/no/off/empty; integers (non-zero true).
    None for a value git would refuse."""
    if value is None:
        return True
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    try:
        return int(text, 0) != 0
    except ValueError:
        return None


def normalize(key: str) -> str:
    """``Section.Sub.Key`` as git lists it: section and key lower-cased, the subsection as it is."""
    section, _, rest = key.partition(".")
    sub, dot, name = rest.rpartition(".")
    return f"{section.lower()}.{sub}{dot}{name.lower()}" if dot else f"{section.lower()}.{rest.lower()}"


def _run(git_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "--git-dir", str(git_dir), "config", *args], capture_output=True, check=False)


class GitConfig:
    """Every value of every key, in git's order (last one wins); ``live`` asks git at each lookup instead."""

    def __init__(self, values: Mapping[str, Sequence[str | None]], git_dir: Path | None = None,
                 live: bool = False) -> None:
        self.values = {normalize(k): list(v) for k, v in values.items()}
        self.git_dir = git_dir
        self.live = live and git_dir is not None

    @classmethod
    def read(cls, git_dir: Path, env: Mapping[str, str] | None = None) -> GitConfig:
        """The configuration git sees in ``git_dir``, from one ``git config -z --list`` (empty if that fails);
        with ``GIT_REMOTE_HF_CONFIG_ONCE=0``, a config that runs ``git config`` for each lookup."""
        if not enabled(env):
            return cls({}, Path(git_dir), live=True)
        proc = _run(Path(git_dir), "-z", "--list")
        return cls(parse_list(proc.stdout) if proc.returncode == 0 else {}, Path(git_dir))

    def get_all(self, key: str) -> list[str | None]:
        """Every value of ``key`` (None for a key written without ``=``), lowest level first."""
        if self.live:  # --get-regexp, not --get-all: it tells a key without "=" from an empty value
            assert self.git_dir is not None
            pattern = "^" + "".join("\\" + c if c in _ERE_SPECIAL else c for c in normalize(key)) + "$"
            return parse_list(_run(self.git_dir, "-z", "--get-regexp", pattern).stdout).get(normalize(key), [])
        return list(self.values.get(normalize(key), []))

    def get(self, key: str) -> str | None:
        """The value of ``key`` that git uses (the last one), or None when unset (or set without ``=``)."""
        found = self.get_all(key)
        return found[-1] if found else None

    def has(self, key: str) -> bool:
        return bool(self.get_all(key))

    def get_bool(self, key: str) -> bool | None:
        """``key`` as a boolean (git's rules), or None when unset or not a boolean."""
        found = self.get_all(key)
        return parse_bool(found[-1]) if found else None

    def matching(self, section: str, name: str) -> dict[str, str]:
        """``{subsection: last value}`` of every ``section.<subsection>.name`` (``remote.*.url``, say)."""
        if self.live:
            assert self.git_dir is not None
            pattern = rf"^{section}\..*\.{name}$"
            records = parse_list(_run(self.git_dir, "-z", "--get-regexp", pattern).stdout)
            found = {k: v for k, v in records.items()}
        else:
            found = self.values
        prefix, suffix = f"{section.lower()}.", f".{name.lower()}"
        out = {}
        for key, values in found.items():
            if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix) + len(suffix) and values:
                value = values[-1]
                if value is not None:
                    out[key[len(prefix):-len(suffix)]] = value
        return out

    def set_local(self, settings: Sequence[tuple[str, str]]) -> None:
        """Add ``settings`` to the repo's local config and to this view of it: keys set nowhere yet in one
        write (:func:`add_local`), others with ``git config --local`` (which replaces a local value)."""
        assert self.git_dir is not None
        new = [(k, v) for k, v in settings if self.live or not self.has(k)]
        add_local(self.git_dir, new, one_write=not self.live)
        add_local(self.git_dir, [(k, v) for k, v in settings if (k, v) not in new], one_write=False)
        for key, value in settings:
            self.values.setdefault(normalize(key), []).append(value)


def parse_list(out: bytes) -> dict[str, list[str | None]]:
    """``git config -z --list`` output (``key\\nvalue\\0``, or ``key\\0`` without a value) as a dict of lists."""
    values: dict[str, list[str | None]] = {}
    for record in out.decode("utf-8", "surrogateescape").split("\0"):
        if not record:
            continue
        key, sep, value = record.partition("\n")
        values.setdefault(normalize(key), []).append(value if sep else None)
    return values


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _section_text(settings: Sequence[tuple[str, str]]) -> str:
    """The settings as config file text, under one header per section (git merges a repeated section)."""
    sections: dict[str, list[str]] = {}
    for key, value in settings:
        section, _, rest = key.partition(".")
        sub, dot, name = rest.rpartition(".")
        if dot:
            header = '[{} "{}"]'.format(section, sub.replace("\\", "\\\\").replace('"', '\\"'))
        else:
            header, name = f"[{section}]", rest
        sections.setdefault(header, []).append(f"\t{name} = {_quote(value)}")
    return "".join(f"{header}\n" + "".join(line + "\n" for line in lines) for header, lines in sections.items())


def add_local(git_dir: Path, settings: Sequence[tuple[str, str]], *, one_write: bool = True) -> None:
    """Set each ``(key, value)`` in ``git_dir/config`` (a value set before is overridden: git uses the last).

    One write as git does it (``config.lock`` created exclusively, the old text and the new sections
    written to it, renamed over ``config``); when the lock is taken, or with ``one_write`` False, one
    ``git config --local`` per setting. Raises :class:`OSError` if a setting could not be written.
    """
    if not settings:
        return
    config = Path(git_dir) / "config"
    lock = config.with_name("config.lock")
    if one_write:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                try:
                    old = config.read_bytes()
                    mode = config.stat().st_mode & 0o777
                except FileNotFoundError:
                    old, mode = b"", 0o644
                if old and not old.endswith(b"\n"):
                    old += b"\n"
                os.write(fd, old + _section_text(settings).encode("utf-8", "surrogateescape"))
                os.fchmod(fd, mode)
                os.close(fd)
                fd = -1
                os.replace(lock, config)
                return
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                lock.unlink(missing_ok=True)
                raise
    for key, value in settings:
        answer = subprocess.run(["git", "--git-dir", str(git_dir), "config", "--local", key, value],
                                capture_output=True, text=True, check=False)
        if answer.returncode != 0:
            raise OSError(f"git config {key} failed in {git_dir}: {answer.stderr.strip()}")
