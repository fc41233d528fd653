"""Clone benchmark of the embedded hub (``hubfs serve``): git smart HTTP + Git LFS against
``git http-backend`` serving the same repository in the same run.

The repository (built once in a temporary directory): the hub's initial commit (its default
``.gitattributes``) plus one commit with ``--files`` small text files (default 2,000, 200 B-4 KiB,
in 40 folders) and ``--lfs-objects`` binary files of ``--lfs-mib`` MiB of random bytes each
(default 300 x 1 MiB, ``weights/wNNN.bin``, stored through git-lfs). It is pushed to the hub with
``git push`` (which uploads the LFS objects through the hub's batch API too).

The baseline is the standard deployment of ``git http-backend``: nginx (one worker) in front of
fcgiwrap running ``git-http-backend`` as CGI for every request, on a ``git clone --bare --no-local``
copy of the same repository (one pack, like the hub's pushed repo). Its Git LFS endpoint
(``REPO.git/info/lfs``, the one git-lfs derives from the clone URL, so both clone commands are the
same) is a minimal batch API written here (proxied by nginx to a thread of this script) that
hands out nginx-served static files of the LFS objects. Without nginx or fcgiwrap, or with
``--baseline-host python``, the bridge thread does all of it (CGI, batch, static files) itself
(``apt-get install fcgiwrap`` gets the standard setup).

Measured, best of ``--runs`` (each into a fresh directory; each scenario on both servers back to
back, the one going first alternating by run; ``sync`` before each timed command), with
``GIT_TERMINAL_PROMPT=0``, ``GIT_CONFIG_NOSYSTEM=1`` and a fresh ``HOME`` where ``git lfs install``
ran:

1. ``git clone URL DIR``: full clone, the LFS files smudged (downloaded) during checkout;
2. ``GIT_LFS_SKIP_SMUDGE=1 git clone URL DIR``: git objects only;
3. ``git lfs pull`` in that skip-smudge clone: LFS objects only.

Every clone is checked: its HEAD is the source commit, all files are there, all LFS files have
their size and three of them their sha256. The table gives the best times, their ratio, and the
median of the per-run ratios (steadier on a shared machine). The project's goal: full clone within
1.2x the wall time of ``git http-backend``.

Run it (about 1.5-3 minutes on 2 cores at the defaults; the quick check takes under half a minute)::

    .venv/bin/python scripts/bench_git.py
    .venv/bin/python scripts/bench_git.py --files 200 --lfs-objects 30 --json /tmp/bench_git.json
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import hashlib
import json
import os
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from benchlib import add_numbers, add_output_args, arg_parser, free_port, spawn, start_hub, wait_http, workdir, write_json
from benchlib.machine import machine_info, machine_line, tool_version
from benchlib.table import print_table

NGINX = "/usr/sbin/nginx"
FCGIWRAP = shutil.which("fcgiwrap") or "/usr/sbin/fcgiwrap"
REPO_NAME = "bench-git"
REPO_ID = f"admin/{REPO_NAME}"
MIB = 1 << 20
SMALL_DIRS = 40
LFS_DIR = "weights"
WORDS = ["tensor", "layer", "weight", "bias", "model", "token", "hub", "commit", "branch", "merge", "file", "shard",
         "config", "vocab", "embedding", "attention", "head", "norm", "dropout", "batch", "epoch", "gradient",
         "optimizer", "schedule"]
SCENARIOS = {
    "full": "git clone (full, LFS smudged on checkout)",
    "skip_smudge": "GIT_LFS_SKIP_SMUDGE=1 git clone (git objects only)",
    "lfs_pull": "git lfs pull after the skip-smudge clone (LFS only)",
}
GOAL = 1.2
TOOLS = ("git", "git-lfs", "nginx")


# -- processes and git ---------------------------------------------------------------------------


def git_env(home: Path) -> dict[str, str]:
    """This process's environment without git/LFS/proxy settings, with its own HOME and no system config."""
    drop = ("GIT_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.com",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.com")
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    """Run a command, returning its stdout; on failure raise with its stderr."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    t0 = time.monotonic()
    run(argv, env, cwd)
    return time.monotonic() - t0


def setup_home(home: Path) -> dict[str, str]:
    """A fresh HOME with ``git lfs install`` done (the smudge/clean filters in its ~/.gitconfig)."""
    home.mkdir(parents=True)
    env = git_env(home)
    run(["git", "lfs", "install"], env)
    run(["git", "config", "--global", "init.defaultBranch", "main"], env)
    return env


# -- the content ---------------------------------------------------------------------------------


@dataclass
class Source:
    """The local repository pushed to both servers, and what a correct clone holds."""

    path: Path
    head: str = ""
    small: list[str] = field(default_factory=list)
    lfs: list[str] = field(default_factory=list)
    lfs_size: int = 0
    samples: dict[str, str] = field(default_factory=dict)  # LFS path -> sha256
    oids: list[str] = field(default_factory=list)  # sha256 of every LFS file, in path order

    @property
    def lfs_store(self) -> Path:
        return self.path / ".git" / "lfs" / "objects"


def small_text(i: int) -> bytes:
    """Deterministic text of 200 B to 4 KiB."""
    rng = random.Random(i)
    size = rng.randint(200, 4096)
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word + ("\n" if rng.random() < 0.1 else " "))
        length += len(words[-1])
    return "".join(words).encode()[:size]


def write_small_files(root: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        rel = f"docs/part{i % SMALL_DIRS:02d}/file{i:05d}.txt"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(small_text(i))
        paths.append(rel)
    return paths


def write_lfs_files(root: Path, count: int, size: int) -> tuple[list[str], dict[str, str], list[str]]:
    """``count`` files of ``size`` seeded random bytes; returns their paths, the sha256 of three, and all oids."""
    (root / LFS_DIR).mkdir(exist_ok=True)
    paths, samples, oids = [], {}, []
    sample_idx = {0, count // 2, count - 1}
    for i in range(count):
        rel = f"{LFS_DIR}/w{i:03d}.bin"
        data = random.Random(1_000_000 + i).randbytes(size)
        (root / rel).write_bytes(data)
        paths.append(rel)
        oids.append(hashlib.sha256(data).hexdigest())
        if i in sample_idx:
            samples[rel] = oids[-1]
    return paths, samples, oids


def build_source(path: Path, hub_url: str, env: dict[str, str], args: argparse.Namespace) -> Source:
    """Clone the fresh hub repo (its initial commit and .gitattributes), add the files, commit."""
    run(["git", "clone", "-q", hub_url, str(path)], env)
    attrs = (path / ".gitattributes").read_text()
    if "*.bin" not in attrs or "filter=lfs" not in attrs:
        raise RuntimeError(f"the hub's .gitattributes does not route *.bin to LFS:\n{attrs}")
    run(["git", "lfs", "install", "--local"], env, path)
    src = Source(path, lfs_size=lfs_size(args))
    t0 = time.monotonic()
    src.small = write_small_files(path, args.files)
    src.lfs, src.samples, src.oids = write_lfs_files(path, args.lfs_objects, src.lfs_size)
    run(["git", "add", "-A"], env, path)
    run(["git", "commit", "-q", "-m", f"bench: {args.files} small files, {args.lfs_objects} LFS objects"], env, path)
    src.head = run(["git", "rev-parse", "HEAD"], env, path)
    stored = sum(1 for _ in src.lfs_store.glob("*/*/*"))
    if stored < len(src.lfs):
        raise RuntimeError(f"git-lfs stored {stored} objects, expected {len(src.lfs)}")
    print(f"built {len(src.small)} small + {len(src.lfs)} LFS files ({len(src.lfs) * src.lfs_size / MIB:.0f} MiB), "
          f"commit {src.head[:12]}, in {time.monotonic() - t0:.1f}s", flush=True)
    return src


def push_to_hub(src: Source, push_url: str, env: dict[str, str]) -> float:
    """``git push`` (credentials in the URL): the git objects, and the LFS objects via git-lfs pre-push."""
    run(["git", "remote", "set-url", "--push", "origin", push_url], env, src.path)
    seconds = timed(["git", "push", "origin", "main"], env, src.path)
    return seconds


def make_bare(src: Source, root: Path, env: dict[str, str]) -> Path:
    """A packed bare copy for git http-backend (``--no-local``: one pack, like a pushed repo)."""
    root.mkdir()
    bare = root / f"{REPO_NAME}.git"
    run(["git", "clone", "-q", "--bare", "--no-local", str(src.path), str(bare)], env)
    return bare


# -- the baseline's servers ----------------------------------------------------------------------


@dataclass
class BridgeConfig:
    """What the bridge serves: LFS batch answers pointing at ``static_base``; and, in full mode,
    the static LFS files and git http-backend as CGI."""

    lfs_store: Path
    project_root: Path
    static_base: str = ""
    full: bool = False
    backend: str = "git-http-backend"
    env: dict[str, str] = field(default_factory=dict)


class BridgeHandler(BaseHTTPRequestHandler):
    """A minimal Git LFS batch API (download only) plus, in full mode, a CGI host for
    ``git http-backend`` and a static file server for ``/lfs-objects/``."""

    protocol_version = "HTTP/1.1"
    server: BridgeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.path.split("?")[0].endswith("/info/lfs/objects/batch"):
            self.lfs_batch()
        elif self.server.config.full:
            self.cgi()
        else:
            self.send_error(404)

    def do_GET(self) -> None:
        cfg = self.server.config
        if cfg.full and self.path.startswith("/lfs-objects/"):
            self.static()
        elif cfg.full:
            self.cgi()
        else:
            self.send_error(404)

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def lfs_batch(self) -> None:
        cfg = self.server.config
        req = json.loads(self.read_body() or b"{}")
        objects = []
        for obj in req.get("objects", []):
            oid, size = str(obj.get("oid", "")), obj.get("size", 0)
            entry: dict[str, Any] = {"oid": oid, "size": size}
            path = cfg.lfs_store / oid[:2] / oid[2:4] / oid
            if req.get("operation") != "download":
                entry["error"] = {"code": 403, "message": "read-only"}
            elif len(oid) == 64 and path.is_file():
                entry["actions"] = {"download": {"href": f"{cfg.static_base}/lfs-objects/{oid[:2]}/{oid[2:4]}/{oid}"}}
            else:
                entry["error"] = {"code": 404, "message": "not found"}
            objects.append(entry)
        body = json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.git-lfs+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def static(self) -> None:
        rel = unquote(self.path.split("?")[0]).removeprefix("/lfs-objects/")
        path = (self.server.config.lfs_store / rel).resolve()
        if ".." in rel.split("/") or not path.is_file():
            self.send_error(404)
            return
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.connection.sendfile(f)

    def cgi(self) -> None:
        """Run git http-backend for this request (CGI/1.1) and stream its answer chunked."""
        cfg = self.server.config
        path, _, query = self.path.partition("?")
        body = self.read_body() if self.command == "POST" else b""
        env = {**cfg.env, "GIT_PROJECT_ROOT": str(cfg.project_root), "GIT_HTTP_EXPORT_ALL": "1",
               "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": self.command,
               "PATH_INFO": unquote(path), "QUERY_STRING": query, "REMOTE_ADDR": self.client_address[0],
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body))}
        for key, value in self.headers.items():
            if key.lower() not in ("content-type", "content-length", "transfer-encoding"):
                env["HTTP_" + key.upper().replace("-", "_")] = value
        proc = subprocess.Popen([cfg.backend], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        feeder = threading.Thread(target=self._feed, args=(proc.stdin, body), daemon=True)
        feeder.start()
        try:
            status, headers = self._cgi_headers(proc.stdout)
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := proc.stdout.read1(1 << 16):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        finally:
            feeder.join()
            proc.stdout.close()
            proc.wait()

    @staticmethod
    def _feed(stdin: Any, body: bytes) -> None:
        with contextlib.suppress(BrokenPipeError):
            stdin.write(body)
        with contextlib.suppress(BrokenPipeError):
            stdin.close()

    @staticmethod
    def _cgi_headers(stdout: Any) -> tuple[int, list[tuple[str, str]]]:
        status, headers = 200, []
        while (line := stdout.readline().rstrip(b"\r\n")):
            key, _, value = line.decode("latin-1").partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((key, value.strip()))
        return status, headers


class BridgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, config: BridgeConfig) -> None:
        super().__init__(("127.0.0.1", 0), BridgeHandler)
        self.config = config


def start_bridge(stack: contextlib.ExitStack, config: BridgeConfig) -> str:
    """The bridge in a thread of this process; shut down when ``stack`` closes."""
    server = BridgeServer(config)
    thread = threading.Thread(target=server.serve_forever, name="bridge", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(10)

    stack.callback(stop)
    return f"http://127.0.0.1:{server.server_address[1]}"


def nginx_conf(prefix: Path, port: int, sock: Path, project_root: Path, lfs_store: Path, bridge: str,
               backend: str) -> str:
    """One worker: git http-backend through fcgiwrap, LFS batch proxied to the bridge, LFS objects static."""
    as_root = os.geteuid() == 0  # workers would otherwise run as nobody and could not read the 0700 temp dir
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n" if as_root else ""
    temp = "".join(f"    {kind}_temp_path {prefix}/{kind}_temp;\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
{temp}    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{port};
        location ~ /info/lfs/objects/batch$ {{
            proxy_pass {bridge};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /lfs-objects/ {{
            alias {lfs_store}/;
        }}
        location / {{
            fastcgi_pass unix:{sock};
            fastcgi_param SCRIPT_FILENAME {backend};
            fastcgi_param GIT_PROJECT_ROOT {project_root};
            fastcgi_param GIT_HTTP_EXPORT_ALL 1;
            fastcgi_param PATH_INFO $uri;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
        }}
    }}
}}
"""


def start_nginx_fcgiwrap(stack: contextlib.ExitStack, tmp: Path, project_root: Path, lfs_store: Path,
                         bridge: str, backend: str) -> str:
    """fcgiwrap on a unix socket and nginx in front; returns nginx's URL.

    One fcgiwrap process, as Debian's fcgiwrap.service runs it: a clone's git requests come one at a
    time (and fcgiwrap's preforked ``-c N`` children outlive a SIGTERM to their parent).
    """
    prefix, port = tmp / "nginx", free_port()
    prefix.mkdir()
    sock = prefix / "fcgiwrap.sock"
    fcgi = spawn(stack, "fcgiwrap", [FCGIWRAP, "-c", "1", "-s", f"unix:{sock}"], prefix / "fcgiwrap.log")
    deadline = time.monotonic() + 15
    while not sock.exists():
        if fcgi.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"fcgiwrap did not start:\n{(prefix / 'fcgiwrap.log').read_text()[-2000:]}")
        time.sleep(0.02)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_conf(prefix, port, sock, project_root, lfs_store, bridge, backend))
    log = prefix / "stdout.log"
    proc = spawn(stack, "nginx", [NGINX, "-c", str(conf), "-p", str(prefix)], log)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc, log, timeout=15)
    return url


