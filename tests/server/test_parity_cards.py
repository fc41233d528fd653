"""Hub parity, cards: ``/api/validate-yaml`` and commits of README.md check what the Hub checks (a known
license id or ``other``, a well-formed ``model-index``, the types of the known fields) with the Hub's
messages; a new Space starts with its default README.
"""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest
from huggingface_hub import HfApi

from hubfs.server.card_rules import LICENSES, check_card

HTTP = httpx.Client(timeout=60)

GOOD_INDEX = """model-index:
- name: tiny
  results:
  - task: {type: text-classification}
    dataset: {type: imdb, name: IMDB}
    metrics:
    - {type: accuracy, value: 0.9}
"""


def _validate(hub, content: str, repo_type: str = "model") -> httpx.Response:
    return HTTP.post(f"{hub.endpoint}/api/validate-yaml", json={"content": content, "repoType": repo_type},
                     headers={"authorization": f"Bearer {hub.admin_token}"})


@pytest.mark.parametrize(("card", "message"), [
    ("license: not-a-license", '"license" must be one of ['),
    ("license: [mit, nope]", '"license" must be one of ['),
    ("pipeline_tag: [a, b]", '"pipeline_tag" must be a string'),
    ("tags: {a: 1}", '"tags" must be one of [string, array]'),
    ("base_model: ''", '"base_model" is not allowed to be empty'),
    ("model-index: {name: x}", '"model-index" must be an array'),
    ("model-index:\n- results: []", '"model-index[0].name" is required'),
    ("model-index:\n- name: x\n  results:\n  - task: {}\n    dataset: {type: d}\n    metrics: [{type: acc}]",
     '"model-index[0].results[0].task.type" is required'),
    ("model-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {type: d}\n    metrics: [{type: acc}]",
     '"model-index[0].results[0].dataset.name" is required'),
    ("model-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {type: d, name: n}\n    metrics: [{type: a}]",
     '"model-index[0].results[0].metrics[0].value" is required'),
])
def test_validate_yaml_refuses_what_the_hub_refuses(hub, card: str, message: str) -> None:
    r = _validate(hub, f"---\n{card}\n---\n# card\n")
    assert r.status_code == 400, r.text
    assert r.headers["x-error-message"] == "Invalid metadata in README.md"
    assert any(e["message"].startswith(message) for e in r.json()["errors"]), r.json()


@pytest.mark.parametrize("card", ["license: other", "license: apache-2.0", "license: [mit, cc-by-4.0]",
                                  "tags: one-tag", "language: [en, fr]", GOOD_INDEX, "custom_field: {anything: [1]}",
                                  "pipeline_tag: text-generation\nlibrary_name: transformers"])
def test_validate_yaml_accepts_valid_cards(hub, card: str) -> None:
    r = _validate(hub, f"---\n{card}\n---\n# card\n")
    assert r.status_code == 200 and r.json() == {"errors": [], "warnings": []}, r.text


def test_space_fields_are_checked_for_spaces_only(hub) -> None:
    space = "sdk: flask\ncolorFrom: mauve\npinned: 'yes'"
    r = _validate(hub, f"---\n{space}\n---\n", "space")
    assert r.status_code == 400
    messages = [e["message"] for e in r.json()["errors"]]
    assert messages == ['"pinned" must be a boolean', '"sdk" must be one of [gradio, streamlit, docker, static]',
                        '"colorFrom" must be one of [red, yellow, green, blue, indigo, purple, pink, gray]']
    assert _validate(hub, "---\nsdk: flask\ncolorFrom: mauve\n---\n", "model").status_code == 200


def test_the_official_client_refuses_a_bad_card_before_uploading(api: HfApi, repo_id: str) -> None:
    with pytest.raises(ValueError, match='Invalid metadata in README.md.\n- "license" must be one of'):
        api.upload_file(path_or_fileobj=b"---\nlicense: weird\n---\n", path_in_repo="README.md", repo_id=repo_id)
    api.upload_file(path_or_fileobj=f"---\nlicense: other\n{GOOD_INDEX}---\n".encode(), path_in_repo="README.md",
                    repo_id=repo_id)
    card = api.model_info(repo_id).card_data
    assert card is not None and card.license == "other" and card.eval_results[0].metric_value == 0.9


def test_a_raw_commit_of_a_bad_card_is_refused_and_changes_nothing(hub, api: HfApi, repo_id: str) -> None:
    before = api.model_info(repo_id).sha
    lines = [{"key": "header", "value": {"summary": "bad card", "description": ""}},
             {"key": "file", "value": {"path": "README.md", "encoding": "base64",
                                       "content": base64.b64encode(b"---\nlicense: nope\n---\n").decode()}}]
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main", content="\n".join(map(json.dumps, lines)),
                  headers={"content-type": "application/x-ndjson", "authorization": f"Bearer {hub.admin_token}"})
    assert r.status_code == 400 and r.headers["x-error-code"] == "BadRequest"
    assert r.json()["error"].startswith('Invalid metadata in README.md.\n- "license" must be one of [')
    assert api.model_info(repo_id).sha == before
    # a card the bounded parser refuses (malformed YAML) is committed and simply not indexed, as before
    lines[1]["value"]["content"] = base64.b64encode(b"---\nkey: [unclosed\n---\n").decode()
    r = HTTP.post(f"{hub.endpoint}/api/models/{repo_id}/commit/main", content="\n".join(map(json.dumps, lines)),
                  headers={"content-type": "application/x-ndjson", "authorization": f"Bearer {hub.admin_token}"})
    assert r.status_code == 200 and api.model_info(repo_id).card_data is None


def test_a_new_space_gets_its_default_readme(api: HfApi) -> None:
    rid = f"admin/My_space-{uuid.uuid4().hex[:6]}"
    api.create_repo(rid, repo_type="space", space_sdk="streamlit")
    assert api.list_repo_files(rid, repo_type="space") == [".gitattributes", "README.md"]
    info = api.space_info(rid)
    assert info.sdk == "streamlit" and info.card_data is not None
    assert info.card_data.title == f"My Space {rid.rsplit('-', 1)[1].capitalize()}"
    assert info.card_data.pinned is False and info.card_data.sdk == "streamlit"
    api.create_repo(f"admin/m-{uuid.uuid4().hex[:6]}")  # models and datasets start with .gitattributes only


def test_check_card_rules_directly() -> None:
    assert check_card("model", None) == [] and check_card("model", {"license": "other"}) == []
    assert "other" in LICENSES and "apache-2.0" in LICENSES
    assert check_card("dataset", {"license": ["cc0-1.0", "mit"], "task_categories": ["x"]}) == []
