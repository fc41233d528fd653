"""Weights read straight from the hub's storage (no copy): a Xet file's slices of xorbs, a Xet file at the
start of its xorb and an LFS object mapped whole (copied with ``HUBFS_INFERENCE_ZERO_COPY=0``); the same
model stored either way answers the same."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import torch

from hubfs import loader
from hubfs.errors import HubfsError
from hubfs.server.http import FileSlice
from hubfs.server.hub import Hub
from hubfs.server.inference.models import InferenceOptions, ModelCache
from hubfs.server.inference.weights import LayoutFile, PrefixFile, open_weights

from .conftest import HubServer, model_url


def test_layout_file_reads_across_pieces(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"0123456789")
    b.write_bytes(b"ABCDEFGH")
    f = LayoutFile("x", [b"hd", FileSlice(str(a), 3, 5), b"", FileSlice(str(b), 2, 4), b"tail"])
    whole = b"hd" + b"34567" + b"CDEF" + b"tail"
    assert f.size == len(whole)
    for start in range(len(whole) + 1):
        for length in (0, 1, 3, 7, len(whole)):
            buf = bytearray(length)
            n = f.readinto(start, memoryview(buf))
            assert bytes(buf[:n]) == whole[start:start + length]
    f.close()
    b.write_bytes(b"AB")  # the file behind a slice is shorter than its layout says
    g = LayoutFile("y", [FileSlice(str(b), 2, 4)])
    with pytest.raises(HubfsError, match="ended early"):
        g.readinto(0, memoryview(bytearray(4)))
    g.close()


def test_prefix_file_is_the_start_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "xorb"
    path.write_bytes(b"0123456789trailer")
    f = PrefixFile(str(path), 10, "x/model.safetensors")
    assert (f.size, f.mmap_path, f.name) == (10, str(path), "x/model.safetensors")
    assert f.read(0, 100) == b"0123456789" and f.read(8, 5) == b"89"  # never past the prefix
    f.close()
    with pytest.raises(HubfsError, match="shorter than"):
        PrefixFile(str(path), 18, "x/model.safetensors")


@pytest.mark.parametrize("zero_copy", ["1", "0"])
def test_xet_file_at_the_start_of_its_xorb_is_mapped(inf_hub: HubServer, uploaded: dict[str, str],
                                                    built: dict[str, Path], zero_copy: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's GPT-2 went up over Xet alone: its content is the start of one xorb, which the loader
    maps (one private mapping, the xorb never written); with the switch off it is read with copies."""
    from safetensors.torch import load_file

    monkeypatch.setenv("HUBFS_INFERENCE_ZERO_COPY", zero_copy)
    hub = Hub(inf_hub.data_dir)
    repo = hub.meta.get_repo("model", uploaded["gpt2"])
    assert repo is not None
    _, entries, _ = ModelCache(hub, InferenceOptions(device="cpu")).current(repo)
    with open_weights(hub, repo, entries, "tiny-gpt2") as weights:
        (source,) = weights.checkpoint.files.values()
        assert type(source) is (PrefixFile if zero_copy == "1" else LayoutFile)
        got = loader.load(weights)
        want = load_file(str(built["gpt2"] / "model.safetensors"))
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
        pointers = {t.untyped_storage().data_ptr() for t in got.values() if t.numel()}
        assert len(pointers) == (1 if zero_copy == "1" else sum(1 for t in got.values() if t.numel()))
        if zero_copy == "1":
            assert source.mmap_path is not None and "/xet/xorbs/" in source.mmap_path
            before = hashlib.sha256(Path(source.mmap_path).read_bytes()).hexdigest()
            next(t for t in got.values() if t.is_floating_point()).add_(1)  # copy-on-write
            assert hashlib.sha256(Path(source.mmap_path).read_bytes()).hexdigest() == before


def generate(server: HubServer, repo_id: str) -> str:
    r = httpx.post(model_url(server, repo_id), timeout=120, headers={"authorization": f"Bearer {server.admin_token}"},
                   json={"inputs": "weights from the store", "parameters": {"max_new_tokens": 6}})
    assert r.status_code == 200, r.text
    return r.json()[0]["generated_text"]  # type: ignore[no-any-return]


def test_lfs_and_xet_stored_weights_answer_alike(inf_hub: HubServer, uploaded: dict[str, str],
                                                 built: dict[str, Path]) -> None:
    """The package's models went up over Xet (slices of xorbs); this one goes up as a plain LFS object
    (the hub keeps it whole and the loader maps it)."""
    repo = "admin/tiny-gpt2-lfs"
    code = ("import sys\nfrom huggingface_hub import HfApi\napi = HfApi(endpoint=sys.argv[1], token=sys.argv[2])\n"
            "api.create_repo(sys.argv[3], exist_ok=True)\napi.upload_folder(repo_id=sys.argv[3], folder_path=sys.argv[4])\n")
    subprocess.run([sys.executable, "-c", code, inf_hub.endpoint, inf_hub.admin_token, repo, str(built["gpt2"])],
                   env={**os.environ, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}, check=True,
                   timeout=120)
    oid = hashlib.sha256((built["gpt2"] / "model.safetensors").read_bytes()).hexdigest()
    assert any((inf_hub.data_dir / "lfs").rglob(oid)), "the LFS upload was not stored whole in the LFS store"
    assert generate(inf_hub, repo) == generate(inf_hub, uploaded["gpt2"])