def start_baseline(stack: contextlib.ExitStack, tmp: Path, project_root: Path, src: Source,
                   env: dict[str, str], host: str) -> tuple[str, str]:
    """The git http-backend server; returns (clone URL, description)."""
    backend = str(Path(run(["git", "--exec-path"], env)) / "git-http-backend")
    config = BridgeConfig(lfs_store=src.lfs_store, project_root=project_root, backend=backend, env=env)
    bridge = start_bridge(stack, config)
    use_nginx = host == "nginx" or (host == "auto" and os.path.exists(NGINX) and os.path.exists(FCGIWRAP))
    if use_nginx:
        url = start_nginx_fcgiwrap(stack, tmp, project_root, src.lfs_store, bridge, backend)
        config.static_base = url
        desc = ("nginx (1 worker) -> fcgiwrap (1 process) -> git-http-backend (CGI, a process per request); "
                "LFS batch: a minimal Python handler behind nginx; LFS objects: nginx static files (sendfile)")
    else:
        url = config.static_base = bridge
        config.full = True
        desc = ("a threaded Python http.server bridge running git-http-backend as CGI per request, "
                "with a minimal LFS batch API and static LFS files (no nginx/fcgiwrap)")
    return f"{url}/{REPO_NAME}.git", desc


def create_hub_repo(endpoint: str, token: str) -> None:
    os.environ["HF_HUB_DISABLE_XET"] = "1"  # must be set before huggingface_hub is imported
    from huggingface_hub import HfApi

    HfApi(endpoint=endpoint, token=token).create_repo(REPO_ID)


