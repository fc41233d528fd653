"""Hub parity, names and revisions: canonical repos without a namespace (``gpt2``), missing repos as
RepositoryNotFound everywhere, short commit shas and case-insensitive repo ids, driven through the
unmodified official client (and transformers for canonical names pinned to a short sha).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from hubfs.fs import HubFileSystem
from hubfs.paths import RepoPath

HTTP = httpx.Client(timeout=60)


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def raw_commit(endpoint: str, token: str, api_repo: str, files: dict[str, bytes], summary: str = "add files",
               rev: str = "main") -> httpx.Response:
    """POST an NDJSON commit by hand (the 2.4.0 client cannot parse a canonical repo's commit URL)."""
    lines = [{"key": "header", "value": {"summary": summary, "description": ""}}]
    lines += [{"key": "file", "value": {"path": p, "content": base64.b64encode(d).decode(), "encoding": "base64"}}
              for p, d in files.items()]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    return HTTP.post(f"{endpoint}/api/{api_repo}/commit/{rev}", content=body,
                     headers={"content-type": "application/x-ndjson", **_auth(token)})


def create_canonical(hub, name: str, repo_type: str = "model") -> httpx.Response:
    """The admin names no organization: a canonical repo, as huggingface.co's gpt2 or imdb."""
    return HTTP.post(f"{hub.endpoint}/api/repos/create", headers=_auth(hub.admin_token),
                     json={"name": name, "organization": None, "type": repo_type})


@pytest.fixture(scope="module")
def canonical(hub) -> tuple[str, str]:
    """A canonical model ``c-<uid>`` with a config and a small file; (name, commit sha)."""
    name = f"c-{_uid()}"
    r = create_canonical(hub, name)
    assert r.status_code == 200, r.text
    assert r.json()["url"] == f"{hub.endpoint}/{name}"
    r = raw_commit(hub.endpoint, hub.admin_token, f"models/{name}", {"config.json": b'{"a": 1}', "sub/x.txt": b"x"})
    assert r.status_code == 200, r.text
    assert r.json()["commitUrl"] == f"{hub.endpoint}/{name}/commit/{r.json()['commitOid']}"
    return name, r.json()["commitOid"]


def test_canonical_repo_reads_like_gpt2(hub, api: HfApi, canonical, tmp_path: Path) -> None:
    name, sha = canonical
    info = api.model_info(name)
    assert info.id == name and info.sha == sha and info.author is None
    assert sorted(s.rfilename for s in info.siblings) == [".gitattributes", "config.json", "sub/x.txt"]
    assert api.model_info(name, revision="main").sha == sha
    assert api.repo_exists(name) and api.revision_exists(name, "main") and api.file_exists(name, "config.json")
    path = hf_hub_download(name, "config.json", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b'{"a": 1}' and "models--" + name in path
    assert sorted(api.list_repo_files(name)) == [".gitattributes", "config.json", "sub/x.txt"]
    r = HTTP.get(f"{hub.endpoint}/{name}/resolve/main/config.json")
    assert r.status_code == 200 and r.headers["x-repo-commit"] == sha
    # /api/models/{name}/refs is the canonical repo's refs, not the info of a repo "{name}/refs"
    refs = api.list_repo_refs(name)
    assert [b.name for b in refs.branches] == ["main"] and refs.branches[0].target_commit == sha
    # the same name can still be a user's namespace: alice/x and canonical x are different repos
    assert api.repo_exists(f"admin/{name}") is False


def test_canonical_dataset_and_names_that_look_like_types(hub, api: HfApi, tmp_path: Path) -> None:
    name = f"imdb-{_uid()}"
    assert create_canonical(hub, name, "dataset").status_code == 200
    assert raw_commit(hub.endpoint, hub.admin_token, f"datasets/{name}", {"train.csv": b"a,b\n1,2\n"}).status_code == 200
    assert api.dataset_info(name).id == name
    path = hf_hub_download(name, "train.csv", repo_type="dataset", cache_dir=tmp_path)
    assert Path(path).read_bytes() == b"a,b\n1,2\n"
    assert not api.repo_exists(name), "a canonical dataset is not a model"
    # reserved words never become canonical repos (they are URL segments)
    r = create_canonical(hub, "datasets")
    assert r.status_code == 400 and r.headers["x-error-code"] in ("BadRequest", "InvalidName")


def test_only_the_admin_creates_canonical_repos(hub, users) -> None:
    name = f"solo-{_uid()}"
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", headers=_auth(users["alice_token"]),
                  json={"name": name, "organization": None})
    assert r.status_code == 200 and r.json()["url"] == f"{hub.endpoint}/{users['alice']}/{name}"
    alice = HfApi(endpoint=hub.endpoint, token=users["alice_token"])
    assert alice.repo_exists(f"{users['alice']}/{name}") and not alice.repo_exists(name)
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", headers=_auth(users["alice_token"]),
                  json={"name": f"x{name}", "organization": ""})
    assert r.status_code == 200 and r.json()["url"] == f"{hub.endpoint}/{users['alice']}/x{name}"
    r = raw_commit(hub.endpoint, users["alice_token"], f"models/{name}", {"a": b"b"})
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"


