"""Map checkpoint tensor names onto a model's state-dict names the way transformers' ``from_pretrained`` does.

transformers renames legacy checkpoint keys on load (``vit.encoder.layer.0.attention.attention.query.weight``
-> ``vit.layers.0.attention.q_proj.weight``, ``LayerNorm.gamma`` -> ``LayerNorm.weight``), adds or strips
the ``base_model_prefix`` (a ``BertModel`` checkpoint into ``BertForMaskedLM``), and for some architectures
converts tensors (per-expert weights merged, fused ``qkv`` split). `plan_keys` reuses transformers' own
registry and renaming function (``get_model_conversion_mapping``, ``rename_source_key``), so a checkpoint
maps here exactly as it maps there; `ConvertGroup.convert` runs transformers' own ``WeightConverter``. Any
other ``nn.Module`` gets names as they are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hubfs.errors import ModelLoadError


@dataclass
class ConvertGroup:
    """Checkpoint tensors that a transformers ``WeightConverter`` turns into model tensors (merge, split...).

    ``first`` is the model key transformers files the group under, ``sources`` the checkpoint keys in the
    order transformers feeds them, ``targets`` the model keys it is expected to produce."""

    first: str
    converter: Any
    sources: list[tuple[str, str]] = field(default_factory=list)  # (checkpoint key, source pattern)
    targets: list[str] = field(default_factory=list)

    def convert(self, tensors: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
        """The model tensors made from ``tensors`` (checkpoint key -> tensor, every source present).

        Raises ModelLoadError naming the checkpoint tensors when the conversion fails."""
        conv = deepcopy(self.converter)
        for key, pattern in self.sources:
            conv.add_tensor(self.first, key, pattern, tensors[key])
        names = ", ".join(k for k, _ in self.sources[:4]) + (" ..." if len(self.sources) > 4 else "")
        try:
            out = conv.convert(self.first, model=model, config=getattr(model, "config", None))
        except Exception as e:  # noqa: BLE001 - any failure of transformers' op: name the tensors, never leave them random
            raise ModelLoadError(f"cannot convert checkpoint tensors {names} into {self.first}: {e}") from None
        return {k: (v[0] if isinstance(v, list) else v) for k, v in out.items()}


@dataclass
class KeyPlan:
    """Where each checkpoint key goes: ``renamed`` (checkpoint key -> model key, one-to-one), ``groups``
    (converted tensors) and ``unexpected`` (checkpoint keys the model has no place for)."""

    renamed: dict[str, str] = field(default_factory=dict)
    groups: list[ConvertGroup] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def is_transformers_model(model: nn.Module) -> bool:
    """Whether ``model`` is a transformers ``PreTrainedModel`` (without importing transformers needlessly)."""
    if not callable(getattr(type(model), "initialize_weights", None)) or not hasattr(model, "config"):
        return False
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(model, PreTrainedModel)


def _natural(key: str) -> list[Any]:
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split(".")]


def plan_keys(model: nn.Module, names: Iterable[str], known: Collection[str],
              key_mapping: Mapping[str, str] | None = None) -> KeyPlan:
    """Map the checkpoint ``names`` onto the model's state-dict names ``known`` (transformers 5 rules for a
    transformers model, names as they are otherwise). ``key_mapping``: regex -> replacement applied first,
    like transformers' ``from_pretrained(key_mapping=...)``."""
    plan = KeyPlan()
    names = list(names)
    if not is_transformers_model(model):
        rules = [(re.compile(k), v) for k, v in (key_mapping or {}).items()]
        for name in names:
            key = name
            for rx, repl in rules:
                key = rx.sub(repl, key)
            if key in known:
                plan.renamed[name] = key
            else:
                plan.unexpected.append(name)
        return plan
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    mapping = get_model_conversion_mapping(model, dict(key_mapping) if key_mapping else None)  # type: ignore[arg-type]
    renamings = [t for t in mapping if isinstance(t, WeightRenaming)]
    converters = [t for t in mapping if isinstance(t, WeightConverter)]
    by_pattern = {p: c for c in converters for p in c.source_patterns}
    prefix = getattr(model, "base_model_prefix", "") or None
    meta = dict.fromkeys(known, True)  # rename_source_key only asks .get(key) is not None
    groups: dict[str, ConvertGroup] = {}
    for original in sorted(names, key=_natural):  # transformers' order: converters stack in this order
        key, pattern = rename_source_key(original, renamings, converters, prefix, meta)
        if key not in meta and original in meta:  # should not have been renamed (prefix only)
            key, pattern = rename_source_key(original, [], [], prefix, meta)
        if key not in meta:
            plan.unexpected.append(original)
        elif pattern is None:
            plan.renamed[original] = key
        else:
            conv = by_pattern[pattern]
            group = groups.get(key)
            if group is None:
                first_target = conv.target_patterns[0]
                targets = [key.replace(first_target, t) for t in conv.target_patterns] if first_target in key else [key]
                group = groups[key] = ConvertGroup(key, conv, [], [t for t in targets if t in meta] or [key])
            group.sources.append((original, pattern))
    plan.groups = list(groups.values())
    order = {n: i for i, n in enumerate(names)}
    plan.unexpected.sort(key=order.__getitem__)
    plan.renamed = dict(sorted(plan.renamed.items(), key=lambda kv: order[kv[0]]))
    return plan


def _ignored(patterns: Iterable[str] | None) -> re.Pattern[str] | None:
    pats = list(patterns or ())
    return re.compile("|".join(f"({p})" for p in pats)) if pats else None


def filter_reported(model: nn.Module, missing: list[str], unexpected: list[str]) -> tuple[list[str], list[str]]:
    """``missing`` / ``unexpected`` less what transformers itself does not report for this model
    (``_keys_to_ignore_on_load_missing`` / ``_unexpected``, stale ``rotary_emb.inv_freq`` and
    ``position_ids`` buffers)."""
    if not is_transformers_model(model):
        return missing, unexpected
    extra = set()
    buffers = [n for n, _ in model.named_buffers()]
    if any(b.endswith("rotary_emb.inv_freq") for b in buffers):
        extra.add(r"rotary_emb\.inv_freq")
    if any(b.endswith("position_ids") for b in buffers):
        extra.add(r"(^|\.)position_ids$")
    miss_re = _ignored(getattr(model, "_keys_to_ignore_on_load_missing", None))
    unexp_re = _ignored(set(getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()) | extra)
    return ([k for k in missing if miss_re is None or not miss_re.search(k)],
            [k for k in unexpected if unexp_re is None or not unexp_re.search(k)])


__all__ = ["ConvertGroup", "KeyPlan", "filter_reported", "is_transformers_model", "plan_keys"]