# -- measurements --------------------------------------------------------------------------------


def check_clone(path: Path, src: Source, env: dict[str, str], smudged: bool) -> None:
    """HEAD is the source commit; every file is there; LFS files are content (sizes, 3 sha256) or pointers."""
    head = run(["git", "rev-parse", "HEAD"], env, path)
    if head != src.head:
        raise RuntimeError(f"{path}: HEAD {head} != source {src.head}")
    missing = [p for p in src.small + src.lfs if not (path / p).is_file()]
    if missing:
        raise RuntimeError(f"{path}: {len(missing)} files missing, e.g. {missing[:3]}")
    if not smudged:
        pointer = (path / src.lfs[0]).read_bytes()
        if not pointer.startswith(b"version https://git-lfs"):
            raise RuntimeError(f"{path}: {src.lfs[0]} is not an LFS pointer after a skip-smudge clone")
        return
    wrong = [p for p in src.lfs if (path / p).stat().st_size != src.lfs_size]
    if wrong:
        raise RuntimeError(f"{path}: {len(wrong)} LFS files have the wrong size, e.g. {wrong[:3]}")
    for rel, digest in src.samples.items():
        got = hashlib.sha256((path / rel).read_bytes()).hexdigest()
        if got != digest:
            raise RuntimeError(f"{path}: sha256 of {rel} is {got}, expected {digest}")


