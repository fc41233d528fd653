"""The one URL grammar of hubfs, and the names it is made of.

``hf://[datasets/|spaces/]ns/name[@rev]/path`` <-> :class:`RepoPath`. Repo ids, revisions and paths
in a repo are validated here, by the client and the embedded hub alike, with the same rules as
``huggingface_hub`` (its ``REPO_ID_REGEX``) and git's ``check-ref-format``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote, unquote

from hubfs.errors import InvalidNameError

DEFAULT_REVISION = "main"
COMMIT_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_NAME_RE = re.compile(r"^(?!-)[\w\-.]{1,96}(?<!-)$", re.ASCII)
_PR_REF_RE = re.compile(r"^refs/pr/\d+$")
_SPECIAL_REV_RE = re.compile(r"^(refs/pr/\d+|refs/convert/[\w\-.]+)")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


class RepoType(str, Enum):
    """A Hub repository type, with its API segment and URL prefix."""

    MODEL = "model"
    DATASET = "dataset"
    SPACE = "space"

    @property
    def plural(self) -> str:
        """The ``/api/{plural}`` segment: models, datasets, spaces."""
        return self.value + "s"

    @property
    def url_prefix(self) -> str:
        """The prefix of web, resolve and git URLs: '' for models, 'datasets/' for datasets."""
        return "" if self is RepoType.MODEL else self.plural + "/"

    @classmethod
    def parse(cls, value: str | None) -> "RepoType":
        """Accept 'model', 'models', None (model), 'dataset(s)', 'space(s)'."""
        if value in (None, "", "model", "models"):
            return cls.MODEL
        for member in cls:
            if value in (member.value, member.plural):
                return member
        raise InvalidNameError(f"Invalid repo type {value!r}: expected model, dataset or space.")


def validate_name(part: str, what: str = "name") -> str:
    """Check one namespace or repo name segment."""
    if not _NAME_RE.match(part or "") or ".." in part or "--" in part or part.endswith(".git"):
        raise InvalidNameError(
            f"Invalid {what} {part!r}: use letters, digits, '-', '_' and '.', at most 96 characters, "
            "no '--' or '..', not ending in '.git'."
        )
    return part


def validate_repo_id(repo_id: str) -> tuple[str, str]:
    """Split ``ns/name`` and validate both parts; single-segment ids are refused."""
    parts = (repo_id or "").split("/")
    if len(parts) != 2:
        raise InvalidNameError(f"Invalid repo id {repo_id!r}: expected 'namespace/name'.")
    return validate_name(parts[0], "namespace"), validate_name(parts[1], "repo name")


def validate_revision(revision: str) -> str:
    """Check a branch, tag or ref name with git's ``check-ref-format`` rules, or a commit sha."""
    rev = revision or ""
    if (
        not rev
        or len(rev) > 255
        or _BAD_REF_CHARS.search(rev)
        or ".." in rev
        or "@{" in rev
        or "//" in rev
        or rev == "@"
        or rev.startswith(("/", "-", "."))
        or rev.endswith(("/", ".", ".lock"))
        or any(seg.startswith(".") or seg.endswith(".lock") for seg in rev.split("/"))
    ):
        raise InvalidNameError(f"Invalid revision {revision!r}.")
    return rev


def validate_path_in_repo(path: str) -> str:
    """Check a file or folder path inside a repo: relative, no '..', '.', empty segments or NUL.

    Returns the path with no leading or trailing slash. ``.git`` segments are refused, as the Hub does.
    """
    if path is None or "\x00" in path or "\\" in path:
        raise InvalidNameError(f"Invalid path {path!r}: NUL and backslashes are not allowed.")
    if path.startswith("/"):
        raise InvalidNameError(f"Invalid path {path!r}: paths in a repo are relative.")
    stripped = path.rstrip("/")
    if not stripped:
        raise InvalidNameError("Invalid path: empty.")
    for seg in stripped.split("/"):
        if seg in ("", ".", "..") or seg == ".git":
            raise InvalidNameError(f"Invalid path {path!r}: segment {seg!r} is not allowed.")
    if len(stripped.encode()) > 4096:
        raise InvalidNameError("Invalid path: longer than 4096 bytes.")
    return stripped


def is_commit_sha(revision: str | None) -> bool:
    """True for a full 40-hex lowercase commit id."""
    return bool(revision and COMMIT_SHA_RE.match(revision))


def is_pr_ref(revision: str) -> bool:
    """True for ``refs/pr/N``."""
    return bool(_PR_REF_RE.match(revision))


@dataclass(frozen=True)
class RepoPath:
    """A parsed ``hf://`` path: repo type, ``ns/name``, optional revision and path in the repo."""

    repo_type: RepoType
    repo_id: str
    revision: str | None = None
    path: str = ""

    @classmethod
    def parse(cls, url: str) -> "RepoPath":
        """Parse ``[hf://|hubfs://][datasets/|spaces/]ns/name[@rev][/path]``.

        ``rev`` may be url-encoded (``@feat%2Fx``) or a special ref with slashes
        (``@refs/pr/1``, ``@refs/convert/parquet``), exactly as ``HfFileSystem`` reads it.
        """
        rest = re.sub(r"^(hf|hubfs)://", "", url).strip("/")
        repo_type = RepoType.MODEL
        for candidate in (RepoType.DATASET, RepoType.SPACE):
            if rest.startswith(candidate.url_prefix):
                repo_type, rest = candidate, rest[len(candidate.url_prefix):]
                break
        parts = rest.split("/", 2)
        if len(parts) < 2:
            raise InvalidNameError(f"Invalid hf path {url!r}: expected [type/]namespace/name[@revision]/path.")
        ns, name_rev = parts[0], parts[1]
        tail = parts[2] if len(parts) > 2 else ""
        revision = None
        if "@" in name_rev:
            name, rev = name_rev.split("@", 1)
            full = rev + ("/" + tail if tail else "")
            special = _SPECIAL_REV_RE.match(unquote(full))
            if special and "%2F" not in rev.upper():
                revision = special.group(1)
                tail = full[len(revision):].lstrip("/")
            else:
                revision = unquote(rev)
            validate_revision(revision)
        else:
            name = name_rev
        validate_repo_id(f"{ns}/{name}")
        return cls(repo_type, f"{ns}/{name}", revision, validate_path_in_repo(tail) if tail else "")

    def unparse(self, protocol: str = "hf") -> str:
        """The canonical ``hf://`` URL; a revision with '/' is url-encoded unless it is a special ref."""
        rev = ""
        if self.revision:
            rev = "@" + (self.revision if _SPECIAL_REV_RE.fullmatch(self.revision) else quote(self.revision, safe=""))
        tail = "/" + self.path if self.path else ""
        return f"{protocol}://{self.repo_type.url_prefix}{self.repo_id}{rev}{tail}"
