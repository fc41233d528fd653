"""Issue 8, findings 3 and 6: model-card YAML is bounded and parsed off the event loop.

A few hundred bytes of aliased YAML ("billion laughs") or megabytes of plain YAML must neither
freeze the server nor be stored and served expanded, and no listing may pay for other repos' cards.
Each test runs its own hub (``tmp_hub``): before the fix one such request froze a hub for minutes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from typing import Any

import httpx
import pytest


def laughs(levels: int) -> str:
    """A card of ``levels`` + 1 anchors, each repeating the one before 9 times: 9**(levels+1) strings.

    laughs(7) (8 anchor levels, ~300 bytes) took a hub 43 s on its event loop; laughs(6) as README.md
    stored 34 MB of cardData.
    """
    names = "abcdefghijk"
    lines = ["a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    for i in range(1, levels + 1):
        lines.append(f"{names[i]}: &{names[i]} [{','.join([f'*{names[i - 1]}'] * 9)}]")
    return "---\n" + "\n".join(lines) + "\n---\n"


def plain_yaml(size: int) -> str:
    """A valid card of about ``size`` bytes of plain (alias-free) YAML."""
    rows = [f"key{i}: [value {i}, {i}, true]" for i in range(size // 24 + 1)]
    return "---\n" + "\n".join(rows) + "\n---\n"


def raw_commit(server: Any, repo_id: str, path: str, content: str) -> httpx.Response:
    """Commit one inline file with the NDJSON commit API, as an attacker would (no client-side check)."""
    lines = [{"key": "header", "value": {"summary": f"add {path}"}},
             {"key": "file", "value": {"path": path, "content": content, "encoding": "utf-8"}}]
    return httpx.post(f"{server.endpoint}/api/models/{repo_id}/commit/main",
                      content="\n".join(json.dumps(line) for line in lines).encode(),
                      headers={"Authorization": f"Bearer {server.admin_token}",
                               "Content-Type": "application/x-ndjson"}, timeout=120)


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def fastest(tries: int, fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """The result and the shortest time of ``tries`` calls (robust against a busy test machine)."""
    runs = [timed(fn, *args, **kwargs) for _ in range(tries)]
    return runs[-1][0], min(t for _, t in runs)


@pytest.fixture
def server(tmp_hub: Any) -> Any:
    return tmp_hub()


def validate(endpoint: str, content: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{endpoint}/api/validate-yaml", json={"content": content, "repoType": "model"},
                      timeout=timeout)


def test_validate_yaml_refuses_billion_laughs_quickly(server: Any) -> None:
    assert len(laughs(7)) < 400
    response, took = timed(validate, server.endpoint, laughs(7))
    assert response.status_code == 400, response.text
    assert "expands" in response.json()["errors"][0]["message"]
    assert took < 5


def test_validate_yaml_refuses_oversized_yaml(server: Any) -> None:
    response, took = timed(validate, server.endpoint, plain_yaml(4 << 20))
    assert response.status_code == 413, response.text
    assert "larger than" in response.headers.get("X-Error-Message", "") + response.text
    assert took < 10


RECURSIVE = "---\na: &a [1, *a]\n---\n"
DEEP = "---\nx: " + "[" * 150 + "]" * 150 + "\n---\n"
MANY_ALIASES = "---\na: &a x\n" + "\n".join(f"k{i}: *a" for i in range(1500)) + "\n---\n"


@pytest.mark.parametrize("content", [RECURSIVE, DEEP, MANY_ALIASES], ids=["recursive", "deep", "aliases"])
def test_validate_yaml_refuses_recursive_deep_and_alias_heavy(server: Any, content: str) -> None:
    response = validate(server.endpoint, content)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["message"]


def test_validate_yaml_still_accepts_and_reports(server: Any) -> None:
    ok = validate(server.endpoint, "---\nlicense: mit\nbase: &b {a: 1}\nmore: {<<: *b, c: 2}\n---\n# x\n")
    assert ok.status_code == 200 and ok.json() == {"errors": [], "warnings": []}
    bad = validate(server.endpoint, "---\nkey: [unclosed\n---\n")
    assert bad.status_code == 400 and "Invalid YAML" in bad.json()["errors"][0]["message"]
    shape = httpx.post(f"{server.endpoint}/api/validate-yaml", json=[], timeout=30)
    assert shape.status_code == 400


def test_server_answers_while_evil_yaml_is_posted(server: Any) -> None:
    """Big and aliased YAML in flight must not hold up a cheap request (it froze the loop for 24-43 s)."""
    bodies = [laughs(7), plain_yaml(4 << 20), plain_yaml(400 << 10), plain_yaml(400 << 10)]
    errors: list[BaseException] = []

    def post(content: str) -> None:
        try:
            validate(server.endpoint, content, timeout=120)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    latencies = []
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            response, took = timed(httpx.get, f"{server.endpoint}/api/models?limit=1", timeout=10)
            assert response.status_code == 200
            latencies.append(took)
    finally:
        for t in threads:
            t.join(120)
    assert not errors
    assert max(latencies) < 3, latencies


def test_evil_readme_commits_but_is_not_indexed(server: Any) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.endpoint, token=server.admin_token)
    rid = f"admin/lol-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    readme = laughs(6)
    assert len(readme) < 400
    response, took = timed(raw_commit, server, rid, "README.md", readme)
    assert response.status_code == 200, response.text
    assert took < 5
    assert api.file_exists(rid, "README.md")

    info = httpx.get(f"{server.endpoint}/api/models/{rid}", timeout=60)
    assert info.status_code == 200 and len(info.content) < 64 << 10
    assert "cardData" not in info.json()
    assert api.model_info(rid).card_data is None

    listing = f"{server.endpoint}/api/models?limit=1&full=true&cardData=true&search={rid}"
    response, took = fastest(3, httpx.get, listing, timeout=60)
    assert response.status_code == 200 and len(response.content) < 64 << 10
    assert [m["id"] for m in response.json()] == [rid]
    _, took = fastest(3, lambda: list(api.list_models(limit=1)))
    assert took < 1.5

    with sqlite3.connect(server.data_dir / "hub.sqlite") as db:
        total = db.execute("SELECT COALESCE(SUM(length(card)), 0) FROM repo_cards").fetchone()[0]
    assert total < 64 << 10


def test_bounded_card_is_indexed_and_listed(server: Any) -> None:
    """A card within the limits (aliases included) is still indexed, searchable and listed."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.endpoint, token=server.admin_token)
    rid = f"admin/ok-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    card = "---\nlicense: mit\npipeline_tag: text-classification\nx: &x [a, b]\ny: *x\n---\n# ok\n"
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=rid)
    card_data = api.model_info(rid).card_data
    assert card_data is not None and card_data.to_dict()["y"] == ["a", "b"]
    plain = next(iter(api.list_models(search=rid)))
    assert plain.pipeline_tag == "text-classification" and plain.card_data is None
    full = next(iter(api.list_models(search=rid, cardData=True)))
    assert full.card_data is not None and full.card_data.license == "mit"
    assert [m.id for m in api.list_models(filter="license:mit")] == [rid]


def test_restart_reindexes_cards_stored_unbounded(tmp_hub: Any) -> None:
    """A card an older version stored expanded in ``repos.card_data`` is re-indexed at start-up."""
    from huggingface_hub import HfApi

    first = tmp_hub()
    api = HfApi(endpoint=first.endpoint, token=first.admin_token)
    rid = f"admin/old-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n", path_in_repo="README.md", repo_id=rid)
    first.stop()
    with sqlite3.connect(first.data_dir / "hub.sqlite") as db:
        db.execute("UPDATE repos SET card_data=? WHERE name=?", (json.dumps({"lol": ["lol"] * 1_000_000}),
                                                                 rid.split("/")[1]))
    second = tmp_hub(data=first.data_dir)
    with sqlite3.connect(second.data_dir / "hub.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM repos WHERE card_data IS NOT NULL").fetchone()[0] == 0
    api = HfApi(endpoint=second.endpoint, token=second.admin_token)
    card_data = api.model_info(rid).card_data
    assert card_data is not None and card_data.license == "mit"
    response, took = fastest(3, httpx.get, f"{second.endpoint}/api/models?limit=1", timeout=60)
    assert response.status_code == 200 and took < 1.5
