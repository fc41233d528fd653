"""Data libraries through ``hf://`` resolve to hubfs and work end to end: pandas, pyarrow datasets, torch."""

from __future__ import annotations

import io
import uuid

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FSSpecHandler, PyFileSystem

from hubfs.fs import HubFileSystem


@pytest.fixture(scope="module")
def repo(api) -> str:
    rid = f"admin/frames-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid, repo_type="dataset")
    return f"datasets/{rid}"


def _frame(n: int, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"id": range(seed * n, seed * n + n), "x": [i * 0.5 for i in range(n)],
                         "label": [f"row-{seed}-{i}" for i in range(n)]})


def test_hf_protocol_is_hubfs(hub) -> None:
    assert type(fsspec.filesystem("hf")).__module__ == "hubfs.fs"
    fs, path = fsspec.core.url_to_fs("hf://datasets/admin/anything/x.csv")
    assert isinstance(fs, HubFileSystem) and path == "datasets/admin/anything/x.csv"
    assert fs.client.endpoint == hub.endpoint  # HF_ENDPOINT, as huggingface_hub reads it


def test_pandas_csv_round_trip(repo) -> None:
    df = _frame(500, 1)
    df.to_csv(f"hf://{repo}/csv/train.csv", index=False)
    back = pd.read_csv(f"hf://{repo}/csv/train.csv")
    pd.testing.assert_frame_equal(back, df)
    fs = fsspec.filesystem("hf")
    fs.pipe(f"{repo}/csv/small.csv", b"a,b\n1,x\n2,y\n")
    assert pd.read_csv(f"hf://{repo}/csv/small.csv").to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
    with fsspec.open(f"hf://{repo}/csv/small.csv", "rt") as f:
        assert f.readline() == "a,b\n"


def test_pandas_parquet_round_trip(repo, api) -> None:
    df = _frame(20_000, 2)
    df.to_parquet(f"hf://{repo}/pq/frame.parquet", index=False, row_group_size=5000)
    assert [e.path for e in api.list_repo_tree(repo.removeprefix("datasets/"), repo_type="dataset",
                                               path_in_repo="pq")] == ["pq/frame.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(f"hf://{repo}/pq/frame.parquet"), df)
    part = pd.read_parquet(f"hf://{repo}/pq/frame.parquet", columns=["label"], filters=[("id", ">=", 59_990)])
    assert part["label"].tolist() == [f"row-2-{i}" for i in range(19_990, 20_000)]
    meta = pq.ParquetFile(fsspec.open(f"hf://{repo}/pq/frame.parquet").open()).metadata
    assert meta.num_rows == 20_000 and meta.num_row_groups == 4


def test_pyarrow_dataset_over_a_folder(repo) -> None:
    fs = fsspec.filesystem("hf")
    frames = [_frame(1000, i) for i in range(4)]
    with fs.transaction:  # four files, one commit
        for i, df in enumerate(frames):
            with fs.open(f"{repo}/ds/part-{i}.parquet", "wb") as f:
                df.to_parquet(f, index=False)
    want = pd.concat(frames, ignore_index=True)
    for filesystem in (fs, PyFileSystem(FSSpecHandler(fs))):
        dataset = pds.dataset(f"{repo}/ds", format="parquet", filesystem=filesystem)
        assert sorted(p.rsplit("/", 1)[1] for p in dataset.files) == [f"part-{i}.parquet" for i in range(4)]
        table = dataset.to_table()
        pd.testing.assert_frame_equal(table.to_pandas().sort_values("id", ignore_index=True), want)
        picked = dataset.to_table(columns=["id"], filter=pds.field("x") >= 499.5)
        assert sorted(picked["id"].to_pylist()) == [999, 1999, 2999, 3999]
    assert pq.read_table(f"{repo}/ds/part-3.parquet", filesystem=fs).num_rows == 1000


def test_pyarrow_writes_through_the_filesystem(repo) -> None:
    fs = fsspec.filesystem("hf")
    table = pa.table({"a": list(range(100)), "b": [str(i) for i in range(100)]})
    pq.write_table(table, f"{repo}/arrow/t.parquet", filesystem=fs)
    assert pq.read_table(f"{repo}/arrow/t.parquet", filesystem=PyFileSystem(FSSpecHandler(fs))).equals(table)


def test_torch_save_and_load_through_fsspec_open(repo) -> None:
    import torch  # installed by scripts/test.sh (torch==2.13.0, CPU)

    tensors = {"w": torch.arange(1 << 20, dtype=torch.float32).reshape(1024, 1024), "b": torch.ones(3)}
    with fsspec.open(f"hf://{repo}/torch/state.pt", "wb") as f:
        torch.save(tensors, f)
    with fsspec.open(f"hf://{repo}/torch/state.pt", "rb") as f:
        loaded = torch.load(f, weights_only=True)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    fs = fsspec.filesystem("hf")
    assert fs.info(f"{repo}/torch/state.pt")["lfs"] is not None  # 4 MiB of weights, *.pt is LFS
    loaded = torch.load(io.BytesIO(fs.cat(f"hf://{repo}/torch/state.pt")), weights_only=True)
    assert torch.equal(loaded["w"], tensors["w"])
