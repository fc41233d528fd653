"""The compatibility subset, run by one huggingface_hub version in its own virtual environment (from
tests/compat/test_client_versions.py): create, upload (regular and LFS), list, download, HfFileSystem,
branches and tags. Uses only calls that 0.36, 1.x and 2.x all have. Reads HF_ENDPOINT and HF_TOKEN;
prints one JSON object on stdout.

Usage: python client_versions_script.py REPO_ID DATASET_ID WORK_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import huggingface_hub
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)


def main(repo_id: str, dataset_id: str, work: Path) -> dict:
    api = HfApi()
    out: dict = {"version": huggingface_hub.__version__}
    url = api.create_repo(repo_id)
    out["url_repo_id"] = url.repo_id
    api.create_repo(repo_id, exist_ok=True)
    api.create_repo(dataset_id, repo_type="dataset", private=True)
    out["whoami"] = api.whoami()["name"]

    weights = bytes(range(256)) * 64  # 16 KiB, *.bin: an LFS file
    api.upload_file(path_or_fileobj=b'{"model_type": "gpt2"}', path_in_repo="config.json", repo_id=repo_id,
                    commit_message="config")
    folder = work / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "notes.txt").write_text("notes")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# card\n")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="folder")
    info = api.create_commit(repo_id, [CommitOperationAdd("weights.bin", weights)], commit_message="weights")
    out["commit"] = info.oid
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="data/train.csv", repo_id=dataset_id,
                    repo_type="dataset")

    out["files"] = sorted(api.list_repo_files(repo_id))
    out["tree_lfs"] = sorted(e.path for e in api.list_repo_tree(repo_id, recursive=True)
                             if getattr(e, "lfs", None) is not None)
    out["sha"] = api.model_info(repo_id).sha
    out["dataset_private"] = api.dataset_info(dataset_id).private
    out["listed"] = repo_id in [m.id for m in api.list_models(author=repo_id.split("/")[0], limit=1000)]
    api.create_branch(repo_id, branch="dev")
    api.create_tag(repo_id, tag="v1", tag_message="first")
    refs = api.list_repo_refs(repo_id)
    out["branches"] = sorted(b.name for b in refs.branches)
    out["tags"] = sorted(t.name for t in refs.tags)

    cache = work / "cache"
    path = hf_hub_download(repo_id, "weights.bin", cache_dir=str(cache))
    out["download_sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    out["download_revision_ok"] = Path(hf_hub_download(repo_id, "config.json", revision=info.oid,
                                                       cache_dir=str(cache))).read_bytes() == b'{"model_type": "gpt2"}'
    snap = Path(snapshot_download(repo_id, cache_dir=str(work / "cache2"), allow_patterns=["*.txt", "*.json"]))
    out["snapshot"] = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    local = Path(snapshot_download(dataset_id, repo_type="dataset", local_dir=str(work / "ds")))
    out["dataset_csv"] = (local / "data" / "train.csv").read_text()

    fs = HfFileSystem()
    out["fs_ls"] = sorted(e["name"] for e in fs.ls(repo_id, detail=True))
    with fs.open(f"{repo_id}/weights.bin", "rb") as f:
        f.seek(256)
        out["fs_range"] = f.read(4).hex()
    out["fs_glob"] = sorted(fs.glob(f"{repo_id}/**/*.txt"))
    out["fs_dataset"] = fs.cat(f"datasets/{dataset_id}/data/train.csv").decode()

    out["exists"] = [api.repo_exists(repo_id), api.file_exists(repo_id, "weights.bin"),
                     api.file_exists(repo_id, "nope.txt"), api.repo_exists(repo_id + "-nope")]
    out["commits"] = len(api.list_repo_commits(repo_id))
    out["paths_info"] = sorted(p.path for p in api.get_paths_info(repo_id, ["config.json", "sub", "nope"]))
    meta = get_hf_file_metadata(hf_hub_url(repo_id, "weights.bin"))
    out["metadata"] = [meta.size, meta.etag, meta.commit_hash]
    out["tag_download"] = Path(hf_hub_download(repo_id, "config.json", revision="v1",
                                               cache_dir=str(cache))).read_bytes().decode()
    fs.pipe(f"{repo_id}/fs/written.txt", b"written through HfFileSystem")
    out["fs_written"] = fs.cat(f"{repo_id}/fs/written.txt").decode()
    fs.rm(f"{repo_id}/fs/written.txt")
    large = work / "large"
    (large / "shards").mkdir(parents=True)
    for i in range(3):
        (large / "shards" / f"part-{i}.bin").write_bytes(bytes([i]) * 4096)
    api.upload_folder(folder_path=str(large), repo_id=repo_id, allow_patterns=["shards/*"], delete_patterns=["fs/*"])
    out["large_files"] = sorted(f for f in api.list_repo_files(repo_id) if f.startswith("shards/"))
    api.delete_file("sub/notes.txt", repo_id, commit_message="drop notes")
    out["files_after_delete"] = sorted(api.list_repo_files(repo_id))
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
