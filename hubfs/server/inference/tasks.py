"""The tasks the embedded hub runs: which one a request means, its input parsing, the pipeline that runs
it and its output in the shapes ``huggingface_hub``'s ``InferenceClient`` parses.

Bodies follow the Hub's task API: ``{"inputs": ..., "parameters": {...}}`` (feature-extraction takes its
parameters at the top level too; image tasks take raw image bytes, or base64 in ``inputs``). A malformed
body raises 422. Models are built on the meta device and filled by :mod:`hubfs.loader` (from the hub's
storage, see :mod:`.weights`); configs, tokenizers and image processors come from the repo's small files.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubfs.errors import BadRequestError, HubfsError, ModelLoadError

if TYPE_CHECKING:
    from hubfs.loader.handle import SafeOpen

log = logging.getLogger("hubfs.server.inference")

TASKS = ("text-generation", "fill-mask", "text-classification", "token-classification", "zero-shot-classification",
         "feature-extraction", "sentence-similarity", "image-classification")
ALIASES = {"sentiment-analysis": "text-classification", "ner": "token-classification",
           "text2text-generation": "text-generation", "conversational": "text-generation"}
# pipeline task -> (transformers Auto class name, kind of preprocessor)
PIPELINES = {
    "text-generation": ("AutoModelForCausalLM", "tokenizer"),
    "fill-mask": ("AutoModelForMaskedLM", "tokenizer"),
    "text-classification": ("AutoModelForSequenceClassification", "tokenizer"),
    "zero-shot-classification": ("AutoModelForSequenceClassification", "tokenizer"),
    "token-classification": ("AutoModelForTokenClassification", "tokenizer"),
    "feature-extraction": ("AutoModel", "tokenizer"),
    "image-classification": ("AutoModelForImageClassification", "image_processor"),
}
_ARCH_TASKS = (("ForCausalLM", "text-generation"), ("LMHeadModel", "text-generation"),
               ("ForMaskedLM", "fill-mask"), ("ForSequenceClassification", "text-classification"),
               ("ForTokenClassification", "token-classification"),
               ("ForImageClassification", "image-classification"))
MAX_NEW_TOKENS = 1024
MAX_INPUTS = 64  # inputs of one request (a list of texts)


class Unprocessable(HubfsError):
    """The request body does not fit the task (422, as the Hub's inference API answers)."""

    code, status = "UnprocessableEntity", 422


def choose_task(named: str | None, pipeline_tag: str | None, config: dict[str, Any], body: Any,
                repo_id: str) -> str:
    """The task a request runs: the one the URL names, else the card's ``pipeline_tag`` (else one read from
    config.json's architectures), adjusted by the body where the client sends several tasks to one URL
    (sentence-similarity vs feature-extraction, zero-shot on a classifier). 400 with the reason if none."""
    if named:
        task = ALIASES.get(named, named)
        if task not in TASKS:
            raise BadRequestError(f"Task {named!r} is not supported by this hub; it runs: {', '.join(TASKS)}.")
        return task
    task = ALIASES.get(pipeline_tag or "", pipeline_tag or "")
    if not task:
        archs = config.get("architectures") or []
        task = next((t for a in archs if isinstance(a, str) for suffix, t in _ARCH_TASKS if a.endswith(suffix)), "")
    if not task:
        raise BadRequestError(f"Model {repo_id} has no runnable task: its card names no pipeline_tag and its "
                              "config.json no known architecture.")
    if task not in TASKS:
        raise BadRequestError(f"Model {repo_id} has pipeline_tag {task!r}, which this hub does not run; it runs: "
                              f"{', '.join(TASKS)}.")
    inputs = body.get("inputs") if isinstance(body, dict) else None
    params = body.get("parameters") if isinstance(body, dict) else None
    if task in ("feature-extraction", "sentence-similarity"):
        return "sentence-similarity" if isinstance(inputs, dict) and "source_sentence" in inputs else "feature-extraction"
    if task == "text-classification" and isinstance(params, dict) and "candidate_labels" in params:
        return "zero-shot-classification"
    return task


def pipeline_task(task: str) -> str:
    """The transformers pipeline that serves ``task`` (sentence-similarity uses feature-extraction)."""
    return "feature-extraction" if task == "sentence-similarity" else task


# -- building ------------------------------------------------------------------------------------


def build_pipeline(folder: Path, task: str, device: str, weights: SafeOpen | None = None) -> Any:
    """A transformers pipeline for ``task``: its config, tokenizer or image processor from ``folder``, its
    weights from ``weights`` (a loader handle; None: the safetensors in ``folder``), loaded by hubfs.loader."""
    import transformers

    from hubfs.loader import from_pretrained

    class_name, kind = PIPELINES[task]
    auto = getattr(transformers, class_name)
    try:
        model = from_pretrained(auto, folder, device=device, strict=True) if weights is None else \
            _from_weights(auto, folder, weights, device)
    except ModelLoadError:
        model = _renamed(auto, folder if weights is None else weights, device)
    extra: dict[str, Any] = {}
    if kind == "tokenizer":
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        if task == "text-generation":
            if tokenizer.pad_token is None and tokenizer.eos_token is not None:
                tokenizer.pad_token = tokenizer.eos_token  # batches of prompts need one
            tokenizer.padding_side = "left"
        extra["tokenizer"] = tokenizer
    else:
        extra["image_processor"] = transformers.AutoImageProcessor.from_pretrained(folder)
    return transformers.pipeline(task, model=model, device=model.device, **extra)  # type: ignore[call-overload]


def _from_weights(auto: Any, folder: Path, weights: SafeOpen, device: str) -> Any:
    """``auto``'s model for ``folder``'s config.json, built on the meta device (its initialisers skipped:
    :mod:`hubfs.loader.meta_init`) and filled from ``weights``, as :func:`hubfs.loader.from_pretrained` does for a
    folder (the config's dtype, else float32)."""
    import torch

    from hubfs.loader.api import to_device, to_dtype
    from hubfs.loader.modules import build_on_meta, load_into, read_config

    config = read_config(weights, folder)
    declared = config.get("dtype") or config.get("torch_dtype")
    dtype = (to_dtype(declared) if isinstance(declared, str) and declared != "auto" else None) or torch.float32
    model = build_on_meta(auto, config, dtype)
    load_into(model, weights, device=to_device(device), dtype=dtype, strict=True)
    return model.eval()


def _renamed(auto: Any, src: Path | SafeOpen, device: str) -> Any:
    """The model of a checkpoint whose tensor names transformers renames on load (e.g. ViT's legacy names in
    transformers 5): the tensors are read by hubfs.loader, transformers maps their names into the model."""
    import transformers

    from hubfs.loader import load

    folder = src if isinstance(src, Path) else Path(src.checkpoint.name)
    config = transformers.AutoConfig.from_pretrained(folder)
    model_class = auto._model_mapping[type(config)]
    tensors = load(src, device=device)
    model = model_class.from_pretrained(None, config=config, state_dict=tensors)
    log.info("inference: %s loaded with transformers' tensor renames", folder.name)
    return model.to(device).eval()


# -- parsing -------------------------------------------------------------------------------------


def parse(task: str, body: Any, raw: bytes | None = None) -> tuple[Any, dict[str, Any]]:
    """(inputs, pipeline keyword arguments) for one request; 422 when the body does not fit ``task``."""
    if task == "image-classification":
        return _parse_image(body, raw)
    if not isinstance(body, dict) or "inputs" not in body:
        raise Unprocessable(f"{task}: the body must be a JSON object with 'inputs'.")
    inputs = body["inputs"]
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise Unprocessable(f"{task}: 'parameters' must be an object.")
    if task == "feature-extraction":
        params = {**{k: v for k, v in body.items() if k not in ("inputs", "parameters")}, **params}
    if task == "sentence-similarity":
        if not (isinstance(inputs, dict) and isinstance(inputs.get("source_sentence"), str)
                and _texts(inputs.get("sentences"))):
            raise Unprocessable("sentence-similarity: 'inputs' must be {'source_sentence': str, 'sentences': [str]}.")
        return {"source_sentence": inputs["source_sentence"], "sentences": list(inputs["sentences"])}, {}
    if not (isinstance(inputs, str) or (task == "feature-extraction" and _texts(inputs))):
        raise Unprocessable(f"{task}: 'inputs' must be a string.")
    return inputs, _PARAMS[task](params)


def _texts(value: Any) -> bool:
    return isinstance(value, list) and 0 < len(value) <= MAX_INPUTS and all(isinstance(v, str) for v in value)


def _opt(params: dict[str, Any], name: str, kind: type | tuple[type, ...], out: dict[str, Any],
         to: str | None = None) -> None:
    value = params.get(name)
    if value is None:
        return
    if not isinstance(value, kind) or isinstance(value, bool) and kind in (int, float, (int, float)):
        raise Unprocessable(f"parameter {name!r} has the wrong type ({type(value).__name__}).")
    out[to or name] = value


def _gen_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _opt(params, "max_new_tokens", int, out)
    _opt(params, "temperature", (int, float), out)
    _opt(params, "top_p", (int, float), out)
    _opt(params, "top_k", int, out)
    _opt(params, "repetition_penalty", (int, float), out)
    _opt(params, "do_sample", bool, out)
    _opt(params, "return_full_text", bool, out)
    _opt(params, "seed", int, out)
    _opt(params, "stop", list, out)
    out["max_new_tokens"] = min(max(1, int(out.get("max_new_tokens", 20))), MAX_NEW_TOKENS)
    out.setdefault("return_full_text", False)  # as TGI and the Hub's API answer
    out.setdefault("do_sample", bool(out.get("temperature") or out.get("top_p") or out.get("top_k")))
    return out


def _class_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _opt(params, "top_k", int, out)
    _opt(params, "function_to_apply", str, out)
    out.setdefault("top_k", None)  # every label, best first
    return out


def _fill_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _opt(params, "top_k", int, out)
    _opt(params, "targets", list, out)
    return out


def _token_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _opt(params, "aggregation_strategy", str, out)
    _opt(params, "ignore_labels", list, out)
    _opt(params, "stride", int, out)
    out.setdefault("aggregation_strategy", "simple")
    return out


def _zero_shot_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    labels = params.get("candidate_labels")
    if not _texts(labels):
        raise Unprocessable("zero-shot-classification: 'parameters.candidate_labels' must be a list of strings.")
    out["candidate_labels"] = labels
    _opt(params, "multi_label", bool, out)
    _opt(params, "hypothesis_template", str, out)
    return out


def _feature_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _opt(params, "normalize", bool, out)
    _opt(params, "truncate", bool, out)
    return out


_PARAMS = {"text-generation": _gen_params, "text-classification": _class_params, "fill-mask": _fill_params,
           "token-classification": _token_params, "zero-shot-classification": _zero_shot_params,
           "feature-extraction": _feature_params}


def _parse_image(body: Any, raw: bytes | None) -> tuple[Any, dict[str, Any]]:
    from PIL import Image, UnidentifiedImageError

    params: dict[str, Any] = {}
    data = raw
    if isinstance(body, dict):
        if not isinstance(body.get("inputs"), str):
            raise Unprocessable("image-classification: 'inputs' must be a base64 image (or send the raw bytes).")
        try:
            data = base64.b64decode(body["inputs"], validate=True)
        except ValueError:
            raise Unprocessable("image-classification: 'inputs' is not valid base64.") from None
        given = body.get("parameters") or {}
        if not isinstance(given, dict):
            raise Unprocessable("image-classification: 'parameters' must be an object.")
        _opt(given, "top_k", int, params)
        _opt(given, "function_to_apply", str, params)
    if not data:
        raise Unprocessable("image-classification: the body holds no image.")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise Unprocessable(f"image-classification: not an image ({exc}).") from None
    return image.convert("RGB"), params


def body_of(raw: bytes, content_type: str) -> Any:
    """The JSON body, or None for a non-JSON one (an image); 422 for JSON that does not parse."""
    if "json" not in content_type and not raw.lstrip()[:1] in (b"{", b"["):
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise Unprocessable(f"Malformed JSON body: {exc}") from None


# -- running -------------------------------------------------------------------------------------


def run_batch(pipe: Any, task: str, inputs: list[Any], params: dict[str, Any]) -> list[Any]:
    """The shaped outputs of ``task`` for each of ``inputs`` (all with ``params``), in one pipeline call."""
    if task == "sentence-similarity":
        return [_similarity(pipe, item) for item in inputs]
    if task == "text-generation":
        return _generate(pipe, inputs, params)
    if task == "feature-extraction":
        return [_features(pipe, item, params) for item in inputs]
    if len(inputs) == 1:  # some pipelines unwrap a one-item list: call them with the item itself
        return [shape(task, pipe(inputs[0], **params))]
    outputs = pipe(list(inputs), batch_size=len(inputs), **params)
    return [shape(task, out) for out in outputs]


def _generate(pipe: Any, prompts: list[str], params: dict[str, Any]) -> list[Any]:
    import torch

    kwargs = dict(params)
    stops = kwargs.pop("stop", None) or []
    seed = kwargs.pop("seed", None)
    if seed is not None:
        torch.manual_seed(seed)
    outputs = [pipe(prompts[0], **kwargs)] if len(prompts) == 1 else pipe(list(prompts), batch_size=len(prompts),
                                                                           **kwargs)
    shaped = []
    for out in outputs:
        text = out[0]["generated_text"]
        for stop in stops:
            if isinstance(stop, str) and stop and stop in text:
                text = text[:text.index(stop) + len(stop)]
        shaped.append([{"generated_text": text}])
    return shaped


def _features(pipe: Any, item: Any, params: dict[str, Any]) -> Any:
    """The pipeline's token features ([1][tokens][hidden] for a text), or each text's for a list."""
    import torch

    outs = pipe(item if isinstance(item, list) else [item], truncation=bool(params.get("truncate", True)))
    if params.get("normalize"):
        outs = [torch.nn.functional.normalize(torch.tensor(o), dim=-1).tolist() for o in outs]
    return outs if isinstance(item, list) else outs[0]


def _similarity(pipe: Any, item: dict[str, Any]) -> list[float]:
    """Cosine similarity of the source sentence's mean-pooled embedding with each sentence's."""
    import torch

    texts = [item["source_sentence"], *item["sentences"]]
    vecs = torch.stack([torch.tensor(o[0]).mean(dim=0) for o in pipe(texts)])
    sims = torch.nn.functional.cosine_similarity(vecs[:1], vecs[1:], dim=-1)
    return [float(s) for s in sims]


def shape(task: str, out: Any) -> Any:
    """One input's pipeline output as the Hub answers it (plain floats and ints, the client's field names)."""
    if task == "text-classification":
        items = out if isinstance(out, list) else [out]
        return [[{"label": str(o["label"]), "score": float(o["score"])} for o in items]]
    if task == "fill-mask":
        items = out if isinstance(out, list) else [out]
        return [{"score": float(o["score"]), "token": int(o["token"]), "token_str": str(o["token_str"]),
                 "sequence": str(o["sequence"])} for o in items]
    if task == "token-classification":
        rows = []
        for o in out:
            row = {"score": float(o["score"]), "word": str(o["word"]),
                   "start": None if o.get("start") is None else int(o["start"]),
                   "end": None if o.get("end") is None else int(o["end"])}
            if "entity_group" in o:
                row["entity_group"] = str(o["entity_group"])
            if "entity" in o:
                row["entity"] = str(o["entity"])
            rows.append(row)
        return rows
    if task == "zero-shot-classification":
        return [{"label": str(label), "score": float(score)} for label, score in zip(out["labels"], out["scores"])]
    if task == "image-classification":
        items = out if isinstance(out, list) else [out]
        return [{"label": str(o["label"]), "score": float(o["score"])} for o in items]
    raise HubfsError(f"no output shape for task {task}")
