"""The model cache of ``--inference``: single-flight loads, LRU eviction by count, the memory bound, new
commits picked up, and batching of concurrent requests (counted through ``/api/inference/stats``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from . import tiny_models
from .conftest import HubServer, model_url, upload

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def lru_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    server = HubServer(tmp_path_factory.mktemp("lru-hub") / "hub", "--inference", "--device", "cpu",
                       "--max-models", "1", "--max-memory", "1M").start(timeout=60)
    yield server
    server.stop()


def stats(server: HubServer) -> dict:  # type: ignore[type-arg]
    r = httpx.get(f"{server.endpoint}/api/inference/stats", timeout=30,
                  headers={"authorization": f"Bearer {server.admin_token}"})
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def loads_of(server: HubServer, repo_id: str) -> dict[str, int]:
    return {k: v for k, v in stats(server)["loads"].items() if k.startswith(repo_id + "@")}


def classify(server: HubServer, repo_id: str, text: str = "a good day"):  # type: ignore[no-untyped-def]
    return InferenceClient(model=model_url(server, repo_id), token=server.admin_token, timeout=120).text_classification(text)


def test_concurrent_cold_requests_load_once_then_lru_evicts(lru_hub, built) -> None:
    upload(lru_hub.endpoint, lru_hub.admin_token, built["nli"], "admin/lru-a")
    upload(lru_hub.endpoint, lru_hub.admin_token, built["mlm"], "admin/lru-b")
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(classify(lru_hub, "admin/lru-a"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and results[0] == results[1] == results[2]
    assert list(loads_of(lru_hub, "admin/lru-a").values()) == [1]  # three cold requests, one load

    InferenceClient(model=model_url(lru_hub, "admin/lru-b"), token=lru_hub.admin_token).fill_mask("the [MASK] runs")
    now = stats(lru_hub)
    assert now["evictions"] >= 1 and [m["model"].split("@")[0] for m in now["loaded"]] == ["admin/lru-b"]
    assert classify(lru_hub, "admin/lru-a") == results[0]
    assert list(loads_of(lru_hub, "admin/lru-a").values()) == [2]  # evicted, so loaded again


def test_a_new_commit_to_main_is_picked_up(lru_hub, built, tmp_path: Path) -> None:
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    upload(lru_hub.endpoint, lru_hub.admin_token, built["nli"], "admin/lru-c")
    before = classify(lru_hub, "admin/lru-c")
    folder = Path(shutil.copytree(built["nli"], tmp_path / "nli2"))
    tensors = load_file(folder / "model.safetensors")
    tensors["classifier.bias"] = tensors["classifier.bias"] + torch.tensor([0.0, 0.0, 9.0])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    upload(lru_hub.endpoint, lru_hub.admin_token, folder, "admin/lru-c")
    sha = HfApi(endpoint=lru_hub.endpoint, token=lru_hub.admin_token).model_info("admin/lru-c").sha
    after = classify(lru_hub, "admin/lru-c")
    assert after[0].label == "contradiction" and after[0].score > 0.99 and after != before
    assert f"admin/lru-c@{sha[:12]}:text-classification" in loads_of(lru_hub, "admin/lru-c")
    # one folder of small files (the new commit changed only weights: the same configs and tokenizer),
    # no copy of the weights (read from the hub's storage), nothing left of models no longer loaded
    folders = [p for p in (lru_hub.data_dir / "inference" / "models").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and (folders[0] / "config.json").is_file()
    assert not list(folders[0].rglob("*.safetensors"))


def test_a_model_over_max_memory_is_refused_and_others_keep_serving(lru_hub, tmp_path: Path) -> None:
    big = tiny_models.build_gpt2(tmp_path / "big", layers=2, width=256)  # ~6 MB of weights > --max-memory 1M
    upload(lru_hub.endpoint, lru_hub.admin_token, big, "admin/lru-big")
    c = InferenceClient(model=model_url(lru_hub, "admin/lru-big"), token=lru_hub.admin_token)
    with pytest.raises(HfHubHTTPError) as err:
        c.text_generation("hello", max_new_tokens=2)
    assert err.value.response.status_code == 503 and "--max-memory" in err.value.response.json()["error"]
    assert classify(lru_hub, "admin/lru-c")


def test_concurrent_requests_run_in_batches(lru_hub) -> None:
    single = classify(lru_hub, "admin/lru-c", "the same text")
    out: list[object] = []
    threads = [threading.Thread(target=lambda: out.append(classify(lru_hub, "admin/lru-c", "the same text")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 8
    for o in out:
        assert [e.label for e in o] == [e.label for e in single]  # type: ignore[attr-defined]
        assert [e.score for e in o] == pytest.approx([e.score for e in single], abs=1e-5)  # type: ignore[attr-defined]
    batches = [b for m in stats(lru_hub)["loaded"] for b in m["batches"]]
    assert max(batches) > 1


def test_stats_are_the_admins(lru_hub) -> None:
    token = lru_hub.add_user("lru-eve")
    r = httpx.get(f"{lru_hub.endpoint}/api/inference/stats", headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 403


def test_a_request_past_the_timeout_gets_504_and_the_hub_stays_up(built, tmp_path: Path) -> None:
    server = HubServer(tmp_path / "hub", "--inference", "--device", "cpu", "--inference-timeout", "0.001").start(timeout=60)
    try:
        upload(server.endpoint, server.admin_token, built["nli"], "admin/slow")
        with pytest.raises(HfHubHTTPError) as err:
            classify(server, "admin/slow")
        assert err.value.response.status_code == 504 and "limit" in err.value.response.json()["error"]
        r = httpx.get(f"{server.endpoint}/v1/models", headers={"authorization": f"Bearer {server.admin_token}"})
        assert r.status_code == 200 and "admin/slow" in {m["id"] for m in r.json()["data"]}
    finally:
        server.stop()
