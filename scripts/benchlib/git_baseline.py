"""The baseline of ``scripts/bench_git.py``: the standard deployment of ``git http-backend`` (nginx, one
worker, in front of fcgiwrap running it as CGI per request) with a minimal Git LFS batch API (a thread
of the benchmark) and nginx-served static LFS objects; without nginx or fcgiwrap, a Python bridge
does all of it (CGI, batch, static files)."""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from benchlib import free_port, spawn, wait_http
from benchlib.git_repo import REPO_NAME, Source, run

NGINX = "/usr/sbin/nginx"
FCGIWRAP = shutil.which("fcgiwrap") or "/usr/sbin/fcgiwrap"


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
