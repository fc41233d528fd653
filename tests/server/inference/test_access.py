"""Inference follows the download rules: a private model is invisible to others (404; 401 anonymous), a
gated one runs only for members and granted users, and nothing of either shows in ``/v1/models``."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import HfApi, InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from .conftest import model_url, upload

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def people(inf_hub) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {name: inf_hub.add_user(name) for name in ("acc-owner", "acc-eve", "acc-gina")}


def status_of(inf_hub, repo_id: str, token: str | None, **call) -> int:  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if "chat" in call:
        r = httpx.post(f"{inf_hub.endpoint}/v1/chat/completions", headers=headers, timeout=120,
                       json={"model": repo_id, "messages": MESSAGES, "max_tokens": 2})
    else:
        r = httpx.post(model_url(inf_hub, repo_id), headers=headers, timeout=120, json={"inputs": "a good day"})
    return r.status_code


def test_private_model_is_invisible_to_others(inf_hub, built, people) -> None:
    owner, eve = people["acc-owner"], people["acc-eve"]
    upload(inf_hub.endpoint, owner, built["nli"], "acc-owner/secret-nli", private=True)
    upload(inf_hub.endpoint, owner, built["gpt2"], "acc-owner/secret-gpt2", private=True)

    assert InferenceClient(model=model_url(inf_hub, "acc-owner/secret-nli"), token=owner).text_classification("hi")
    with pytest.raises(HfHubHTTPError) as refused:
        InferenceClient(model=model_url(inf_hub, "acc-owner/secret-nli"), token=eve).text_classification("hi")
    assert refused.value.response.status_code == 404
    assert refused.value.response.headers["x-error-code"] == "RepoNotFound"
    assert status_of(inf_hub, "acc-owner/secret-nli", None) == 401
    assert status_of(inf_hub, "acc-owner/secret-gpt2", eve, chat=True) == 404
    assert status_of(inf_hub, "acc-owner/secret-gpt2", owner, chat=True) == 200
    # the same answer as for a model that does not exist: nothing tells them apart
    assert status_of(inf_hub, "acc-owner/never-made", eve) == 404

    seen = {m["id"] for m in httpx.get(f"{inf_hub.endpoint}/v1/models", timeout=30,
                                       headers={"authorization": f"Bearer {eve}"}).json()["data"]}
    assert "acc-owner/secret-nli" not in seen
    mine = {m["id"] for m in httpx.get(f"{inf_hub.endpoint}/v1/models", timeout=30,
                                       headers={"authorization": f"Bearer {owner}"}).json()["data"]}
    assert "acc-owner/secret-nli" in mine


def test_gated_model_runs_only_for_granted_users(inf_hub, built, people) -> None:
    owner, eve, gina = people["acc-owner"], people["acc-eve"], people["acc-gina"]
    upload(inf_hub.endpoint, owner, built["nli"], "acc-owner/gated-nli")
    api = HfApi(endpoint=inf_hub.endpoint, token=owner)
    api.update_repo_settings("acc-owner/gated-nli", gated="manual")
    assert status_of(inf_hub, "acc-owner/gated-nli", eve) == 403
    assert status_of(inf_hub, "acc-owner/gated-nli", None) == 401
    api.grant_access("acc-owner/gated-nli", "acc-gina")
    assert status_of(inf_hub, "acc-owner/gated-nli", gina) == 200
    assert status_of(inf_hub, "acc-owner/gated-nli", owner) == 200