def test_git_clone_of_a_canonical_repo(hub, canonical, tmp_path: Path) -> None:
    name, sha = canonical
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_LFS_SKIP_SMUDGE": "1"}
    for url in (f"{hub.endpoint}/{name}", f"{hub.endpoint}/{name}.git"):
        out = subprocess.run(["git", "ls-remote", url], check=False, capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"{sha}\trefs/heads/main" in out.stdout
    dest = tmp_path / "clone"
    out = subprocess.run(["git", "clone", "-q", f"{hub.endpoint}/{name}", str(dest)], check=False,
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (dest / "config.json").read_bytes() == b'{"a": 1}'
    # the hubfs git remote helper spells it hf://name
    helper_env = {**env, "HF_ENDPOINT": hub.endpoint, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}
    out = subprocess.run(["git", "clone", "-q", f"hf://{name}", str(tmp_path / "via-helper")], check=False,
                         capture_output=True, text=True, env=helper_env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "via-helper" / "sub" / "x.txt").read_bytes() == b"x"


def test_hf_paths_and_hubfs_fs_on_a_canonical_repo(hub, canonical) -> None:
    name, sha = canonical
    assert RepoPath.parse(f"hf://{name}").repo_id == name
    rp = RepoPath.parse(f"hf://{name}@main/sub/x.txt")
    assert (rp.repo_id, rp.revision, rp.path) == (name, "main", "sub/x.txt")
    other = RepoPath.parse(f"hf://{name}/sub/x.txt").canonical_reading()
    assert other is not None and (other.repo_id, other.path) == (name, "sub/x.txt")
    assert RepoPath.parse("hf://datasets/imdb").repo_id == "imdb"
    fs = HubFileSystem(endpoint=hub.endpoint, token=hub.admin_token, skip_instance_cache=True)
    try:
        assert fs.cat(f"hf://{name}@main/config.json") == b'{"a": 1}'
        assert fs.cat(f"hf://{name}@{sha[:7]}/sub/x.txt") == b"x"
    finally:
        fs.close()


@pytest.mark.parametrize("what", ["model", "dataset"])
def test_a_missing_repo_is_repository_not_found_everywhere(hub, api: HfApi, what: str) -> None:
    missing = f"missing-{_uid()}"
    prefix, plural = ("", "models") if what == "model" else ("datasets/", "datasets")
    for rid in (missing, f"admin/{missing}"):
        for method, url in [("GET", f"{hub.endpoint}/api/{plural}/{rid}"),
                            ("GET", f"{hub.endpoint}/api/{plural}/{rid}/revision/main"),
                            ("GET", f"{hub.endpoint}/api/{plural}/{rid}/tree/main"),
                            ("GET", f"{hub.endpoint}/api/{plural}/{rid}/refs"),
                            ("HEAD", f"{hub.endpoint}/{prefix}{rid}/resolve/main/f.txt"),
                            ("GET", f"{hub.endpoint}/{prefix}{rid}/resolve/main/f.txt")]:
            r = HTTP.request(method, url, headers=_auth(hub.admin_token))
            assert (r.status_code, r.headers.get("x-error-code")) == (404, "RepoNotFound"), (method, url, r.text)
            assert r.headers.get("x-request-id")
        assert api.repo_exists(rid, repo_type=what) is False
        assert api.revision_exists(rid, "main", repo_type=what) is False
        assert api.file_exists(rid, "f.txt", repo_type=what) is False
        with pytest.raises(RepositoryNotFoundError):
            api.repo_info(rid, repo_type=what)
        with pytest.raises(RepositoryNotFoundError):
            api.list_repo_files(rid, repo_type=what)
    anonymous = HTTP.get(f"{hub.endpoint}/api/{plural}/{missing}")
    assert (anonymous.status_code, anonymous.headers["x-error-code"]) == (401, "RepoNotFound")


def test_short_shas_resolve_like_the_hub(hub, api: HfApi, repo_id: str, tmp_path: Path) -> None:
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="f.txt", repo_id=repo_id).oid
    second = api.upload_file(path_or_fileobj=b"two", path_in_repo="f.txt", repo_id=repo_id).oid
    for n in (7, 10, 39):
        short = first[:n]
        assert api.model_info(repo_id, revision=short).sha == first
        assert Path(hf_hub_download(repo_id, "f.txt", revision=short, cache_dir=tmp_path)).read_bytes() == b"one"
        assert [e.path for e in api.list_repo_tree(repo_id, revision=short)] == [".gitattributes", "f.txt"]
        assert api.list_repo_commits(repo_id, revision=short)[0].commit_id == first
    r = HTTP.head(f"{hub.endpoint}/{repo_id}/resolve/{second[:7]}/f.txt")
    assert r.status_code == 200 and r.headers["x-repo-commit"] == second
    assert api.revision_exists(repo_id, second[:8])
    # too short, not hex, or no such commit: RevisionNotFound
    for bad in (first[:6], "zzzzzzz", "0000000"):
        assert api.revision_exists(repo_id, bad) is False
        with pytest.raises(RevisionNotFoundError):
            hf_hub_download(repo_id, "f.txt", revision=bad, cache_dir=tmp_path)
    # a branch named like a short sha wins over the commit, as in git
    api.create_branch(repo_id, branch=second[:7], revision=first)
    assert api.model_info(repo_id, revision=second[:7]).sha == first


def test_repo_ids_are_case_insensitive(hub, api: HfApi, tmp_path: Path) -> None:
    rid = f"admin/My-Model-{_uid()}"
    api.create_repo(rid)
    sha = api.upload_file(path_or_fileobj=b"cased", path_in_repo="a.txt", repo_id=rid).oid
    for spelling in (rid.upper(), rid.lower()):
        assert api.model_info(spelling).id == rid, "answers with the stored case"
        assert Path(hf_hub_download(spelling, "a.txt", cache_dir=tmp_path)).read_bytes() == b"cased"
        assert api.model_info(spelling, revision="main").sha == sha
    with pytest.raises(Exception) as exc:
        api.create_repo(rid.lower())
    assert getattr(exc.value, "response", None) is not None and exc.value.response.status_code == 409
    assert api.create_repo(rid.lower(), exist_ok=True).repo_id.lower() == rid.lower()
    out = subprocess.run(["git", "ls-remote", f"{hub.endpoint}/{rid.swapcase()}"], check=False,
                         capture_output=True, text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"}, timeout=60)
    assert out.returncode == 0 and f"{sha}\trefs/heads/main" in out.stdout, out.stderr


def test_transformers_pipeline_on_a_canonical_name_pinned_to_a_short_sha(hub, api: HfApi, tmp_path: Path) -> None:
    """``pipeline(task, model="gpt2", revision="<short sha>")``, as transformers pins its defaults."""
    import transformers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    folder = tmp_path / "tiny"
    transformers.BertTokenizer(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(folder)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(folder)
    name = f"tiny-{_uid()}"
    assert create_canonical(hub, name).status_code == 200
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    r = raw_commit(hub.endpoint, hub.admin_token, f"models/{name}", files, summary="tiny bert")
    assert r.status_code == 200, r.text
    pinned = r.json()["commitOid"]
    assert api.get_paths_info(name, ["model.safetensors"])[0].lfs is not None, "weights stored as LFS"
    broken = raw_commit(hub.endpoint, hub.admin_token, f"models/{name}", {"config.json": b"{not json"})
    assert broken.status_code == 200, broken.text
    cache = tmp_path / "cache"
    pipe = transformers.pipeline("feature-extraction", model=name, revision=pinned[:7],
                                 model_kwargs={"cache_dir": str(cache)})
    out = pipe("hello world")
    assert len(out[0][0]) == 16
    assert (cache / f"models--{name}" / "refs" / pinned[:7]).read_text() == pinned


def test_a_private_canonical_repo_is_invisible_but_to_the_admin(hub, users) -> None:
    name = f"secret-{_uid()}"
    r = HTTP.post(f"{hub.endpoint}/api/repos/create", headers=_auth(hub.admin_token),
                  json={"name": name, "organization": None, "visibility": "private"})
    assert r.status_code == 200, r.text
    assert raw_commit(hub.endpoint, hub.admin_token, f"models/{name}", {"a.txt": b"hidden"}).status_code == 200
    never = f"never-{_uid()}"
    for token in (None, users["alice_token"], users["bob_read"]):
        answers = []
        for rid in (name, never):
            seen = []
            for method, path in [("GET", f"/api/models/{rid}"), ("GET", f"/api/models/{rid}/revision/main"),
                                 ("GET", f"/api/models/{rid}/tree/main"), ("GET", f"/api/models/{rid}/refs"),
                                 ("HEAD", f"/{rid}/resolve/main/a.txt"), ("GET", f"/{rid}/resolve/main/a.txt"),
                                 ("GET", f"/{rid}.git/info/refs?service=git-upload-pack"),
                                 ("POST", f"/api/models/{rid}/commit/main"), ("DELETE", f"/api/models/{rid}/branch/x")]:
                resp = HTTP.request(method, hub.endpoint + path, headers=_auth(token) if token else {})
                seen.append((resp.status_code, resp.headers.get("x-error-code")))
            answers.append(seen)
        assert answers[0] == answers[1], (token is None, answers)
        assert all(status in (401, 404) for status, _ in answers[0])
    assert HTTP.get(f"{hub.endpoint}/{name}/resolve/main/a.txt", headers=_auth(hub.admin_token)).content == b"hidden"


def test_the_admin_imports_a_canonical_repo_with_git_and_lfs(hub, api: HfApi, tmp_path: Path) -> None:
    """``git push`` (LFS weights included) into a canonical repo: the way an admin imports ``gpt2``."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false")

    def git(*args: str, cwd: Path | None = None) -> str:
        out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                             check=False)
        assert out.returncode == 0, f"git {args}: {out.stderr}"
        return out.stdout.strip()

    git("config", "--global", "user.name", "Importer")
    git("config", "--global", "user.email", "importer@example.com")
    git("lfs", "install", "--skip-repo")
    name = f"gpt-{_uid()}"
    assert create_canonical(hub, name).status_code == 200
    netloc = hub.endpoint.split("://", 1)[1]
    work = tmp_path / "work"
    git("clone", "-q", f"http://admin:{hub.admin_token}@{netloc}/{name}", str(work))
    weights = os.urandom(3000)
    (work / "model.safetensors").write_bytes(weights)
    (work / "config.json").write_text('{"model_type": "gpt2"}')
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "import", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    assert api.model_info(name).sha == head, "one history: REST sees the pushed commit"
    entry = api.get_paths_info(name, ["model.safetensors"])[0]
    assert entry.lfs is not None and entry.size == 3000
    assert HTTP.get(f"{hub.endpoint}/{name}/resolve/{head[:7]}/model.safetensors").content == weights
