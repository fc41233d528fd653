"""`git clone hf://...` and fetches with stock git and git-remote-hf, no git-lfs on PATH."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hub_server import HubServer
from huggingface_hub import CommitOperationAdd, HfApi
from test_helper_common import Git, fresh_id, http_url, worktree_files


def refs(git: Git, repo: Path) -> dict[str, str]:
    out = git.out("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo)
    return dict(line.split(" ")[::-1][::-1] for line in out.splitlines())  # type: ignore[misc]


def remote_refs(git: Git, repo: Path) -> dict[str, str]:
    """refs/remotes/origin/* and tags, as `name -> sha` with the remote's names."""
    out = {}
    for line in git.out("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo).splitlines():
        sha, name = line.split(" ", 1)
        if name.startswith("refs/remotes/origin/") and not name.endswith("/HEAD"):
            out["refs/heads/" + name[len("refs/remotes/origin/"):]] = sha
        elif name.startswith("refs/tags/"):
            out[name] = sha
    return out


def test_clone_model_matches_stock_git_lfs(hfgit: Git, lfs_git: Git, ghub: HubServer, gapi: HfApi,
                                           lfs_repo: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    rid, content = lfs_repo
    gapi.create_tag(rid, tag="v1")
    proc = hfgit("clone", f"hf://{rid}", str(tmp_path / "hf"))
    assert "git-remote-hf:" not in proc.stderr
    hf = tmp_path / "hf"
    files = worktree_files(hf)
    assert {k: v for k, v in files.items() if k != ".gitattributes"} == content  # byte-identical worktree
    lfs_git("clone", http_url(ghub, rid), str(tmp_path / "stock"))
    stock = tmp_path / "stock"
    lfs_git("lfs", "pull", cwd=stock)
    assert worktree_files(stock) == files
    assert remote_refs(hfgit, hf) == remote_refs(lfs_git, stock)
    assert hfgit.out("rev-parse", "HEAD", cwd=hf) == lfs_git.out("rev-parse", "HEAD", cwd=stock)
    assert hfgit.out("ls-tree", "-r", "HEAD", cwd=hf) == lfs_git.out("ls-tree", "-r", "HEAD", cwd=stock)
    assert hfgit.out("status", "--porcelain", cwd=hf) == ""
    hfgit("fsck", "--full", cwd=hf)
    # pointers in git, content in .git/lfs/objects (git-lfs's layout), the filter is the helper itself
    pointer = hfgit.out("cat-file", "-p", "HEAD:model.safetensors", cwd=hf)
    assert pointer.startswith("version https://git-lfs.github.com/spec/v1")
    oid = pointer.split("oid sha256:")[1].split()[0]
    assert (hf / ".git/lfs/objects" / oid[:2] / oid[2:4] / oid).read_bytes() == content["model.safetensors"]
    assert hfgit.out("config", "filter.lfs.process", cwd=hf) == "git-remote-hf filter-process"
    assert hfgit.out("config", "remote.origin.url", cwd=hf) == f"hf://{rid}"


def test_clone_dataset(hfgit: Git, gapi: HfApi, tmp_path: Path) -> None:
    rid = fresh_id("d")
    gapi.create_repo(rid, repo_type="dataset")
    data = {"data/train.parquet": b"PAR1" + bytes(range(256)) * 300, "README.md": b"# ds\n"}
    gapi.create_commit(rid, [CommitOperationAdd(p, d) for p, d in data.items()], commit_message="data",
                       repo_type="dataset")
    hfgit("clone", f"hf://datasets/{rid}", str(tmp_path / "ds"))
    files = worktree_files(tmp_path / "ds")
    assert {k: files[k] for k in data} == data
    assert hfgit.out("cat-file", "-p", "HEAD:data/train.parquet", cwd=tmp_path / "ds").startswith("version https://git-lfs")
    assert hfgit.out("rev-parse", "HEAD", cwd=tmp_path / "ds") == gapi.list_repo_commits(rid, repo_type="dataset")[0].commit_id
    hfgit("fsck", "--full", cwd=tmp_path / "ds")
    # a bare clone checks nothing out, so it downloads no LFS content
    hfgit("clone", "--bare", f"hf://datasets/{rid}", str(tmp_path / "bare.git"))
    assert not [p for p in (tmp_path / "bare.git").rglob("lfs/objects/*/*/*") if p.is_file()]
    assert hfgit.out("rev-parse", "HEAD", cwd=tmp_path / "bare.git") == hfgit.out("rev-parse", "HEAD", cwd=tmp_path / "ds")


def test_clone_https_form_and_revision(hfgit: Git, gapi: HfApi, ghub: HubServer,
                                       lfs_repo: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    rid, content = lfs_repo
    gapi.create_branch(rid, branch="dev")
    gapi.upload_file(path_or_fileobj=b"dev only\n", path_in_repo="dev.txt", repo_id=rid, revision="dev")
    hfgit("clone", f"hf::{ghub.endpoint}/{rid}.git", str(tmp_path / "a"), HF_ENDPOINT="http://127.0.0.1:9")
    assert (tmp_path / "a/config.json").read_bytes() == content["config.json"]
    hfgit("clone", f"hf://{rid}@dev", str(tmp_path / "b"))
    assert (tmp_path / "b/dev.txt").read_bytes() == b"dev only\n"
    assert hfgit.out("rev-parse", "--abbrev-ref", "HEAD", cwd=tmp_path / "b") == "dev"


def test_depth_branch_single_branch_no_checkout(hfgit: Git, gapi: HfApi, lfs_repo: tuple[str, dict[str, bytes]],
                                                tmp_path: Path) -> None:
    rid, content = lfs_repo
    for i in range(3):
        gapi.upload_file(path_or_fileobj=f"step {i}\n".encode(), path_in_repo="log.txt", repo_id=rid)
    gapi.create_branch(rid, branch="side")
    gapi.upload_file(path_or_fileobj=b"side\n", path_in_repo="side.txt", repo_id=rid, revision="side")
    shallow = tmp_path / "shallow"
    hfgit("clone", "--depth", "1", f"hf://{rid}", str(shallow))
    assert hfgit.out("rev-list", "--count", "HEAD", cwd=shallow) == "1"
    assert (shallow / ".git/shallow").read_text().strip() == hfgit.out("rev-parse", "HEAD", cwd=shallow)
    assert worktree_files(shallow)["model.safetensors"] == content["model.safetensors"]
    hfgit("fsck", "--full", cwd=shallow)
    hfgit("fetch", "--deepen", "1", cwd=shallow)
    assert hfgit.out("rev-list", "--count", "HEAD", cwd=shallow) == "2"
    hfgit("fetch", "--unshallow", cwd=shallow)
    assert not (shallow / ".git/shallow").exists()
    full = hfgit.out("rev-list", "--count", "HEAD", cwd=shallow)
    since = tmp_path / "since"
    hfgit("clone", "--shallow-since=2000-01-01", f"hf://{rid}", str(since))
    assert hfgit.out("rev-list", "--count", "HEAD", cwd=since) == full

    single = tmp_path / "single"
    hfgit("clone", "--branch", "side", "--single-branch", f"hf://{rid}", str(single))
    assert (single / "side.txt").read_bytes() == b"side\n"
    assert hfgit.out("branch", "-r", cwd=single).split() == ["origin/side"]

    both = tmp_path / "branch"
    hfgit("clone", "--branch", "side", f"hf://{rid}", str(both))
    assert (both / "side.txt").exists() and (both / "model.safetensors").read_bytes() == content["model.safetensors"]
    assert {b.strip() for b in hfgit.out("branch", "-r", cwd=both).splitlines()} >= {"origin/main", "origin/side"}

    bare = tmp_path / "nocheckout"
    hfgit("clone", "--no-checkout", f"hf://{rid}", str(bare))
    assert worktree_files(bare) == {}
    hfgit("checkout", "main", cwd=bare)
    assert worktree_files(bare)["weights/w1.bin"] == content["weights/w1.bin"]
    assert hfgit.out("status", "--porcelain", cwd=bare) == ""


def test_fetch_pull_and_noop_fetch_budget(hfgit: Git, gapi: HfApi, ghub: HubServer,
                                          lfs_repo: tuple[str, dict[str, bytes]], tmp_path: Path) -> None:
    rid, _ = lfs_repo
    repo = tmp_path / "r"
    hfgit("clone", f"hf://{rid}", str(repo))
    new = b"\x00new weights" * 5000
    gapi.upload_file(path_or_fileobj=new, path_in_repo="weights/w2.bin", repo_id=rid)
    gapi.create_branch(rid, branch="feature")
    hfgit("fetch", cwd=repo)
    assert hfgit.out("rev-parse", "origin/feature", cwd=repo) == gapi.list_repo_commits(rid)[0].commit_id
    hfgit("pull", "--ff-only", cwd=repo)
    assert (repo / "weights/w2.bin").read_bytes() == new
    assert hfgit.out("status", "--porcelain", cwd=repo) == ""
    # a fetch with nothing new: the ref advertisement only (at most 2 requests), no LFS
    log = ghub.log  # type: ignore[attr-defined]
    log.clear()
    hfgit("fetch", cwd=repo)
    hits = [line for line in log.lines() if rid in line[1]]
    assert len(hits) <= 2, hits
    assert not [h for h in hits if "/info/lfs" in h[1]]


def test_errors_leave_no_clone(hfgit: Git, ghub: HubServer, tmp_path: Path) -> None:
    proc = hfgit("clone", "hf://admin/does-not-exist", str(tmp_path / "x"), check=False)
    assert proc.returncode != 0 and not (tmp_path / "x").exists()
    assert "git-remote-hf: hf://admin/does-not-exist" in proc.stderr and "not found" in proc.stderr
    proc = hfgit("clone", "hf://bad//id", str(tmp_path / "y"), check=False)
    assert proc.returncode != 0 and "git-remote-hf:" in proc.stderr


def test_private_repo_tokens(hfgit: Git, gapi: HfApi, ghub: HubServer, tmp_path: Path) -> None:
    rid = fresh_id("p")
    gapi.create_repo(rid, private=True)
    gapi.upload_file(path_or_fileobj=b"secret\n", path_in_repo="s.txt", repo_id=rid)
    token = ghub.admin_token
    hfgit("clone", f"hf://{rid}", str(tmp_path / "ok"))
    assert (tmp_path / "ok/s.txt").read_bytes() == b"secret\n"
    anon = hfgit.with_token(None)
    proc = anon("clone", f"hf://{rid}", str(tmp_path / "anon"), check=False)
    assert proc.returncode != 0 and not (tmp_path / "anon").exists()
    assert "private and needs a token" in proc.stderr
    wrong = hfgit.with_token("hf_" + "x" * 34)
    proc = wrong("clone", f"hf://{rid}", str(tmp_path / "wrong"), check=False)
    assert proc.returncode != 0 and "rejected the token" in proc.stderr
    # the token from the huggingface_hub token file, and from a git credential helper
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    anon("clone", f"hf://{rid}", str(tmp_path / "file"), HF_TOKEN_PATH=str(token_file))
    # HF_TOKEN is the configured hub's token: another host (hf::URL) never gets it, only git's credentials for it
    elsewhere = {"HF_ENDPOINT": "https://huggingface.co"}
    proc = hfgit("clone", f"hf::{ghub.endpoint}/{rid}", str(tmp_path / "foreign"), check=False, **elsewhere)
    assert proc.returncode != 0 and "private and needs a token" in proc.stderr
    store = tmp_path / "creds"
    store.write_text(f"{ghub.endpoint.replace('://', '://hf:' + token + '@', 1)}\n")
    hfgit("-c", f"credential.helper=store --file={store}", "clone", f"hf::{ghub.endpoint}/{rid}", str(tmp_path / "cred"),
          **elsewhere)
    assert (tmp_path / "cred/s.txt").read_bytes() == b"secret\n"
    for repo in ("ok", "file", "cred"):  # the token is in no file of the clone
        for path in (tmp_path / repo / ".git").rglob("*"):
            if path.is_file() and "objects" not in path.parts:
                assert token.encode() not in path.read_bytes(), path
    assert token not in proc.stderr


def test_server_dying_mid_pack_leaves_repo_unchanged(hfgit: Git, gapi: HfApi, ghub: HubServer, tmp_path: Path) -> None:
    from proxy import Proxy

    rid = fresh_id("cut")
    gapi.create_repo(rid)
    repo = tmp_path / "r"
    hfgit("clone", f"hf://{rid}", str(repo))
    # a commit whose pack is big (incompressible text file, not LFS)
    blob = "".join(f"{i:08x}{hash((i, 'x')) & 0xFFFFFFFF:08x}\n" for i in range(40000)).encode()
    gapi.upload_file(path_or_fileobj=blob, path_in_repo="big.txt", repo_id=rid)
    before = hfgit.out("for-each-ref", cwd=repo)
    port = int(ghub.endpoint.rsplit(":", 1)[1])
    proxy = Proxy(port, cut_after=200_000, cuts=100)
    try:
        proc = hfgit("fetch", cwd=repo, HF_ENDPOINT=proxy.endpoint, check=False)
        assert proc.returncode != 0, proc.stderr
        assert "git-remote-hf:" in proc.stderr and "unchanged" in proc.stderr
        assert hfgit.out("for-each-ref", cwd=repo) == before
        hfgit("fsck", "--full", cwd=repo)
        proc = hfgit("clone", f"hf://{rid}", str(tmp_path / "c"), HF_ENDPOINT=proxy.endpoint, check=False)
        assert proc.returncode != 0 and not (tmp_path / "c").exists()
    finally:
        proxy.close()
    hfgit("fetch", cwd=repo)  # the rerun completes
    hfgit("merge", "--ff-only", "origin/main", cwd=repo)
    assert (repo / "big.txt").read_bytes() == blob


def test_helper_usage_and_capabilities(git_bin: Path, tmp_path: Path) -> None:
    helper = str(git_bin / "git-remote-hf")
    proc = subprocess.run([helper], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr
    proc = subprocess.run([helper, "origin", "hf://a/b"], input="capabilities\noption filter blob:none\n"
                          "option depth 1\noption object-format true\n\n", capture_output=True, text=True,
                          env={"PATH": str(git_bin), "GIT_DIR": str(tmp_path)}, check=False)
    assert proc.stdout.split("\n") == ["fetch", "push", "option", "check-connectivity", "object-format", "",
                                       "unsupported", "ok", "ok", ""]
