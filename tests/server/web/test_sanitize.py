"""Unit tests of the card renderer's sanitizer rules and the templates' helpers (no server)."""

from __future__ import annotations

from collections import Counter

import pytest
from starlette.datastructures import QueryParams

from hubfs.server.web.pages_base import Site, ago, human_size, repo_base, url_path
from hubfs.server.web.render import card_body, chips, markdown_engine, render_markdown, repo_linker, sanitize
from hubfs.server.web.search import api_query, facet_counts, facets, link

MD = markdown_engine()


@pytest.mark.parametrize("dirty", [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src="x" onerror="alert(1)">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href=" JaVaScRiPt:alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<svg onload="alert(1)"><script>alert(1)</script></svg>',
    '<math><mtext><script>alert(1)</script></mtext></math>',
    '<iframe src="https://evil.example"></iframe>',
    '<object data="x.swf"></object><embed src="x.swf">',
    '<div style="background:url(javascript:alert(1))" onclick="alert(1)">x</div>',
    '<form action="/logout" method="post"><input type="submit"></form>',
    '<style>body{display:none}</style>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="https://evil.example/">',
    '<details open ontoggle="alert(1)">x</details>',
    '<img src="javascript:alert(1)">',
    "[x](javascript:alert(1))",
    "![x](javascript:alert(1))",
    "<a href='vbscript:msgbox(1)'>x</a>",
])
def test_dangerous_markup_comes_out_inert(dirty: str) -> None:
    out = render_markdown(MD, dirty).lower()
    for bad in ("<script", "<svg", "<math", "<iframe", "<object", "<embed", "<form", "<style", "<meta", "<base",
                "onerror", "onload", "onclick", "ontoggle", "style=", 'href="javascript', 'src="javascript',
                "data:text", "vbscript:"):
        assert bad not in out, (dirty, out)


def test_safe_markup_is_kept() -> None:
    out = render_markdown(MD, "# Title\n\n**bold** `code`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                              "[site](https://example.com) ~~gone~~\n\n<details><summary>More</summary>x</details>")
    assert "<h1>Title</h1>" in out and "<strong>bold</strong>" in out and "<code>code</code>" in out
    assert "<table>" in out and "<td>1</td>" in out and "<s>gone</s>" in out
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">site</a>' in out
    assert "<details><summary>More</summary>" in out


def test_relative_links_point_into_the_repo() -> None:
    link = repo_linker("/datasets/ns/name", "v1.0", "docs")
    out = sanitize('<img src="img/a b.png"><a href="guide.md#top">g</a><a href="#x">x</a>'
                   '<a href="/models">m</a><a href="../../../etc">e</a>', link)
    assert 'src="/datasets/ns/name/resolve/v1.0/docs/img/a%20b.png"' in out
    assert 'href="/datasets/ns/name/blob/v1.0/docs/guide.md#top"' in out
    assert 'href="#x"' in out and 'href="/models"' in out
    assert "etc" not in out.split(">e<")[0].rsplit("<a", 1)[1]  # a link out of the repo is dropped
    assert repo_linker("/ns/n", "refs/pr/1")("img", "a.png") == "/ns/n/resolve/refs%2Fpr%2F1/a.png"


def test_card_body_drops_front_matter_only() -> None:
    assert card_body("---\nlicense: mit\n---\n# Hi\n") == "# Hi\n"
    assert card_body("# No metadata\n") == "# No metadata\n"
    assert card_body("---\nunclosed: [\n") == "---\nunclosed: [\n"  # shown as text, not lost
    assert card_body("\ufeff---\na: 1\n---\nbody") == "body"


def test_render_is_bounded() -> None:
    out = render_markdown(MD, "x" * (2 << 20))
    assert len(out) < (1 << 20)


def test_chips_link_to_the_filtered_search() -> None:
    card = {"pipeline_tag": "fill-mask", "library_name": "transformers", "language": ["fr", "en"],
            "license": "mit", "datasets": ["a/b"], "tags": ["x y", {"bad": 1}]}
    got = chips("model", card, "/models")
    assert ("task", "fill-mask", "/models?pipeline_tag=fill-mask") in got
    assert ("language", "en", "/models?language=en") in got
    assert ("dataset", "a/b", "/models?other=dataset%3Aa%2Fb") in got
    assert ("tag", "x y", "/models?other=x%20y") in got
    assert len(got) == 7
    assert chips("dataset", {"task_categories": ["translation"]}, "/datasets") == [
        ("task", "translation", "/datasets?pipeline_tag=translation")]
    assert chips("model", None, "/models") == []


def test_human_size_and_ago() -> None:
    assert human_size(1) == "1 Byte" and human_size(999) == "999 Bytes"
    assert human_size(1500) == "1.5 kB" and human_size(200_000) == "200 kB" and human_size(3_400_000_000) == "3.4 GB"
    assert ago(1000.0, now=1030.0) == "just now"
    assert ago(0.0) == "" and ago(1000.0, now=1000.0 + 3 * 86400) == "3 days ago"
    assert ago(1000.0, now=1000.0 + 61) == "1 minute ago"
    assert ago(86400.0, now=86400.0 * 800) == "1970-01-02"


def test_paths_in_urls() -> None:
    assert repo_base("model", "ns/a b") == "/ns/a%20b"
    assert repo_base("dataset", "imdb") == "/datasets/imdb"
    assert repo_base("space", "ns/app") == "/spaces/ns/app"
    assert url_path("dir/a#b?.txt") == "dir/a%23b%3F.txt"


def test_templates_escape_by_default() -> None:
    site = Site()
    out = site.env.from_string("{{ x }}|{{ x|urlpath }}").render(x="<b>&\"'/")
    assert out.startswith("&lt;b&gt;&amp;&#34;&#39;/|")


def test_search_params_speak_the_api_vocabulary() -> None:
    q = QueryParams("pipeline_tag=fill-mask&language=fr&library=transformers&license=mit&search=bert&other=t")
    assert api_query("model", q).multi_items() == [
        ("search", "bert"), ("sort", "lastModified"), ("pipeline_tag", "fill-mask"), ("library", "transformers"),
        ("language", "fr"), ("filter", "license:mit"), ("filter", "t")]
    assert api_query("dataset", q).getlist("filter") == [
        "task_categories:fill-mask", "library:transformers", "language:fr", "license:mit", "t"]
    assert "sort" not in api_query("model", QueryParams("sort=name"))


def test_facet_counts_and_links() -> None:
    tags = {"fill-mask": 1, "fr": 2, "en": 1, "license:mit": 2, "bert": 1, "dataset:x": 1}
    columns = {"pipeline_tag": Counter({"fill-mask": 1, "text-generation": 1}), "library_name": Counter(transformers=1)}
    counts = facet_counts("model", tags, columns)
    assert counts["language"] == {"fr": 2, "en": 1} and counts["license"] == {"mit": 2}
    assert counts["pipeline_tag"] == {"fill-mask": 1, "text-generation": 1} and counts["library"] == {"transformers": 1}
    q = QueryParams("search=b&language=fr&p=3")
    assert link("/models", q, language=None) == "/models?search=b"
    assert link("/models", q, sort="name") == "/models?search=b&language=fr&sort=name"
    shown = {key: values for key, _, values in facets("/models", q, counts)}
    fr = next(v for v in shown["language"] if v.value == "fr")
    assert fr.selected and fr.url == "/models?search=b"
    ds = facet_counts("dataset", {"language:de": 1, "task_categories:translation": 1, "fr": 1}, {})
    assert ds["language"] == {"de": 1} and ds["pipeline_tag"] == {"translation": 1}
