"""Fill an ``nn.Module`` from a checkpoint in place (`load_into`), or build a transformers model (`from_pretrained`).

`load_into` streams tensors from :func:`hubfs.loader.load` and moves each one into place as it arrives, so
host memory stays bounded by the loader's pipeline, not by the model: a parameter on the meta device (or on
another device, or of another dtype when ``dtype=`` is given) is replaced by the loaded tensor itself
(``assign``-style, no second copy); one already where it belongs is copied into. Tied parameters (one
``Parameter`` under several names, e.g. ``lm_head.weight`` and ``model.embed_tokens.weight``) are read
once, whichever of the names the checkpoint holds, and stay tied. With ``quantize=`` the ``nn.Linear``
layers (but those matching ``skip`` and tied ones) are swapped for `QuantLinear` first and their weights
are quantized on the device right after the raw copy: a full-precision copy of the model never exists.

On a transformers model, checkpoint names are first mapped onto the model's the way transformers 5 maps
them (`hubfs.loader.keys`: legacy names, ``LayerNorm.gamma``, ``base_model_prefix`` added or stripped), and
tensors that transformers converts (per-expert weights merged, fused ``qkv`` split) are converted by its own
``WeightConverter`` once all their sources have arrived, or a ModelLoadError names them.

On a transformers model, what the checkpoint does not hold and is still on the meta device afterwards
(non-persistent buffers such as rotary ``inv_freq``; missing weights) is materialised on the target device
and initialised by transformers' own ``initialize_weights`` (loaded tensors are marked so it leaves them
alone); the weights among them are listed in ``missing_keys`` (less what transformers itself does not report)
and `from_pretrained` logs a warning naming them. Other modules keep such tensors on meta (listed in
``missing_keys`` when persistent).

`from_pretrained` reads ``config.json`` beside the weights (local folder, hubfs mount, ``hf://`` URL or
repo id), builds the model on the meta device and fills it with `load_into`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hubfs.errors import ModelLoadError
from hubfs.loader.api import device_for, load, to_device, to_dtype
from hubfs.loader.handle import SafeOpen, open_checkpoint
from hubfs.loader.header import torch_shape
from hubfs.loader.keys import ConvertGroup, filter_reported, plan_keys
from hubfs.loader.quant import QuantizedTensor, Quantizer, as_quantizer
from hubfs.loader.quant.linear import QuantLinear, replace_linears

log = logging.getLogger(__name__)
CONFIG_MAX = 64 << 20  # a config.json larger than this is not a config


@dataclass
class LoadResult:
    """What `load_into` did: model keys the checkpoint lacked, checkpoint keys the model lacks, and the
    weights stored quantized. Unpacks as ``missing, unexpected = load_into(...)``."""

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    quantized: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[list[str]]:
        return iter((self.missing_keys, self.unexpected_keys))


@dataclass
class _Slot:
    """Where one state-dict name lives: every (module, attribute) sharing that tensor, and how."""

    places: list[tuple[nn.Module, str]]
    kind: str  # "param", "buffer" or "qweight"
    names: list[str]  # every state-dict name of this (possibly tied) tensor


def _slots(model: nn.Module) -> dict[str, _Slot]:
    """Every persistent state-dict name of ``model`` -> its slot; tied names share one slot."""
    by_id: dict[int, _Slot] = {}
    out: dict[str, _Slot] = {}
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        prefix = f"{mod_name}." if mod_name else ""
        entries: list[tuple[str, object, str]] = []
        if isinstance(mod, QuantLinear):
            entries.append(("weight", mod, "qweight"))
        entries += [(a, p, "param") for a, p in mod._parameters.items() if p is not None]
        entries += [(a, b, "buffer") for a, b in mod._buffers.items()
                    if b is not None and a not in mod._non_persistent_buffers_set]
        for attr, obj, kind in entries:
            name = prefix + attr
            if name in out:
                continue
            slot = by_id.get(id(obj)) if kind != "qweight" else None
            if slot is None:
                slot = _Slot([], kind, [])
                if kind != "qweight":
                    by_id[id(obj)] = slot
            if (mod, attr) not in [(m, a) for m, a in slot.places]:
                slot.places.append((mod, attr))
            slot.names.append(name)
            out[name] = slot
    return out


def _current(slot: _Slot) -> torch.Tensor | None:
    mod, attr = slot.places[0]
    if slot.kind == "qweight":
        return None
    return getattr(mod, attr)  # type: ignore[no-any-return]


def _want_shape(slot: _Slot) -> tuple[int, ...]:
    if slot.kind == "qweight":
        mod = slot.places[0][0]
        assert isinstance(mod, QuantLinear)
        return (mod.out_features, mod.in_features)
    cur = _current(slot)
    assert cur is not None
    return tuple(cur.shape)


def _check_shapes(slots: dict[str, _Slot], shapes: Sequence[tuple[str, str, tuple[int, ...]]]) -> None:
    """ModelLoadError naming every tensor whose checkpoint shape differs from the model's.

    ``shapes``: (checkpoint key, model key, checkpoint shape) triples."""
    bad = []
    for ckpt, name, shape in shapes:
        want = _want_shape(slots[name])
        if tuple(shape) != want:
            label = name if ckpt == name else f"{name} (checkpoint {ckpt})"
            bad.append(f"{label}: checkpoint {list(shape)} vs model {list(want)}")
    if bad:
        raise ModelLoadError(f"{len(bad)} tensor(s) of another shape than the model's: {'; '.join(bad[:5])}"
                             f"{' ...' if len(bad) > 5 else ''}")


def _targets(slots: dict[str, _Slot], names: list[str], device: torch.device | None) -> dict[str, torch.device]:
    """Each name's device: ``device`` when given, else where its tensor already is (meta -> cpu)."""
    out = {}
    for name in names:
        cur = _current(slots[name])
        if device is not None:
            out[name] = device
        elif cur is not None and not cur.is_meta:
            out[name] = cur.device
        else:
            mod = slots[name].places[0][0]
            q = mod.qweight if isinstance(mod, QuantLinear) else None
            bias = getattr(mod, "bias", None) if isinstance(mod, QuantLinear) else None
            if q is not None:
                out[name] = q.device
            elif isinstance(bias, torch.Tensor) and not bias.is_meta:
                out[name] = bias.device
            else:
                out[name] = torch.device("cpu")
    return out


