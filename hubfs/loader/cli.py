"""``hubfs load SRC``: load a checkpoint onto a device and say what it took (tensors, bytes, GB/s, peak memory).

A progress bar (bytes) goes to stderr; the summary to stdout. Errors are one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from typing import Any


def _rss_kib(field: str = "VmRSS") -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def cmd_load(args: argparse.Namespace) -> int:
    try:
        return _load(args)
    except (ValueError, KeyError, RuntimeError, ImportError, TypeError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"hubfs load: {text}", file=sys.stderr)
        return 1


def _load(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hubfs.loader import iter_load
    from hubfs.loader import open as open_checkpoint
    from hubfs.loader.api import to_device, to_dtype

    with open_checkpoint(args.src, revision=args.revision, endpoint=args.endpoint, token=args.token) as handle:
        dtype, device = to_dtype(args.dtype), to_device(_best(args.device))  # imports torch; bad values fail here
        base_rss = _rss_kib()
        infos = handle.infos()
        total = sum(i.nbytes for i in infos.values())
        devices: Counter[str] = Counter()
        t0 = time.perf_counter()
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, desc="load",
                  disable=args.quiet) as bar:
            for name, tensor in iter_load(handle, device, dtype, args.quantize, threads=args.threads,
                                          mmap=args.mmap):
                devices[_device_of(tensor)] += 1
                bar.update(infos[name].nbytes)
        _sync(devices)
        elapsed = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    where = ", ".join(f"{n} on {d}" for d, n in sorted(devices.items()))
    quant = f", quantized {args.quantize}" if args.quantize else ""
    cast = f", cast to {args.dtype}" if args.dtype else ""
    print(f"loaded {len(infos)} tensors ({where}), {_human(total)} from {args.src}{cast}{quant}")
    print(f"time {elapsed:.3f} s (after the headers were read), {total / max(elapsed, 1e-9) / 1e9:.2f} GB/s")
    print(f"peak RSS {_human(peak * 1024)} (+{_human(max(0, peak - base_rss) * 1024)} above the RSS before loading)"
          + _gpu_peak(devices))
    return 0


def _best(device: str) -> str:
    """``auto``: the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_of(tensor: Any) -> str:
    dev = getattr(tensor, "device", None)
    if dev is None:  # a quantized tensor: the device of its first tensor field
        dev = next((v.device for v in vars(tensor).values() if hasattr(v, "device")), "cpu")
    return str(dev)


def _sync(devices: Counter[str]) -> None:
    if any(d.startswith("cuda") for d in devices):
        import torch

        torch.cuda.synchronize()


def _gpu_peak(devices: Counter[str]) -> str:
    if not any(d.startswith("cuda") for d in devices):
        return ""
    import torch

    peaks = [f"{d} {_human(torch.cuda.max_memory_allocated(d))}" for d in sorted(devices) if d.startswith("cuda")]
    return ", peak GPU memory " + ", ".join(peaks)


def register(sub: Any) -> None:
    """Add ``hubfs load`` to the ``hubfs`` parser."""
    p = sub.add_parser("load", help="load a safetensors checkpoint onto a device; print tensors, GB/s, peak memory")
    p.add_argument("src", help="a .safetensors file, a folder, a path in a hubfs mount, hf://... or a repo id")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, or auto (CUDA when there is one; default cpu)")
    p.add_argument("--dtype", help="cast floating-point tensors on the device (bfloat16, float16, float32)")
    p.add_argument("--quantize", choices=["int8", "nf4", "nf4-dq", "fp8"], help="quantize Linear weights on load")
    p.add_argument("--revision", help="branch, tag or commit (hf:// URLs and repo ids)")
    p.add_argument("--threads", type=int, help="reader threads (default: 16 for the hub, else 2-8)")
    p.add_argument("--mmap", action="store_true", help="allow the zero-copy mmap path for local files to the CPU")
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_load)


__all__ = ["cmd_load", "register"]
