"""The web pages over HTTP against the session's real hub: search with facets, the repo page, tree,
blob, history, commit and discussions, profiles; private repos invisible; untrusted content inert;
security headers on every page; the API, resolve and git routes still answer as before."""

from __future__ import annotations

import html
import io
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubfs.server.web.search import PAGE_SIZE


def get(hub: Any, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{hub.endpoint}{path}", headers=headers, timeout=30, **kw)


def names_listed(page: str) -> list[str]:
    return re.findall(r'class="repo-name" href="[^"]*">([^<]+)</a>', page)


def same_page(a: str, b: str) -> bool:
    """Equal but for per-response values (CSRF tokens)."""
    csrf = re.compile(r'name="csrf_token" value="[^"]*"')
    return csrf.sub("", a) == csrf.sub("", b)


def facet_values(page: str, facet: str) -> dict[str, int]:
    block = page.split(f'data-facet="{facet}"', 1)
    if len(block) < 2:
        return {}
    section = block[1].split("</section>", 1)[0]
    return {html.unescape(v): int(n) for v, n in
            re.findall(r'data-value="([^"]*)"[^>]*>[^<]*<span class="count">(\d+)</span>', section)}


@pytest.fixture(scope="module")
def catalog(hub: Any, users: dict[str, str]) -> dict[str, Any]:
    """Four public models with different cards, one private model of alice's org and one private
    dataset, all with a unique marker in their names and tags."""
    from huggingface_hub import HfApi

    mark = uuid.uuid4().hex[:6]
    admin = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    alice = HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    cards = {
        f"admin/bert-fr-{mark}": ("fill-mask", ["fr"], "transformers", "mit"),
        f"admin/bert-en-{mark}": ("fill-mask", ["en"], "transformers", "apache-2.0"),
        f"admin/gpt-fr-{mark}": ("text-generation", ["fr"], "transformers", "mit"),
        f"admin/tim-fr-{mark}": ("image-classification", ["fr"], "timm", "mit"),
    }
    for rid, (task, langs, lib, lic) in cards.items():
        admin.create_repo(rid)
        text = (f"---\npipeline_tag: {task}\nlanguage: {langs}\nlibrary_name: {lib}\nlicense: {lic}\n"
                f"tags: [m{mark}]\n---\n# {rid}\n")
        admin.upload_file(path_or_fileobj=io.BytesIO(text.encode()), path_in_repo="README.md", repo_id=rid)
    secret = f"{users['org']}/secret-{mark}"
    alice.create_repo(secret, private=True)
    alice.upload_file(path_or_fileobj=io.BytesIO(
        f"---\npipeline_tag: fill-mask\nlanguage: [fr]\nlicense: mit\nlibrary_name: secretlib{mark}\n"
        f"tags: [m{mark}, secret{mark}]\n---\n# hidden\n".encode()), path_in_repo="README.md", repo_id=secret)
    secret_data = f"{users['alice']}/secret-data-{mark}"
    alice.create_repo(secret_data, repo_type="dataset", private=True)
    return {"mark": mark, "public": sorted(cards), "secret": secret, "secret_data": secret_data}


def test_search_facets_match_the_api_listing(hub: Any, api: Any, catalog: dict[str, Any]) -> None:
    mark = catalog["mark"]
    page = get(hub, f"/models?search={mark}")
    assert page.status_code == 200
    assert sorted(names_listed(page.text)) == catalog["public"]
    assert facet_values(page.text, "pipeline_tag") == {"fill-mask": 2, "text-generation": 1,
                                                         "image-classification": 1}
    assert facet_values(page.text, "library") == {"transformers": 3, "timm": 1}
    assert facet_values(page.text, "language") == {"fr": 3, "en": 1}
    assert facet_values(page.text, "license") == {"mit": 3, "apache-2.0": 1}
    # Every facet narrows the results; together they are the shareable link.
    one = get(hub, f"/models?pipeline_tag=fill-mask&language=fr&library=transformers&license=mit"
                   f"&search={mark}&sort=lastModified")
    assert names_listed(one.text) == [f"admin/bert-fr-{mark}"]
    for query, expected in (("pipeline_tag=fill-mask", {"bert-fr", "bert-en"}), ("language=en", {"bert-en"}),
                            ("library=timm", {"tim-fr"}), ("license=apache-2.0", {"bert-en"}),
                            (f"other=m{mark}", {"bert-fr", "bert-en", "gpt-fr", "tim-fr"})):
        listed = names_listed(get(hub, f"/models?search={mark}&{query}").text)
        assert {n.split("/")[1].rsplit("-", 1)[0] for n in listed} == expected, query
    # The same results, in the same order, as the official client's list_models.
    for sort in ("lastModified", "name"):
        via_api = [m.id for m in api.list_models(search=mark, sort=sort if sort != "name" else None)]
        assert names_listed(get(hub, f"/models?search={mark}&sort={sort}").text) == via_api
    # Facet links keep the other parameters and toggle their own.
    assert f'href="/models?search={mark}&amp;pipeline_tag=fill-mask"' in page.text
    selected = get(hub, f"/models?search={mark}&pipeline_tag=fill-mask").text
    assert 'class="chip selected"' in selected and f'href="/models?search={mark}"' in selected


def test_search_pagination_and_bad_page(hub: Any) -> None:
    page = get(hub, "/models?p=999999")
    assert page.status_code == 200 and "Page " in page.text
    assert get(hub, "/models?p=abc").status_code == 400
    assert PAGE_SIZE == 30


def test_home_and_dataset_and_space_search(hub: Any, api: Any) -> None:
    mark = uuid.uuid4().hex[:6]
    api.create_repo(f"admin/ds-{mark}", repo_type="dataset")
    api.upload_file(path_or_fileobj=io.BytesIO(b"---\nlanguage: [de]\nlicense: cc-by-4.0\ntask_categories: "
                                               b"[translation]\n---\n# d\n"), path_in_repo="README.md",
                    repo_id=f"admin/ds-{mark}", repo_type="dataset")
    api.create_repo(f"admin/sp-{mark}", repo_type="space", space_sdk="static")
    home = get(hub, "/")
    assert home.status_code == 200 and "<h1>Models" in home.text
    ds = get(hub, f"/datasets?search={mark}&language=de&license=cc-by-4.0&pipeline_tag=translation")
    assert names_listed(ds.text) == [f"admin/ds-{mark}"]
    assert facet_values(ds.text, "language") == {"de": 1}
    assert f'href="/datasets/admin/ds-{mark}"' in ds.text
    sp = get(hub, f"/spaces?search={mark}")
    assert names_listed(sp.text) == [f"admin/sp-{mark}"]


def test_repo_page_card_chips_and_usage(hub: Any, web_repo: Any) -> None:
    page = get(hub, f"/{web_repo.repo_id}")
    assert page.status_code == 200
    text = page.text
    assert "<h1>Web test model</h1>" in text and "<strong>bold</strong>" in text
    for chip in ("/models?pipeline_tag=fill-mask", "/models?library=transformers", "/models?language=fr",
                 "/models?license=mit", f"/models?other={web_repo.tag}", "/models?other=dataset%3Aadmin%2Fsome-data"):
        assert f'href="{chip}"' in text, chip
    # Relative card links point into the repo: images through resolve, links to the blob view.
    assert f'src="/{web_repo.repo_id}/resolve/main/images/logo.png"' in text
    assert f'href="/{web_repo.repo_id}/blob/main/config.json"' in text
    assert f"git clone hf://{web_repo.repo_id}" in text
    assert f"hubfs mount {web_repo.repo_id}" in text
    assert f'from_pretrained(&#34;{web_repo.repo_id}&#34;)' in text
    assert ">main</a>" in text  # the branch selector


def test_untrusted_card_is_inert(hub: Any, web_repo: Any) -> None:
    text = get(hub, f"/{web_repo.repo_id}").text
    card = text.split('<div class="markdown">', 1)[1].split("</article>", 1)[0]
    assert "<script" not in text.lower()  # no page has inline script; the card brings none
    for bad in ('href="javascript', 'src="javascript', "onerror", "onload", "onclick", "<svg", "<iframe", "<form",
                "style=", "card-script", "svg-script"):
        assert bad not in card.lower(), bad
    assert "js link" in card and "md-js" in card  # the text stays, the links go


def test_tree_pages_sizes_lfs_and_folders(hub: Any, web_repo: Any) -> None:
    rid = web_repo.repo_id
    root = get(hub, f"/{rid}/tree/main")
    assert root.status_code == 200
    rows = re.findall(r'<tr class="(dir|file)">\s*<td><a href="([^"]+)">([^<]+)</a>', root.text)
    names = [n.replace("📁 ", "") for _, _, n in rows]
    assert names[:2] == ["data", "images"]  # folders first
    assert {"README.md", "config.json", "page.html", "model.safetensors", ".gitattributes"} <= set(names)
    weights = root.text.split(">model.safetensors</a>", 1)[1].split("</tr>", 1)[0]
    assert 'class="badge lfs"' in weights and "200 kB" in weights
    sub = get(hub, f"/{rid}/tree/main/data")
    assert sub.text.count('<tr class="file">') == 25 and 'href="/' + rid + '/tree/main">..</a>' in sub.text
    # A file path under tree/ opens its blob view; a missing one is a 404 page.
    assert get(hub, f"/{rid}/tree/main/config.json").status_code == 302
    missing = get(hub, f"/{rid}/tree/main/nope")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")


def test_tree_paginates_large_folders(hub: Any, api: Any) -> None:
    from huggingface_hub import CommitOperationAdd

    rid = f"admin/many-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    api.create_commit(rid, [CommitOperationAdd(f"f{i:04d}.txt", io.BytesIO(b"x")) for i in range(450)],
                      commit_message="many")
    first = get(hub, f"/{rid}/tree/main")
    assert first.text.count('<tr class="file">') == 200 and "of 451" in first.text
    last = get(hub, f"/{rid}/tree/main?p=2")
    assert last.text.count('<tr class="file">') == 51 and 'rel="prev"' in last.text


