"""transformers against the embedded hub: ``from_pretrained`` online, and offline from a cache that
``hubfs download`` filled (the huggingface_hub layout)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch  # scripts/test.sh installs torch==2.13.0 (CPU)
import transformers
from huggingface_hub import HfApi


@pytest.fixture(scope="module")
def tiny_bert(api: HfApi, tmp_path_factory) -> tuple[str, dict]:
    """A 2-layer BERT with random weights, saved by transformers and uploaded with the official client."""
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg)
    folder = tmp_path_factory.mktemp("tiny-bert")
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").exists()
    rid = f"admin/tiny-bert-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid)
    api.upload_folder(folder_path=str(folder), repo_id=rid)
    return rid, {k: v.clone() for k, v in model.state_dict().items()}


def test_from_pretrained_against_the_hub(tiny_bert, api: HfApi, tmp_path: Path) -> None:
    rid, weights = tiny_bert
    entry = api.get_paths_info(rid, ["model.safetensors"])[0]
    assert entry.lfs is not None and entry.xet_hash, "upload_folder sent the weights through Xet (tree has xetHash)"
    model = transformers.AutoModel.from_pretrained(rid, cache_dir=tmp_path / "cache")
    assert type(model).__name__ == "BertModel"
    got = model.state_dict()
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)


def test_from_pretrained_offline_from_a_hubfs_download(tiny_bert, tmp_path: Path) -> None:
    rid, weights = tiny_bert
    cache = tmp_path / "cache"
    subprocess.run([sys.executable, "-m", "hubfs.cli", "download", rid, "--cache-dir", str(cache), "--quiet"],
                   check=True, capture_output=True, timeout=120)
    script = ("import sys, torch, transformers\n"
              f"m = transformers.AutoModel.from_pretrained({rid!r}, cache_dir={str(cache)!r})\n"
              "torch.save(m.state_dict(), sys.argv[1])\n")
    out = tmp_path / "weights.pt"
    proc = subprocess.run([sys.executable, "-c", script, str(out)], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = torch.load(out)
    assert all(torch.equal(got[k], weights[k]) for k in weights)


def test_push_to_hub_then_from_pretrained(api: HfApi, tmp_path: Path) -> None:
    """``model.push_to_hub`` with the client's defaults (weights through Xet), then ``from_pretrained`` back."""
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64)
    torch.manual_seed(1)
    model = transformers.BertModel(cfg)
    rid = f"admin/pushed-bert-{uuid.uuid4().hex[:8]}"
    model.push_to_hub(rid, commit_message="push from transformers")
    entry = api.get_paths_info(rid, ["model.safetensors"])[0]
    assert entry.lfs is not None and entry.xet_hash, "push_to_hub sent the weights through Xet"
    assert api.list_repo_commits(rid)[0].title == "push from transformers"
    back = transformers.AutoModel.from_pretrained(rid, cache_dir=tmp_path / "cache")
    want, got = model.state_dict(), back.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
