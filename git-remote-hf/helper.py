"""The remote-helper protocol (gitremote-helpers(7)) on stdin/stdout: ``capabilities``, ``option``,
``list [for-push]``, batches of ``fetch`` and ``push``.

Capabilities are ``fetch``, ``push``, ``option``, ``check-connectivity`` and ``object-format``: packs move
verbatim through dulwich (:mod:`git_remote_hf.fetching`, :mod:`git_remote_hf.pushing`), so every SHA is the
server's. A failure prints one ``git-remote-hf: ...`` line on stderr and exits non-zero; git then
writes no ref, so the local repository stays as it was.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from git_remote_hf.auth import client_for, git_credential
from git_remote_hf.git_http import HubGitClient
from git_remote_hf.gitconfig import GitConfig
from git_remote_hf.messages import describe
from git_remote_hf.url import Remote, parse_remote_url
from hubfs.client.api import HubClient
from hubfs.errors import HubfsError, RevisionNotFoundError
from hubfs.paths import is_commit_sha

__all__ = ["Options", "Session", "run"]

CAPABILITIES = ("fetch", "push", "option", "check-connectivity", "object-format")
UPLOAD_PACK = b"git-upload-pack"
RECEIVE_PACK = b"git-receive-pack"


@dataclass
class Options:
    """What git set with ``option``; each answer is ``ok``, ``unsupported`` or ``error <why>``."""

    verbosity: int = 1
    progress: bool = False
    depth: int | None = None
    deepen_relative: bool = False
    deepen_since: str | None = None
    deepen_not: list[str] = field(default_factory=list)
    cloning: bool = False
    followtags: bool = False
    check_connectivity: bool = False
    object_format: bool = False
    atomic: bool = False
    dry_run: bool = False
    force: bool = False
    push_options: list[str] = field(default_factory=list)
    cas: dict[str, str | None] = field(default_factory=dict)

    def set(self, name: str, value: str) -> str:
        """Apply one option; the reply line for git."""
        flag = value == "true"
        if name == "verbosity":
            self.verbosity = int(value) if value.lstrip("-").isdigit() else 1
        elif name == "progress":
            self.progress = flag
        elif name == "depth":
            if not value.isdigit() or int(value) < 1:
                return f"error invalid depth {value!r}"
            self.depth = int(value)
        elif name == "deepen-relative":
            self.deepen_relative = flag
        elif name == "deepen-since":
            self.deepen_since = _c_unquote(value)
        elif name == "deepen-not":
            self.deepen_not.append(_c_unquote(value))
        elif name == "cloning":
            self.cloning = flag
        elif name == "followtags":
            self.followtags = flag
        elif name == "check-connectivity":
            self.check_connectivity = flag
        elif name == "object-format":
            if value not in ("", "true", "sha1"):
                return f"error object format {value!r} is not supported (sha1 only)"
            self.object_format = True
        elif name == "atomic":
            self.atomic = flag
        elif name == "dry-run":
            self.dry_run = flag
        elif name == "force":
            self.force = flag
        elif name == "push-option":
            self.push_options.append(_c_unquote(value))
        elif name == "cas":
            ref, _, expect = _c_unquote(value).partition(":")
            self.cas[ref] = expect or None
        elif name in ("update-shallow", "family"):
            pass
        else:  # filter (no partial clone on the Hub), pushcert, from-promisor, ...
            return "unsupported"
        return "ok"


def _c_unquote(value: str) -> str:
    """A C-quoted option value ("...", as git writes push options and cas) without its quotes and escapes."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    return value


