"""The unmodified official client (huggingface_hub 2.4.0) against the embedded hub on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    ModelCard,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RevisionNotFoundError

MiB = 1024 * 1024


def test_create_repo_returns_url_and_exist_ok(api: HfApi, hub) -> None:
    rid = f"admin/c-{uuid.uuid4().hex[:8]}"
    url = api.create_repo(rid)
    assert url == f"{hub.endpoint}/{rid}" and url.repo_id == rid
    assert api.create_repo(rid, exist_ok=True).repo_id == rid
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(rid)
    assert err.value.response.status_code == 409
    ds = api.create_repo(f"admin/ds-{uuid.uuid4().hex[:8]}", repo_type="dataset", private=True)
    assert ds.repo_type == "dataset"
    assert api.dataset_info(ds.repo_id).private is True
    files = api.list_repo_files(rid)
    assert files == [".gitattributes"], "new repos start with the Hub's default .gitattributes"


def test_upload_file_and_download_roundtrip(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    info = api.upload_file(path_or_fileobj=b"hello world", path_in_repo="dir/hello.txt", repo_id=repo_id)
    assert len(info.oid) == 40
    path = hf_hub_download(repo_id, "dir/hello.txt", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"hello world"
    assert api.file_exists(repo_id, "dir/hello.txt") and not api.file_exists(repo_id, "nope.txt")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", cache_dir=tmp_path)


def test_upload_folder_small_and_large_files(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    small = {f"sub/f{i}.json": f'{{"i": {i}}}'.encode() for i in range(20)}
    for name, data in small.items():
        (folder / name).write_bytes(data)
    big = os.urandom(12 * MiB)
    (folder / "model.safetensors").write_bytes(big)
    tiny_weights = os.urandom(1000)
    (folder / "tiny.bin").write_bytes(tiny_weights)
    api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="add model")
    entries = {e.path: e for e in api.list_repo_tree(repo_id, recursive=True)}
    assert entries["model.safetensors"].size == len(big)
    assert entries["model.safetensors"].lfs is not None and entries["model.safetensors"].lfs.size == len(big)
    assert entries["tiny.bin"].lfs is not None, ".gitattributes routes *.bin to LFS even when small"
    assert entries["sub/f3.json"].lfs is None and entries["sub"].tree_id
    snap = Path(snapshot_download(repo_id, cache_dir=tmp_path / "cache"))
    assert (snap / "model.safetensors").read_bytes() == big
    assert (snap / "tiny.bin").read_bytes() == tiny_weights
    assert all((snap / n).read_bytes() == d for n, d in small.items())
    commits = api.list_repo_commits(repo_id)
    assert commits[0].title == "add model" and len(commits) == 2


def test_create_commit_with_deletes_and_stale_parent(api: HfApi, repo_id: str) -> None:
    first = api.create_commit(repo_id, [CommitOperationAdd("a/1.txt", b"1"), CommitOperationAdd("a/2.txt", b"2"),
                                        CommitOperationAdd("b.txt", b"b")], commit_message="three")
    api.create_commit(repo_id, [CommitOperationDelete("b.txt"), CommitOperationDelete("a/")],
                      commit_message="delete", parent_commit=first.oid)
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(repo_id, [CommitOperationAdd("c.txt", b"c")], commit_message="stale",
                          parent_commit=first.oid)
    assert err.value.response.status_code == 412
    assert "c.txt" not in api.list_repo_files(repo_id)


def test_downloads_at_branches_tags_prs_and_shas(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=repo_id).oid
    api.create_tag(repo_id, tag="release/v1", tag_message="first release")
    api.create_branch(repo_id, branch="feat/x")
    api.upload_file(path_or_fileobj=b"feature", path_in_repo="f.txt", repo_id=repo_id, revision="feat/x")
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=repo_id)
    pr = api.upload_file(path_or_fileobj=b"proposal", path_in_repo="f.txt", repo_id=repo_id, create_pr=True)
    assert pr.pr_revision == "refs/pr/1" and pr.pr_num == 1

    def read(rev: str | None) -> bytes:
        return Path(hf_hub_download(repo_id, "f.txt", revision=rev, cache_dir=tmp_path)).read_bytes()

    assert read(None) == b"v2"
    assert read("release/v1") == b"v1"
    assert read("feat/x") == b"feature"
    assert read("refs/pr/1") == b"proposal"
    assert read(v1) == b"v1"
    snap = Path(snapshot_download(repo_id, revision="feat/x", allow_patterns=["*.txt"], cache_dir=tmp_path / "s"))
    assert sorted(p.name for p in snap.iterdir()) == ["f.txt"]
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    assert {b.name for b in refs.branches} == {"main", "feat/x"}
    assert [t.name for t in refs.tags] == ["release/v1"]
    assert [p.ref for p in refs.pull_requests] == ["refs/pr/1"]
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "f.txt", revision="no-such-branch", cache_dir=tmp_path)
    api.delete_tag(repo_id, tag="release/v1")
    api.delete_branch(repo_id, branch="feat/x")
    assert {b.name for b in api.list_repo_refs(repo_id).branches} == {"main"}


def test_pull_request_details_and_merge(api: HfApi, repo_id: str) -> None:
    api.upload_file(path_or_fileobj=b"base", path_in_repo="base.txt", repo_id=repo_id)
    pr = api.create_commit(repo_id, [CommitOperationAdd("new.txt", b"from pr")], commit_message="Propose",
                           create_pr=True)
    details = api.get_discussion_details(repo_id, pr.pr_num)
    assert details.is_pull_request and details.status == "open" and details.target_branch == "refs/heads/main"
    api.comment_discussion(repo_id, pr.pr_num, "looks good")
    api.upload_file(path_or_fileobj=b"main moved", path_in_repo="other.txt", repo_id=repo_id)
    api.merge_pull_request(repo_id, pr.pr_num)
    assert api.get_discussion_details(repo_id, pr.pr_num).status == "merged"
    assert {"base.txt", "new.txt", "other.txt"} <= set(api.list_repo_files(repo_id))
    assert [d.num for d in api.get_repo_discussions(repo_id)] == [pr.pr_num]


def test_upload_folder_as_pull_request(api: HfApi, repo_id: str, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    info = api.upload_folder(folder_path=tmp_path, repo_id=repo_id, create_pr=True, commit_message="pr folder")
    assert info.pr_revision == "refs/pr/1"
    assert "x.txt" in api.list_repo_files(repo_id, revision="refs/pr/1")
    assert "x.txt" not in api.list_repo_files(repo_id)


def test_list_models_filter_search_and_card(api: HfApi) -> None:
    tag = f"tag{uuid.uuid4().hex[:8]}"
    rid = f"admin/clf-{tag}"
    api.create_repo(rid)
    card = ModelCard(f"---\nlicense: apache-2.0\nlanguage: [en, fr]\npipeline_tag: text-classification\n"
                     f"library_name: transformers\ntags: [{tag}]\ndatasets: [admin/imdb]\n---\n# Classifier\n")
    card.push_to_hub(rid)
    other = f"admin/gen-{tag}"
    api.create_repo(other)
    api.upload_file(path_or_fileobj=f"---\npipeline_tag: text-generation\ntags: [{tag}]\n---\n".encode(),
                    path_in_repo="README.md", repo_id=other)
    assert {m.id for m in api.list_models(filter=tag)} == {rid, other}
    assert [m.id for m in api.list_models(filter=[tag, "text-classification"])] == [rid]
    assert [m.id for m in api.list_models(filter=[tag, "fr", "license:apache-2.0", "transformers"])] == [rid]
    assert [m.id for m in api.list_models(filter=[tag, "dataset:admin/imdb"])] == [rid]
    assert [m.id for m in api.list_models(pipeline_tag="text-generation", search=tag)] == [other]
    assert [m.id for m in api.list_models(search=f"clf-{tag}")] == [rid]
    assert len(list(api.list_models(search=tag, limit=1))) == 1
    info = api.model_info(rid)
    assert info.card_data.license == "apache-2.0" and info.pipeline_tag == "text-classification"
    assert info.library_name == "transformers"
    assert ModelCard.load(rid).data.language == ["en", "fr"]
    listed = next(iter(api.list_models(search=f"clf-{tag}", cardData=True)))
    assert listed.card_data is not None and listed.card_data.license == "apache-2.0"


def test_list_models_paginates_with_absolute_links(api: HfApi, hub) -> None:
    import httpx

    tag = f"page{uuid.uuid4().hex[:8]}"
    for i in range(3):
        rid = f"admin/{tag}-{i}"
        api.create_repo(rid)
    resp = httpx.get(f"{hub.endpoint}/api/models", params={"search": tag, "limit": 2})
    assert len(resp.json()) == 2
    nxt = resp.links["next"]["url"]
    assert nxt.startswith(hub.endpoint) and f"search={tag}" in nxt
    assert len(httpx.get(nxt).json()) == 1
    assert len(list(api.list_models(search=tag))) == 3


def test_tree_pagination_and_paths_info(api: HfApi, repo_id: str) -> None:
    ops = [CommitOperationAdd(f"many/f{i:04d}.txt", str(i).encode()) for i in range(1205)]
    ops.append(CommitOperationAdd("deep/er/x.txt", b"x"))
    api.create_commit(repo_id, ops, commit_message="many")
    files = api.list_repo_files(repo_id)
    assert len(files) == 1207
    sub = list(api.list_repo_tree(repo_id, path_in_repo="deep/er"))
    assert [e.path for e in sub] == ["deep/er/x.txt"]
    expanded = list(api.list_repo_tree(repo_id, path_in_repo="deep", expand=True))
    assert expanded[0].last_commit is not None and expanded[0].last_commit.title == "many"
    infos = api.get_paths_info(repo_id, ["deep/er/x.txt", "deep", "missing.txt"])
    assert sorted(i.path for i in infos) == ["deep", "deep/er/x.txt"]


def test_hffilesystem_ls_info_glob_and_ranges(api: HfApi, repo_id: str) -> None:
    data = os.urandom(11 * MiB)
    api.upload_file(path_or_fileobj=data, path_in_repo="w/weights.bin", repo_id=repo_id)
    api.upload_file(path_or_fileobj=b"a,b\n1,2\n", path_in_repo="w/t.csv", repo_id=repo_id)
    fs = HfFileSystem(skip_instance_cache=True)
    assert sorted(fs.ls(f"{repo_id}/w", detail=False)) == [f"{repo_id}/w/t.csv", f"{repo_id}/w/weights.bin"]
    assert fs.info(f"{repo_id}/w/weights.bin")["size"] == len(data)
    assert fs.glob(f"{repo_id}/**/*.csv") == [f"{repo_id}/w/t.csv"]
    with fs.open(f"{repo_id}/w/weights.bin", "rb", block_size=1 * MiB) as f:
        f.seek(5 * MiB + 3)
        assert f.read(100) == data[5 * MiB + 3: 5 * MiB + 103]
        f.seek(len(data) - 10)
        assert f.read(50) == data[-10:]
    assert fs.cat_file(f"{repo_id}/w/weights.bin", start=10, end=20) == data[10:20]
    assert fs.read_bytes(f"{repo_id}/w/weights.bin") == data
    with pytest.raises(FileNotFoundError):
        fs.info(f"{repo_id}/nope")


def test_pandas_reads_hf_dataset(api: HfApi, dataset_id: str) -> None:
    pd = pytest.importorskip("pandas")
    api.upload_file(path_or_fileobj=b"x,y\n1,a\n2,b\n3,c\n", path_in_repo="data/train.csv", repo_id=dataset_id,
                    repo_type="dataset")
    df = pd.read_csv(f"hf://datasets/{dataset_id}/data/train.csv")
    assert list(df.columns) == ["x", "y"] and df["x"].sum() == 6


def test_multipart_lfs_upload(tmp_hub, tmp_path: Path) -> None:
    hub = tmp_hub("--multipart-chunk-size", "5MiB")
    api = HfApi(endpoint=hub.endpoint, token=hub.admin_token)
    api.create_repo("admin/mp")
    data = os.urandom(17 * MiB)
    api.upload_file(path_or_fileobj=data, path_in_repo="big.bin", repo_id="admin/mp")
    got = hf_hub_download("admin/mp", "big.bin", endpoint=hub.endpoint, token=hub.admin_token, cache_dir=tmp_path)
    assert Path(got).read_bytes() == data
    staging = hub.data_dir / "tmp" / "multipart"
    assert not staging.exists() or not any(staging.iterdir()), "completed uploads leave no staging files"


def test_datasets_and_spaces_listing_and_info(api: HfApi) -> None:
    tag = uuid.uuid4().hex[:8]
    ds = f"admin/ds-{tag}"
    api.create_repo(ds, repo_type="dataset")
    api.upload_file(path_or_fileobj=b"---\nlanguage: [en]\ntask_categories: [translation]\nlicense: mit\n---\n",
                    path_in_repo="README.md", repo_id=ds, repo_type="dataset")
    assert [d.id for d in api.list_datasets(search=tag, language="en")] == [ds]
    assert [d.id for d in api.list_datasets(search=tag, task_categories="translation")] == [ds]
    assert list(api.list_datasets(search=tag, language="fr")) == []
    assert api.dataset_info(ds).card_data.license == "mit"
    space = f"admin/sp-{tag}"
    api.create_repo(space, repo_type="space", space_sdk="gradio")
    api.upload_file(path_or_fileobj=b"print('hi')", path_in_repo="app.py", repo_id=space, repo_type="space")
    info = api.space_info(space)
    assert info.sdk == "gradio" and "app.py" in [s.rfilename for s in info.siblings]
    assert [s.id for s in api.list_spaces(search=tag)] == [space]
    got = hf_hub_download(space, "app.py", repo_type="space")
    assert Path(got).read_bytes() == b"print('hi')"