def timed_step(scenario: str, url: str, dest: Path, env: dict[str, str]) -> float:
    """One timed command of ``scenario``; ``sync`` first, so the writeback of the previous clone's
    LFS bytes (object store + working tree, ~2x) is not charged to this one."""
    os.sync()
    if scenario == "full":
        return timed(["git", "clone", url, str(dest / "full")], env)
    if scenario == "skip_smudge":
        return timed(["git", "clone", url, str(dest / "skip")], {**env, "GIT_LFS_SKIP_SMUDGE": "1"})
    return timed(["git", "lfs", "pull"], env, dest / "skip")


def check_step(scenario: str, dest: Path, src: Source, env: dict[str, str]) -> None:
    """Check what ``scenario`` produced; delete clones no later step needs."""
    if scenario == "full":
        check_clone(dest / "full", src, env, smudged=True)
        shutil.rmtree(dest / "full")
    elif scenario == "skip_smudge":
        check_clone(dest / "skip", src, env, smudged=False)
    else:
        check_clone(dest / "skip", src, env, smudged=True)
        shutil.rmtree(dest)


def measure(targets: dict[str, str], src: Source, env: dict[str, str], tmp: Path,
            runs: int) -> dict[str, dict[str, list[float]]]:
    """scenario -> server -> seconds of every run.

    Each run does the scenarios in order (full clone; skip-smudge clone; ``git lfs pull`` in it),
    and each scenario on both servers back to back, the server going first alternating from run to
    run: the two numbers of a pair see the same conditions on a shared (noisy) machine.
    """
    times: dict[str, dict[str, list[float]]] = {s: {name: [] for name in targets} for s in SCENARIOS}
    names = list(targets)
    for i in range(runs):
        order = names if i % 2 == 0 else names[::-1]
        dests = {name: tmp / "clones" / f"{name}-{i}" for name in names}
        line = []
        for scenario in SCENARIOS:
            for name in order:
                seconds = timed_step(scenario, targets[name], dests[name], env)
                check_step(scenario, dests[name], src, env)
                times[scenario][name].append(seconds)
            line.append(f"{scenario} " + " / ".join(f"{times[scenario][n][-1]:.2f}s" for n in names))
        print(f"  run {i + 1}/{runs} ({' / '.join(names)}): " + "  ".join(line), flush=True)
    return times