class Session:
    """One run of the helper: the remote, its client (made on first use), the options and git's pipes."""

    def __init__(self, remote: Remote, remote_name: str, git_dir: Path, out: BinaryIO,
                 write_err: Callable[[str], None]) -> None:
        self.remote = remote
        self.remote_name = remote_name
        self.git_dir = git_dir
        self.out = out
        self.write_err = write_err
        self.options = Options()
        self._client: HubClient | None = None
        self._git: HubGitClient | None = None
        self.symrefs: dict[bytes, bytes] = {}
        self.pushing = False
        self.head_ref: str | None = None  # the branch the listed HEAD names (what a clone checks out)
        self.head_sha: str | None = None  # its commit (or the commit of a detached HEAD)
        self.early: tuple[int, str] | None = None  # (pid, commit) of a clone's early LFS download
        self.configured = False  # the clone's local config is written
        self._config: GitConfig | None = None

    @property
    def config(self) -> GitConfig:
        """The repository's git configuration, read once (:class:`GitConfig`)."""
        if self._config is None:
            self._config = GitConfig.read(self.git_dir)
        return self._config

    # -- clients ------------------------------------------------------------------------------------

    @property
    def client(self) -> HubClient:
        if self._client is None:
            self._client = client_for(self.remote, self.git_dir)
        return self._client

    @property
    def git(self) -> HubGitClient:
        if self._git is None:
            self._git = HubGitClient(self.client.transport, self.remote.git_url)
        return self._git

    def discover(self, service: bytes) -> tuple[dict[bytes, bytes | None], dict[bytes, bytes], dict[bytes, bytes]]:
        """(refs, symrefs, peeled) of the remote for ``service``; asks ``git credential`` once when needed."""
        try:
            refs, _caps, _url, symrefs, peeled = self.git.discover(service)
        except PermissionError:
            if self.client.config.token is not None or not self._retry_with_credential():
                raise
            refs, _caps, _url, symrefs, peeled = self.git.discover(service)
            git_credential("approve", self.remote, self.git_dir, fields=self._credential_fields())
        return refs, symrefs, peeled

    def _retry_with_credential(self) -> bool:
        """Ask ``git credential fill`` (a terminal prompt only if git allows one); True if a token came."""
        token = git_credential("fill", self.remote, self.git_dir, prompt=True).get("password")
        if not token:
            return False
        self.close()
        self._client = HubClient(self.remote.endpoint, token)
        return True

    def _credential_fields(self) -> dict[str, str]:
        token = self.client.config.token or ""
        return {"username": "hf", "password": token}

    @property
    def token_sent(self) -> bool:
        """Whether requests carried a token (for error messages)."""
        return self._client is not None and self._client.config.token is not None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client, self._git = None, None

    # -- output -------------------------------------------------------------------------------------

    def reply(self, *lines: str) -> None:
        """Write lines to git and flush (git waits for each answer)."""
        self.out.write("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))
        self.out.flush()

    def err(self, line: str) -> None:
        """One line on stderr (warnings, the server's messages)."""
        self.write_err(line.rstrip("\n") + "\n")

    def progress(self, text: str) -> None:
        """Progress text on stderr as is (``\\r`` redraws a line), when git asked for progress and is not quiet."""
        if self.options.progress and self.options.verbosity > 0:
            self.write_err(text)

    # -- commands -----------------------------------------------------------------------------------

    def list_refs(self, for_push: bool) -> None:
        self.pushing = for_push
        refs, symrefs, peeled = self.discover(RECEIVE_PACK if for_push else UPLOAD_PACK)
        self.symrefs = dict(symrefs)
        lines = [":object-format sha1"] if self.options.object_format else []
        head = _head_line(self.remote, refs, symrefs, peeled) if not for_push else None
        self.head_ref, self.head_sha = _head_target(head, refs, peeled)
        for name, sha in sorted(refs.items()):
            if sha is None or name == b"HEAD" or name.endswith(b"^{}"):
                continue
            lines.append(f"{sha.decode()} {name.decode('utf-8', 'surrogateescape')}")
            if name in peeled and not for_push:  # as remote-curl lists them: git follows annotated tags with these
                lines.append(f"{peeled[name].decode()} {name.decode('utf-8', 'surrogateescape')}^{{}}")
        if head:
            lines.append(head)
        self.reply(*lines, "")


def _head_target(head: str | None, refs: dict[bytes, bytes | None], peeled: dict[bytes, bytes]
                 ) -> tuple[str | None, str | None]:
    """(branch, commit) of the ``HEAD`` line given to git (``@<branch> HEAD`` or ``<sha> HEAD``)."""
    if not head:
        return None, None
    target = head.split(" ", 1)[0]
    if not target.startswith("@"):
        return None, target
    name = target[1:].encode()
    sha = refs.get(name)
    return target[1:], (peeled.get(name, sha).decode() if sha else None)


def _head_line(remote: Remote, refs: dict[bytes, bytes | None], symrefs: dict[bytes, bytes],
               peeled: dict[bytes, bytes]) -> str | None:
    """``@<branch> HEAD`` (or ``<sha> HEAD``): the remote's default branch, or the URL's ``@revision``."""
    if remote.revision:
        rev = remote.revision
        names = [rev] if rev.startswith("refs/") else [f"refs/heads/{rev}", f"refs/tags/{rev}"]
        for name in names:
            sha = refs.get(name.encode())
            if sha and name.startswith("refs/heads/"):
                return f"@{name} HEAD"
            if sha:
                return f"{peeled.get(name.encode(), sha).decode()} HEAD"
        if is_commit_sha(rev):
            return f"{rev} HEAD"
        raise RevisionNotFoundError(f"Revision {rev!r} not found in {remote}: no such branch or tag.")
    target = symrefs.get(b"HEAD")
    if target is not None and refs.get(target):
        return f"@{target.decode()} HEAD"
    head = refs.get(b"HEAD")
    return f"{head.decode()} HEAD" if head else None


def serve(session: Session, stdin: BinaryIO) -> int:
    """Answer git's commands until it closes stdin or sends the final blank line."""
    from git_remote_hf.fetching import fetch_batch, start_early
    from git_remote_hf.pushing import push_batch
    from git_remote_hf.trace import mark

    mark("helper", "imported")

    while True:
        raw = stdin.readline()
        if not raw:
            return 0
        line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        mark("helper", "command", line.split(" ", 1)[0] or "end")
        if line == "":
            return 0
        if line == "capabilities":
            session.reply(*CAPABILITIES, "")
        elif line.startswith("option "):
            name, _, value = line[len("option "):].partition(" ")
            session.reply(session.options.set(name, value))
            if name == "cloning" and session.options.cloning:
                start_early(session)
        elif line in ("list", "list for-push"):
            session.list_refs(for_push=line == "list for-push")
            if session.options.cloning and not session.pushing:
                start_early(session)
        elif line.startswith("fetch "):
            fetch_batch(session, _batch(line, stdin))
        elif line.startswith("push "):
            push_batch(session, _batch(line, stdin))
        else:
            raise HubfsError(f"unknown command {line!r} from git")


def _batch(first: str, stdin: BinaryIO) -> list[str]:
    """The first command line and the rest of its batch, up to the blank line."""
    lines = [first]
    while raw := stdin.readline():
        line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        if not line:
            break
        lines.append(line)
    return lines


def run(args: list[str]) -> int:
    """``git-remote-hf <remote> [<url>]``: run the protocol; a failure is one stderr line and exit 1."""
    if not args or len(args) > 2:
        sys.stderr.write("usage: git-remote-hf <remote> [<url>]   (git runs this for hf:// URLs)\n"
                         "       git-remote-hf filter-process\n")
        return 2
    url = args[1] if len(args) == 2 else args[0]

    def write_err(text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    session: Session | None = None
    try:
        remote = parse_remote_url(url, os.environ)
        git_dir = Path(os.environ.get("GIT_DIR") or ".git").absolute()
        session = Session(remote, args[0], git_dir, sys.stdout.buffer, write_err)
        return serve(session, sys.stdin.buffer)
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        write_err("git-remote-hf: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line for git's user, whatever broke
        message = describe(exc, session.remote if session else None, with_token=session.token_sent if session else None,
                           pushing=session.pushing if session else False)
        write_err(f"git-remote-hf: {message}\n")
        return 1
    finally:
        if session is not None:
            session.close()
