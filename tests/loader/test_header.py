"""Header validation: every malformed file is rejected before any allocation, with a message naming the
file, the tensor and the problem; valid files written by safetensors parse to the same tensors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from checkpoints import every_dtype, raw_file, write_sharded
from safetensors.torch import save_file

from hubfs import loader
from hubfs.errors import HubfsError, SafetensorsError
from hubfs.loader.header import DTYPE_BITS, MAX_HEADER_SIZE, parse_header, read_header, torch_dtype


def _rejected(path: Path, *words: str) -> str:
    with pytest.raises(SafetensorsError) as info:
        loader.open(path)
    message = str(info.value)
    assert str(path) in message, message
    for w in words:
        assert w in message, message
    assert "\n" not in message
    return message


def test_error_class_is_one_hierarchy() -> None:
    assert issubclass(SafetensorsError, HubfsError) and issubclass(SafetensorsError, ValueError)
    assert loader.SafetensorsError is SafetensorsError


def test_parse_matches_the_reference_writer(tmp_path: Path) -> None:
    tensors = every_dtype()
    path = tmp_path / "all.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "k": "v"})
    data = path.read_bytes()
    header = read_header(lambda o, n: data[o:o + n], str(path), len(data))
    assert header.metadata == {"format": "pt", "k": "v"}
    assert [t.start for t in header.tensors] == sorted(t.start for t in header.tensors)
    assert header.tensors[-1].end == len(data)
    for t in header.tensors:
        ref = tensors[t.name]
        assert torch_dtype(t) == ref.dtype and t.shape == tuple(ref.shape), t.name
        assert t.nbytes == ref.numel() * ref.element_size() and t.file == str(path)


def test_every_reference_dtype_is_known() -> None:
    rust = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
            "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
    assert set(rust) == set(DTYPE_BITS)


def test_truncated_below_eight_bytes(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    _rejected(path, "truncated", "3 bytes")


def test_header_length_past_the_end(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "long.safetensors", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                    b"\0" * 4, length=10_000)
    _rejected(path, "header length 10000 runs past the end")


def test_oversized_header(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", MAX_HEADER_SIZE + 1) + b"{}")
    _rejected(path, "exceeds the 100000000-byte limit")


def test_truncated_data(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    save_file({"w": torch.ones(64), "b": torch.ones(8)}, str(path))
    path.write_bytes(path.read_bytes()[:-10])
    message = _rejected(path, "out of range", "truncated")
    assert "'w'" in message or "'b'" in message


def test_overlapping_offsets(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
    path = raw_file(tmp_path / "overlap.safetensors", header, b"\0" * 24)
    _rejected(path, "tensor 'b'", "overlap tensor 'a'")


def test_out_of_range_offsets(tmp_path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
              "far": {"dtype": "U8", "shape": [4], "data_offsets": [100, 104]}}
    path = raw_file(tmp_path / "range.safetensors", header, b"\0" * 20)
    _rejected(path, "tensor 'far'", "out of range", "20 bytes")


def test_hole_between_tensors(tmp_path: Path) -> None:
    header = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
              "b": {"dtype": "U8", "shape": [4], "data_offsets": [8, 12]}}
    path = raw_file(tmp_path / "hole.safetensors", header, b"\0" * 12)
    _rejected(path, "tensor 'b'", "hole of 4 bytes after tensor 'a'")


def test_trailing_bytes(tmp_path: Path) -> None:
    header = {"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}
    path = raw_file(tmp_path / "trail.safetensors", header, b"\0" * 9)
    _rejected(path, "5 trailing bytes", "after tensor 'a'")


def test_unknown_dtype(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "dtype.safetensors", {"x": {"dtype": "F12", "shape": [2], "data_offsets": [0, 3]}},
                    b"\0" * 3)
    _rejected(path, "tensor 'x'", "unknown dtype 'F12'")


def test_shape_size_mismatch(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "shape.safetensors", {"m": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 32]}},
                    b"\0" * 32)
    _rejected(path, "tensor 'm'", "shape [3, 3] of F32 needs 36 bytes", "hold 32")


def test_not_json_and_bad_entries(tmp_path: Path) -> None:
    _rejected(raw_file(tmp_path / "text.safetensors", b"not json"), "not a JSON object")
    _rejected(raw_file(tmp_path / "broken.safetensors", b"{\"a\": "), "not valid UTF-8 JSON")
    _rejected(raw_file(tmp_path / "neg.safetensors", {"n": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}),
              "tensor 'n'", "shape")
    _rejected(raw_file(tmp_path / "offs.safetensors", {"o": {"dtype": "U8", "shape": [1], "data_offsets": [0]}},
                       b"\0"), "tensor 'o'", "data_offsets")
    _rejected(raw_file(tmp_path / "meta.safetensors", {"__metadata__": {"n": 1}}), "__metadata__")


def test_padding_spaces_and_empty_file_allowed(tmp_path: Path) -> None:
    body = json.dumps({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}).encode() + b"    "
    header = parse_header(body, "mem", 8 + len(body) + 2)
    assert header.tensors[0].start == 8 + len(body)
    assert parse_header(b"{}", "mem", 10).tensors == ()


def test_missing_shard_fails_before_any_read(tmp_path: Path) -> None:
    write_sharded(tmp_path / "m", {"a.weight": torch.ones(4), "b.weight": torch.ones(4), "c.weight": torch.ones(4)})
    (tmp_path / "m" / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(SafetensorsError) as info:
        loader.load(tmp_path / "m")
    message = str(info.value)
    assert "model.safetensors.index.json" in message and "'model-00002-of-00003.safetensors'" in message
    assert "'b.weight'" in message and "missing" in message


def test_tensor_in_the_wrong_shard(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_sharded(folder, {"a.weight": torch.ones(4), "b.weight": torch.ones(4), "c.weight": torch.ones(2)}, shards=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["a.weight"] = "model-00002-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(SafetensorsError) as info:
        loader.load(folder)
    assert "tensor 'a.weight' is in the wrong shard" in str(info.value)
    assert "model-00001-of-00002.safetensors" in str(info.value)


def test_stale_tensor_and_unheld_tensor(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    write_sharded(folder, {"a.weight": torch.ones(4), "b.weight": torch.ones(4), "c.weight": torch.ones(2)}, shards=2)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    del index["weight_map"]["c.weight"]
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(SafetensorsError, match="tensor 'c.weight' is not in the index"):
        loader.load(folder)
    index["weight_map"]["c.weight"] = "model-00001-of-00002.safetensors"
    index["weight_map"]["ghost"] = "model-00001-of-00002.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(SafetensorsError, match="tensor 'ghost' is mapped to shard 'model-00001-of-00002.safetensors'"):
        loader.load(folder)


def test_an_index_file_names_its_shards(tmp_path: Path) -> None:
    sd = {"a.weight": torch.ones(4), "b.weight": torch.zeros(2)}
    write_sharded(tmp_path / "m", sd, shards=2)
    (tmp_path / "m" / "model.safetensors.index.json").rename(tmp_path / "m" / "other.safetensors.index.json")
    (tmp_path / "m" / "third.safetensors.index.json").write_text("{}")
    with pytest.raises(SafetensorsError, match="several indexes"):
        loader.open(tmp_path / "m")
    got = loader.load(tmp_path / "m" / "other.safetensors.index.json")
    assert sorted(got) == ["a.weight", "b.weight"]
    write_sharded(tmp_path / "m", {"c": torch.ones(1)}, shards=1)  # model.safetensors.index.json wins
    assert list(loader.load(tmp_path / "m")) == ["c"]


def test_folder_without_index_and_several_files(tmp_path: Path) -> None:
    save_file({"a": torch.ones(1)}, str(tmp_path / "one.safetensors"))
    save_file({"b": torch.ones(1)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(SafetensorsError, match="2 .safetensors files"):
        loader.open(tmp_path)
    with pytest.raises(FileNotFoundError):
        loader.open(tmp_path / "nothing-here")
