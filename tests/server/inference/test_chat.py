"""OpenAI-compatible chat and streamed generation through the unmodified ``InferenceClient``: answers
match transformers' own ``generate`` on the same weights with the tokenizer's chat template."""

from __future__ import annotations

import httpx
import pytest
from huggingface_hub import InferenceClient

from .conftest import model_url

MESSAGES = [{"role": "system", "content": "you are a hub"}, {"role": "user", "content": "hello model"}]


def reference_reply(folder, max_new_tokens: int) -> str:  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    enc = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
    return tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)  # type: ignore[no-any-return]


def test_chat_completion_with_base_url_and_with_model_url(inf_hub, uploaded, built) -> None:
    want = reference_reply(built["gpt2"], 8)
    assert want
    by_base = InferenceClient(base_url=inf_hub.endpoint, token=inf_hub.admin_token, timeout=120)
    out = by_base.chat_completion(MESSAGES, model=uploaded["gpt2"], max_tokens=8)
    assert out.choices[0].message.content == want
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].finish_reason in ("length", "stop")
    assert out.usage.completion_tokens > 0 and out.usage.prompt_tokens > 0
    assert out.model == uploaded["gpt2"] and out.id

    by_model = InferenceClient(model=model_url(inf_hub, uploaded["gpt2"]), token=inf_hub.admin_token, timeout=120)
    assert by_model.chat_completion(MESSAGES, max_tokens=8).choices[0].message.content == want


