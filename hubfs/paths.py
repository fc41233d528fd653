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
_NAME_RE = re.compile(r"^(?![.-])[\w\-.]{1,96}(?<![.-])$", re.ASCII)
_PR_REF_RE = re.compile(r"^refs/pr/\d{1,18}$")
_SPECIAL_REV_RE = re.compile(r"^(refs/pr/\d+|refs/convert/[\w\-.]+)")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_SHORT_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,39}$")


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
    def parse(cls, value: str | None) -> RepoType:
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
            "not starting or ending with '-' or '.', no '--' or '..', not ending in '.git'."
        )
    return part


def validate_repo_id(repo_id: str, *, canonical: bool = False) -> tuple[str, str]:
    """Split ``ns/name`` and validate both parts.

    With ``canonical``, a repo without a namespace (like ``gpt2``) is valid too: spelled ``gpt2`` (or
    ``/gpt2``, the embedded hub's internal spelling), it splits to ``("", "gpt2")``.
    """
    parts = (repo_id or "").split("/")
    if len(parts) == 1 and canonical:
        parts = ["", parts[0]]
    if len(parts) != 2 or (not parts[0] and not canonical):
        raise InvalidNameError(f"Invalid repo id {repo_id!r}: expected 'namespace/name' or a canonical 'name'.")
    ns = validate_name(parts[0], "namespace") if parts[0] else ""
    return ns, validate_name(parts[1], "repo name")


def is_canonical(repo_id: str) -> bool:
    """True for a repo id without a namespace (``gpt2``, or the hub's internal ``/gpt2``)."""
    return "/" not in repo_id.lstrip("/")


def public_repo_id(repo_id: str) -> str:
    """The id as the Hub shows it: ``ns/name``, or ``name`` for a canonical repo (never ``/name``)."""
    return repo_id.lstrip("/")


def short_sha_prefix(revision: str) -> str | None:
    """The lowercase hex prefix a revision of 7 to 39 hex digits may abbreviate, else None."""
    return revision.lower() if _SHORT_SHA_RE.match(revision) else None


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


def validate_ref_name(name: str, kind: str = "branch") -> str:
    """Check the name of a branch or tag to create: ``check-ref-format`` rules, and not ``HEAD``,
    a ``refs/`` path or a 40-hex name that reads as a commit sha (``git branch`` refuses these too)."""
    validate_revision(name)
    if name == "HEAD" or name.startswith("refs/") or COMMIT_SHA_RE.match(name.lower()):
        raise InvalidNameError(f"Invalid {kind} name {name!r}: HEAD, refs/... and commit shas are reserved.")
    return name


def validate_path_in_repo(path: str) -> str:
    """Check a file or folder path inside a repo: relative, no '..', '.', empty segments or NUL.

    Returns the path with no leading or trailing slash. Segments git's ``verify_path`` refuses (``.git``
    and its NTFS and HFS+ look-alikes: ``.GIT``, ``git~1``, ``.git.``, ``.g\u200cit``) are refused, and so
    are ``.gitmodules`` look-alikes and a folder named ``.gitmodules`` (git fsck refuses those trees).
    """
    if path is None or "\x00" in path or "\\" in path:
        raise InvalidNameError(f"Invalid path {path!r}: NUL and backslashes are not allowed.")
    if path.startswith("/"):
        raise InvalidNameError(f"Invalid path {path!r}: paths in a repo are relative.")
    stripped = path.rstrip("/")
    if not stripped:
        raise InvalidNameError("Invalid path: empty.")
    segments = stripped.split("/")
    for i, seg in enumerate(segments):
        if seg in ("", ".", "..") or is_dotgit(seg):
            raise InvalidNameError(f"Invalid path {path!r}: segment {seg!r} is not allowed (git refuses it).")
        if is_dotgitmodules(seg) and (i < len(segments) - 1 or seg != ".gitmodules"):
            raise InvalidNameError(f"Invalid path {path!r}: {seg!r} would be read as .gitmodules by git.")
    if len(stripped.encode()) > 4096:
        raise InvalidNameError("Invalid path: longer than 4096 bytes.")
    return stripped


# -- git's verify_path / fsck protections (read-cache.c, path.c, utf8.c), one path segment at a time --

