"""Remote URLs of the helper: ``hf://[datasets/|spaces/]ns/name[@rev]`` and ``hf::https://host/[type/]ns/name[.git]``.

The repo part follows :mod:`hubfs.paths` (the same grammar as ``HfFileSystem``); the endpoint of an
``hf://`` URL is ``HF_ENDPOINT`` (default https://huggingface.co), that of an ``https://`` URL (what git
passes for ``hf::https://...``) is its scheme, host and any path before the repo.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from hubfs.config import DEFAULT_ENDPOINT
from hubfs.errors import InvalidNameError
from hubfs.paths import RepoPath, RepoType

__all__ = ["Remote", "parse_remote_url"]


@dataclass(frozen=True)
class Remote:
    """One Hub repository as a git remote: endpoint, type ('model'|'dataset'|'space'), ``ns/name``, revision."""

    endpoint: str
    repo_type: str
    repo_id: str
    revision: str | None = None

    @property
    def git_url(self) -> str:
        """The smart-HTTP URL: ``{endpoint}/{datasets/|spaces/}ns/name.git``."""
        return f"{self.endpoint}/{RepoType.parse(self.repo_type).url_prefix}{self.repo_id}.git"

    @property
    def lfs_url(self) -> str:
        """The Git LFS endpoint (``{git_url}/info/lfs``), as git-lfs derives it."""
        return f"{self.git_url}/info/lfs"

    def __str__(self) -> str:
        """The ``hf://`` spelling (no token, no endpoint): for messages."""
        return RepoPath(RepoType.parse(self.repo_type), self.repo_id, self.revision).unparse()


def parse_remote_url(url: str, env: Mapping[str, str]) -> Remote:
    """Parse the URL git hands the helper; raise :class:`~hubfs.errors.InvalidNameError` with a clear message.

    ``env`` supplies ``HF_ENDPOINT`` for ``hf://`` URLs. Credentials in an ``https://`` URL are refused
    (a token belongs in HF_TOKEN, the token file or a git credential helper, never in a URL).
    """
    url = url.strip()
    if url.startswith(("hf://", "hubfs://")):
        endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        rest = re.sub(r"^(hf|hubfs)://", "", url)
    elif url.startswith(("https://", "http://")):
        parts = urlsplit(url)
        if parts.username or parts.password or "@" in parts.netloc:
            raise InvalidNameError("Invalid hf:: URL: credentials do not belong in the URL; "
                                   "set HF_TOKEN or use a git credential helper.")
        if parts.query or parts.fragment or not parts.hostname:
            raise InvalidNameError(f"Invalid hf:: URL {url!r}: expected https://host/[datasets/|spaces/]ns/name.")
        segments = [s for s in parts.path.split("/") if s]
        start = _repo_start(segments)
        endpoint = f"{parts.scheme}://{parts.netloc}" + "".join("/" + s for s in segments[:start])
        rest = "/".join(segments[start:])
    else:
        raise InvalidNameError(f"Invalid remote URL {url!r}: expected hf://[datasets/|spaces/]ns/name[@rev] "
                               "or hf::https://host/[datasets/|spaces/]ns/name.")
    rest = rest.strip("/")
    rest = re.sub(r"\.git$", "", rest) if "@" not in rest else re.sub(r"\.git(?=@)", "", rest)
    parsed = RepoPath.parse(rest)
    if parsed.path:
        raise InvalidNameError(f"Invalid remote URL {url!r}: a git remote is a whole repository "
                               f"(found the path {parsed.path!r} after the repo id).")
    return Remote(endpoint, parsed.repo_type.value, parsed.repo_id, parsed.revision)


def _repo_start(segments: list[str]) -> int:
    """Index of the segment where ``[datasets|spaces/]ns/name`` begins in an https path (the rest is the endpoint)."""
    for i, seg in enumerate(segments):
        if seg in ("datasets", "spaces") and len(segments) - i == 3:
            return i
    return max(len(segments) - 2, 0)
