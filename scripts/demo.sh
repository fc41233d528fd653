#!/usr/bin/env bash
# The hubfs loop on this machine: start the embedded hub on loopback, create a user and a repo,
# upload a small model with the official huggingface_hub client, find it by its card, download it back;
# then write and read hf:// paths with pandas, mount the repo, clone it with `git clone hf://` (no git-lfs),
# load its weights with hubfs.loader, run it with InferenceClient, run a job and use the hubfs CLI.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Setting up .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
# The CPU torch first: the test extra's bitsandbytes depends on torch and would otherwise pull a CUDA build.
.venv/bin/python -c "import torch" >/dev/null 2>&1 || \
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v -e "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v -e "^WARNING: Location" || true

work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

step "Starting the embedded hub (hubfs serve --inference --jobs) on a free loopback port"
.venv/bin/hubfs serve --data "$work/hub" --host 127.0.0.1 --port 0 --inference --jobs >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do grep -q "^endpoint:" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
cat "$work/serve.out"
endpoint=$(sed -n 's/^endpoint: //p' "$work/serve.out")

step "Creating user 'demo' and a write token for it"
.venv/bin/hubfs user add demo --data "$work/hub"
.venv/bin/hubfs token create demo --role write --out "$work/demo.token" --data "$work/hub"

export HF_ENDPOINT="$endpoint" HF_TOKEN HF_HOME="$work/hf_home" HF_XET_CACHE="$work/xet_cache" HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
HF_TOKEN=$(cat "$work/demo.token")

step "Driving the hub with the official huggingface_hub client"
.venv/bin/python - "$work" <<'PY'
import hashlib, json, os, struct, sys
from pathlib import Path
from huggingface_hub import HfApi, snapshot_download

work = Path(sys.argv[1])
api = HfApi()
print(f"whoami: {api.whoami()['name']} at {api.endpoint}")

folder = work / "tiny-model"
folder.mkdir()
(folder / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": 64}))
(folder / "README.md").write_text("---\nlicense: apache-2.0\npipeline_tag: text-classification\n"
                                  "library_name: transformers\ntags: [demo]\n---\n# A tiny demo model\n")
weights = os.urandom(64 * 64 * 4)
header = json.dumps({"w": {"dtype": "F32", "shape": [64, 64], "data_offsets": [0, len(weights)]}}).encode()
(folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + weights)

url = api.create_repo("demo/tiny-model", exist_ok=True)
print(f"created repo: {url}")
commit = api.upload_folder(folder_path=folder, repo_id="demo/tiny-model", commit_message="Add tiny model")
print(f"uploaded folder in commit {commit.oid[:12]}")
for entry in api.list_repo_tree("demo/tiny-model", recursive=True):
    kind = "Xet " if getattr(entry, "xet_hash", None) else "LFS " if getattr(entry, "lfs", None) else "git "
    print(f"  {kind} {entry.path:<20} {getattr(entry, 'size', 0):>8} bytes")

found = [m.id for m in api.list_models(filter="text-classification", author="demo")]
print(f"list_models(filter='text-classification') finds: {found}")
info = api.model_info("demo/tiny-model")
print(f"model_info: sha={info.sha[:12]} license={info.card_data.license} pipeline_tag={info.pipeline_tag}")

local = Path(snapshot_download("demo/tiny-model"))
print(f"snapshot_download -> {local}")
for f in sorted(folder.iterdir()):
    same = hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256((local / f.name).read_bytes()).digest()
    print(f"  {f.name:<20} {'identical' if same else 'DIFFERENT'}")
    assert same
print("\nThe loop works: create -> upload (git + LFS) -> search by card -> download, all on loopback.")
PY

step "Xet: the client's default uploads deduplicate; a fine-tune sends only what changed"
.venv/bin/python - "$work" <<'PY'
import hashlib, json, os, struct, sys, time
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download

work, api = Path(sys.argv[1]), HfApi()
xorbs = work / "hub" / "xet" / "xorbs"
stored = lambda: sum(f.stat().st_size for f in xorbs.rglob("*") if f.is_file())
tensors = [os.urandom(2 << 20) for _ in range(16)]  # 16 "tensors" of 2 MiB

def checkpoint(blobs):
    header, offset = {}, 0
    for i, b in enumerate(blobs):
        header[f"layer{i}"] = {"dtype": "U8", "shape": [len(b)], "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)

api.create_repo("demo/big-model", exist_ok=True)
for label, blobs in (("base model", tensors), ("fine-tune, 2 of 16 tensors changed", tensors[:14] + [os.urandom(2 << 20) for _ in range(2)])):
    data, before, t = checkpoint(blobs), stored(), time.time()
    api.upload_file(path_or_fileobj=data, path_in_repo="model.safetensors", repo_id="demo/big-model")
    print(f"{label}: {len(data) >> 20} MiB file, hub stored {(stored() - before) / 2**20:.1f} MiB of new chunks "
          f"({time.time() - t:.1f} s)")
path = hf_hub_download("demo/big-model", "model.safetensors", cache_dir=work / "xet-dl")
assert hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(data).digest()
print("hf_hub_download through Xet gives the same bytes; plain GETs of /resolve/ and git-lfs still work too.")
PY

step "hubfs mount: the model repo as a folder (FUSE)"
if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  mkdir -p "$work/mnt"
  .venv/bin/hubfs mount demo/tiny-model "$work/mnt" --cache-dir "$work/mount-cache"
  ls -l "$work/mnt"
  sha256sum "$work/mnt/model.safetensors"
  .venv/bin/python -c "
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], framework='np') as f:
    print('safe_open on the mount:', {k: f.get_tensor(k).shape for k in f.keys()})
