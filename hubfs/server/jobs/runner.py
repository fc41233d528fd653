"""Runs jobs: at most ``max_jobs`` at once (more wait in ``SCHEDULING``, up to a bounded queue), each a
process group of its own under ``jobs_dir/<id>/work``, its output kept in ``jobs_dir/<id>/log.jsonl``.

Each job gets a clean environment: ``PATH`` (the hub's interpreter first), ``HOME`` and ``TMPDIR``
in its folder, ``HF_ENDPOINT`` (this hub), ``HF_TOKEN`` (a token of the job's creator with the
creator's role, minted for the job and revoked when it ends), ``JOB_ID``, then the requested
environment and secrets. Limits: the timeout (the whole group is killed past it: stage ERROR),
``RLIMIT_AS``/``RLIMIT_CPU`` from the flavor. Cancel sends SIGTERM to the group, then SIGKILL.
When the job's main process ends, what is left of its group is killed (as a container would be).

With ``user`` (``--jobs-user``, the hub running as root) a local job runs as that OS user: its work
folder is its own, the hub's data folder is made 0700 and logs 0600, so a job reads the hub only
through the API with its token. Without it a local job runs as the hub's own user and can read the
hub's files: for trusted users only (or use a container runtime).

Threads, never the event loop: per running job one thread drains its output into the log (capped
at ``max_log_bytes``; past it a last line says so and the rest is dropped) and one waits for the
process. The work folder is removed when the job ends (as a container's disk would be); the log stays.
On start, jobs recorded as scheduling or running are marked ERROR and their leftover
process groups killed: a restart never leaves a job running forever.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from hubfs.errors import HubfsError
from hubfs.server.buckets.store import BucketStore
from hubfs.server.hub import Hub
from hubfs.server.jobs import images, volumes
from hubfs.server.jobs.store import CANCELED, COMPLETED, ERROR, Job, JobsStore
from hubfs.server.metadata import TOKEN_ID_LEN, hash_token

log = logging.getLogger("hubfs.server.jobs")
DEFAULT_TIMEOUT = 30 * 60  # seconds, when the request names none (the Hub's default)
KILL_GRACE = 3.0  # seconds between SIGTERM and SIGKILL on cancel
MAX_LINE = 64 << 10
RESTARTED = "The hub restarted while this job was scheduled or running; it was stopped."


@dataclass(frozen=True)
class JobsOptions:
    """``hubfs serve --jobs``: where jobs live, how many run at once, how they run."""

    jobs_dir: Path
    max_jobs: int = 2
    max_queued: int = 16
    runtime: str = "local"
    max_log_bytes: int = 16 << 20
    user: str | None = None  # local jobs run as this OS user (the hub must run as root)


class _Live:
    """A scheduled or running job's in-memory state (secret values live only here, until it starts)."""

    def __init__(self, job: Job, env: dict[str, str], secrets: dict[str, str], endpoint: str, role: str) -> None:
        self.job, self.env, self.secrets, self.endpoint, self.role = job, env, secrets, endpoint, role
        self.proc: subprocess.Popen[bytes] | None = None
        self.canceled = self.timed_out = False
        self.done = threading.Event()


def log_event(text: str, ts: float | None = None) -> bytes:
    """One log line as stored and streamed: ``{"data": text, "timestamp": iso}``."""
    ts = time.time() if ts is None else ts
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
    return json.dumps({"data": text, "timestamp": stamp}, ensure_ascii=False).encode() + b"\n"


