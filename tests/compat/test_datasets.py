"""The ``datasets`` library against the embedded hub: push_to_hub, load_dataset by repo id and through
``hf://`` data files (served by hubfs's filesystem), streaming, and ``to_parquet`` onto ``hf://``."""

from __future__ import annotations

import uuid

import datasets
import fsspec
import pandas as pd
import pytest
from huggingface_hub import HfApi

from hubfs.fs import HubFileSystem


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    datasets.disable_progress_bars()


def _rows(n: int) -> dict[str, list]:
    return {"text": [f"review {i}" for i in range(n)], "label": [i % 3 for i in range(n)]}


def test_push_to_hub_then_load_dataset(api: HfApi) -> None:
    rid = f"admin/pushed-{uuid.uuid4().hex[:8]}"
    ds = datasets.DatasetDict({"train": datasets.Dataset.from_dict(_rows(300)),
                               "test": datasets.Dataset.from_dict(_rows(40))})
    ds.push_to_hub(rid)  # shards are preuploaded as LFS (.parquet), then one commit
    files = api.list_repo_files(rid, repo_type="dataset")
    assert any(f.startswith("data/train-") and f.endswith(".parquet") for f in files), files
    parquet = api.get_paths_info(rid, [f for f in files if f.endswith(".parquet")], repo_type="dataset")
    assert [f.lfs is not None for f in parquet] == [True, True]
    assert all(f.xet_hash for f in parquet), "push_to_hub sent the parquet shards through Xet (tree has xetHash)"
    back = datasets.load_dataset(rid)
    assert back["train"].num_rows == 300 and back["test"].num_rows == 40
    assert back["train"][7] == {"text": "review 7", "label": 1}
    streamed = datasets.load_dataset(rid, split="train", streaming=True)
    assert [row["text"] for row in streamed.take(3)] == ["review 0", "review 1", "review 2"]


def test_hf_paths_go_through_hubfs(api: HfApi) -> None:
    assert fsspec.get_filesystem_class("hf") is HubFileSystem
    rid = f"admin/hfpaths-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid, repo_type="dataset")
    datasets.Dataset.from_dict(_rows(120)).to_parquet(f"hf://datasets/{rid}/data/part-0.parquet")  # one commit
    pd.DataFrame(_rows(80)).to_parquet(f"hf://datasets/{rid}/data/part-1.parquet")
    got = datasets.load_dataset("parquet", data_files=f"hf://datasets/{rid}/data/part-*.parquet", split="train")
    assert got.num_rows == 200 and sorted(set(got["label"])) == [0, 1, 2]
    pd.DataFrame(_rows(5)).to_csv(f"hf://datasets/{rid}/small.csv", index=False)
    csv = datasets.load_dataset("csv", data_files=f"hf://datasets/{rid}/small.csv", split="train", streaming=True)
    assert [row["label"] for row in csv] == [0, 1, 2, 0, 1]
    assert len(api.list_repo_commits(rid, repo_type="dataset")) == 4  # creation + one commit per write
