"""Inference benchmark of the embedded hub (``hubfs serve --inference``) against plain transformers.

What it measures, in one run and on the same weights (a random-init GPT-2 built here, saved as safetensors):

* time to first token for a cold model: a streamed text-generation request to a hub that has never
  loaded that commit (resolve ``main``, find the repo's small files on disk -- one folder per content,
  the warm-up's here --, build the model on the meta device and fill it with hubfs.loader straight from
  the hub's own LFS/Xet storage -- mapped, as the file lies whole at the start of its xorb --, build the
  tokenizer and pipeline, first token over SSE), against transformers' ``from_pretrained`` of the same local folder
  (model + tokenizer) plus a ``generate`` of one token, in this process. "Cold" is the same on both
  sides: the model was never loaded in that process, its files are in the page cache (just written),
  and the process has already imported transformers and run one load and generate of another model
  of the same architecture (the hub its earlier runs or the warm-up below, this process a warm-up
  call). Both load float32 weights and decode greedily; the hub's clock starts when the request is
  sent on an open connection (no client set-up) and stops at the first token event. Best of
  ``--runs``, interleaved, each hub run on a new repo. The goal: the hub path is not slower (ratio <= 1.0);
* requests per second of text-generation (``--new-tokens`` tokens) under ``--clients`` concurrent
  clients, against a hub with batching (``--max-batch 8``) and one without (``--max-batch 1``).

Everything runs on 127.0.0.1 with free ports in a temporary folder; the hubs are stopped by PID.

Run it (a minute or two on 2 cores at the defaults)::

    .venv/bin/python scripts/bench_inference.py
    .venv/bin/python scripts/bench_inference.py --layers 12 --width 768 --device cuda --json /tmp/inf.json
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
from benchlib import TESTS, add_numbers, add_output_args, arg_parser, start_hub_server, tree_bytes, workdir, write_json
from benchlib.machine import machine_info, machine_line
from benchlib.table import print_table, ratio, size_label

PACKAGES = ("torch", "transformers")
PROMPT = "the hub serves models and weights to the gpu"


def build_model(folder: Path, layers: int, width: int) -> Path:
    sys.path.insert(0, str(TESTS / "server" / "inference"))
    import tiny_models  # type: ignore[import-not-found]

    return tiny_models.build_gpt2(folder, layers=layers, width=width)  # type: ignore[no-any-return]


def upload(server: object, folder: Path, repo_id: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.endpoint, token=server.admin_token)  # type: ignore[attr-defined]
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=folder)


def hub_ttft(client: httpx.Client, server: object, repo_id: str) -> float:
    """Seconds from the request to the first streamed token event. ``client`` is made and connected
    beforehand: the clock measures the hub, not the making of an HTTP client (its SSL context alone
    takes 10-20 ms) or a TCP handshake. The rest of the stream is read after the clock stops, so that the
    hub has finished generating before the next measurement (of either side) starts."""
    url = f"{server.endpoint}/models/{repo_id}"  # type: ignore[attr-defined]
    client.get(f"{server.endpoint}/api/whoami-v2").raise_for_status()  # the pooled connection is open
    first = None
    start = time.perf_counter()
    with client.stream("POST", url, json={"inputs": PROMPT, "parameters": {"max_new_tokens": 4}, "stream": True}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"hub answered {r.status_code}: {r.read()[:300]!r}")
        for line in r.iter_lines():
            if line.startswith("data:"):
                if first is None:
                    first = time.perf_counter() - start
                if '"error"' in line:
                    raise RuntimeError(line)
    if first is None:
        raise RuntimeError("the hub's stream ended without a token")
    return first


def local_ttft(folder: Path, device: str) -> float:
    """transformers' from_pretrained of the local folder, then one generated token."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()  # type: ignore[arg-type]
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(PROMPT, return_tensors="pt").to(device)
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=1, do_sample=False, pad_token_id=tok.eos_token_id)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def throughput(server: object, repo_id: str, clients: int, requests: int, new_tokens: int) -> float:
    """Requests per second of ``clients`` threads, each sending ``requests`` text-generation requests."""
    url = f"{server.endpoint}/models/{repo_id}"  # type: ignore[attr-defined]
    headers = {"authorization": f"Bearer {server.admin_token}"}  # type: ignore[attr-defined]
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": new_tokens}}
    httpx.post(url, json=body, headers=headers, timeout=600).raise_for_status()  # warm: loaded
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(headers=headers, timeout=600) as c:
            for _ in range(requests):
                r = c.post(url, json=body)
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return clients * requests / seconds


