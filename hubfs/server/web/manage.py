"""The web pages that change things: sign in and out, sign-up, create, upload, edit the card,
settings, gated access and tokens. ``register`` adds their routes (before the browsing pages: the
fixed paths ``/login``, ``/new``, ``/settings/tokens`` would otherwise read as profiles or repos)."""

from __future__ import annotations

from hubfs.server.http import Router
from hubfs.server.web import auth, forms_repo, forms_tokens, upload


def register(router: Router) -> None:
    for family in (auth, forms_tokens, forms_repo, upload):
        family.register(router)