def test_blob_views_text_image_html_and_lfs(hub: Any, web_repo: Any) -> None:
    rid = web_repo.repo_id
    config = get(hub, f"/{rid}/blob/main/config.json").text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in config and "<b>not bold</b>" not in config
    page = get(hub, f"/{rid}/blob/main/page.html").text
    assert "&lt;script&gt;alert(" in page and "<script>alert(" not in page
    image = get(hub, f"/{rid}/blob/main/images/logo.png").text
    assert re.search(rf'<img src="/{rid}/resolve/[0-9a-f]{{40}}/images/logo.png"', image)
    lfs = get(hub, f"/{rid}/blob/main/model.safetensors").text
    assert "Git LFS" in lfs and f'href="/{rid}/resolve/main/model.safetensors?download=true"' in lfs
    # The download link serves the exact bytes, as an attachment, never sniffed.
    dl = get(hub, f"/{rid}/resolve/main/model.safetensors?download=true", follow_redirects=True)
    assert dl.content == web_repo.files["model.safetensors"]
    assert dl.headers["content-disposition"].startswith("attachment")
    raw = get(hub, f"/{rid}/resolve/main/page.html")
    assert raw.headers["x-content-type-options"] == "nosniff" and "sandbox" in raw.headers["content-security-policy"]
    assert get(hub, f"/{rid}/blob/main").status_code == 404
    assert get(hub, f"/{rid}/blob/main/data").status_code == 302


