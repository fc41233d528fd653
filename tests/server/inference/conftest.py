"""One hub started with ``--inference`` for this package, and the tiny models uploaded to it once."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2]))
import tiny_models
from hub_server import HubServer

MODELS = {"gpt2": "text-generation", "mlm": "fill-mask", "nli": "text-classification",
          "ner": "token-classification", "emb": "feature-extraction", "vit": "image-classification"}


def build(folder: Path, kind: str) -> Path:
    if kind == "gpt2":
        return tiny_models.build_gpt2(folder)
    if kind == "vit":
        return tiny_models.build_vit(folder)
    return tiny_models.build_bert(folder, MODELS[kind])


def upload(endpoint: str, token: str, folder: Path, repo_id: str, private: bool = False) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder)


@pytest.fixture(scope="package")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny model, built locally (random weights, local tokenizers)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: build(root / kind, kind) for kind in MODELS}


@pytest.fixture(scope="package")
def inf_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A hub serving inference on the CPU, with room for every tiny model at once."""
    server = HubServer(tmp_path_factory.mktemp("inference-hub") / "hub", "--inference", "--device", "cpu",
                       "--max-models", "8").start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="package")
def uploaded(inf_hub: HubServer, built: dict[str, Path]) -> dict[str, str]:
    """kind -> repo id of each tiny model on ``inf_hub`` (admin's, public)."""
    out = {}
    for kind, folder in built.items():
        upload(inf_hub.endpoint, inf_hub.admin_token, folder, f"admin/tiny-{kind}")
        out[kind] = f"admin/tiny-{kind}"
    return out


def model_url(server: HubServer, repo_id: str) -> str:
    return f"{server.endpoint}/models/{repo_id}"