def _place(slot: _Slot, value: Any, dtype: torch.dtype | None, quantizer: Quantizer | None) -> None:
    """Move ``value`` into every place of ``slot`` (in place when it can, else by replacing the tensor)."""
    if slot.kind == "qweight":
        mod = slot.places[0][0]
        assert isinstance(mod, QuantLinear)
        if not isinstance(value, QuantizedTensor):
            if quantizer is None:
                raise ModelLoadError(f"{slot.names[0]}: a quantized layer got a full-precision tensor")
            if value.dtype not in (torch.float16, torch.bfloat16, torch.float32):
                value = value.float()
            value = quantizer.quantize(value)
        mod.set_weight(value)
        return
    cur = _current(slot)
    assert cur is not None and isinstance(value, torch.Tensor)
    # Floating-point tensors become ``dtype`` when given, else the parameter's declared dtype; others keep theirs.
    target_dtype = (dtype or cur.dtype) if value.is_floating_point() and cur.is_floating_point() else cur.dtype
    with torch.no_grad():
        if not cur.is_meta and cur.device == value.device and cur.dtype == target_dtype:
            cur.copy_(value)  # the tensor keeps its identity (optimizers, ties, views stay valid)
            return
        new = value if value.dtype == target_dtype else value.to(target_dtype)
    if slot.kind == "param":  # one Parameter object for every tied place
        replacement = nn.Parameter(new, requires_grad=cur.requires_grad)
        for mod, attr in slot.places:
            mod._parameters[attr] = replacement
    else:
        for mod, attr in slot.places:
            mod._buffers[attr] = new


