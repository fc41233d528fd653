"""Every route of the embedded hub, as its Router holds them, and concrete paths for them (for tests
that send the same question to every route)."""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path

from hubfs.server.app import create_app
from hubfs.server.http import Route, Router
from hubfs.server.hub import Hub


def _router(tmp: Path) -> Router:
    return create_app(Hub(tmp)).router


_DATA = tempfile.TemporaryDirectory(prefix="hubfs-routes-")  # removed when the test process exits
_ROUTER = _router(Path(_DATA.name))
ROUTES = list(_ROUTER.routes)
# the canonical spellings (``/api/models/gpt2``) of the repo routes: their ``ns`` group is empty
ALIASES = list(_ROUTER.aliases)
_GROUP = re.compile(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)")


def concrete_path(route: Route, values: dict[str, str]) -> str:
    """A path the route matches, with ``values`` for its named groups."""
    pattern = route.regex.pattern.lstrip("^").rstrip("$")
    path = _GROUP.sub(lambda m: values[m.group(1)] if m.group(0) != f"(?P<{m.group(1)}>)" else "", pattern)
    assert route.regex.match(path), (route.regex.pattern, path)
    return path


def route_values(repo_id: str, **override: str) -> dict[str, str]:
    """Values for every named group of every route, aimed at ``repo_id`` (``ns/name``, or a canonical
    ``name`` for the alias routes)."""
    ns, _, name = repo_id.rpartition("/")
    values = {"t": "models", "prefix": "", "ns": ns, "name": name, "name_git": name + ".git", "rev": "main",
              "branch": "b-" + uuid.uuid4().hex[:6], "tag": "no-such-tag", "rest_raw": "main/keep.txt",
              "rest": "/main", "num": "1", "oid": "a" * 64, "size": "5", "upload_id": "u1", "part": "1",
              "write": "write", "status": "pending", "instance": "0" * 16, "chunk": "0" * 64, "xorb": "0" * 64,
              "file": "0" * 64, "path": "dir/f.txt", "version": "2", "cas_prefix": "default", "sha": "0" * 40}
    values.update(cid="0" * 24, user=ns, slug="s-" + "0" * 24, hook_id="0" * 24, item_id="0" * 24)  # social routes
    values.update(override)
    return values


def route_ids(routes: list[Route]) -> list[str]:
    return [f"{'|'.join(sorted(r.methods))} {r.regex.pattern}" for r in routes]