def test_history_and_commit_pages(hub: Any, web_repo: Any) -> None:
    rid = web_repo.repo_id
    history = get(hub, f"/{rid}/commits/main")
    assert history.status_code == 200
    titles = re.findall(r'class="title" href="/[^"]+/commit/([0-9a-f]{40})">([^<]+)</a>', history.text)
    assert [t for _, t in titles] == ["Add the card, weights and data", "Add config and logo", "initial commit"]
    commit = get(hub, f"/{rid}/commit/{titles[0][0]}").text
    changed = re.findall(r'<span class="badge (\w+)">\w+</span>\s*(?:<a href="[^"]+">)?([^<\n]+)', commit)
    assert {p for _, p in changed} == set(web_repo.files) - {"config.json", "images/logo.png"}
    assert all(kind == "add" for kind, _ in changed)
    short = get(hub, f"/{rid}/commit/{titles[1][0][:10]}")
    assert short.status_code == 200 and "Add config and logo" in short.text
    assert get(hub, f"/{rid}/commit/{'0' * 40}").status_code == 404


def test_discussion_pages(hub: Any, api: Any, web_repo: Any) -> None:
    d = api.create_discussion(web_repo.repo_id, title="A <b>question</b>",
                              description="Hello <img src=x onerror=alert(1)> **there**")
    listing = get(hub, f"/{web_repo.repo_id}/discussions").text
    assert f"#{d.num} A &lt;b&gt;question&lt;/b&gt;" in listing
    one = get(hub, f"/{web_repo.repo_id}/discussions/{d.num}").text
    assert "<strong>there</strong>" in one and "onerror" not in one
    assert get(hub, f"/{web_repo.repo_id}/discussions/99999").status_code == 404


def test_private_repos_invisible_everywhere(hub: Any, users: dict[str, str], catalog: dict[str, Any]) -> None:
    mark, secret = catalog["mark"], catalog["secret"]
    secret_name = secret.split("/")[1]
    for who, token in (("anonymous", None), ("bob", users["bob_token"])):
        search = get(hub, f"/models?search={mark}", token).text
        assert secret_name not in search and f"secretlib{mark}" not in search and f"secret{mark}" not in search, who
        assert facet_values(search, "pipeline_tag")["fill-mask"] == 2, who
        for profile in (f"/{users['org']}", f"/{users['alice']}"):
            page = get(hub, profile, token)
            assert page.status_code == 200 and "secret-" not in page.text, (who, profile)
        assert get(hub, f"/datasets?search={mark}", token).text.count("secret-data") == 0
        # The repo, its files and history read exactly like a repo that does not exist.
        for sub in ("", "/tree/main", "/blob/main/README.md", "/commits/main", "/discussions"):
            hidden = get(hub, f"/{secret}{sub}", token)
            absent = get(hub, f"/{users['org']}/nothing-{mark}{sub}", token)
            assert hidden.status_code == absent.status_code == 404, (who, sub)
            assert same_page(hidden.text.replace(secret, "X"), absent.text.replace(f"{users['org']}/nothing-{mark}", "X"))
    # Members of the org see it, in search, facets and on the org's profile.
    alice = get(hub, f"/models?search={mark}", users["alice_token"]).text
    assert secret in names_listed(alice) and facet_values(alice, "library")[f"secretlib{mark}"] == 1
    assert secret_name in get(hub, f"/{users['org']}", users["alice_token"]).text
    assert get(hub, f"/{secret}", users["alice_token"]).status_code == 200