def load_into(
    model: nn.Module,
    src: str | os.PathLike[str] | SafeOpen,
    *,
    device: str | int | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    quantize: str | Quantizer | None = None,
    skip: Sequence[str] = ("lm_head",),
    device_map: Mapping[str, str | int | torch.device] | None = None,
    strict: bool = False,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    threads: int | None = None,
    on_tensor: Callable[[str, Any], None] | None = None,
    key_mapping: Mapping[str, str] | None = None,
) -> LoadResult:
    """Fill ``model`` (on the meta device or not) in place from the checkpoint ``src``.

    ``device`` / ``device_map``: where tensors go (default: where each parameter already is; meta ones to
    the CPU). ``dtype``: floating-point parameters become this dtype (default: the dtype each parameter
    was declared with). ``quantize`` ("int8", "nf4", "nf4-dq", "fp8" or a `Quantizer`): swap ``nn.Linear``
    layers not matching ``skip`` for `QuantLinear` and store their weights quantized. ``on_tensor(name,
    value)`` is called after each tensor is in place (file-offset order, checkpoint names). ``strict``: raise
    ModelLoadError on any missing or unexpected key (before any byte is read). A tensor whose shape
    differs from the model's raises ModelLoadError before any byte is read. Checkpoint names are mapped
    onto the model's as transformers maps them (see `hubfs.loader.keys`); ``key_mapping`` (regex ->
    replacement) is applied first, like transformers' ``from_pretrained(key_mapping=...)``.
    """
    q = as_quantizer(quantize, skip)
    swapped = replace_linears(model, q, fill=False) if q is not None else []
    slots = _slots(model)
    handle = src if isinstance(src, SafeOpen) else open_checkpoint(src, revision=revision, endpoint=endpoint,
                                                                   token=token)
    try:
        infos = handle.infos()
        keys = plan_keys(model, infos, slots, key_mapping)
        unexpected = list(keys.unexpected)
        wanted: dict[str, str] = {}  # checkpoint key -> model key, one read per tied group
        covered: set[int] = set()
        for ckpt, name in keys.renamed.items():
            if id(slots[name]) not in covered:
                covered.add(id(slots[name]))
                wanted[ckpt] = name
        groups = [g for g in keys.groups if not all(id(slots[t]) in covered for t in g.targets)]
        for group in groups:
            covered.update(id(slots[t]) for t in group.targets)
        missing = [n for n, s in slots.items() if id(s) not in covered]
        missing, unexpected = filter_reported(model, missing, unexpected)
        if strict and (missing or unexpected):
            raise ModelLoadError(f"{handle.checkpoint.name}: missing keys {missing[:5]}, unexpected keys "
                                 f"{unexpected[:5]} (strict=True)")
        _check_shapes(slots, [(c, n, tuple(torch_shape(infos[c]))) for c, n in wanted.items()])
        cast = to_dtype(dtype)
        targets = _devices(slots, wanted, groups, device, device_map)
        # the loader quantizes on the fly what lands in a swapped layer under its checkpoint name
        in_swapped = set(swapped)
        restricted = q.restricted_to([c for c, n in wanted.items() if n in in_swapped]) if q is not None else None
        pending = {k: g for g in groups for k, _ in g.sources}
        held: dict[int, dict[str, torch.Tensor]] = {}
        converted: list[str] = []

        def arrived(ckpt: str, value: Any) -> None:
            group = pending.get(ckpt)
            if group is None:
                _place(slots[wanted[ckpt]], value, cast, restricted)
            else:  # hold the sources until the group is complete, then convert and place
                got = held.setdefault(id(group), {})
                got[ckpt] = value
                if len(got) == len(group.sources):
                    converted.extend(_convert(model, slots, group, held.pop(id(group)), targets, cast, q))
            if on_tensor is not None:
                on_tensor(ckpt, value)

        distinct = set(targets.values())
        common = next(iter(distinct)) if len(distinct) == 1 else torch.device("cpu")
        per_name = None if len(distinct) <= 1 else dict(targets)
        # The loader casts only on request: with dtype=None each tensor arrives as stored and is cast on
        # its device to the parameter's own dtype by _place.
        load(handle, common, cast, restricted, per_name, threads=threads, keys=list(targets), on_tensor=arrived,
             mmap=restricted is None)
    finally:
        if handle is not src:
            handle.close()
    done = set(wanted.values()) | set(converted)
    covered = {id(slots[n]) for n in done}  # what a conversion really produced, not what was foreseen
    missing = [n for n in missing if id(slots[n]) not in covered]
    missing += [t for g in groups for t in g.targets if id(slots[t]) not in covered and t not in missing]
    loaded = {n for n in slots if id(slots[n]) in covered}
    init = getattr(type(model), "initialize_weights", None)
    if callable(init):  # a transformers model: what is still on meta is materialised and initialised
        fallback = to_device(device) if device is not None else torch.device("cpu")
        if _materialise_rest(model, loaded, fallback, device_map):
            init(model)  # only what was not loaded: rotary inv_freq, missing weights
    return LoadResult(missing, unexpected, [n for n in swapped if n in done])