def main(argv: list[str] | None = None) -> int:
    p = arg_parser(__doc__)
    add_numbers(p, ("--layers", 4, "GPT-2 layers"), ("--width", 256, "GPT-2 hidden size"),
                ("--runs", 3, "cold loads timed for each side (best of)"),
                ("--clients", 8, "concurrent clients for requests/s"),
                ("--requests", 4, "requests per client"), ("--new-tokens", 8, "tokens generated per request"))
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_output_args(p)
    args = p.parse_args(argv)
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    machine = machine_info(packages=PACKAGES)
    print(machine_line(machine, packages=PACKAGES) + f", device {device}", flush=True)
    with workdir(args.keep, "hubfs-bench-inference-") as tmp, contextlib.ExitStack() as stack:
        folder = build_model(tmp / "model", args.layers, args.width)
        weights = tree_bytes(folder)
        (tmp / "batched").mkdir()
        (tmp / "single").mkdir()
        batched = start_hub_server(stack, tmp / "batched", "--inference", "--device", device, "--max-models", "2")
        single = start_hub_server(stack, tmp / "single", "--inference", "--device", device, "--max-batch", "1")
        for i in range(-1, args.runs):
            upload(batched, folder, f"admin/cold-{i}" if i >= 0 else "admin/warm-up")
        upload(single, folder, "admin/bench")
        upload(batched, folder, "admin/bench")

        local_ttft(folder, device)  # warm this process up as the hub's start-up warmed the hub (imports)
        client = stack.enter_context(httpx.Client(headers={"authorization": f"Bearer {batched.admin_token}"},
                                                  timeout=600))
        hub_ttft(client, batched, "admin/warm-up")  # the hub's warm-up: architecture imported, generate run
        hub_times, local_times = [], []
        for i in range(args.runs):  # interleaved, so that a busy moment hits both sides alike
            hub_times.append(hub_ttft(client, batched, f"admin/cold-{i}"))
            local_times.append(local_ttft(folder, device))
        rps_batched = throughput(batched, "admin/bench", args.clients, args.requests, args.new_tokens)
        rps_single = throughput(single, "admin/bench", args.clients, args.requests, args.new_tokens)

    hub_best, local_best = min(hub_times), min(local_times)
    label = f"GPT-2 {args.layers}x{args.width} ({size_label(weights)})"
    rows = [
        [f"cold time to first token, {label}", f"{hub_best:.3f} s", f"{local_best:.3f} s",
         ratio(hub_best, local_best), "<= 1.0x", "yes" if hub_best <= local_best else "**no**"],
        [f"req/s, {args.clients} clients, {args.new_tokens} tokens, batching vs none", f"{rps_batched:.1f}",
         f"{rps_single:.1f}", ratio(rps_batched, rps_single), "> 1.0x", "yes" if rps_batched > rps_single else "**no**"],
    ]
    print_table(["scenario", "hubfs hub", "peer (transformers local / no batching)", "ratio", "goal", "met"], rows,
                right=(1, 2, 3))
    print(f"(cold TTFT runs: hub {', '.join(f'{t:.3f}' for t in hub_times)}; local "
          f"{', '.join(f'{t:.3f}' for t in local_times)}; medians: hub {statistics.median(hub_times):.3f} s, local "
          f"{statistics.median(local_times):.3f} s, {ratio(statistics.median(hub_times), statistics.median(local_times))})")
    if args.json:
        write_json(args.json, machine, args, device=device, weights_bytes=weights, hub_ttft=hub_times,
                   local_ttft=local_times, rps_batched=rps_batched, rps_single=rps_single)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