_HFS_IGNORED = frozenset([*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(text: str) -> str:
    """ASCII-only lower case, as ``strncasecmp`` compares (keeps every index in place)."""
    return text.translate(_ASCII_LOWER)


def _is_hfs_dot(seg: str, needle: str) -> bool:
    """git's ``is_hfs_dot_generic``: '.' + needle, ASCII case-folded, HFS+-ignored code points skipped."""
    folded = [c for c in seg if ord(c) not in _HFS_IGNORED]
    if len(folded) != len(needle) + 1 or folded[0] != ".":
        return False
    return all(ord(c) < 128 and _lower(c) == n for c, n in zip(folded[1:], needle))


def _spaces_and_dots(rest: str) -> bool:
    """Only ' ' and '.' up to the end or an NTFS stream separator ':' (NTFS drops them)."""
    for c in rest:
        if c == ":":
            return True
        if c not in " .":
            return False
    return True


def _is_ntfs_dot(seg: str, needle: str, shortname_prefix: str) -> bool:
    """git's ``is_ntfs_dot_generic``: '.' + needle, its 8.3 short names (``gitmod~1``, ``gi7eba~9``),
    each followed only by spaces and dots."""
    low = _lower(seg)
    if low.startswith("." + needle):
        return _spaces_and_dots(seg[len(needle) + 1:])
    if low.startswith(needle[:6]) and seg[6:7] == "~" and seg[7:8] != "" and seg[7] in "1234":
        return _spaces_and_dots(seg[8:])
    i, saw_tilde = 0, False
    while i < 8:
        c = seg[i:i + 1]
        if not c:
            return False
        if saw_tilde:
            if c not in "0123456789":
                return False
        elif c == "~":
            i += 1
            if seg[i:i + 1] == "" or seg[i] not in "123456789":
                return False
            saw_tilde = True
        elif i >= 6 or ord(c) >= 128 or c.lower() != shortname_prefix[i]:
            return False
        i += 1
    return _spaces_and_dots(seg[i:])


def is_dotgit(seg: str) -> bool:
    """True for a path segment that git refuses as ``.git``: any case, ``git~1``, trailing dots or
    spaces, ``:stream`` (NTFS), or with code points HFS+ ignores (``.g\u200cit``)."""
    low = _lower(seg)
    if low.startswith(".git"):
        ntfs = _spaces_and_dots(seg[4:])
    else:
        ntfs = low.startswith("git~1") and _spaces_and_dots(seg[5:])
    return ntfs or _is_hfs_dot(seg, "git")


def is_dotgitmodules(seg: str) -> bool:
    """True for ``.gitmodules`` and the names NTFS or HFS+ would open as it (what git fsck tracks)."""
    return _is_hfs_dot(seg, "gitmodules") or _is_ntfs_dot(seg, "gitmodules", "gi7eba")


def is_commit_sha(revision: str | None) -> bool:
    """True for a full 40-hex lowercase commit id."""
    return bool(revision and COMMIT_SHA_RE.match(revision))


def is_pr_ref(revision: str) -> bool:
    """True for ``refs/pr/N``."""
    return bool(_PR_REF_RE.match(revision))


@dataclass(frozen=True)
class RepoRef:
    """One repository of a hub: its type and ``ns/name`` id (not validated here)."""

    type: RepoType
    id: str

    @classmethod
    def of(cls, repo_type: RepoType | str | None, repo_id: str) -> RepoRef:
        """From a type spelled any way :meth:`RepoType.parse` accepts."""
        return cls(repo_type if isinstance(repo_type, RepoType) else RepoType.parse(repo_type), repo_id)

    @property
    def url_prefix(self) -> str:
        """``datasets/ns/name`` (web, resolve and git URLs; no prefix for models)."""
        return f"{self.type.url_prefix}{self.id}"

    @property
    def api_path(self) -> str:
        """``/api/datasets/ns/name``."""
        return f"/api/{self.type.plural}/{self.id}"

    @property
    def folder(self) -> str:
        """The repo's folder in huggingface_hub's cache: ``models--ns--name``."""
        return f"{self.type.plural}--{self.id.replace('/', '--')}"

    def __str__(self) -> str:
        return self.url_prefix


@dataclass(frozen=True)
class RepoPath:
    """A parsed ``hf://`` path: repo type, ``ns/name``, optional revision and path in the repo."""

    repo_type: RepoType
    repo_id: str
    revision: str | None = None
    path: str = ""

    @property
    def repo(self) -> RepoRef:
        return RepoRef(self.repo_type, self.repo_id)

    @classmethod
    def parse(cls, url: str) -> RepoPath:
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
        if not rest:
            raise InvalidNameError(f"Invalid hf path {url!r}: expected [type/]namespace/name[@revision]/path.")
        first = rest.split("/", 1)
        if "@" in first[0] or len(first) == 1:
            # a canonical repo (no namespace): ``gpt2``, ``gpt2@rev`` or ``gpt2@rev/path``
            ns, name_rev, tail = "", first[0], first[1] if len(first) > 1 else ""
        else:
            parts = rest.split("/", 2)
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
        repo_id = f"{ns}/{name}" if ns else name
        validate_repo_id(repo_id, canonical=True)
        return cls(repo_type, repo_id, revision, validate_path_in_repo(tail) if tail else "")

    def canonical_reading(self) -> RepoPath | None:
        """The other reading of ``ns/name[/path]`` without a revision: canonical repo ``ns`` and path
        ``name[/path]`` (``hf://gpt2/config.json``); None when there is no other reading."""
        if self.revision is not None or is_canonical(self.repo_id):
            return None
        ns, name = self.repo_id.split("/")
        return RepoPath(self.repo_type, ns, None, f"{name}/{self.path}" if self.path else name)

    def unparse(self, protocol: str = "hf") -> str:
        """The canonical ``hf://`` URL; a revision with '/' is url-encoded unless it is a special ref."""
        rev = ""
        if self.revision:
            rev = "@" + (self.revision if _SPECIAL_REV_RE.fullmatch(self.revision) else quote(self.revision, safe=""))
        tail = "/" + self.path if self.path else ""
        return f"{protocol}://{self.repo_type.url_prefix}{self.repo_id}{rev}{tail}"