# -- git-remote-hf (git clone hf://...) against stock git + git-lfs, same hub ------------------------


HELPER_GOALS = {"stock": 0.5, "reference": 1.2, "wire": 1.01, "disk": 1.05, "latency_s": 2.5}
HELPER_BIN = Path(sys.executable).parent / "git-remote-hf"


def lfs_size(args: argparse.Namespace) -> int:
    """Bytes of each LFS file: ``--lfs-kib`` when given, else ``--lfs-mib``."""
    return args.lfs_kib * 1024 if args.lfs_kib else args.lfs_mib * MIB


def helper_env(tmp: Path, endpoint: str, token: str) -> dict[str, str]:
    """A fresh HOME with no git-lfs anywhere (PATH: git and git-remote-hf only), the hub's endpoint and token."""
    home, bin_dir = tmp / "helper-home", tmp / "helper-bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    (bin_dir / "git-remote-hf").symlink_to(HELPER_BIN)
    home.mkdir()
    env = git_env(home)
    env.update(PATH=str(bin_dir), HF_ENDPOINT=endpoint, HF_TOKEN=token, HF_HOME=str(tmp / "helper-hf-home"))
    return env


def raw_download(endpoint: str, token: str, src: Source, dest: Path, threads: int = 16) -> float:
    """The reference transfer: LFS batch calls (100 objects each) and parallel GETs of every object into files,
    sha256 checked; what any client has to do at least. Returns seconds."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    dest.mkdir(parents=True)
    headers = {"authorization": f"Bearer {token}", "accept": "application/vnd.git-lfs+json",
               "content-type": "application/vnd.git-lfs+json"}
    t0 = time.monotonic()
    with httpx.Client(timeout=120, limits=httpx.Limits(max_connections=threads)) as client:

        def get(action: dict[str, Any], oid: str) -> None:
            h = hashlib.sha256()
            with client.stream("GET", action["href"], headers=action.get("header") or {}) as resp, \
                    open(dest / oid, "wb") as f:
                resp.raise_for_status()
                for chunk in resp.iter_bytes(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != oid:
                raise RuntimeError(f"raw download of {oid}: sha256 mismatch")

        with ThreadPoolExecutor(threads) as pool:
            futures = []
            for i in range(0, len(src.oids), 100):
                body = {"operation": "download", "transfers": ["basic"], "hash_algo": "sha256",
                        "objects": [{"oid": oid, "size": src.lfs_size} for oid in src.oids[i:i + 100]]}
                answer = client.post(f"{endpoint}/{REPO_ID}.git/info/lfs/objects/batch", json=body, headers=headers)
                answer.raise_for_status()
                futures += [pool.submit(get, o["actions"]["download"], o["oid"]) for o in answer.json()["objects"]]
            for fut in futures:
                fut.result()
    return time.monotonic() - t0


def disk_bytes(root: Path) -> int:
    """Bytes of the files under ``root``, each inode once (a hard link is no second copy)."""
    seen: set[int] = set()
    total = 0
    for path in root.rglob("*"):
        st = path.lstat()
        if path.is_file() and not path.is_symlink() and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return total


def worktree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts)


def measure_helper(endpoint: str, token: str, src: Source, env: dict[str, str], tmp: Path,
                   args: argparse.Namespace) -> dict[str, Any]:
    """The helper's clone against stock git + git-lfs from the same hub, the reference, wire bytes, disk, latency."""
    from benchlib.proxy import ProxyHandle

    henv = helper_env(tmp, endpoint, token)
    hf_url, stock_url = f"hf://{REPO_ID}", f"{endpoint}/{REPO_ID}"
    dest = tmp / "helper-clones"
    times: dict[str, list[float]] = {"helper": [], "stock": [], "skip_smudge": [], "raw": []}
    for i in range(args.runs):
        d = dest / str(i)
        pairs = [("helper", ["git", "clone", "-q", hf_url, str(d / "h")], henv),
                 ("stock", ["git", "clone", "-q", stock_url, str(d / "s")], env)]
        for name, argv, e in (pairs if i % 2 == 0 else pairs[::-1]):
            os.sync()
            times[name].append(timed(argv, e))
        check_clone(d / "h", src, henv, smudged=True)
        check_clone(d / "s", src, env, smudged=True)
        os.sync()
        times["skip_smudge"].append(timed(["git", "clone", "-q", stock_url, str(d / "k")],
                                          {**env, "GIT_LFS_SKIP_SMUDGE": "1"}))
        times["raw"].append(raw_download(endpoint, token, src, d / "raw"))
        print(f"  run {i + 1}/{args.runs}: hf:// {times['helper'][-1]:.2f}s, stock {times['stock'][-1]:.2f}s, "
              f"skip-smudge {times['skip_smudge'][-1]:.2f}s + raw LFS {times['raw'][-1]:.2f}s", flush=True)
        shutil.rmtree(d)
    out: dict[str, Any] = {"times": times, "best": {k: min(v) for k, v in times.items()}}
    # bytes on the wire (every response byte through a counting proxy) against pack + LFS bytes
    proxy = ProxyHandle(endpoint, 0)
    try:
        run(["git", "clone", "-q", hf_url, str(dest / "wire")], {**henv, "HF_ENDPOINT": proxy.endpoint})
        stats = proxy.stats()
    finally:
        proxy.stop()
    run(["git", "clone", "-q", "--bare", stock_url, str(dest / "pack.git")], {**env, "GIT_LFS_SKIP_SMUDGE": "1"})
    pack = sum(p.stat().st_size for p in (dest / "pack.git/objects/pack").glob("*.pack"))
    lfs = len(src.oids) * src.lfs_size
    out["wire"] = {"bytes": stats["down_head_bytes"] + stats["down_body_bytes"], "pack": pack, "lfs": lfs,
                   "requests": stats["requests"]}
    shutil.rmtree(dest / "wire")
    # disk with no second copy of LFS content (hardlinks here: reflinks are invisible to a byte count)
    run(["git", "clone", "-q", "--config", "hf.lfs.linkMode=hardlink", hf_url, str(dest / "disk")], henv)
    out["disk"] = {"clone": disk_bytes(dest / "disk"), "worktree": worktree_bytes(dest / "disk")}
    run(["git", "clone", "-q", stock_url, str(dest / "disk-stock")], env)
    out["disk"]["stock"] = disk_bytes(dest / "disk-stock")
    shutil.rmtree(dest)
    # the same clones with injected latency on every round trip
    proxy = ProxyHandle(endpoint, args.latency_ms / 1000)
    try:
        lat = {"helper": timed(["git", "clone", "-q", hf_url, str(dest / "lh")], {**henv, "HF_ENDPOINT": proxy.endpoint}),
               "stock": timed(["git", "clone", "-q", f"{proxy.endpoint}/{REPO_ID}", str(dest / "ls")], env)}
        check_clone(dest / "lh", src, henv, smudged=True)
        check_clone(dest / "ls", src, env, smudged=True)
    finally:
        proxy.stop()
        shutil.rmtree(dest, ignore_errors=True)
    out["latency"] = lat
    return out


