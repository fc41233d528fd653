"""Every task through the unmodified ``InferenceClient`` against a hub started with ``--inference``; typed
outputs are checked against a direct transformers pipeline on the same weights (loaded by transformers
itself from the local folder that was uploaded)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import BadRequestError, HfHubHTTPError

from . import tiny_models
from .conftest import model_url, upload

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def reference(task: str, folder: Path):  # type: ignore[no-untyped-def]
    import transformers

    return transformers.pipeline(task, model=str(folder), device="cpu")


def client(inf_hub, uploaded, kind: str) -> InferenceClient:  # type: ignore[no-untyped-def]
    return InferenceClient(model=model_url(inf_hub, uploaded[kind]), token=inf_hub.admin_token, timeout=120)


def test_text_generation_matches_transformers(inf_hub, uploaded, built) -> None:
    prompt = "hello world the model"
    got = client(inf_hub, uploaded, "gpt2").text_generation(prompt, max_new_tokens=6)
    want = reference("text-generation", built["gpt2"])(prompt, max_new_tokens=6, do_sample=False,
                                                       return_full_text=False)[0]["generated_text"]
    assert isinstance(got, str) and got and got == want


def test_fill_mask_matches_transformers(inf_hub, uploaded, built) -> None:
    text = "the cat [MASK] fast"
    got = client(inf_hub, uploaded, "mlm").fill_mask(text)
    want = reference("fill-mask", built["mlm"])(text)
    assert len(got) == len(want) == 5
    for g, w in zip(got, want):
        assert (g.token, g.token_str, g.sequence) == (w["token"], w["token_str"], w["sequence"])
        assert g.score == pytest.approx(w["score"], abs=1e-5)


def test_text_classification_matches_transformers(inf_hub, uploaded, built) -> None:
    got = client(inf_hub, uploaded, "nli").text_classification("a good day")
    want = reference("text-classification", built["nli"])("a good day", top_k=None)
    assert [g.label for g in got] == [w["label"] for w in want]
    assert [g.score for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    assert set(tiny_models.NLI_LABELS.values()) == {g.label for g in got}


def test_zero_shot_on_the_classifier(inf_hub, uploaded, built) -> None:
    labels = ["happy", "sad", "berlin"]
    got = client(inf_hub, uploaded, "nli").zero_shot_classification("a good day", candidate_labels=labels)
    want = reference("zero-shot-classification", built["nli"])("a good day", candidate_labels=labels)
    assert [g.label for g in got] == want["labels"]
    assert [g.score for g in got] == pytest.approx(want["scores"], abs=1e-5)


def test_token_classification_matches_transformers(inf_hub, uploaded, built) -> None:
    text = "alice runs in paris with bob"
    got = client(inf_hub, uploaded, "ner").token_classification(text)
    want = reference("token-classification", built["ner"])(text, aggregation_strategy="simple")
    assert got and len(got) == len(want)
    for g, w in zip(got, want):
        assert (g.entity_group, g.word, g.start, g.end) == (w["entity_group"], w["word"], w["start"], w["end"])
        assert g.score == pytest.approx(float(w["score"]), abs=1e-5)


def test_feature_extraction_and_sentence_similarity(inf_hub, uploaded, built) -> None:
    c = client(inf_hub, uploaded, "emb")
    ref = reference("feature-extraction", built["emb"])
    got = c.feature_extraction("hello world")
    want = np.array(ref("hello world"), dtype="float32")
    assert got.shape == want.shape and got.shape[-1] == 32
    np.testing.assert_allclose(got, want, atol=1e-5)

    sims = c.sentence_similarity("hello world", ["hello world", "a bad night"])
    vecs = [np.array(ref(t)[0]).mean(axis=0) for t in ("hello world", "hello world", "a bad night")]
    cos = [float(v @ vecs[0] / np.linalg.norm(v) / np.linalg.norm(vecs[0])) for v in vecs[1:]]
    assert sims == pytest.approx(cos, abs=1e-5) and sims[0] == pytest.approx(1.0, abs=1e-5)

    # the task named in the URL wins over the card's (what the client calls for a model id)
    r = httpx.post(f"{model_url(inf_hub, uploaded['emb'])}/pipeline/sentence-similarity",
                   json={"inputs": {"source_sentence": "hello world", "sentences": ["a bad night"]}},
                   headers={"authorization": f"Bearer {inf_hub.admin_token}"}, timeout=60)
    assert r.status_code == 200 and r.json() == pytest.approx(cos[1:], abs=1e-5)


def test_image_classification_matches_transformers(inf_hub, uploaded, built) -> None:
    from PIL import Image

    data = tiny_models.png(1)
    got = client(inf_hub, uploaded, "vit").image_classification(data)
    want = reference("image-classification", built["vit"])(Image.open(io.BytesIO(data)).convert("RGB"))
    assert [g.label for g in got] == [w["label"] for w in want]
    assert [g.score for g in got] == pytest.approx([w["score"] for w in want], abs=1e-5)
    top = client(inf_hub, uploaded, "vit").image_classification(data, top_k=1)  # JSON body with base64
    assert [t.label for t in top] == [want[0]["label"]]


def test_bad_requests_get_hub_errors_and_the_server_keeps_serving(inf_hub, uploaded, tmp_path) -> None:
    auth = {"authorization": f"Bearer {inf_hub.admin_token}"}
    missing = InferenceClient(model=model_url(inf_hub, "admin/no-such-model"), token=inf_hub.admin_token)
    with pytest.raises(HfHubHTTPError) as e404:
        missing.text_classification("hi")
    assert e404.value.response.status_code == 404

    (tmp_path / "README.md").write_text("# no task here\n")
    upload(inf_hub.endpoint, inf_hub.admin_token, tmp_path, "admin/no-task")
    with pytest.raises(BadRequestError, match="no runnable task"):
        InferenceClient(model=model_url(inf_hub, "admin/no-task"), token=inf_hub.admin_token).text_classification("x")

    url = model_url(inf_hub, uploaded["nli"])
    for body in ({"inputs": 5}, {"parameters": {}}, {"inputs": "x", "parameters": {"top_k": "many"}}):
        r = httpx.post(url, json=body, headers=auth, timeout=60)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]
    r = httpx.post(url, content=b"{not json", headers={**auth, "content-type": "application/json"}, timeout=60)
    assert r.status_code == 422
    r = httpx.post(model_url(inf_hub, uploaded["vit"]), content=b"not an image", headers=auth, timeout=60)
    assert r.status_code == 422 and "not an image" in r.json()["error"]
    r = httpx.post(f"{url}/pipeline/summarization", json={"inputs": "x"}, headers=auth, timeout=60)
    assert r.status_code == 400

    assert client(inf_hub, uploaded, "nli").text_classification("still up")  # the server keeps serving
