"""load_into / from_pretrained on a small transformers Llama saved locally: logits equal to the reference,
meta models, tied weights, missing / unexpected keys, quantize= (skip list, bounds), the session hub, and
peak host memory when quantizing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from hubfs.errors import ModelLoadError
from hubfs.loader import from_pretrained, load_into
from hubfs.loader.quant import quantizer
from hubfs.loader.quant.linear import QuantLinear

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ROOT = Path(__file__).resolve().parents[2]


def tiny_config(tied: bool) -> LlamaConfig:
    return LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tied)


Saved = tuple[Path, LlamaForCausalLM, torch.Tensor, torch.Tensor]


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory) -> dict[bool, Saved]:
    """For tied and untied embeddings: a tiny Llama saved with save_pretrained (bf16), the reference model loaded
    back by transformers, inputs and the reference logits."""
    out = {}
    for tied in (True, False):
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp("llama")
        LlamaForCausalLM(tiny_config(tied)).to(torch.bfloat16).save_pretrained(folder)
        ref = LlamaForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
        ids = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out[tied] = (folder, ref, ids, ref(ids).logits)
    return out


@pytest.fixture(params=[True, False], ids=["tied", "untied"])
def saved(request, saved_models: dict[bool, Saved]) -> Saved:
    return saved_models[request.param]


def meta_model(config: LlamaConfig, dtype: torch.dtype = torch.bfloat16) -> LlamaForCausalLM:
    """The model on the meta device, built the way transformers builds it (bf16 weights, fp32 rotary buffers)."""
    with torch.device("meta"):
        return LlamaForCausalLM._from_config(config, dtype=dtype)


def _logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids.to(next(model.parameters()).device)).logits.cpu()  # type: ignore[no-any-return]


@pytest.mark.parametrize("device", DEVICES)
def test_load_into_meta_model_logits_equal(saved, device: str) -> None:
    folder, ref, ids, want = saved
    model = meta_model(ref.config)
    result = load_into(model, folder, device=device)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])  # inv_freq recomputed
    assert all(p.device.type == device for p in model.parameters())
    assert torch.equal(_logits(model.eval(), ids), want)
    if ref.config.tie_word_embeddings:
        assert model.lm_head.weight is model.model.embed_tokens.weight


def test_load_into_real_model_in_place(saved) -> None:
    folder, ref, ids, want = saved
    model = LlamaForCausalLM._from_config(ref.config, dtype=torch.bfloat16).eval()
    q_proj = model.model.layers[0].self_attn.q_proj.weight
    seen: list[str] = []
    missing, unexpected = load_into(model, str(folder / "model.safetensors"), on_tensor=lambda n, t: seen.append(n))
    assert missing == [] and unexpected == []
    assert model.model.layers[0].self_attn.q_proj.weight is q_proj  # copied into, not replaced
    assert seen == list(load_file(folder / "model.safetensors"))  # file-offset order, each tensor once
    assert torch.equal(_logits(model, ids), want)


def test_tied_checkpoint_holding_both_names(saved_models: dict[bool, Saved], tmp_path: Path) -> None:
    folder, ref, ids, want = saved_models[True]
    sd = load_file(folder / "model.safetensors")
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    save_file(sd, tmp_path / "model.safetensors")
    model = meta_model(ref.config)
    read: list[str] = []
    result = load_into(model, tmp_path / "model.safetensors", on_tensor=lambda n, t: read.append(n))
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert len(read) == len(sd) - 1  # the tied tensor is read once
    assert torch.equal(_logits(model.eval(), ids), want)


def test_missing_unexpected_strict_and_shapes(saved, tmp_path: Path) -> None:
    folder, ref, _, _ = saved
    sd = load_file(folder / "model.safetensors")
    del sd["model.norm.weight"]
    sd["extra.weight"] = torch.zeros(3)
    save_file(sd, tmp_path / "model.safetensors")
    model = meta_model(ref.config, torch.float32)
    result = load_into(model, tmp_path)
    assert result.missing_keys == ["model.norm.weight"] and result.unexpected_keys == ["extra.weight"]
    assert torch.equal(model.model.norm.weight, torch.ones(64))  # initialised by transformers, not left on meta
    model = meta_model(ref.config, torch.float32)
    with pytest.raises(ModelLoadError, match=r"missing keys \['model.norm.weight'\], unexpected keys \['extra.weight'\]"):
        load_into(model, tmp_path, strict=True)
    bad = LlamaForCausalLM(tiny_config(ref.config.tie_word_embeddings).__class__(**{**ref.config.to_dict(), "intermediate_size": 96}))
    before = {n: p.clone() for n, p in bad.named_parameters()}
    with pytest.raises(ModelLoadError, match=r"model.layers.0.mlp.down_proj.weight: checkpoint \[64, 128\] vs model \[64, 96\]"):
        load_into(bad, folder)
    assert all(torch.equal(p, before[n]) for n, p in bad.named_parameters())  # rejected before any byte moved


def test_device_map_places_tensors(saved) -> None:
    folder, ref, _, _ = saved
    model = meta_model(ref.config)
    result = load_into(model, folder, device_map={"": "cpu", "model.layers.1": "meta"})
    assert result.missing_keys == []
    for name, p in model.named_parameters():
        assert p.device.type == ("meta" if name.startswith("model.layers.1.") else "cpu"), name


@pytest.mark.parametrize("kind", ["int8", "nf4", "fp8"])
def test_quantize_swaps_linears_within_bounds(saved, kind: str) -> None:
    folder, ref, ids, want = saved
    model = meta_model(ref.config)
    result = load_into(model, folder, quantize=kind)
    layers = [n for n, m in model.named_modules() if isinstance(m, QuantLinear)]
    assert len(layers) == 2 * 7 and [f"{n}.weight" for n in layers] == sorted(result.quantized, key=[f"{n}.weight" for n in layers].index)
    assert isinstance(model.lm_head, nn.Linear)  # the default skip list, and a tied head is never swapped
    sd = load_file(folder / "model.safetensors")
    q = model.model.layers[1].mlp.down_proj.qweight
    expect = quantizer(kind).quantize(sd["model.layers.1.mlp.down_proj.weight"])
    assert torch.equal(q.data, expect.data) and torch.equal(q.scales, expect.scales)  # quantized from the raw bytes
    got = _logits(model.eval(), ids).float()
    err = float((got - want.float()).abs().max() / want.float().abs().max())
    assert err < {"int8": 0.05, "fp8": 0.1, "nf4": 0.25}[kind], err
    # the skip list is honoured: nothing under model.layers.1 is swapped
    model = meta_model(ref.config)
    load_into(model, folder, quantize=kind, skip=("lm_head", "model.layers.1"))
    assert not any(isinstance(m, QuantLinear) for m in model.model.layers[1].modules())
    assert isinstance(model.model.layers[0].mlp.up_proj, QuantLinear)


def test_from_pretrained_local_and_hub(saved, api, repo_id) -> None:
    folder, _, ids, want = saved
    model = from_pretrained(LlamaForCausalLM, folder)
    assert next(model.parameters()).dtype == torch.bfloat16  # the config's dtype
    assert torch.equal(_logits(model, ids), want)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder))
    for src in (repo_id, f"hf://{repo_id}", f"hf://{repo_id}/model.safetensors"):
        model = from_pretrained(LlamaForCausalLM, src, revision="main" if src == repo_id else None)
        assert torch.equal(_logits(model, ids), want), src
    quant = from_pretrained(LlamaForCausalLM, repo_id, quantize="nf4")
    assert isinstance(quant.model.layers[0].self_attn.q_proj, QuantLinear)
    assert float((_logits(quant, ids).float() - want.float()).abs().max() / want.float().abs().max()) < 0.25


def test_from_pretrained_bad_config(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, tmp_path / "model.safetensors")
    with pytest.raises(ModelLoadError, match="no config.json beside the weights"):
        from_pretrained(LlamaForCausalLM, tmp_path)
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ModelLoadError, match="config.json: not valid JSON"):
        from_pretrained(LlamaForCausalLM, tmp_path)


PEAK = textwrap.dedent("""
    import json, sys, torch
    from torch import nn
    from hubfs.loader import load_into
    torch.set_num_threads(1)  # this process only: CI boxes are small and shared
    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    with torch.device("meta"):
        model = nn.Sequential(*[nn.Linear(1024, 1024, bias=False, dtype=torch.bfloat16) for _ in range(32)])
    open("/proc/self/clear_refs", "w").write("5")  # torch, hubfs and the model are in: reset the high-water mark
    base = hwm()
    result = load_into(model, sys.argv[1], quantize=sys.argv[2], skip=(), threads=2)
    print(json.dumps({"growth": hwm() - base, "quantized": len(result.quantized),
                      "bytes": sum(m.qweight.nbytes for m in model)}))
""")


def test_peak_host_memory_when_quantizing(tmp_path: Path) -> None:
    """32 x 2 MiB bf16 weights (64 MiB) quantized to nf4 on load: the process never holds the full-precision
    model (VmHWM growth, in a fresh process). glibc's mmap threshold is pinned at 1 MiB there so that freed
    scratch memory goes back to the kernel and VmHWM measures live memory, not the allocator's retention."""
    g = torch.Generator().manual_seed(0)
    save_file({f"{i}.weight": torch.randn(1024, 1024, generator=g).to(torch.bfloat16) for i in range(32)},
              tmp_path / "model.safetensors")
    full = 32 * 1024 * 1024 * 2
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / "model.safetensors"), "nf4"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["quantized"] == 32 and stats["bytes"] < full / 3.5
    print(f"peak RSS growth {stats['growth'] >> 20} MiB for a {full >> 20} MiB bf16 model ({stats['bytes'] >> 20} MiB nf4)")
    assert stats["growth"] < 0.75 * full, f"peak RSS grew {stats['growth'] >> 20} MiB for a {full >> 20} MiB model"
