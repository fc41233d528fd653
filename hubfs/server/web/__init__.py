"""The embedded hub's web interface: server-rendered pages (Jinja2, autoescaped), no JavaScript build.

``register(router)`` adds the page routes after every API, git and resolve route (so none is
shadowed); the app state carries a :class:`Site` under ``hubfs.web``. Page routes, in order:
``/``, ``/models``, ``/datasets``, ``/spaces``, ``/static/NAME``, then per repo type (datasets,
spaces, models; namespaced ``ns/name`` before canonical ``name``) the repo page, ``tree``,
``blob``, ``commits``, ``commit`` and ``discussions``, and last ``/NAME`` (a canonical model or a
profile).
"""

from __future__ import annotations

from functools import partial

from hubfs.server.http import Router
from hubfs.server.web import manage, pages_profile, pages_repo, search
from hubfs.server.web.pages_base import Site, static

__all__ = ["Site", "register"]


PAGES = (("", pages_repo.repo_page), ("/tree/{rest_raw:path}", pages_repo.tree_page),
         ("/blob/{rest_raw:path}", pages_repo.blob_page), ("/commits/{rev:path}", pages_repo.commits_page),
         ("/commit/{sha}", pages_repo.commit_page), ("/discussions", pages_repo.discussions_page),
         ("/discussions/{num:int}", pages_repo.discussion_page))


def register(router: Router) -> None:
    """Add the page routes (after the API's: call it last but for catch-alls)."""
    # The sign-in and form routes (sign in/out, new repo, upload, settings, tokens) go first, here.
    manage.register(router)
    router.add(["GET"], "/", search.home)
    router.add(["GET"], "/models", search.models)
    router.add(["GET"], "/datasets", search.datasets)
    router.add(["GET"], "/spaces", search.spaces)
    router.add(["GET"], "/static/{name}", static)
    for prefix, t in (("/datasets/", "datasets"), ("/spaces/", "spaces"), ("/", "models")):
        for suffix, handler in PAGES:
            router.add(["GET"], prefix + "{ns}/{name}" + suffix, partial(handler, t=t))
        for suffix, handler in PAGES:
            if prefix != "/" or suffix:  # /NAME itself: a canonical model or a profile, below
                router.add(["GET"], prefix + "{name}" + suffix, partial(handler, t=t, ns=""))
    router.add(["GET"], "/{name}", pages_profile.profile_page)
