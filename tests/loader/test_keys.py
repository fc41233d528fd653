"""Checkpoint keys mapped onto transformers models the way transformers 5 maps them: legacy ViT names, old
LayerNorm gamma/beta, base_model_prefix added or stripped (BERT, GPT-2), per-expert weights merged by a
WeightConverter (Mixtral); each loaded by from_pretrained and load_into, equal to transformers' own load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    MixtralConfig,
    MixtralForCausalLM,
    ViTConfig,
    ViTForImageClassification,
)

from hubfs.errors import ModelLoadError
from hubfs.loader import from_pretrained, load_into
from hubfs.loader.api import device_for


def _save(model: nn.Module, folder: Path, rename: dict[str, str] | None = None) -> Path:
    """``model`` saved by save_pretrained into ``folder``, its tensor names then rewritten by ``rename``
    (substring -> replacement), as older transformers versions wrote them."""
    model.save_pretrained(folder)
    if rename:
        sd = load_file(folder / "model.safetensors")
        out = {}
        for k, v in sd.items():
            for old, new in rename.items():
                k = k.replace(old, new)
            out[k] = v
        save_file(out, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def _meta(cls: type, config: object) -> nn.Module:
    with torch.device("meta"):
        return cls._from_config(config, dtype=torch.float32)  # type: ignore[attr-defined, no-any-return]


def _ref(cls: type, folder: Path) -> tuple[nn.Module, dict[str, list[str]]]:
    model, info = cls.from_pretrained(folder, output_loading_info=True)  # type: ignore[attr-defined]
    return model.eval(), info


def _out(model: nn.Module, x: torch.Tensor, attr: str) -> torch.Tensor:
    with torch.no_grad():
        return getattr(model.eval()(x), attr)  # type: ignore[no-any-return]


def test_vit_legacy_names(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=16,
                    patch_size=8, num_labels=3)
    folder = _save(ViTForImageClassification(cfg), tmp_path)
    stored = load_file(folder / "model.safetensors")
    assert "vit.encoder.layer.0.attention.attention.query.weight" in stored  # transformers 5 writes the legacy names
    ref, info = _ref(ViTForImageClassification, folder)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    want = _out(ref, x, "logits")
    model = from_pretrained(ViTForImageClassification, folder)
    assert torch.equal(_out(model, x, "logits"), want)
    meta = _meta(ViTForImageClassification, ref.config)
    result = load_into(meta, folder)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(_out(meta, x, "logits"), want)


BERT = BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=32)


def test_bert_prefix_added_and_gamma_beta(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A BertModel checkpoint (no ``bert.`` prefix, LayerNorm saved as gamma/beta) into BertForMaskedLM."""
    torch.manual_seed(0)
    folder = _save(BertModel(BERT, add_pooling_layer=False), tmp_path,
                   {"LayerNorm.weight": "LayerNorm.gamma", "LayerNorm.bias": "LayerNorm.beta"})
    assert any(k.endswith("LayerNorm.gamma") for k in load_file(folder / "model.safetensors"))
    ref, info = _ref(BertForMaskedLM, folder)
    with caplog.at_level(logging.WARNING, logger="hubfs.loader.modules"):
        model = from_pretrained(BertForMaskedLM, folder)
    meta = _meta(BertForMaskedLM, ref.config)
    result = load_into(meta, folder)
    assert set(result.missing_keys) == set(info["missing_keys"]) != set()  # the MLM head only, as transformers says
    assert all(k.startswith("cls.") for k in result.missing_keys) and result.unexpected_keys == []
    assert "newly initialised" in caplog.text and "cls.predictions.transform.dense.weight" in caplog.text
    ids = torch.randint(0, 60, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the encoder is the checkpoint's: equal hidden states
        want = ref.bert(ids).last_hidden_state
        assert torch.equal(model.bert(ids).last_hidden_state, want)
        assert torch.equal(meta.eval().bert(ids).last_hidden_state, want)


def test_bert_prefix_stripped(tmp_path: Path) -> None:
    """A BertForMaskedLM checkpoint (``bert.`` prefix) into BertModel."""
    torch.manual_seed(0)
    folder = _save(BertForMaskedLM(BERT), tmp_path)
    ref, info = _ref(BertModel, folder)
    ids = torch.randint(0, 60, (2, 10), generator=torch.Generator().manual_seed(1))
    want = _out(ref, ids, "last_hidden_state")
    model = from_pretrained(BertModel, folder)
    assert torch.equal(_out(model, ids, "last_hidden_state"), want)
    meta = _meta(BertModel, ref.config)
    result = load_into(meta, folder)
    assert set(result.missing_keys) == set(info["missing_keys"])  # the pooler, not in an MLM checkpoint
    assert torch.equal(_out(meta, ids, "last_hidden_state"), want)
    assert all(k.startswith("cls.") for k in result.unexpected_keys) and result.unexpected_keys


def test_gpt2_without_prefix(tmp_path: Path) -> None:
    """A GPT-2 checkpoint written without ``transformer.`` (as openai-community/gpt2 is), tied head."""
    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50, n_positions=32, bos_token_id=0, eos_token_id=0)
    folder = _save(GPT2LMHeadModel(cfg), tmp_path, {"transformer.": ""})
    assert "h.0.attn.c_attn.weight" in load_file(folder / "model.safetensors")
    ref, info = _ref(GPT2LMHeadModel, folder)
    assert not info["missing_keys"]
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    want = _out(ref, ids, "logits")
    assert torch.equal(_out(from_pretrained(GPT2LMHeadModel, folder), ids, "logits"), want)
    meta = _meta(GPT2LMHeadModel, ref.config)
    result = load_into(meta, folder, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert meta.lm_head.weight is meta.transformer.wte.weight
    assert torch.equal(_out(meta, ids, "logits"), want)


MIXTRAL = MixtralConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, num_local_experts=3, num_experts_per_tok=2, max_position_embeddings=32)


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return _save(MixtralForCausalLM(MIXTRAL), tmp_path_factory.mktemp("mixtral"))


