"""Chat completions (OpenAI-compatible, as ``InferenceClient.chat_completion`` calls them) and streamed
text generation, on a loaded text-generation pipeline.

The prompt is the tokenizer's chat template applied to the messages (400 when the tokenizer has none).
:func:`complete` answers in one piece; :func:`stream` yields text pieces as ``generate`` makes them
(``TextIteratorStreamer``, generation in its own thread). Both block: run them off the event loop.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hubfs.errors import BadRequestError
from hubfs.server.inference.tasks import MAX_NEW_TOKENS, Unprocessable


@dataclass
class GenRequest:
    """What to generate from: a prompt text or chat messages, and the sampling settings."""

    prompt: str | None = None
    messages: list[dict[str, Any]] | None = None
    max_new_tokens: int = 20
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)


def parse_chat(body: dict[str, Any]) -> tuple[GenRequest, bool]:
    """(request, stream) from a ``/v1/chat/completions`` body; 422 when it is malformed."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), (str, list))
            for m in messages):
        raise Unprocessable("'messages' must be a non-empty list of {'role': str, 'content': str}.")
    clean = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        clean.append({"role": m["role"], "content": content})
    req = GenRequest(messages=clean)
    _sampling(req, body, "max_tokens")
    return req, bool(body.get("stream"))


def parse_stream_generation(inputs: Any, params: dict[str, Any]) -> GenRequest:
    """A streamed ``text-generation`` request (``inputs`` already checked to be a string)."""
    req = GenRequest(prompt=str(inputs))
    _sampling(req, params, "max_new_tokens")
    return req


def _sampling(req: GenRequest, body: dict[str, Any], max_key: str) -> None:
    def num(name: str, kind: type | tuple[type, ...]) -> Any:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise Unprocessable(f"{name!r} has the wrong type ({type(value).__name__}).")
        return value

    req.max_new_tokens = min(max(1, num(max_key, int) or 20), MAX_NEW_TOKENS)
    req.temperature = num("temperature", (int, float))
    req.top_p = num("top_p", (int, float))
    req.seed = num("seed", int)
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise Unprocessable("'stop' must be a string or a list of strings.")
    req.stop = [s for s in (stop or []) if s]


def _prepare(pipe: Any, req: GenRequest) -> tuple[Any, dict[str, Any]]:
    """(encoded prompt on the model's device, generate() keyword arguments)."""
    import torch

    tok = pipe.tokenizer
    if req.messages is not None:
        if not getattr(tok, "chat_template", None):
            raise BadRequestError("This model's tokenizer has no chat template: use text generation instead.")
        text = tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)
    else:
        text = req.prompt or ""
    enc = tok(text, return_tensors="pt", add_special_tokens=req.messages is None)
    enc = {k: v.to(pipe.model.device) for k, v in enc.items()}
    sample = bool(req.temperature or req.top_p)
    kwargs: dict[str, Any] = {"max_new_tokens": req.max_new_tokens, "do_sample": sample,
                              "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id}
    if sample:
        if req.temperature:
            kwargs["temperature"] = float(req.temperature)
        if req.top_p:
            kwargs["top_p"] = float(req.top_p)
    if req.seed is not None:
        torch.manual_seed(req.seed)
    return enc, kwargs


def _cut(text: str, stops: list[str]) -> tuple[str, bool]:
    for stop in stops:
        if stop in text:
            return text[:text.index(stop)], True
    return text, False


def complete(pipe: Any, req: GenRequest, model_id: str) -> dict[str, Any]:
    """A ``chat.completion`` object for ``req``."""
    import torch

    enc, kwargs = _prepare(pipe, req)
    with torch.inference_mode():
        out = pipe.model.generate(**enc, **kwargs)
    prompt_len = enc["input_ids"].shape[1]
    new = out[0][prompt_len:]
    text, stopped = _cut(pipe.tokenizer.decode(new, skip_special_tokens=True), req.stop)
    eos = pipe.tokenizer.eos_token_id
    finish = "stop" if stopped or (len(new) and int(new[-1]) == eos) or len(new) < req.max_new_tokens else "length"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model_id, "system_fingerprint": "hubfs",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": int(prompt_len), "completion_tokens": len(new),
                  "total_tokens": int(prompt_len + len(new))},
    }


def stream(pipe: Any, req: GenRequest) -> Iterator[str]:
    """Text pieces, one per generated token (a piece that ends inside a UTF-8 character waits for the next),
    as ``generate`` makes them; stop sequences end the stream early. Blocking."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    enc, kwargs = _prepare(pipe, req)
    tokens: queue.Queue[int | None] = queue.Queue()
    failure: list[BaseException] = []
    done = threading.Event()  # set when the reader stops early (stop sequence, client gone)

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
            return torch.full((input_ids.shape[0],), done.is_set(), dtype=torch.bool, device=input_ids.device)

    def run() -> None:
        try:
            with torch.inference_mode():
                pipe.model.generate(**enc, **kwargs, streamer=_Streamer(tokens),
                                    stopping_criteria=StoppingCriteriaList([Cancelled()]))
        except BaseException as exc:  # noqa: BLE001 - reported to the reader below
            failure.append(exc)
        finally:
            tokens.put(None)

    threading.Thread(target=run, name="hubfs-generate", daemon=True).start()
    ids: list[int] = []
    sent = ""
    try:
        while (token := tokens.get()) is not None:
            ids.append(token)
            text = pipe.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd") or len(text) <= len(sent):
                continue
            cut, stopped = _cut(text, req.stop)
            if len(cut) > len(sent):
                yield cut[len(sent):]
            sent = cut
            if stopped:
                break
    finally:
        done.set()  # generation stops at its next token when nobody reads it any more
    if failure:
        raise failure[0]


class _Streamer:
    """A transformers streamer (``put``/``end``) that hands each new token id to a queue; the prompt,
    passed first, is skipped."""

    def __init__(self, out: queue.Queue[int | None]) -> None:
        self.out, self.prompt_seen = out, False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.out.put(int(token))

    def end(self) -> None:
        pass


def chunk(model_id: str, cid: str, created: int, content: str | None, finish: str | None) -> dict[str, Any]:
    """One ``chat.completion.chunk`` of a streamed answer."""
    delta: dict[str, Any] = {"role": "assistant", "content": content} if content is not None else {}
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model_id,
            "system_fingerprint": "hubfs",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
