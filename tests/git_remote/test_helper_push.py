"""`git push` through git-remote-hf (no git-lfs on PATH): LFS uploads before refs move, the local 10 MiB
refusal, failed uploads, server messages, auth, and commits git must keep byte for byte."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from hub_server import HubServer
from huggingface_hub import HfApi
from test_helper_common import Git, MiB, fresh_id, hub_refs, random_bytes


def ls_remote(git: Git, rid: str, cwd: Path) -> dict[str, str]:
    out = git.out("ls-remote", f"hf://{rid}", cwd=cwd)
    return {name: sha for sha, name in (line.split("\t") for line in out.splitlines())}


def new_clone(git: Git, gapi: HfApi, tmp_path: Path, name: str = "r", **create: object) -> tuple[str, Path]:
    rid = fresh_id("push")
    gapi.create_repo(rid, **create)  # type: ignore[arg-type]
    git("clone", f"hf://{rid}", str(tmp_path / name))
    return rid, tmp_path / name


def test_new_lfs_file_is_a_pointer_uploaded_before_the_refs_move(hfgit: Git, gapi: HfApi, ghub: HubServer,
                                                                 tmp_path: Path) -> None:
    rid, repo = new_clone(hfgit, gapi, tmp_path)
    data = random_bytes(2 * MiB + 123, 7)
    (repo / "weights").mkdir()
    (repo / "weights/model.safetensors").write_bytes(data)
    (repo / "notes.md").write_text("notes\n")
    hfgit("add", ".", cwd=repo)
    hfgit("commit", "-qm", "add weights", cwd=repo)
    pointer = hfgit.out("cat-file", "-p", "HEAD:weights/model.safetensors", cwd=repo)
    assert re.fullmatch(r"version https://git-lfs.github.com/spec/v1\noid sha256:[0-9a-f]{64}\nsize 2097275", pointer)
    log = ghub.log  # type: ignore[attr-defined]
    log.clear()
    proc = hfgit("push", "origin", "main", cwd=repo)
    assert "main -> main" in proc.stderr
    order = [(m, p) for m, p, *_ in log.lines() if rid in p and m in ("POST", "PUT")]
    lfs = [i for i, (m, p) in enumerate(order) if "/info/lfs/" in p or m == "PUT"]
    pack = [i for i, (m, p) in enumerate(order) if p.endswith("/git-receive-pack")]
    assert lfs and pack and max(lfs) < min(pack), order
    assert hub_refs(gapi, rid)["refs/heads/main"] == hfgit.out("rev-parse", "HEAD", cwd=repo)
    got = httpx.get(f"{ghub.endpoint}/{rid}/resolve/main/weights/model.safetensors", follow_redirects=True,
                    headers={"authorization": f"Bearer {ghub.admin_token}"})
    assert got.status_code == 200 and got.content == data
    # the hub sees the same commit through its REST API
    assert gapi.list_repo_commits(rid)[0].commit_id == hfgit.out("rev-parse", "HEAD", cwd=repo)


def test_big_regular_file_refused_before_any_upload(hfgit: Git, gapi: HfApi, ghub: HubServer, tmp_path: Path) -> None:
    rid, repo = new_clone(hfgit, gapi, tmp_path)
    before = hub_refs(gapi, rid)
    (repo / "data").mkdir()
    line = b"0123456789 text that is not tracked by LFS\n"
    (repo / "data/huge.txt").write_bytes(line * (10 * MiB // len(line) + 10))
    (repo / "w.bin").write_bytes(random_bytes(50_000, 3))  # an LFS file in the same push: not uploaded either
    hfgit("add", ".", cwd=repo)
    hfgit("commit", "-qm", "too big", cwd=repo)
    log = ghub.log  # type: ignore[attr-defined]
    log.clear()
    proc = hfgit("push", "origin", "main", cwd=repo, check=False)
    assert proc.returncode != 0
    assert "data/huge.txt" in proc.stderr and "track it with LFS" in proc.stderr
    assert "! [remote rejected] main -> main" in proc.stderr
    assert not [ln for ln in log.lines() if ln[0] in ("POST", "PUT") and rid in ln[1]], log.text()
    assert hub_refs(gapi, rid) == before


def test_failed_lfs_upload_leaves_remote_refs_unchanged(hfgit: Git, gapi: HfApi, ghub: HubServer,
                                                        tmp_path: Path) -> None:
    rid, repo = new_clone(hfgit, gapi, tmp_path)
    before = hub_refs(gapi, rid)
    # a pointer committed without its content (never in .git/lfs/objects, unknown to the hub)
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{'ab' * 32}\nsize 12345\n".encode()
    blob = hfgit.run("hash-object", "-w", "--stdin", cwd=repo, input=pointer).stdout.strip()
    hfgit("update-index", "--add", "--cacheinfo", f"100644,{blob},lost.bin", cwd=repo)
    hfgit("commit", "-qm", "pointer without content", cwd=repo)
    log = ghub.log  # type: ignore[attr-defined]
    log.clear()
    proc = hfgit("push", "origin", "main", cwd=repo, check=False)
    assert proc.returncode != 0 and "LFS upload failed" in proc.stderr, proc.stderr
    assert not log.matching("POST", r"/git-receive-pack$")
    assert hub_refs(gapi, rid) == before


def test_server_rejection_is_relayed(hfgit: Git, gapi: HfApi, tmp_path: Path) -> None:
    rid, repo = new_clone(hfgit, gapi, tmp_path)
    proc = hfgit("push", "origin", ":main", cwd=repo, check=False)  # the hub never deletes the default branch
    assert proc.returncode != 0
    assert "remote: " in proc.stderr and "main" in proc.stderr
    assert "! [remote rejected] main" in proc.stderr
    assert "refs/heads/main" in hub_refs(gapi, rid)
    proc = hfgit("push", "origin", "HEAD:refs/notes/x", cwd=repo, check=False)  # only branches and tags
    assert proc.returncode != 0 and "remote: " in proc.stderr


def test_push_auth(hfgit: Git, gapi: HfApi, ghub: HubServer, tmp_path: Path) -> None:
    rid, repo = new_clone(hfgit, gapi, tmp_path, private=True)
    (repo / "a.txt").write_text("a\n")
    hfgit("add", ".", cwd=repo)
    hfgit("commit", "-qm", "a", cwd=repo)
    proc = hfgit.with_token(None)("push", "origin", "main", cwd=repo, check=False)
    assert proc.returncode != 0 and "needs a write token" in proc.stderr
    reader = ghub.add_user(f"r{fresh_id()[-6:]}")
    proc = hfgit.with_token(reader)("push", "origin", "main", cwd=repo, check=False)
    assert proc.returncode != 0 and "git-remote-hf:" in proc.stderr
    assert reader not in proc.stderr and ghub.admin_token not in proc.stderr
    hfgit("push", "origin", "main", cwd=repo)
    assert hub_refs(gapi, rid)["refs/heads/main"] == hfgit.out("rev-parse", "HEAD", cwd=repo)


SIGNATURE = """-----BEGIN PGP SIGNATURE-----

 iHUEABYKAB0WIQTkJ9qjRZbXyp3zz5o+6c6U4xsl4AUCZmxwQAAKCRA+6c6U4xsl
 4K2OAQD8ClX5Z3m0l1v4m1n9bXQbBKp+oS0a2qI7n3D2P9lJ1AEA1mKxW0y8Vb5J
 =kQ3x
 -----END PGP SIGNATURE-----"""


def test_signed_and_non_utf8_commits_survive_a_round_trip(hfgit: Git, gapi: HfApi, tmp_path: Path) -> None:
    rid, repo = new_clone(hfgit, gapi, tmp_path)
    tree = hfgit.out("rev-parse", "HEAD^{tree}", cwd=repo)
    head = hfgit.out("rev-parse", "HEAD", cwd=repo)
    ident = "Tester <tester@example.com> 1700000000 +0100"
    signed = (f"tree {tree}\nparent {head}\nauthor {ident}\ncommitter {ident}\ngpgsig {SIGNATURE}\n\n"
              "signed commit\n").encode()
    signed_sha = hfgit.run("hash-object", "-t", "commit", "-w", "--stdin", cwd=repo, input=signed).stdout.strip()
    latin = (f"tree {tree}\nparent {signed_sha}\nauthor {ident}\ncommitter {ident}\nencoding ISO-8859-1\n\n").encode() \
        + "caf\u00e9 cr\u00e8me\n".encode("latin-1")
    latin_sha = hfgit.run("hash-object", "-t", "commit", "-w", "--stdin", cwd=repo, input=latin).stdout.strip()
    tag = (f"object {latin_sha}\ntype commit\ntag v1-signed\ntagger {ident}\n\nsigned tag\n{SIGNATURE.replace(' ', '')}\n"
           ).encode()
    tag_sha = hfgit.run("hash-object", "-t", "tag", "-w", "--stdin", cwd=repo, input=tag).stdout.strip()
    hfgit("update-ref", "refs/heads/main", latin_sha, cwd=repo)
    hfgit("update-ref", "refs/tags/v1-signed", tag_sha, cwd=repo)
    hfgit("push", "origin", "main", "v1-signed", cwd=repo)
    remote = ls_remote(hfgit, rid, repo)
    assert remote["refs/heads/main"] == latin_sha and remote["refs/tags/v1-signed"] == tag_sha
    assert gapi.list_repo_commits(rid)[0].commit_id == latin_sha
    hfgit("clone", f"hf://{rid}", str(tmp_path / "again"))
    again = tmp_path / "again"
    assert hfgit.run("cat-file", "commit", signed_sha, cwd=again).stdout.encode() == signed
    raw = hfgit.run("cat-file", "commit", latin_sha, cwd=again, check=True)
    assert "encoding ISO-8859-1" in raw.stdout
    assert hfgit.out("rev-parse", "v1-signed", cwd=again) == tag_sha
    hfgit("fsck", "--full", cwd=again)