def _proc_start(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat): tells our pid from a reused one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _open_log(path: Path) -> IO[bytes]:
    """The job's log for appending, readable by the hub only (0600)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600), "ab")


class JobRunner:
    """The jobs of one hub: submit, cancel, and the state the routes read."""

    def __init__(self, hub: Hub, store: JobsStore, options: JobsOptions) -> None:
        options = dataclasses.replace(options, jobs_dir=options.jobs_dir.resolve())  # cwd, HOME, mounts: absolute
        self.hub, self.store, self.options = hub, store, options
        self.buckets = BucketStore(hub.db)  # the buckets behind job volumes
        self.options.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._uid: tuple[int, int] | None = None
        if options.user:
            import pwd

            entry = pwd.getpwnam(options.user)
            self._uid = (entry.pw_uid, entry.pw_gid)
            os.chmod(hub.data_dir, 0o700)  # the hub's data is the hub's alone
            os.chmod(options.jobs_dir, 0o711)  # jobs reach their own folder, list nobody's
        elif options.runtime == "local":
            log.warning("jobs run as the hub's own OS user and can read its files: for trusted users only "
                        "(see --jobs-user and --jobs-runtime)")
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._queue: list[str] = []
        self._running = 0
        self._recover()

    # -- paths -------------------------------------------------------------------------------------

    def folder(self, job_id: str) -> Path:
        return self.options.jobs_dir / job_id

    def log_path(self, job_id: str) -> Path:
        return self.folder(job_id) / "log.jsonl"

    def pgid(self, job_id: str) -> int | None:
        """The process group of a running job (None when it is not running)."""
        with self._lock:
            live = self._live.get(job_id)
            return live.proc.pid if live is not None and live.proc is not None else None

    def is_live(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._live

    # -- start-up ----------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Mark jobs a previous process left scheduling or running as ERROR; kill what is left of them."""
        for job in self.store.live():
            if job.pid and job.pid_start and _proc_start(job.pid) == job.pid_start:
                try:
                    os.killpg(job.pid, signal.SIGKILL)
                except OSError:
                    pass
            self._revoke(job.token_id)
            self.store.finish(job.id, ERROR, RESTARTED)
            self._append(job.id, log_event(RESTARTED))
            log.warning("job %s was left %s by a previous run: marked ERROR", job.id, job.stage)

    # -- submit and cancel -------------------------------------------------------------------------

    def submit(self, job: Job, env: dict[str, str], secrets: dict[str, str], endpoint: str, role: str) -> None:
        """Queue ``job`` (already stored, SCHEDULING); it starts when a slot is free, with a token of its
        creator's of ``role``. 429 when the queue is full."""
        live = _Live(job, env, secrets, endpoint, role)
        with self._lock:
            if len(self._queue) >= self.options.max_queued:
                self.store.finish(job.id, ERROR, "Too many jobs waiting on this hub.")
                raise HubfsError(f"Too many jobs are waiting on this hub ({len(self._queue)}); try again later.",
                                 status=429)
            self._live[job.id] = live
            self._queue.append(job.id)
        self.folder(job.id).mkdir(mode=0o711, parents=True, exist_ok=True)
        self._pump()

    def cancel(self, job_id: str) -> None:
        """Stop a job: a queued one never starts; a running one's group gets SIGTERM, then SIGKILL."""
        with self._lock:
            live = self._live.get(job_id)
            if live is None:
                return
            live.canceled = True
            queued = job_id in self._queue
            if queued:
                self._queue.remove(job_id)
                del self._live[job_id]
            proc = live.proc
        if queued:
            self.store.finish(job_id, CANCELED, "Canceled before it started.")
            live.done.set()
            return
        if proc is None:
            return  # starting right now: _start sees the flag once the process exists
        self._signal(proc.pid, signal.SIGTERM)
        killer = threading.Timer(KILL_GRACE, self._signal, (proc.pid, signal.SIGKILL))
        killer.daemon = True
        killer.start()

    def wait(self, job_id: str, timeout: float | None = None) -> bool:
        """Block until the job is over (True), or ``timeout`` passes (False)."""
        with self._lock:
            live = self._live.get(job_id)
        return True if live is None else live.done.wait(timeout)

    # -- running -----------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start queued jobs while slots are free."""
        while True:
            with self._lock:
                if not self._queue or self._running >= self.options.max_jobs:
                    for position, queued in enumerate(self._queue):
                        self.store.set_message(queued, f"Waiting for a free slot ({position + 1} in line; "
                                                       f"{self.options.max_jobs} jobs run at once on this hub)")
                    return
                live = self._live[self._queue.pop(0)]
                self._running += 1
            try:
                self._start(live)
            except Exception as exc:  # noqa: BLE001 - any start failure ends this job, not the hub
                log.warning("job %s did not start: %s", live.job.id, type(exc).__name__)
                self._append(live.job.id, log_event(f"The job could not start: {exc}"))
                self._end(live, ERROR, f"The job could not start: {exc}", None)

    def _job_env(self, live: _Live, token: str, work: Path) -> dict[str, str]:
        base = {"PATH": images.local_path_env(), "HOME": str(work), "TMPDIR": str(work),
                "LANG": os.environ.get("LANG", "C.UTF-8"), "PYTHONUNBUFFERED": "1"}
        hub_env = {"HF_ENDPOINT": live.endpoint, "HF_TOKEN": token, "JOB_ID": live.job.id,
                   "HF_HUB_DISABLE_TELEMETRY": "1"}
        return {**base, **hub_env, **live.env, **live.secrets}

    def _start(self, live: _Live) -> None:
        job = live.job
        spec = job.spec
        work = self.folder(job.id) / "work"
        work.mkdir(parents=True, exist_ok=True)
        if self._uid is not None:
            os.chown(work, *self._uid)
            work.chmod(0o700)
        role = live.role
        timeout = spec.timeout or DEFAULT_TIMEOUT
        token = self.hub.meta.create_token(job.created_by, f"job-{job.id}", role, expires_in=timeout + 3600)
        token_id = hash_token(token)[:TOKEN_ID_LEN]
        env = self._job_env(live, token, work)
        flavor = images.flavor_of(spec.flavor)
        argv = [*spec.command, *spec.arguments]
        mounts = volumes.prepare(self.hub, self.buckets, spec.volumes, work)
        limits = images.limits(flavor, timeout)
        wrapped = False
        if self.options.runtime == "local":
            argv = images.local_command(spec.image, volumes.rewrite(argv, mounts))
            prlimit = shutil.which("prlimit")
            if prlimit:  # limits set before the command starts: nothing it forks escapes them
                argv = [prlimit, *(f"--{name}={value}" for name, value in limits.items()), "--", *argv]
                wrapped = True
        else:
            passed = [k for k in env if k not in ("PATH", "HOME", "TMPDIR", "LANG")]
            argv = images.container_command(self.options.runtime, f"hubfs-job-{job.id}", spec.image, argv,
                                            passed, work, flavor, mounts)
        self._append(job.id, log_event(f"===== Job started at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} "
                                       "====="))
        as_user: dict[str, object] = {}
        if self._uid is not None:
            as_user = {"user": self._uid[0], "group": self._uid[1], "extra_groups": []}
        try:
            proc = subprocess.Popen(argv, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                    **as_user)  # type: ignore[call-overload]
        except BaseException:
            self._revoke(token_id)
            raise
        live.proc = proc
        live.secrets = {}  # the process has them now; nothing else needs the values
        if live.canceled:  # canceled while it was being started: it never gets to run
            self._signal(proc.pid, signal.SIGKILL)
        if self.options.runtime == "local" and not wrapped:
            self._limit(proc.pid, limits)
        self.store.started(job.id, proc.pid, _proc_start(proc.pid), token_id)
        assert proc.stdout is not None
        drained = threading.Thread(target=self._drain, args=(job.id, proc.stdout), name=f"job-{job.id}-log",
                                   daemon=True)
        drained.start()
        threading.Thread(target=self._supervise, args=(live, drained, timeout, token_id), name=f"job-{job.id}",
                         daemon=True).start()

    @staticmethod
    def _limit(pid: int, limits: dict[str, int]) -> None:
        """Without the ``prlimit`` command: set the limits on the job's first process just after it started
        (its children inherit them; one forked in that instant would not)."""
        names = {"as": resource.RLIMIT_AS, "cpu": resource.RLIMIT_CPU}
        try:
            for name, value in limits.items():
                resource.prlimit(pid, names[name], (value, value))
        except (OSError, ValueError) as exc:  # the process may be gone already, or limits lower than asked
            log.debug("job limits not applied to %d: %s", pid, exc)

    def _drain(self, job_id: str, pipe: IO[bytes]) -> None:
        """Copy the job's output into its log, one event per line, until no process holds the pipe."""
        path = self.log_path(job_id)
        written = path.stat().st_size if path.exists() else 0
        capped = False
        with pipe, _open_log(path) as out:
            while True:
                line = pipe.readline(MAX_LINE)
                if not line:
                    return
                if capped:
                    continue
                event = log_event(line.decode("utf-8", "replace").rstrip("\r\n"))
                if written + len(event) > self.options.max_log_bytes:
                    out.write(log_event(f"[log truncated at {self.options.max_log_bytes} bytes]"))
                    out.flush()
                    capped = True
                    continue
                out.write(event)
                out.flush()
                written += len(event)

    def _supervise(self, live: _Live, drained: threading.Thread, timeout: float, token_id: str) -> None:
        proc = live.proc
        assert proc is not None
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            live.timed_out = True
            self._signal(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        self._signal(proc.pid, signal.SIGKILL)  # what the main process left behind in its group
        if self.options.runtime != "local":
            subprocess.run([self.options.runtime, "rm", "-f", f"hubfs-job-{live.job.id}"], capture_output=True,
                           check=False, timeout=60)
        drained.join(10)
        shutil.rmtree(self.folder(live.job.id) / "work", ignore_errors=True)  # as a container's disk; the log stays
        if live.timed_out:
            stage, message = ERROR, f"Job timeout: stopped after {int(timeout)} seconds."
        elif live.canceled:
            stage, message = CANCELED, "Canceled by the user."
        elif rc == 0:
            stage, message = COMPLETED, None
        else:
            stage, message = ERROR, f"Job failed with exit code: {rc}"
        if message and stage != CANCELED:
            self._append(live.job.id, log_event(message))
        self._end(live, stage, message, token_id)

    def _end(self, live: _Live, stage: str, message: str | None, token_id: str | None) -> None:
        self._revoke(token_id)
        self.store.finish(live.job.id, stage, message)
        with self._lock:
            self._live.pop(live.job.id, None)
            self._running -= 1
        live.done.set()
        self._pump()

    # -- helpers -----------------------------------------------------------------------------------

    def _append(self, job_id: str, event: bytes) -> None:
        self.folder(job_id).mkdir(mode=0o711, parents=True, exist_ok=True)
        with _open_log(self.log_path(job_id)) as out:
            out.write(event)

    def _revoke(self, token_id: str | None) -> None:
        if token_id:
            try:
                self.hub.meta.revoke_token(token_id)
            except HubfsError:
                pass  # already gone (expired and removed, or revoked by the user)

    @staticmethod
    def _signal(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass  # the group is gone already
