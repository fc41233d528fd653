"""Canonical repos: ids without a namespace (``gpt2``, ``bert-base-uncased``, ``imdb``) on every route.

Every route registered with ``{ns}/{name}`` gets a twin, tried after all namespaced routes, where
``ns`` matches the empty string: ``/gpt2/resolve/main/config.json``, ``/api/models/gpt2``,
``/gpt2.git/info/refs``, ``/datasets/imdb/...``. The handler then sees ``ns == ""`` and builds the
hub's internal id ``/gpt2`` (see :func:`hubfs.paths.validate_repo_id`). A web-style route whose
namespace follows an optional ``datasets/``/``spaces/`` prefix no longer reads those reserved words
as a namespace, so ``/datasets/imdb/resolve/...`` is the canonical dataset, not model ``datasets/imdb``.
"""

from __future__ import annotations

import re

from hubfs.server.http import Route, Router

_NS = "(?P<ns>[^/]+)/(?P<name"  # a repo route: {ns}/{name...}, not /api/collections/{ns}/{slug}
_NS_NOT_A_TYPE = "(?P<ns>(?!datasets/|spaces/)[^/]+)/(?P<name"


def add_canonical_routes(router: Router) -> int:
    """Add a canonical twin of every namespaced repo route registered so far, as router aliases (tried
    after those routes, before any added later); returns how many."""
    twins = []
    for route in router.routes:
        pattern = route.regex.pattern
        if _NS not in pattern:
            continue
        twins.append(Route(route.methods, re.compile(pattern.replace(_NS, "(?P<ns>)(?P<name", 1)), route.handler))
        if "(?P<prefix>" in pattern:
            route.regex = re.compile(pattern.replace(_NS, _NS_NOT_A_TYPE, 1))
    router.add_aliases(twins)
    return len(twins)