def print_helper(res: dict[str, Any], args: argparse.Namespace) -> bool:
    """The helper's table and its verdict on each goal of the issue; True if all are met."""
    best, wire, disk, lat = res["best"], res["wire"], res["disk"], res["latency"]
    reference = best["skip_smudge"] + best["raw"]
    rows = [
        ("wall time: `git clone hf://` / stock `git clone` + git-lfs", best["helper"] / best["stock"],
         HELPER_GOALS["stock"], f"{best['helper']:.2f}s / {best['stock']:.2f}s"),
        ("wall time: `git clone hf://` / (skip-smudge clone + raw parallel LFS download)", best["helper"] / reference,
         HELPER_GOALS["reference"], f"{best['helper']:.2f}s / ({best['skip_smudge']:.2f}s + {best['raw']:.2f}s)"),
        ("bytes on the wire / (pack + LFS bytes)", wire["bytes"] / (wire["pack"] + wire["lfs"]), HELPER_GOALS["wire"],
         f"{wire['bytes']:,} / ({wire['pack']:,} + {wire['lfs']:,}), {wire['requests']} requests"),
        ("disk (hf.lfs.linkMode=hardlink) / worktree", disk["clone"] / disk["worktree"], HELPER_GOALS["disk"],
         f"{disk['clone']:,} / {disk['worktree']:,} (stock clone: {disk['stock'] / disk['worktree']:.2f}x)"),
        (f"`git clone hf://` at {args.latency_ms:g} ms per round trip (s; stock: {lat['stock']:.2f}s)", lat["helper"],
         HELPER_GOALS["latency_s"], f"{lat['helper']:.2f}s vs stock {lat['stock']:.2f}s"),
    ]
    print()
    print_table(["git-remote-hf (best of runs)", "value", "goal", "met", "measured"],
                ([name, f"{value:.2f}", f"<= {goal}", "yes" if value <= goal else "NO", detail]
                 for name, value, goal, detail in rows), right=range(1, 3))
    return all(value <= goal for _, value, goal, _ in rows)


