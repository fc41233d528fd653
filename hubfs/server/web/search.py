"""The search pages (``/``, ``/models``, ``/datasets``, ``/spaces``): the API listing's results, facets
with counts, sort and pagination, all in the Hub's own query parameters so links can be shared.

The results are exactly ``list_models``'s for the signed-in caller: :func:`api_repos.listing_page` picks
and orders them with the listing's own filters and visibility rule (private repos of others never
appear, nor count in a facet), a page at a time, with facet counts made in SQL.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from hubfs.server.api_repos import listing_page
from hubfs.server.web.pages_base import html, page, page_caller
from hubfs.server.wire import hub_of, int_param

PAGE_SIZE = 30
FACET_VALUES = 12  # values shown per facet (the selected one always shows)
SORTS = {"lastModified": "Recently updated", "likes": "Most likes", "downloads": "Most downloads",
         "createdAt": "Recently created", "name": "Name"}
FACETS = {"pipeline_tag": "Tasks", "library": "Libraries", "language": "Languages", "license": "Licenses"}
KEPT = ("search", "pipeline_tag", "library", "language", "license", "other", "author", "sort")
# Two-letter ISO 639-1 codes: a model's card gives its languages as bare tags, told apart by these.
ISO_639_1 = frozenset(
    ["aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bh", "bi", "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de", "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy", "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia", "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk", "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo", "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd", "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl", "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk", "sl", "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk", "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa", "wo", "xh", "yi", "yo", "za", "zh", "zu"])


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int
    selected: bool
    url: str


def api_query(repo_type: str, q: QueryParams) -> QueryParams:
    """The page's parameters in the API listing's vocabulary (``license=mit`` -> ``filter=license:mit``;
    for datasets ``language=fr`` -> ``filter=language:fr``, tasks are ``task_categories:``)."""
    out: list[tuple[str, str]] = []
    for key in ("search", "author"):
        out += [(key, v) for v in q.getlist(key)[:1] if v]
    sort = q.get("sort") or ""
    sort = sort if sort in SORTS else "lastModified"
    if sort != "name":
        out.append(("sort", sort))
    prefixes = ({"pipeline_tag": "task_categories:", "language": "language:", "library": "library:",
                 "license": "license:"} if repo_type == "dataset" else {"license": "license:"})
    for key in ("pipeline_tag", "library", "language", "license"):
        for value in q.getlist(key)[:1]:
            if not value:
                continue
            if key in prefixes:
                out.append(("filter", prefixes[key] + value))
            elif repo_type == "model":
                out.append((key, value))
            else:
                out.append(("filter", value))
    out += [("filter", v) for v in q.getlist("other")[:5] if v]
    return QueryParams(out)


def facet_counts(repo_type: str, tags: dict[str, int], columns: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    """facet -> value -> number of repos carrying it, from ``tags`` (tag -> how many repos carry it)
    and, for models, the indexed ``pipeline_tag`` and ``library_name`` columns' counts."""
    counts: dict[str, Counter[str]] = {k: Counter() for k in FACETS}
    if repo_type == "model":
        counts["pipeline_tag"].update(columns.get("pipeline_tag", {}))
        counts["library"].update(columns.get("library_name", {}))
    prefixed = ({"license": "license", "language": "language", "task_categories": "pipeline_tag",
                 "library": "library"} if repo_type == "dataset" else {"license": "license"})
    for tag, n in tags.items():
        key, sep, value = tag.partition(":")
        if sep:
            if key in prefixed:
                counts[prefixed[key]][value] += n
        elif repo_type != "dataset" and tag in ISO_639_1:
            counts["language"][tag] += n
    return counts


def link(path: str, q: QueryParams, **changes: str | None) -> str:
    """``path`` with the page's kept parameters, ``changes`` applied (None removes one); the page
    number is dropped unless set."""
    params = {k: q.get(k) for k in KEPT if q.get(k)}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    query = urlencode([(k, v) for k, v in params.items() if v])
    return f"{path}?{query}" if query else path


def facets(path: str, q: QueryParams, counts: dict[str, Counter[str]]) -> list[tuple[str, str, list[FacetValue]]]:
    """(param, title, values) per facet with any values: the most common first, the selected one kept."""
    out = []
    for key, title in FACETS.items():
        chosen = q.get(key)
        top = counts[key].most_common(FACET_VALUES)
        if chosen and all(v != chosen for v, _ in top):
            top.append((chosen, counts[key].get(chosen, 0)))
        values = [FacetValue(v, n, v == chosen, link(path, q, **{key: None if v == chosen else v})) for v, n in top]
        if values:
            out.append((key, title, values))
    return out


def _search(request: Request, repo_type: str, path: str, heading: str) -> Response:
    hub, caller = hub_of(request), page_caller(request)
    q = request.query_params
    wanted = int_param(q.get("p") or "0", "The page number", 1 << 20)
    query = api_query(repo_type, q)
    total, shown, tags, columns = listing_page(hub, caller, repo_type, query, wanted * PAGE_SIZE, PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    p = min(wanted, pages - 1)
    if p != wanted:  # past the end: the last page
        total, shown, tags, columns = listing_page(hub, caller, repo_type, query, p * PAGE_SIZE, PAGE_SIZE)
    counts = facet_counts(repo_type, tags, columns)
    sort = q.get("sort") or ""
    sort = sort if sort in SORTS else "lastModified"
    return html(request, "search.html", {
        "title": heading, "heading": heading, "repo_type": repo_type, "action": path, "repos": shown,
        "total": total, "facets": facets(path, q, counts),
        "sorts": [(k, label, k == sort, link(path, q, sort=k)) for k, label in SORTS.items()],
        "search": q.get("search") or "", "page": p, "pages": pages,
        "prev_url": link(path, q, p=str(p - 1)) if p > 0 else None,
        "next_url": link(path, q, p=str(p + 1)) if p + 1 < pages else None,
        "hidden": [(k, q[k]) for k in KEPT if k not in ("search", "sort") and q.get(k)] +
                  ([("sort", q["sort"])] if q.get("sort") else []),
        "clear_url": path,
    })


@page
def home(request: Request) -> Response:
    """GET /: the model search, titled as the hub's front page."""
    return _search(request, "model", "/models", "Models")


@page
def models(request: Request) -> Response:
    return _search(request, "model", "/models", "Models")


@page
def datasets(request: Request) -> Response:
    return _search(request, "dataset", "/datasets", "Datasets")


@page
def spaces(request: Request) -> Response:
    return _search(request, "space", "/spaces", "Spaces")
