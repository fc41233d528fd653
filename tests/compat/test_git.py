"""Stock git 2.39 and git-lfs against the embedded hub's smart HTTP and LFS endpoints, on loopback.

Includes ports of the applicable cases of git's own t5801 remote-helper tests (clone, fetch of a new
branch, push by name and with old:new refspecs, forced push, deletes, tags).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def git_home(tmp_path_factory) -> Path:
    """A HOME with git identity and the git-lfs filters installed, isolated from the machine's config."""
    home = tmp_path_factory.mktemp("githome")
    env = _env(home)
    subprocess.run(["git", "config", "--global", "user.name", "Tester"], env=env, check=True)
    subprocess.run(["git", "config", "--global", "user.email", "tester@example.com"], env=env, check=True)
    subprocess.run(["git", "config", "--global", "init.defaultBranch", "main"], env=env, check=True)
    subprocess.run(["git", "lfs", "install", "--skip-repo"], env=env, check=True, capture_output=True)
    return home


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false", **extra)
    return env


class Git:
    """Runs stock git with the isolated HOME."""

    def __init__(self, home: Path) -> None:
        self.home = home

    def __call__(self, *args: str, cwd: Path | None = None, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(["git", *args], cwd=cwd, env=_env(self.home, **env), capture_output=True, text=True,
                              timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def out(self, *args: str, cwd: Path | None = None) -> str:
        return self(*args, cwd=cwd).stdout.strip()


@pytest.fixture
def git(git_home: Path) -> Git:
    return Git(git_home)


def url(hub, repo_id: str, token: str | None = None, prefix: str = "") -> str:
    netloc = hub.endpoint.split("://", 1)[1]
    auth = f"user:{token}@" if token else ""
    return f"http://{auth}{netloc}/{prefix}{repo_id}"


def server_fsck(hub, repo_type: str, repo_id: str) -> None:
    git_dir = hub.data_dir / "repos" / repo_type / f"{repo_id}.git"
    proc = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--full", "--no-dangling"],
                          capture_output=True, text=True, env=_env(Path("/tmp")))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def rest_refs(api: HfApi, repo_id: str, repo_type: str | None = None) -> dict[str, str]:
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    out = {b.ref: b.target_commit for b in refs.branches}
    out.update({t.ref: t.target_commit for t in refs.tags})
    return out


def git_refs(git: Git, work: Path) -> dict[str, str]:
    out = {}
    for line in git.out("ls-remote", "origin", cwd=work).splitlines():
        sha, ref = line.split("\t")
        if ref.startswith(("refs/heads/", "refs/tags/")) and not ref.endswith("^{}"):
            out[ref] = git.out("rev-parse", f"{sha}^{{commit}}", cwd=work)
    return out


def commit_file(git: Git, work: Path, name: str, data: bytes | str, message: str) -> str:
    path = work / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    git("add", name, cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git.out("rev-parse", "HEAD", cwd=work)


@pytest.mark.parametrize("protocol", ["0", "2"])
def test_anonymous_clone_matches_rest_history(git: Git, api: HfApi, hub, repo_id: str, tmp_path: Path,
                                              protocol: str) -> None:
    api.upload_file(path_or_fileobj=b"hello", path_in_repo="a/hello.txt", repo_id=repo_id)
    api.create_tag(repo_id, tag="v1")
    work = tmp_path / "clone"
    git("-c", f"protocol.version={protocol}", "clone", "-q", url(hub, repo_id), str(work))
    assert (work / "a" / "hello.txt").read_text() == "hello"
    assert git.out("rev-parse", "HEAD", cwd=work) == api.model_info(repo_id).sha
    assert [c.commit_id for c in api.list_repo_commits(repo_id)] == git.out("log", "--format=%H", cwd=work).split()
    assert git_refs(git, work) == rest_refs(api, repo_id)
    git("fsck", "--full", cwd=work)


def test_dot_git_suffix_datasets_and_spaces(git: Git, api: HfApi, hub, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    api.create_repo(f"admin/ds-{tag}", repo_type="dataset")
    api.upload_file(path_or_fileobj=b"x,y\n", path_in_repo="d.csv", repo_id=f"admin/ds-{tag}", repo_type="dataset")
    api.create_repo(f"admin/sp-{tag}", repo_type="space", space_sdk="static")
    git("clone", "-q", url(hub, f"admin/ds-{tag}.git", prefix="datasets/"), str(tmp_path / "ds"))
    assert (tmp_path / "ds" / "d.csv").read_text() == "x,y\n"
    git("clone", "-q", url(hub, f"admin/sp-{tag}", prefix="spaces/"), str(tmp_path / "sp"))
    assert (tmp_path / "sp" / ".gitattributes").exists()


def test_push_branches_tags_deletes_and_force(git: Git, api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    first = commit_file(git, work, "one.txt", "1", "one")
    git("push", "-q", "origin", "main", cwd=work)
    assert api.model_info(repo_id).sha == first
    # t5801: push new branch by name; push new branch with old:new refspec; branches with '/'
    git("checkout", "-q", "-b", "feat/deep/x", cwd=work)
    feat = commit_file(git, work, "feat.txt", "f", "feature")
    git("push", "-q", "origin", "feat/deep/x", cwd=work)
    git("push", "-q", "origin", "feat/deep/x:refs/heads/copy", cwd=work)
    git("tag", "light", first, cwd=work)
    git("tag", "-a", "release/v1", "-m", "first release", cwd=work)
    git("push", "-q", "origin", "--tags", cwd=work)
    refs = rest_refs(api, repo_id)
    assert refs["refs/heads/feat/deep/x"] == feat and refs["refs/heads/copy"] == feat
    assert refs["refs/tags/light"] == first and refs["refs/tags/release/v1"] == feat
    assert api.list_repo_files(repo_id, revision="feat/deep/x") == [".gitattributes", "feat.txt", "one.txt"]
    assert git_refs(git, work) == refs
    # t5801: forced push
    git("reset", "-q", "--hard", first, cwd=work)
    forced = commit_file(git, work, "other.txt", "o", "rewritten")
    rejected = git("push", "origin", "feat/deep/x", cwd=work, check=False)
    assert rejected.returncode != 0 and "rejected" in rejected.stderr
    git("push", "-q", "--force", "origin", "feat/deep/x", cwd=work)
    assert rest_refs(api, repo_id)["refs/heads/feat/deep/x"] == forced
    # t5801: delete refs
    git("push", "-q", "origin", "--delete", "copy", "light", cwd=work)
    refs = rest_refs(api, repo_id)
    assert "refs/heads/copy" not in refs and "refs/tags/light" not in refs
    assert "main" in git("push", "origin", "--delete", "main", cwd=work, check=False).stderr
    assert rest_refs(api, repo_id)["refs/heads/main"] == first
    server_fsck(hub, "model", repo_id)


def test_fetch_and_pull_see_rest_commits_and_new_branches(git: Git, api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    rest = api.upload_file(path_or_fileobj=b"rest", path_in_repo="rest.txt", repo_id=repo_id).oid
    api.create_branch(repo_id, branch="fresh")
    git("fetch", "-q", "origin", cwd=work)  # t5801: fetch new branch
    assert git.out("rev-parse", "origin/main", cwd=work) == rest
    assert git.out("rev-parse", "origin/fresh", cwd=work) == rest
    git("pull", "-q", "--ff-only", cwd=work)
    assert (work / "rest.txt").read_text() == "rest"
    # a REST commit lands between clone and push: git refuses (fetch first), pull + push works
    mine = commit_file(git, work, "mine.txt", "m", "mine")
    api.upload_file(path_or_fileobj=b"more", path_in_repo="more.txt", repo_id=repo_id)
    stale = git("push", "origin", "main", cwd=work, check=False)
    assert stale.returncode != 0 and "fetch first" in stale.stderr
    git("pull", "-q", "--rebase", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    assert {"mine.txt", "more.txt", "rest.txt"} <= set(api.list_repo_files(repo_id))
    assert api.model_info(repo_id).sha == git.out("rev-parse", "HEAD", cwd=work) != mine
    server_fsck(hub, "model", repo_id)


def test_shallow_clone(git: Git, api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    for i in range(3):
        api.upload_file(path_or_fileobj=str(i).encode(), path_in_repo="n.txt", repo_id=repo_id)
    work = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", url(hub, repo_id), str(work))
    assert git.out("rev-list", "--count", "HEAD", cwd=work) == "1"
    assert (work / "n.txt").read_text() == "2"
    git("fetch", "-q", "--deepen", "2", cwd=work)
    assert git.out("rev-list", "--count", "HEAD", cwd=work) == "3"


def test_lfs_pushed_with_git_is_read_by_the_official_client(git: Git, api: HfApi, hub, repo_id: str,
                                                             tmp_path: Path) -> None:
    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    weights = os.urandom(3 * MiB)
    commit_file(git, work, "model.safetensors", weights, "weights")
    assert git.out("lfs", "ls-files", "-n", cwd=work) == "model.safetensors"
    git("push", "-q", "origin", "main", cwd=work)
    entry = next(e for e in api.list_repo_tree(repo_id) if e.path == "model.safetensors")
    assert entry.lfs is not None and entry.lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert Path(hf_hub_download(repo_id, "model.safetensors", cache_dir=tmp_path / "c")).read_bytes() == weights
    server_fsck(hub, "model", repo_id)


def test_lfs_uploaded_by_the_official_client_is_read_by_git(git: Git, api: HfApi, hub, repo_id: str,
                                                             tmp_path: Path) -> None:
    data = os.urandom(11 * MiB)
    api.upload_file(path_or_fileobj=data, path_in_repo="big/w.bin", repo_id=repo_id)
    small = os.urandom(1000)
    api.upload_file(path_or_fileobj=small, path_in_repo="tiny.bin", repo_id=repo_id)
    work = tmp_path / "c"
    git("clone", "-q", url(hub, repo_id), str(work))
    assert (work / "big" / "w.bin").read_bytes() == data
    assert (work / "tiny.bin").read_bytes() == small
    skip = tmp_path / "skip"
    git("clone", "-q", url(hub, repo_id), str(skip), GIT_LFS_SKIP_SMUDGE="1")
    assert (skip / "big" / "w.bin").read_bytes().startswith(b"version https://git-lfs.github.com/spec/v1")
    git("lfs", "pull", cwd=skip)
    assert (skip / "big" / "w.bin").read_bytes() == data


def test_large_non_lfs_file_is_rejected_and_changes_nothing(git: Git, api: HfApi, hub, repo_id: str,
                                                             tmp_path: Path) -> None:
    before = api.model_info(repo_id).sha
    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    commit_file(git, work, "ok.txt", "fine", "fine")
    commit_file(git, work, "data/huge.dat", os.urandom(10 * MiB), "too big")
    proc = git("push", "origin", "main", cwd=work, check=False)
    assert proc.returncode != 0
    assert "remote:" in proc.stderr and "data/huge.dat" in proc.stderr and "git lfs track" in proc.stderr
    assert api.model_info(repo_id).sha == before
    assert rest_refs(api, repo_id) == {"refs/heads/main": before}
    quarantine = list((hub.data_dir / "repos" / "model" / f"{repo_id}.git" / "objects").glob("tmp_objdir*"))
    assert quarantine == [], "the refused objects never enter the repository"
    server_fsck(hub, "model", repo_id)


def test_pointer_without_uploaded_object_is_rejected(git: Git, api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    before = api.model_info(repo_id).sha
    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    commit_file(git, work, "w.bin", os.urandom(5000), "pointer only")
    proc = git("push", "origin", "main", cwd=work, check=False, GIT_LFS_SKIP_PUSH="1")
    assert proc.returncode != 0 and "w.bin" in proc.stderr and "not uploaded" in proc.stderr
    assert api.model_info(repo_id).sha == before


def test_private_repo_and_push_permissions(git: Git, api: HfApi, hub, users: dict[str, str], tmp_path: Path) -> None:
    rid = f"admin/priv-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid, private=True)
    anon = git("clone", url(hub, rid), str(tmp_path / "anon"), check=False)
    assert anon.returncode != 0 and "could not read Username" in anon.stderr, "a 401 challenge asks for credentials"
    other = git("clone", url(hub, rid, users["bob_token"]), str(tmp_path / "bob"), check=False)
    assert other.returncode != 0 and "not found" in other.stderr
    bad = git("clone", url(hub, rid, "hf_not_a_token"), str(tmp_path / "bad"), check=False)
    assert bad.returncode != 0 and "Authentication failed" in bad.stderr
    git("clone", "-q", url(hub, rid, hub.admin_token), str(tmp_path / "owner"))
    # a public repo of admin's: bob may clone but not push; a read-only token may not push at all
    pub = f"admin/pub-{uuid.uuid4().hex[:8]}"
    api.create_repo(pub)
    work = tmp_path / "pub"
    git("clone", "-q", url(hub, pub, users["bob_token"]), str(work))
    commit_file(git, work, "x.txt", "x", "x")
    denied = git("push", "origin", "main", cwd=work, check=False)
    assert denied.returncode != 0 and "403" in denied.stderr and "rights" in denied.stderr
    git("remote", "set-url", "origin", url(hub, pub, users["bob_read"]), cwd=work)
    assert git("push", "origin", "main", cwd=work, check=False).returncode != 0
    git("remote", "set-url", "origin", url(hub, pub), cwd=work)
    assert "could not read Username" in git("push", "origin", "main", cwd=work, check=False).stderr
    assert api.list_repo_files(pub) == [".gitattributes"]


def test_bearer_header_auth(git: Git, api: HfApi, hub, tmp_path: Path) -> None:
    rid = f"admin/bearer-{uuid.uuid4().hex[:8]}"
    api.create_repo(rid, private=True)
    git("-c", f"http.extraHeader=Authorization: Bearer {hub.admin_token}", "clone", "-q", url(hub, rid),
        str(tmp_path / "c"))
    assert (tmp_path / "c" / ".gitattributes").exists()


def test_killed_push_leaves_the_repo_as_it_was(git: Git, api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    before = api.model_info(repo_id).sha
    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    for i in range(12):  # ~48 MiB of incompressible, non-LFS files under the 10 MiB limit
        (work / f"blob{i}.dat").write_bytes(os.urandom(4 * MiB))
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "big push", cwd=work)
    proc = subprocess.Popen(["git", "push", "origin", "main"], cwd=work, env=_env(git.home, GIT_TRACE_PACKET="0"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(0.6)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    time.sleep(1.0)
    assert api.model_info(repo_id).sha == before
    assert "blob0.dat" not in api.list_repo_files(repo_id)
    server_fsck(hub, "model", repo_id)
    git("push", "-q", "origin", "main", cwd=work)
    assert api.model_info(repo_id).sha == git.out("rev-parse", "HEAD", cwd=work)


def test_push_updates_card_index_immediately(git: Git, api: HfApi, hub, repo_id: str, tmp_path: Path) -> None:
    tag = f"gitcard{uuid.uuid4().hex[:8]}"
    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    commit_file(git, work, "README.md", f"---\nlicense: mit\ntags: [{tag}]\n---\n# pushed\n", "card")
    git("push", "-q", "origin", "main", cwd=work)
    assert [m.id for m in api.list_models(filter=tag)] == [repo_id]
    assert api.model_info(repo_id).card_data.license == "mit"


def test_dumb_http_is_refused_clearly(hub, repo_id: str) -> None:
    resp = httpx.get(f"{hub.endpoint}/{repo_id}/info/refs")
    assert resp.status_code == 403 and "smart" in resp.text


def test_pushes_and_rest_commits_interleave_without_loss(git: Git, api: HfApi, hub, repo_id: str,
                                                         tmp_path: Path) -> None:
    import threading

    work = tmp_path / "w"
    git("clone", "-q", url(hub, repo_id, hub.admin_token), str(work))
    errors: list[BaseException] = []

    def rest_writer() -> None:
        try:
            for i in range(6):
                api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo=f"rest/{i}.txt", repo_id=repo_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    writer = threading.Thread(target=rest_writer)
    writer.start()
    for i in range(6):
        commit_file(git, work, f"git/{i}.txt", str(i), f"git {i}")
        for _ in range(20):
            if git("push", "-q", "origin", "main", cwd=work, check=False).returncode == 0:
                break
            git("pull", "-q", "--rebase", cwd=work)
        else:
            raise AssertionError("push never went through")
    writer.join(120)
    assert not errors
    files = set(api.list_repo_files(repo_id))
    assert {f"rest/{i}.txt" for i in range(6)} | {f"git/{i}.txt" for i in range(6)} <= files
    server_fsck(hub, "model", repo_id)
