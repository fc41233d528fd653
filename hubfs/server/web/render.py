"""Model cards and comments as safe HTML: markdown-it-py for the markdown, nh3 (ammonia) for the rules.

Untrusted text goes in, inert HTML comes out: no ``<script>``, ``<style>``, ``<svg>``, ``<iframe>`` or
form elements, no event-handler or ``style`` attributes, and only ``http``, ``https`` and ``mailto``
links (``javascript:`` and ``data:`` links are dropped). Relative links and images in a card point
into the repo itself, at the revision shown (images through ``/resolve``, links to the blob view).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt

from hubfs.server.cards import front_matter_source

MAX_MARKDOWN_CHARS = 512 * 1024
"""Characters of a card or comment rendered; the rest is cut (a long card is not a reason to be slow)."""

TAGS = frozenset(nh3.ALLOWED_TAGS - {"map", "area"} | {"input"})
CLEAN_CONTENT_TAGS = frozenset({"script", "style", "svg", "math", "iframe", "object", "embed", "template",
                                "noscript", "textarea", "select", "title"})
ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "img": {"alt", "src", "height", "width", "title", "align"},
    "a": {"href", "hreflang", "title"},
    "input": set(),  # task-list checkboxes lose every attribute: a bare, inert box
    "code": set(),
    "p": {"align"},
    "div": {"align"},
    "h1": {"align"},
    "th": {"align", "colspan", "rowspan", "scope"},
    "td": {"align", "colspan", "rowspan"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_engine() -> MarkdownIt:
    """CommonMark with GitHub's tables and strikethrough; raw HTML passes to the sanitizer."""
    return MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"])


def card_body(text: str) -> str:
    """A README without its YAML front matter (a malformed or huge one is left in, as text)."""
    stripped = text.lstrip("\ufeff")
    try:
        source = front_matter_source(stripped)
    except Exception:  # noqa: BLE001 - a card whose metadata does not parse still shows its text
        return stripped
    if source is None:
        return stripped
    lines = stripped.splitlines(keepends=True)
    closing = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    return "".join(lines[closing + 1:]) if closing is not None else stripped


def sanitize(html: str, link: Callable[[str, str], str | None] | None = None) -> str:
    """``html`` with only the allowed tags, attributes and URL schemes left.

    ``link(tag, url)`` rewrites relative URLs (``a``'s href, ``img``'s src); None drops the attribute.
    """

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        if attr in ("href", "src", "cite"):
            value = value.strip()
            if _SCHEME.match(value):
                scheme = value.split(":", 1)[0].lower()
                return value if scheme in URL_SCHEMES else None
            if value.startswith("//"):
                return value
            return link(tag, value) if link is not None else value
        return value

    return nh3.clean(html, tags=set(TAGS), clean_content_tags=set(CLEAN_CONTENT_TAGS), attributes=ATTRIBUTES,
                     attribute_filter=attribute_filter, url_schemes=set(URL_SCHEMES),
                     link_rel="noopener noreferrer nofollow", strip_comments=True)


def render_markdown(md: MarkdownIt, text: str, link: Callable[[str, str], str | None] | None = None) -> str:
    """Markdown (with raw HTML) -> sanitized HTML; at most ``MAX_MARKDOWN_CHARS`` characters are read."""
    return sanitize(md.render(text[:MAX_MARKDOWN_CHARS]), link)


def repo_linker(base: str, revision: str, folder: str = "") -> Callable[[str, str], str | None]:
    """Relative URLs of a card at ``base`` (``/ns/name``, ``/datasets/ns/name``) shown at ``revision``:
    images load from ``/resolve``, links open the blob view; ``#anchors`` and absolute paths stay."""
    rev = quote(revision, safe="")

    def link(tag: str, url: str) -> str | None:
        if not url or url.startswith(("#", "/", "?")):
            return url
        path, _, anchor = url.partition("#")
        path = path.split("?", 1)[0]
        joined = posixpath.normpath(posixpath.join(folder, path))
        if joined.startswith("..") or joined == ".":
            return None
        kind = "resolve" if tag == "img" else "blob"
        return f"{base}/{kind}/{rev}/{quote(joined)}" + (f"#{anchor}" if anchor else "")

    return link


def chips(repo_type: str, card: dict[str, Any] | None, base: str) -> list[tuple[str, str, str]]:
    """(kind, label, search URL) for the card's pipeline_tag, library, languages, license, datasets and
    tags: each links to the search filtered by it (the Hub's own query parameters)."""
    if not card:
        return []
    out: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()

    def add(kind: str, value: Any, param: str, prefix: str = "") -> None:
        for v in value if isinstance(value, list) else [value]:
            if v is None or isinstance(v, (dict, list)):
                continue
            label = str(v)[:100]
            if not label or (kind, label) in seen:
                continue
            seen.add((kind, label))
            out.append((kind, label, f"{base}?{param}={quote(prefix + label, safe='')}"))

    task_key = "task_categories" if repo_type == "dataset" else "pipeline_tag"
    add("task", card.get(task_key), "pipeline_tag")
    add("library", card.get("library_name"), "library")
    add("language", card.get("language"), "language")
    add("license", card.get("license"), "license")
    if repo_type == "model":
        add("dataset", card.get("datasets"), "other", "dataset:")
    add("tag", card.get("tags"), "other")
    return out[:60]