# -- report --------------------------------------------------------------------------------------


def summarize(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    """Per scenario: best seconds of each server, their ratio, and the median of the per-run ratios."""
    out: dict[str, dict[str, float]] = {}
    for scenario, per_server in times.items():
        hub, base = per_server["hubfs"], per_server["baseline"]
        paired = statistics.median(h / b for h, b in zip(hub, base))
        out[scenario] = {"hubfs": min(hub), "baseline": min(base), "ratio": min(hub) / min(base),
                         "median_paired_ratio": paired}
    return out


def print_results(best: dict[str, dict[str, float]], runs: int) -> None:
    head = [f"scenario (best of {runs})", "hubfs (s)", "git http-backend (s)", "hubfs / baseline",
            "median of per-run ratios"]
    print_table(head, ([label, f"{best[s]['hubfs']:.2f}", f"{best[s]['baseline']:.2f}", f"{best[s]['ratio']:.2f}x",
                        f"{best[s]['median_paired_ratio']:.2f}x"] for s, label in SCENARIOS.items()),
                right=range(1, len(head)))


def print_notes(baseline: str, args: argparse.Namespace, push_s: float) -> None:
    print()
    print(f"- content: {args.files} small text files (200 B-4 KiB) + {args.lfs_objects} LFS objects x "
          f"{args.lfs_mib} MiB random bytes, one commit on top of the hub's initial commit.")
    print(f"- baseline: {baseline}; repository: a `git clone --bare --no-local` of the pushed source.")
    print("- hubfs: one uvicorn process (`hubfs serve`), git upload-pack per request, LFS from its own store.")
    print("- both clone URLs have the same shape (`.../REPO[.git]`), git-lfs derives `REPO.git/info/lfs` from it; "
          "git-lfs defaults (8 concurrent transfers); clients share the machine's cores with the servers.")
    print(f"- setup (not measured against anything): `git push` of the content to hubfs took {push_s:.1f}s.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    add_numbers(p, ("--files", 2000, "number of small text files"),
                ("--lfs-objects", 300, "number of LFS files"),
                ("--lfs-mib", 1, "size of each LFS file in MiB"),
                ("--lfs-kib", 0, "size of each LFS file in KiB, instead of --lfs-mib"),
                ("--latency-ms", 50.0, "round-trip latency the proxy adds for the git-remote-hf latency row"),
                ("--runs", 3, "repetitions; the best counts"))
    p.add_argument("--baseline-host", choices=("auto", "nginx", "python"), default="auto",
                   help="nginx+fcgiwrap (auto: when both exist) or the Python CGI bridge")
    p.add_argument("--only", choices=("all", "server", "helper"), default="all",
                   help="server: hubfs against git http-backend; helper: git clone hf:// against stock git + git-lfs")
    add_output_args(p)
    args = p.parse_args(argv)
    if args.files < 1 or args.lfs_objects < 1 or args.lfs_mib < 1 or args.runs < 1 or args.lfs_kib < 0:
        p.error("--files, --lfs-objects, --lfs-mib and --runs must be >= 1 (--lfs-kib >= 0)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info({"git": tool_version(["git", "--version"]), "git-lfs": tool_version(["git", "lfs", "version"]),
                         "nginx": tool_version([NGINX, "-v"])})
    print(machine_line(info, TOOLS), flush=True)
    times: dict[str, dict[str, list[float]]] = {}
    helper: dict[str, Any] = {}
    baseline = ""
    with workdir(args.keep, "hubfs-bench-git-") as tmp, contextlib.ExitStack() as stack:
        os.environ.setdefault("HF_HOME", str(tmp / "hf-home"))
        env = setup_home(tmp / "home")
        endpoint, token = start_hub(stack, tmp)
        create_hub_repo(endpoint, token)
        hub_url = f"{endpoint}/{REPO_ID}"
        print(f"hubfs at {endpoint}", flush=True)
        src = build_source(tmp / "source", hub_url, env, args)
        push_s = push_to_hub(src, hub_url.replace("://", f"://admin:{token}@", 1), env)
        print(f"pushed to hubfs in {push_s:.1f}s", flush=True)
        hub_head = run(["git", "ls-remote", hub_url, "refs/heads/main"], env).split()[0]
        if hub_head != src.head:
            raise RuntimeError(f"hubfs main is {hub_head} after the push, expected {src.head}")
        if args.only in ("all", "server"):
            project_root = tmp / "cgi-root"
            make_bare(src, project_root, env)
            base_url, baseline = start_baseline(stack, tmp, project_root, src, env, args.baseline_host)
            print(f"baseline at {base_url}: {baseline}", flush=True)
            times = measure({"hubfs": hub_url, "baseline": base_url}, src, env, tmp, args.runs)
        if args.only in ("all", "helper"):
            print("git clone hf:// (git-remote-hf, no git-lfs) against stock git clone + git-lfs, same hub:", flush=True)
            helper = measure_helper(endpoint, token, src, env, tmp, args)
    print()
    print(machine_line(info, TOOLS))
    met = True
    best: dict[str, dict[str, float]] = {}
    if times:
        best = summarize(times)
        print()
        print_results(best, args.runs)
        ratio = best["full"]["ratio"]
        met = ratio <= GOAL
        print(f"\ngoal (full clone wall time within {GOAL}x of git http-backend, best of {args.runs} each): "
              f"{ratio:.2f}x -> {'met' if met else 'NOT met'} (median of per-run ratios: "
              f"{best['full']['median_paired_ratio']:.2f}x)")
        print_notes(baseline, args, push_s)
    helper_met = print_helper(helper, args) if helper else None
    if args.json:
        write_json(args.json, info, args, baseline=baseline, push_seconds=push_s, labels=SCENARIOS, runs=times,
                   best=best, goal=GOAL, goal_met=met if times else None, helper=helper, helper_goals=HELPER_GOALS,
                   helper_goals_met=helper_met)
    return 0


if __name__ == "__main__":
    sys.exit(main())