def test_profiles_list_repos_and_members(hub: Any, users: dict[str, str], web_repo: Any) -> None:
    admin = get(hub, "/admin")
    assert admin.status_code == 200 and web_repo.repo_id in admin.text
    org = get(hub, f"/{users['org']}").text
    assert "Members" in org and f'href="/{users["alice"]}"' in org
    user = get(hub, f"/{users['alice']}").text
    assert f'href="/{users["org"]}"' in user
    assert get(hub, f"/nobody-{uuid.uuid4().hex[:6]}").status_code == 404


def test_security_headers_on_every_page(hub: Any, web_repo: Any) -> None:
    rid = web_repo.repo_id
    for path in ("/", "/models", f"/{rid}", f"/{rid}/tree/main", f"/{rid}/blob/main/config.json",
                 f"/{rid}/commits/main", "/admin", "/nobody-at-all-here", "/static/style.css"):
        r = get(hub, path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"], path
        assert re.fullmatch(r"app;dur=[\d.]+", r.headers["server-timing"]), path


def test_api_git_and_resolve_routes_unchanged(hub: Any, api: Any, web_repo: Any, tmp_path: Any) -> None:
    from huggingface_hub import hf_hub_download

    rid = web_repo.repo_id
    assert api.model_info(rid).id == rid
    assert get(hub, "/api/models?limit=1").headers["content-type"].startswith("application/json")
    path = hf_hub_download(rid, "config.json", cache_dir=tmp_path, endpoint=hub.endpoint, token=hub.admin_token)
    assert Path(path).read_bytes() == web_repo.files["config.json"]
    refs = get(hub, f"/{rid}.git/info/refs?service=git-upload-pack")
    assert refs.status_code == 200 and b"refs/heads/main" in refs.content
    assert get(hub, "/api/nothing/here").status_code == 501
    assert get(hub, f"/{rid}").headers["content-type"].startswith("text/html")


def test_canonical_and_moved_repos(hub: Any, api: Any) -> None:
    mark = uuid.uuid4().hex[:8]
    for name, kind in ((f"canon-{mark}", "model"), (f"canon-ds-{mark}", "dataset")):  # no namespace, like gpt2
        made = httpx.post(f"{hub.endpoint}/api/repos/create", json={"name": name, "type": kind},
                          headers={"Authorization": f"Bearer {hub.admin_token}"})
        assert made.status_code == 200, made.text
    page = get(hub, f"/canon-{mark}")
    assert page.status_code == 200 and f'href="/canon-{mark}/tree/main"' in page.text
    assert get(hub, f"/canon-{mark}/tree/main").status_code == 200
    assert get(hub, f"/canon-{mark}/blob/main/.gitattributes").status_code == 200
    assert get(hub, f"/datasets/canon-ds-{mark}").status_code == 200
    assert get(hub, f"/datasets/canon-ds-{mark}/commits/main").status_code == 200
    api.create_repo(f"admin/old-{mark}")
    api.move_repo(f"admin/old-{mark}", f"admin/new-{mark}")
    moved = get(hub, f"/admin/old-{mark}/tree/main")
    assert moved.status_code == 307 and moved.headers["location"] == f"/admin/new-{mark}/tree/main"


def test_gated_repo_shows_its_card_but_not_its_files(hub: Any, api: Any, users: dict[str, str]) -> None:
    rid = f"admin/gated-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    api.upload_file(path_or_fileobj=io.BytesIO(b"# Gated card\n"), path_in_repo="README.md", repo_id=rid)
    api.upload_file(path_or_fileobj=io.BytesIO(b"secret-content-123\n"), path_in_repo="notes.txt", repo_id=rid)
    api.update_repo_settings(rid, gated="auto")
    for token in (None, users["bob_token"]):
        card = get(hub, f"/{rid}", token).text
        assert "Gated card" in card and f'href="/{rid}/access"' in card
        blob = get(hub, f"/{rid}/blob/main/notes.txt", token)
        assert blob.status_code == 200 and "secret-content-123" not in blob.text and "gated" in blob.text
    assert "secret-content-123" in get(hub, f"/{rid}/blob/main/notes.txt", hub.admin_token).text