" "$work/mnt/model.safetensors"
  .venv/bin/hubfs umount "$work/mnt"
else
  echo "skipped: the mount needs root, /dev/fuse and fuse3 (scripts/test.sh installs fuse3 as root)"
fi

step "git clone hf://demo/tiny-model with git-remote-hf, on a PATH without git-lfs; edit; git push"
mkdir -p "$work/nolfs-bin"
ln -s "$(command -v git)" "$work/nolfs-bin/git"
ln -s "$PWD/.venv/bin/git-remote-hf" "$work/nolfs-bin/git-remote-hf"
PATH="$work/nolfs-bin" git clone -q hf://demo/tiny-model "$work/clone"
printf 'pointer in git: '; git -C "$work/clone" cat-file -p HEAD:model.safetensors | sed -n 2p
cmp "$work/clone/model.safetensors" "$work/tiny-model/model.safetensors" && echo "checked-out weights: identical to the upload"
echo "Edited over git." >> "$work/clone/README.md"
(cd "$work/clone" && PATH="$work/nolfs-bin" git -c user.name=demo -c user.email=demo@example.com \
  commit -qam "Edit the card over git" && PATH="$work/nolfs-bin" git push -q origin HEAD:main) && echo "git push: done"

step "hubfs.loader: the model's weights from hf:// onto the best device"
.venv/bin/hubfs load hf://demo/tiny-model --device auto

step "Inference and jobs next to the weights: InferenceClient and hubfs jobs (same API as hf jobs)"
.venv/bin/python - "$work" <<'PY'
import sys
from pathlib import Path

import torch
from huggingface_hub import HfApi, InferenceClient
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

folder, api = Path(sys.argv[1]) / "tiny-gpt2", HfApi()
bpe = ByteLevelBPETokenizer()  # a tokenizer trained here: nothing is downloaded
bpe.train_from_iterator(["the hub serves models and runs jobs next to the weights"] * 8, vocab_size=300,
                        min_frequency=1, special_tokens=["<|endoftext|>"])
tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", unk_token="<|endoftext|>")
torch.manual_seed(0)
config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                    bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
GPT2LMHeadModel(config).save_pretrained(folder)
tok.save_pretrained(folder)
(folder / "README.md").write_text("---\npipeline_tag: text-generation\nlibrary_name: transformers\n---\n")
api.create_repo("demo/tiny-gpt2", exist_ok=True)
api.upload_folder(folder_path=folder, repo_id="demo/tiny-gpt2")
client = InferenceClient(model=f"{api.endpoint}/models/demo/tiny-gpt2")
print("text_generation (random weights):", repr(client.text_generation("the hub", max_new_tokens=6)))
PY
.venv/bin/hubfs jobs run python:3.12 python -c "import os; print('a job on the hub, HF_ENDPOINT =', os.environ['HF_ENDPOINT'])"

step "The web interface: open $endpoint/ in a browser"
curl -s -o /dev/null -w "search page: HTTP %{http_code}\n" "$endpoint/models?search=tiny"
curl -s -o /dev/null -w "repo page:   HTTP %{http_code}\n" "$endpoint/demo/tiny-model"

step "hf:// paths with pandas (hubfs's fsspec filesystem) and the hubfs CLI"
.venv/bin/python - <<'PY'
import fsspec
import pandas as pd
from huggingface_hub import HfApi

from hubfs.fs import HubFileSystem

HfApi().create_repo("demo/reviews", repo_type="dataset", exist_ok=True)
df = pd.DataFrame({"text": [f"review {i}" for i in range(1000)], "stars": [i % 5 + 1 for i in range(1000)]})
df.to_parquet("hf://datasets/demo/reviews/data/train.parquet")  # one commit
back = pd.read_parquet("hf://datasets/demo/reviews/data/train.parquet", columns=["stars"])
print(f"to_parquet + read_parquet(columns=['stars']) through {type(fsspec.filesystem('hf')).__name__}: "
      f"{len(back)} rows, mean {back['stars'].mean():.1f}")
fs = HubFileSystem()
with fs.transaction:  # any number of writes, one commit
    for split in ("validation", "test"):
        df.sample(100, random_state=1).to_csv(f"hf://datasets/demo/reviews/data/{split}.csv", index=False)
print("files:", fs.ls("datasets/demo/reviews/data", detail=False))
print("commits:", len(HfApi().list_repo_commits("demo/reviews", repo_type="dataset")))
PY
.venv/bin/hubfs ls hf://demo/tiny-model -l
.venv/bin/hubfs download demo/tiny-model --local-dir "$work/tiny-model-copy" --quiet
ls -l "$work/tiny-model-copy"
step "Done; the hub is stopped and its temporary data removed"