def test_streaming_chat_sends_pieces_that_add_up(inf_hub, uploaded, built) -> None:
    want = reference_reply(built["gpt2"], 8)
    c = InferenceClient(base_url=inf_hub.endpoint, token=inf_hub.admin_token, timeout=120)
    chunks = list(c.chat_completion(MESSAGES, model=uploaded["gpt2"], max_tokens=8, stream=True))
    pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices[0].delta.content]
    assert len(pieces) >= 2  # streamed, not one block
    assert "".join(pieces) == want
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")

    # the raw stream is server-sent events ending in [DONE]
    with httpx.stream("POST", f"{inf_hub.endpoint}/v1/chat/completions", timeout=120,
                      headers={"authorization": f"Bearer {inf_hub.admin_token}"},
                      json={"model": uploaded["gpt2"], "messages": MESSAGES, "max_tokens": 4, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)


def test_streamed_text_generation(inf_hub, uploaded, built) -> None:
    import transformers

    prompt = "the hub serves"
    c = InferenceClient(model=model_url(inf_hub, uploaded["gpt2"]), token=inf_hub.admin_token, timeout=120)
    pieces = list(c.text_generation(prompt, max_new_tokens=6, stream=True))
    want = transformers.pipeline("text-generation", model=str(built["gpt2"]), device="cpu")(
        prompt, max_new_tokens=6, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert len(pieces) >= 2 and "".join(pieces) == want


def test_models_list_and_chat_errors(inf_hub, uploaded) -> None:
    auth = {"authorization": f"Bearer {inf_hub.admin_token}"}
    listed = httpx.get(f"{inf_hub.endpoint}/v1/models", headers=auth, timeout=30).json()
    assert listed["object"] == "list"
    ids = {m["id"]: m for m in listed["data"]}
    assert ids[uploaded["gpt2"]]["task"] == "text-generation" and uploaded["vit"] in ids

    url = f"{inf_hub.endpoint}/v1/chat/completions"
    assert httpx.post(url, json={"model": uploaded["gpt2"], "messages": "hi"}, headers=auth, timeout=30).status_code == 422
    assert httpx.post(url, json={"messages": MESSAGES}, headers=auth, timeout=30).status_code == 422
    r = httpx.post(url, json={"model": "admin/nope", "messages": MESSAGES}, headers=auth, timeout=30)
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    r = httpx.post(url, json={"model": uploaded["nli"], "messages": MESSAGES}, headers=auth, timeout=60)
    assert r.status_code == 400 and "not chat" in r.json()["error"]
    r = httpx.post(url, json={"model": uploaded["mlm"], "messages": MESSAGES, "stream": True}, headers=auth, timeout=60)
    assert r.status_code == 400


@pytest.mark.parametrize("max_tokens", [1, 3])
def test_max_tokens_is_honoured(inf_hub, uploaded, max_tokens: int) -> None:
    c = InferenceClient(base_url=inf_hub.endpoint, token=inf_hub.admin_token, timeout=120)
    out = c.chat_completion(MESSAGES, model=uploaded["gpt2"], max_tokens=max_tokens)
    assert 0 < out.usage.completion_tokens <= max_tokens


def test_stop_sequences_cut_the_answer_streamed_or_not(inf_hub, uploaded, built) -> None:
    full = reference_reply(built["gpt2"], 8)
    assert len(full.strip()) > 4
    stop = full.strip()[2:4]
    want = full[:full.index(stop)]
    c = InferenceClient(base_url=inf_hub.endpoint, token=inf_hub.admin_token, timeout=120)
    out = c.chat_completion(MESSAGES, model=uploaded["gpt2"], max_tokens=8, stop=[stop])
    assert out.choices[0].message.content == want and out.choices[0].finish_reason == "stop"
    streamed = c.chat_completion(MESSAGES, model=uploaded["gpt2"], max_tokens=8, stop=[stop], stream=True)
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed) == want


def stream_events(server, repo_id: str, parameters: dict) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """The JSON events of one streamed text-generation request (raw server-sent events)."""
    import json

    with httpx.stream("POST", model_url(server, repo_id), timeout=120,
                      headers={"authorization": f"Bearer {server.admin_token}"},
                      json={"inputs": "the hub serves", "parameters": parameters, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return [json.loads(line[len("data:"):]) for line in r.iter_lines() if line.startswith("data:")]


def test_streamed_generation_events_first_token_at_once_last_one_whole(inf_hub, uploaded) -> None:
    """TGI's shapes: every event a token; the first goes out before the next is known (no text of the
    whole yet), the last carries the whole text and the details."""
    events = stream_events(inf_hub, uploaded["gpt2"], {"max_new_tokens": 6})
    assert len(events) >= 2 and [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    last = events[-1]
    assert last["generated_text"] == "".join(e["token"]["text"] for e in events)
    assert last["details"]["generated_tokens"] == len(events) and not any(e["token"]["special"] for e in events)
    assert last["details"]["finish_reason"] in ("length", "eos_token")

    one = stream_events(inf_hub, uploaded["gpt2"], {"max_new_tokens": 1})  # the first token is the last
    assert len(one) == 1 and one[0]["generated_text"] == one[0]["token"]["text"] == events[0]["token"]["text"]
    assert one[0]["details"] == {"finish_reason": "length", "generated_tokens": 1, "seed": None}


def test_stream_ending_after_its_first_token_closes_with_an_end_event(inf_hub, uploaded) -> None:
    """A stop sequence inside the first piece ends the stream after it: the first token went out at once,
    so an end event (special, empty text, as TGI's end-of-sequence token) carries the whole text."""
    first = stream_events(inf_hub, uploaded["gpt2"], {"max_new_tokens": 6})[0]["token"]["text"]
    stop = first[-1]
    assert len(first) >= 2 and first.index(stop) > 0, first
    events = stream_events(inf_hub, uploaded["gpt2"], {"max_new_tokens": 6, "stop": [stop]})
    cut = first[:first.index(stop)]
    assert [(e["token"]["text"], e["token"]["special"]) for e in events] == [(cut, False), ("", True)]
    assert events[0]["generated_text"] is None and events[1]["generated_text"] == cut
    assert events[1]["details"]["generated_tokens"] == 1 and events[1]["details"]["finish_reason"] == "eos_token"

    c = InferenceClient(model=model_url(inf_hub, uploaded["gpt2"]), token=inf_hub.admin_token, timeout=120)
    outs = list(c.text_generation("the hub serves", max_new_tokens=6, stop=[stop], stream=True, details=True))
    assert [o.token.special for o in outs] == [False, True] and outs[-1].generated_text == cut
    assert "".join(c.text_generation("the hub serves", max_new_tokens=6, stop=[stop], stream=True)) == cut
