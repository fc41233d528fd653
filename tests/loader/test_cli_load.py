"""`hubfs load SRC`: the real command line prints what it loaded, the GB/s and the peak memory, draws a
progress bar on stderr, and fails with one line on bad input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch
from checkpoints import model_like, raw_file, write_sharded
from safetensors.torch import save_file


def hubfs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubfs.cli", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120, check=False)


def test_load_prints_tensors_speed_and_memory(tmp_path: Path) -> None:
    sd = model_like(layers=2)
    write_sharded(tmp_path / "m", sd, shards=2)
    done = hubfs("load", str(tmp_path / "m"), "--dtype", "float32")
    assert done.returncode == 0, done.stderr
    total = sum(t.numel() * t.element_size() for t in sd.values())
    assert re.search(rf"loaded {len(sd)} tensors \({len(sd)} on cpu\), .* from {re.escape(str(tmp_path / 'm'))}, "
                     r"cast to float32", done.stdout), done.stdout
    assert re.search(r"time [\d.]+ s \(after the headers were read\), [\d.]+ GB/s", done.stdout)
    assert re.search(r"peak RSS [\d.]+ MiB \(\+[\d.]+ (KiB|MiB|B) above the RSS before loading\)", done.stdout)
    assert "load: 100%" in done.stderr
    assert f"{total / 1024:.1f} KiB" in done.stdout


def test_load_quantized(tmp_path: Path) -> None:
    save_file(model_like(layers=1, width=64), str(tmp_path / "m.safetensors"))
    done = hubfs("load", str(tmp_path / "m.safetensors"), "--quantize", "int8", "--quiet", "--device", "auto")
    assert done.returncode == 0, done.stderr
    assert "quantized int8" in done.stdout and done.stderr == ""
    assert ("on cuda:0" if torch.cuda.is_available() else "on cpu") in done.stdout


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "bad.safetensors", {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                    b"\0" * 8)
    done = hubfs("load", str(path))
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "tensor 'x'" in done.stderr and str(path) in done.stderr
    done = hubfs("load", str(tmp_path / "missing.safetensors"))
    assert done.returncode == 1 and "no such file" in done.stderr
    save_file({"a": torch.ones(2)}, str(tmp_path / "ok.safetensors"))
    done = hubfs("load", str(tmp_path / "ok.safetensors"), "--dtype", "float13")
    assert done.returncode == 1 and done.stderr.strip() == "hubfs load: unknown dtype 'float13' (e.g. bfloat16, " \
        "float16, float32)"
