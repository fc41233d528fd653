"""Many hub processes on one data folder: three independent ``hubfs serve`` processes on different ports,
and one ``hubfs serve --workers 3``. Concurrent commits and git pushes through different workers lose
nothing and keep a linear history; each worker sees the latest commit at once; a worker killed
mid-commit leaves no half state and the others go on; web sessions, CSRF tokens, signed URLs and
Xet CAS tokens made by one worker verify on another; a repo deleted and re-created through one worker
is never served from another worker's old handle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from hub_server import HubServer
from huggingface_hub import CommitOperationAdd, HfApi

MiB = 1 << 20


@pytest.fixture
def trio(tmp_path: Path):
    """Three ``hubfs serve`` processes sharing ``tmp_path/hub`` (the first one creates it)."""
    data = tmp_path / "hub"
    servers = [HubServer(data).start()]
    servers += [HubServer(data).start() for _ in range(2)]
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture
def pg_trio(tmp_path: Path):
    """Like ``trio``, with the metadata in a throwaway PostgreSQL cluster (remembered in the data folder)."""
    from pg_cluster import pg_cluster

    data = tmp_path / "hub"
    with pg_cluster(tmp_path) as url:
        servers = [HubServer(data, "--database-url", url).start()]
        servers += [HubServer(data).start() for _ in range(2)]
        try:
            yield servers
        finally:
            for s in servers:
                s.stop()


def _api(hub: HubServer) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=hub.admin_token)


def _git_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="T", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="T",
               GIT_COMMITTER_EMAIL="t@example.com")
    return env


def _git(env: dict[str, str], *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=check, capture_output=True, text=True, timeout=120)


def _remote(hub: HubServer, repo_id: str) -> str:
    return f"http://user:{hub.admin_token}@{hub.endpoint.split('://', 1)[1]}/{repo_id}"


def _git_fsck(data_dir: Path, repo_id: str) -> None:
    git_dir = data_dir / "repos" / "model" / f"{repo_id}.git"
    out = subprocess.run(["git", "--git-dir", str(git_dir), "fsck", "--full", "--no-dangling"],
                         check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _history(hub: HubServer, repo_id: str) -> list[dict]:
    commits: list[dict] = []
    url: str | None = f"{hub.endpoint}/api/models/{repo_id}/commits/main"
    while url:
        r = httpx.get(url, headers={"authorization": f"Bearer {hub.admin_token}"})
        assert r.status_code == 200, r.text
        commits += r.json()
        url = r.links.get("next", {}).get("url")
    return commits


def _pusher(hub: HubServer, repo_id: str, work: Path, env: dict[str, str], names: list[str]) -> None:
    """Clone through ``hub`` and push one commit per name, rebasing onto whatever landed meanwhile."""
    _git(env, "clone", "-q", _remote(hub, repo_id), str(work))
    for name in names:
        (work / name).write_text(name)
        _git(env, "add", name, cwd=work)
        _git(env, "commit", "-q", "-m", f"push {name}", cwd=work)
        for _ in range(30):
            if _git(env, "push", "-q", "origin", "HEAD:main", cwd=work, check=False).returncode == 0:
                break
            _git(env, "pull", "-q", "--rebase", "origin", "main", cwd=work)
        else:
            raise AssertionError(f"push of {name} never landed")


def _concurrent_commits_and_pushes(hubs: list[HubServer], tmp_path: Path, per_worker: int = 4) -> None:
    """REST commits through every hub at once, and a git push loop through each of two hubs."""
    repo_id = f"admin/w-{uuid.uuid4().hex[:8]}"
    _api(hubs[0]).create_repo(repo_id)
    env = _git_env(tmp_path)
    expected: list[str] = []
    jobs = []
    for w, hub in enumerate(hubs):
        for i in range(per_worker):
            expected.append(f"rest/{w}-{i}.txt")
            jobs.append((hub, f"rest/{w}-{i}.txt"))

    def rest(job: tuple[HubServer, str]) -> None:
        hub, name = job
        _api(hub).create_commit(repo_id, [CommitOperationAdd(name, name.encode())], commit_message=f"rest {name}")

    pushes = {f"push-{w}-{i}.txt": w for w in range(2) for i in range(3)}
    expected += list(pushes)
    with ThreadPoolExecutor(len(jobs) + 2) as pool:
        futures = [pool.submit(rest, job) for job in jobs]
        for w in range(2):
            names = [n for n, p in pushes.items() if p == w]
            futures.append(pool.submit(_pusher, hubs[(w + 1) % len(hubs)], repo_id, tmp_path / f"clone{w}", env, names))
        for f in futures:
            f.result()

    shas = {_api(h).model_info(repo_id).sha for h in hubs}
    assert len(shas) == 1, "every worker sees the same head"
    for hub in hubs:
        files = set(_api(hub).list_repo_files(repo_id))
        assert set(expected) <= files, sorted(set(expected) - files)
    history = _history(hubs[-1], repo_id)
    assert len(history) == len(expected) + 1, "one commit per change, plus the initial one: nothing lost"
    env_log = _git(env, "--git-dir", str(hubs[0].data_dir / "repos" / "model" / f"{repo_id}.git"),
                   "rev-list", "--min-parents=2", "main").stdout
    assert env_log == "", "a linear history: no merge commits"
    _git_fsck(hubs[0].data_dir, repo_id)


def test_three_processes_on_one_folder_lose_nothing(trio, tmp_path):
    _concurrent_commits_and_pushes(trio, tmp_path)


def test_three_processes_with_postgres_lose_nothing(pg_trio, tmp_path):
    _concurrent_commits_and_pushes(pg_trio, tmp_path)


def test_delete_and_recreate_is_seen_by_the_others_with_postgres(pg_trio, tmp_path):
    _delete_and_recreate(pg_trio, tmp_path)


def test_one_process_with_three_workers_loses_nothing(tmp_hub, tmp_path):
    hub = tmp_hub("--workers", "3")
    _wait_children(hub, 3)
    _concurrent_commits_and_pushes([hub, hub, hub], tmp_path)


def _children(hub: HubServer) -> list[int]:
    """The worker processes of a ``--workers`` hub (uvicorn spawns them, beside a resource tracker)."""
    assert hub.proc is not None
    out = subprocess.run(["ps", "-ww", "--ppid", str(hub.proc.pid), "-o", "pid=,args="], check=False,
                         capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "multiprocessing.spawn" in line]


def _wait_children(hub: HubServer, n: int, timeout: float = 30) -> list[int]:
    deadline = time.time() + timeout
    while len(found := _children(hub)) != n:
        assert time.time() < deadline, (found, subprocess.run(["ps", "-ef"], check=False, capture_output=True,
                                                              text=True).stdout[-4000:])
        time.sleep(0.1)
    return found


def test_a_killed_worker_is_replaced_and_the_others_serve(tmp_hub):
    hub = tmp_hub("--workers", "2")
    auth = {"authorization": f"Bearer {hub.admin_token}"}
    assert httpx.post(f"{hub.endpoint}/api/repos/create", json={"name": "k", "organization": "admin"},
                      headers=auth).status_code == 200
    first = _wait_children(hub, 2)
    os.kill(first[0], signal.SIGKILL)
    for i in range(20):  # every request (each on a new connection) answered, whichever worker takes it
        line = {"key": "file", "value": {"path": f"f{i}", "content": "eA==", "encoding": "base64"}}
        body = '{"key": "header", "value": {"summary": "c"}}\n' + json.dumps(line)
        r = httpx.post(f"{hub.endpoint}/api/models/admin/k/commit/main", content=body,
                       headers={**auth, "content-type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
    deadline = time.time() + 30
    while len(_children(hub)) < 2 or first[0] in _children(hub):
        assert time.time() < deadline, "the supervisor never replaced the worker"
        time.sleep(0.2)
    files = httpx.get(f"{hub.endpoint}/api/models/admin/k/tree/main", headers=auth).json()
    assert len(files) == 21


def test_each_worker_sees_a_commit_at_once(trio):
    repo_id = "admin/seen"
    _api(trio[0]).create_repo(repo_id)
    for i in range(6):
        writer = trio[i % 3]
        info = _api(writer).create_commit(repo_id, [CommitOperationAdd(f"f{i}.txt", b"x")], commit_message=f"c{i}")
        for reader in trio:
            assert _api(reader).model_info(repo_id).sha == info.oid
            r = httpx.get(f"{reader.endpoint}/{repo_id}/resolve/main/f{i}.txt")
            assert r.status_code == 200 and r.headers["x-repo-commit"] == info.oid


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_worker_killed_mid_commit_leaves_no_half_state(tmp_path):
    data, flag = tmp_path / "hub", tmp_path / "paused"
    doomed_hub = HubServer(data, env={"HUBFS_FAULT_PAUSE": f"before-ref-update:{flag}"}).start()
    others = [HubServer(data).start() for _ in range(2)]
    try:
        api = _api(others[0])
        api.create_repo("admin/crash")
        before = api.model_info("admin/crash").sha
        errors: list[Exception] = []

        def doomed() -> None:
            try:
                _api(doomed_hub).upload_file(path_or_fileobj=os.urandom(2 * MiB), path_in_repo="lost.bin",
                                             repo_id="admin/crash")
            except Exception as exc:  # noqa: BLE001 - the connection dies with the worker
                errors.append(exc)

        t = threading.Thread(target=doomed)
        t.start()
        _wait_for(flag)
        doomed_hub.kill()
        t.join(60)
        assert errors, "the client sees the failure"
        for hub in others:
            assert _api(hub).model_info("admin/crash").sha == before
            assert "lost.bin" not in _api(hub).list_repo_files("admin/crash")
        after = _api(others[1]).create_commit("admin/crash", [CommitOperationAdd("after.txt", b"a")],
                                              commit_message="after").oid
        assert _api(others[0]).model_info("admin/crash").sha == after
        assert not list((data / "repos").rglob("*.lock")), "no lock file left behind"
        _git_fsck(data, "admin/crash")
    finally:
        for hub in [doomed_hub, *others]:
            hub.stop()


def test_sessions_csrf_and_signed_urls_verify_on_any_worker(trio, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "web"))
    from auth_helpers import add_web_user, csrf_of, signed_in_client

    a, b, c = trio
    user, _ = add_web_user(a, cli=True)
    client = signed_in_client(a, user)  # the session cookie is made by worker a
    page_a = client.get("/settings/tokens")
    assert page_a.status_code == 200 and user in page_a.text
    client.base_url = httpx.URL(b.endpoint)  # cookies are per host, not per port: the same browser
    assert client.get("/settings/tokens").status_code == 200, "worker b knows a's session"
    r = client.post("/settings/tokens", data={"csrf_token": csrf_of(page_a.text), "name": "from-b", "role": "read"})
    assert r.status_code == 200 and 'id="new-token"' in r.text, "and accepts a's CSRF token"
    forged = client.post("/settings/tokens", data={"csrf_token": "0" * 40, "name": "forged", "role": "read"})
    assert forged.status_code == 403
    client.close()

    # An LFS upload URL signed by a, verified by c; a Xet CAS token minted by b, accepted by c.
    repo_id = "admin/signed"
    _api(a).create_repo(repo_id)
    data = os.urandom(50_000)
    import hashlib

    oid = hashlib.sha256(data).hexdigest()
    auth = {"authorization": f"Bearer {a.admin_token}"}
    batch = httpx.post(f"{a.endpoint}/{repo_id}.git/info/lfs/objects/batch", headers={**auth, "accept":
                       "application/vnd.git-lfs+json"}, json={"operation": "upload", "transfers": ["basic"],
                                                              "objects": [{"oid": oid, "size": len(data)}]})
    assert batch.status_code == 200, batch.text
    actions = batch.json()["objects"][0]["actions"]
    upload = actions["upload"]["href"].replace(a.endpoint, c.endpoint)
    assert httpx.put(upload, content=data, headers=actions["upload"].get("header", {})).status_code in (200, 201)
    verify = actions["verify"]["href"].replace(a.endpoint, c.endpoint)
    assert httpx.post(verify, json={"oid": oid, "size": len(data)}, headers=actions["verify"].get("header", {})
                      ).status_code == 200
    tampered = verify.replace("sig=", "sig=0")
    assert httpx.post(tampered, json={"oid": oid, "size": len(data)}).status_code == 401

    token = httpx.get(f"{b.endpoint}/api/models/{repo_id}/xet-read-token/main", headers=auth).json()
    cas_on_c = token["casUrl"].replace(b.endpoint, c.endpoint)
    r = httpx.get(f"{cas_on_c}/v1/reconstructions/{'0' * 64}", headers={"authorization": f"Bearer {token['accessToken']}"})
    assert r.status_code == 404, "c accepts b's token (and the file is not there)"
    r = httpx.get(f"{cas_on_c}/v1/reconstructions/{'0' * 64}", headers={"authorization": "Bearer xet1.a.b"})
    assert r.status_code == 401


def test_delete_and_recreate_through_one_worker_is_seen_by_the_others(trio, tmp_path):
    _delete_and_recreate(trio, tmp_path)


def _delete_and_recreate(hubs: list[HubServer], tmp_path: Path) -> None:
    """b holds a handle on the repo's path; a deletes the repo and creates another of the same name:
    b serves the new repo, never a file of the old one (whose objects were packed by a git push)."""
    a, b, _ = hubs
    repo_id = "admin/again"
    _api(a).create_repo(repo_id)
    env = _git_env(tmp_path)
    work = tmp_path / "w"
    _git(env, "clone", "-q", _remote(a, repo_id), str(work))
    (work / "secret.txt").write_text("old")
    _git(env, "add", "secret.txt", cwd=work)
    _git(env, "commit", "-q", "-m", "old", cwd=work)
    _git(env, "push", "-q", "origin", "HEAD:main", cwd=work)
    old = _api(b).model_info(repo_id).sha
    assert httpx.get(f"{b.endpoint}/{repo_id}/resolve/{old}/secret.txt").text == "old"  # b opens the repo
    _api(a).delete_repo(repo_id)
    _api(a).create_repo(repo_id)
    r = httpx.get(f"{b.endpoint}/{repo_id}/resolve/{old}/secret.txt")
    assert r.status_code == 404, "the old commit is gone with the old repo, on every worker"
    assert "secret.txt" not in _api(b).list_repo_files(repo_id)


@pytest.mark.parametrize(("args", "message"), [(["--workers", "0"], "--workers must be 1 or more"),
                                               (["--workers", "2", "--jobs"], "--jobs runs jobs in one process")])
def test_bad_worker_settings_are_refused_before_anything_starts(tmp_path, args, message):
    import sys

    out = subprocess.run([sys.executable, "-m", "hubfs.cli", "serve", "--data", str(tmp_path / "hub"), "--port", "0",
                          *args], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1 and message in out.stderr
    assert not (tmp_path / "hub" / "admin.token").exists()