def _devices(slots: dict[str, _Slot], wanted: Mapping[str, str], groups: Sequence[ConvertGroup],
             device: str | int | torch.device | None,
             device_map: Mapping[str, str | int | torch.device] | None) -> dict[str, torch.device]:
    """Checkpoint key -> the device it is read to: that of its model tensor (a converted group's first
    target) under ``device_map``, ``device``, or where the tensor already is."""
    pairs = list(wanted.items()) + [(k, g.targets[0]) for g in groups for k, _ in g.sources]
    if device_map is not None:
        devices = {p: to_device(d) for p, d in device_map.items()}
        return {c: device_for(n, devices, None) for c, n in pairs}
    where = _targets(slots, sorted({n for _, n in pairs}), None if device is None else to_device(device))
    return {c: where[n] for c, n in pairs}


def _convert(model: nn.Module, slots: dict[str, _Slot], group: ConvertGroup, tensors: dict[str, torch.Tensor],
             targets: Mapping[str, torch.device], dtype: torch.dtype | None, quantizer: Quantizer | None) -> list[str]:
    """Run transformers' conversion of ``group`` and place its outputs; their model names.

    Raises ModelLoadError naming the checkpoint tensors when an output is no model tensor or of
    another shape."""
    out = group.convert(tensors, model)
    sources = ", ".join(k for k, _ in group.sources[:4]) + (" ..." if len(group.sources) > 4 else "")
    strays = [k for k in out if k not in slots]
    if strays or not out:
        raise ModelLoadError(f"converting checkpoint tensors {sources} gave {strays or 'nothing'}, "
                             f"not tensors of the model (expected {group.targets[:4]})")
    _check_shapes(slots, [(sources, k, tuple(v.shape)) for k, v in out.items()])
    dev = targets[group.sources[0][0]]
    for name, value in out.items():
        _place(slots[name], value.to(dev), dtype, quantizer)
    return list(out)


# -- from_pretrained ---------------------------------------------------------------------------------------