def test_mixtral_experts_merged(mixtral: Path) -> None:
    """Per-expert w1/w3/w2 tensors merged into the fused gate_up_proj / down_proj by transformers' converter."""
    stored = load_file(mixtral / "model.safetensors")
    assert "model.layers.0.block_sparse_moe.experts.2.w3.weight" in stored
    ref, info = _ref(MixtralForCausalLM, mixtral)
    assert not info["missing_keys"]
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    want = _out(ref, ids, "logits")
    assert torch.equal(_out(from_pretrained(MixtralForCausalLM, mixtral), ids, "logits"), want)
    meta = _meta(MixtralForCausalLM, ref.config)
    seen: list[str] = []
    result = load_into(meta, mixtral, strict=True, on_tensor=lambda n, t: seen.append(n))
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert sorted(seen) == sorted(stored)  # every checkpoint tensor read once, under its own name
    assert torch.equal(_out(meta, ids, "logits"), want)
    q = _meta(MixtralForCausalLM, ref.config)
    qres = load_into(q, mixtral, quantize="int8")  # converted experts are 3-d parameters: never swapped
    assert "model.layers.0.self_attn.q_proj.weight" in qres.quantized
    assert not any("experts" in n for n in qres.quantized)


def test_fused_tensors_split(tmp_path: Path) -> None:
    """HRM-text checkpoints store fused gqkv / gate_up projections that transformers chunks into the model's
    separate ones (one tensor -> several), also straight into quantized layers."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("hrm_text", vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, head_dim=16, num_layers_per_stack=1, H_cycles=1, L_cycles=1,
                               max_position_embeddings=32)
    torch.manual_seed(0)
    cls = type(AutoModelForCausalLM.from_config(cfg))
    folder = _save(cls(cfg), tmp_path)
    assert "model.H_module.layers.0.attn.gqkv_proj.weight" in load_file(folder / "model.safetensors")
    ref, info = _ref(cls, folder)
    assert not info["missing_keys"]
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    want = _out(ref, ids, "logits")
    assert torch.equal(_out(from_pretrained(cls, folder), ids, "logits"), want)
    meta = _meta(cls, ref.config)
    result = load_into(meta, folder, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(_out(meta, ids, "logits"), want)
    q = _meta(cls, ref.config)
    qres = load_into(q, folder, quantize="int8", strict=True)
    assert "model.L_module.layers.0.self_attn.k_proj.weight" in qres.quantized  # split, then quantized
    got = _out(q, ids, "logits")
    assert float((got - want).abs().max() / want.abs().max()) < 0.05


def test_converter_failure_names_tensors(mixtral: Path, tmp_path: Path) -> None:
    sd = load_file(mixtral / "model.safetensors")
    sd["model.layers.1.block_sparse_moe.experts.1.w3.weight"] = torch.zeros(7, 5)  # cannot be concatenated
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"model\.layers\.1\.block_sparse_moe\.experts\.\d\.w[13]\.weight"):
        load_into(_meta(MixtralForCausalLM, MIXTRAL), tmp_path)


def test_key_mapping(tmp_path: Path) -> None:
    """User regex renames first (transformers' ``key_mapping``), on a transformers model and on a plain module."""
    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=32, bos_token_id=0, eos_token_id=0)
    ref = GPT2LMHeadModel(cfg).eval()
    folder = _save(ref, tmp_path, {"transformer.": "gpt."})
    meta = _meta(GPT2LMHeadModel, ref.config)
    assert load_into(meta, folder).missing_keys  # nothing maps without the user's rule
    meta = _meta(GPT2LMHeadModel, ref.config)
    result = load_into(meta, folder, key_mapping={r"^gpt\.": "transformer."})
    assert result.missing_keys == [] and result.unexpected_keys == []
    ids = torch.randint(0, 50, (1, 8), generator=torch.Generator().manual_seed(1))
    assert torch.equal(_out(meta, ids, "logits"), _out(ref, ids, "logits"))
    plain = nn.Sequential(nn.Linear(4, 3))
    save_file({"layer0.weight": torch.ones(3, 4), "layer0.bias": torch.zeros(3)}, tmp_path / "plain.safetensors")
    result = load_into(plain, tmp_path / "plain.safetensors", key_mapping={r"^layer(\d+)\.": r"\1."})
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert torch.equal(plain[0].weight, torch.ones(3, 4))


def test_device_for() -> None:
    cpu, meta = torch.device("cpu"), torch.device("meta")
    devices = {"": cpu, "model.layers.1": meta}
    assert device_for("model.layers.1.mlp.weight", devices, None) == meta
    assert device_for("model.layers.10.mlp.weight", devices, None) == cpu
    with pytest.raises(ValueError, match="matches no device_map prefix"):
        device_for("x", {"model": cpu}, None)