def read_config(handle: SafeOpen, src: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` beside the checkpoint ``handle`` opened from ``src`` (same commit for hub sources)."""
    ckpt = handle.checkpoint
    if ckpt.hub is not None:
        from hubfs.paths import RepoPath

        first = next(iter(ckpt.files.values()))
        rp = RepoPath.parse(first.name)  # pinned: hf://<repo>@<sha>/<file>
        folder = rp.path.rsplit("/", 1)[0] if "/" in rp.path else ""
        path = f"{folder}/config.json" if folder else "config.json"
        client = ckpt.hub.client
        url = client.file_url(rp.repo_type.value, rp.repo_id, rp.revision or "main", path)
        try:
            data, _ = client.read_range(url, 0, CONFIG_MAX)
        except FileNotFoundError:
            raise ModelLoadError(f"{ckpt.name}: no config.json beside the weights ({path!r})") from None
        where = f"hf://{rp.repo_id}@{rp.revision}/{path}"
    else:
        text = os.fspath(src)
        folder = text if os.path.isdir(text) else os.path.dirname(text)
        where = os.path.join(folder, "config.json")
        try:
            with open(where, "rb") as f:
                data = f.read(CONFIG_MAX)
        except FileNotFoundError:
            raise ModelLoadError(f"{ckpt.name}: no config.json beside the weights ({where})") from None
    try:
        config = json.loads(data)
    except ValueError as e:
        raise ModelLoadError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{where}: not a JSON object")
    return config


def build_on_meta(model_class: Any, config: dict[str, Any], dtype: torch.dtype) -> nn.Module:
    """``model_class`` built from ``config`` on the meta device (no memory, no init work: its weight
    initialisers are skipped, see :mod:`hubfs.loader.meta_init`)."""
    import transformers

    from hubfs.loader.meta_init import SkipMetaInit

    cfg_class = getattr(model_class, "config_class", None)
    if cfg_class is None or cfg_class is transformers.PretrainedConfig:
        if "model_type" not in config:
            raise ModelLoadError("config.json has no model_type and the model class names no config class")
        cfg = transformers.AutoConfig.for_model(config["model_type"], **{k: v for k, v in config.items()
                                                                         if k != "model_type"})
    else:
        cfg = cfg_class.from_dict(config)
    with torch.device("meta"), SkipMetaInit():
        if hasattr(model_class, "_from_config"):
            model = model_class._from_config(cfg, dtype=dtype)
        else:
            model = model_class.from_config(cfg, dtype=dtype)
    return model  # type: ignore[no-any-return]


def _materialise_rest(model: nn.Module, loaded: set[str], device: torch.device,
                      device_map: Mapping[str, Any] | None) -> list[str]:
    """Put every tensor still on the meta device on its device (uninitialised) and return their names;
    mark the loaded ones so transformers' initialisation leaves them alone."""
    devices = {p: to_device(d) for p, d in (device_map or {}).items()}
    rest: list[str] = []
    for mod_name, mod in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for table in (mod._parameters, mod._buffers):
            for attr, t in list(table.items()):
                if t is None:
                    continue
                name = prefix + attr
                if not t.is_meta:
                    if name in loaded:
                        t._is_hf_initialized = True  # type: ignore[union-attr]
                    continue
                dev = device_for(name, devices, device) if devices else device
                empty = torch.empty_like(t, device=dev)
                table[attr] = nn.Parameter(empty, requires_grad=t.requires_grad) if table is mod._parameters else empty
                rest.append(name)
    return rest


def from_pretrained(
    model_class: Any,
    src: str | os.PathLike[str],
    *,
    revision: str | None = None,
    device: str | int | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    quantize: str | Quantizer | None = None,
    skip: Sequence[str] = ("lm_head",),
    device_map: Mapping[str, str | int | torch.device] | None = None,
    strict: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
    threads: int | None = None,
    key_mapping: Mapping[str, str] | None = None,
) -> nn.Module:
    """A transformers ``model_class`` (e.g. ``LlamaForCausalLM`` or ``AutoModelForCausalLM``) with the weights
    of ``src``, on ``device`` (or per ``device_map``), in eval mode.

    ``dtype`` defaults to the config's ``dtype`` / ``torch_dtype`` (float32 when it names none). The model is
    built on the meta device and filled tensor by tensor; with ``quantize=`` its Linear layers hold
    quantized weights and no full-precision copy of them is ever made. Checkpoint names map as in
    `load_into` (``key_mapping`` too); weights the checkpoint lacks (initialised by transformers) and
    checkpoint tensors the model does not use are logged as a warning, as transformers does.
    """
    handle = open_checkpoint(src, revision=revision, endpoint=endpoint, token=token)
    try:
        config = read_config(handle, src)
        declared = config.get("dtype") or config.get("torch_dtype")
        target = to_dtype(dtype) or (to_dtype(declared) if isinstance(declared, str) and declared != "auto"
                                     else None) or torch.float32
        model = build_on_meta(model_class, config, target)
        dev = to_device(device)
        result = load_into(model, handle, device=dev, dtype=target, quantize=quantize, skip=skip,
                           device_map=device_map, strict=strict, threads=threads, key_mapping=key_mapping)
        if result.missing_keys:
            log.warning("%s: %d weight(s) of %s not in the checkpoint, newly initialised: %s%s", handle.checkpoint.name,
                        len(result.missing_keys), type(model).__name__, ", ".join(result.missing_keys[:20]),
                        " ..." if len(result.missing_keys) > 20 else "")
        if result.unexpected_keys:
            log.warning("%s: %d checkpoint tensor(s) unused by %s: %s%s", handle.checkpoint.name,
                        len(result.unexpected_keys), type(model).__name__, ", ".join(result.unexpected_keys[:20]),
                        " ..." if len(result.unexpected_keys) > 20 else "")
    finally:
        handle.close()
    model.eval()
    return model


__all__ = ["LoadResult", "from_pretrained", "load_into", "read_config"]
