"""Jobs, in the hub's SQLite file (table ``jobs``): who ran what, where it stands, and the process it became.

A job row holds its spec without secret values (only their names are kept: a job is never run again
from the database), its stage (``SCHEDULING``, ``RUNNING``, ``COMPLETED``, ``ERROR``, ``CANCELED``) and
message, its times, and for a running job the process group, the process start time (to tell a reused
pid from ours after a restart) and the public id of the token minted for it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from hubfs.server.db import DbTarget, Row, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created_by TEXT NOT NULL, spec TEXT NOT NULL,
    stage TEXT NOT NULL, message TEXT, created_at REAL NOT NULL, started_at REAL, finished_at REAL,
    pid INTEGER, pid_start TEXT, token_id TEXT);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_stage ON jobs (stage);
"""

SCHEDULING, RUNNING, COMPLETED, ERROR, CANCELED = "SCHEDULING", "RUNNING", "COMPLETED", "ERROR", "CANCELED"
TERMINAL = (COMPLETED, ERROR, CANCELED)
LIVE = (SCHEDULING, RUNNING)


@dataclass(frozen=True)
class JobSpec:
    """What to run: image, command, environment, the names of its secrets, flavor, timeout, labels, volumes."""

    image: str
    command: list[str]
    arguments: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    secret_names: list[str] = field(default_factory=list)
    flavor: str = "cpu-basic"
    timeout: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    space_id: str | None = None
    volumes: list[dict[str, Any]] = field(default_factory=list)  # the Hub's Volume dicts (bucket volumes only)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Job:
    """One job row."""

    id: str
    owner: str
    created_by: str
    spec: JobSpec
    stage: str
    message: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    pid: int | None
    pid_start: str | None
    token_id: str | None


def _job(row: Row) -> Job:
    return Job(row["id"], row["owner"], row["created_by"], JobSpec.from_json(row["spec"]), row["stage"],
               row["message"], row["created_at"], row["started_at"], row["finished_at"], row["pid"],
               row["pid_start"], row["token_id"])


class JobsStore:
    """The jobs of one hub."""

    def __init__(self, target: DbTarget) -> None:
        self._db = open_db(target, SCHEMA)

    def add(self, job_id: str, owner: str, created_by: str, spec: JobSpec) -> Job:
        with self._db.tx() as db:
            db.execute("INSERT INTO jobs (id, owner, created_by, spec, stage, created_at) VALUES (?,?,?,?,?,?)",
                       (job_id, owner, created_by, spec.to_json(), SCHEDULING, time.time()))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        rows = self._db.query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job(rows[0]) if rows else None

    def of_owner(self, owner: str, stages: list[str] | None = None) -> list[Job]:
        """The jobs of ``owner`` (a user or an org), newest first, optionally of some stages only."""
        sql, args = "SELECT * FROM jobs WHERE owner=?", [owner]
        if stages:
            sql += f" AND stage IN ({','.join('?' * len(stages))})"
            args += stages
        return [_job(r) for r in self._db.query(sql + " ORDER BY created_at DESC, id", args)]

    def live(self) -> list[Job]:
        """Jobs recorded as scheduling or running (after a restart: none of them is, any more)."""
        return [_job(r) for r in self._db.query("SELECT * FROM jobs WHERE stage IN (?,?)", LIVE)]

    def started(self, job_id: str, pid: int, pid_start: str | None, token_id: str | None) -> None:
        with self._db.tx() as db:
            db.execute("UPDATE jobs SET stage=?, message=NULL, started_at=?, pid=?, pid_start=?, token_id=? "
                       "WHERE id=? AND stage=?", (RUNNING, time.time(), pid, pid_start, token_id, job_id, SCHEDULING))

    def set_message(self, job_id: str, message: str | None) -> None:
        with self._db.tx() as db:
            db.execute("UPDATE jobs SET message=? WHERE id=?", (message, job_id))

    def finish(self, job_id: str, stage: str, message: str | None) -> None:
        """Record the end (once: a finished job keeps its first outcome)."""
        assert stage in TERMINAL
        with self._db.tx() as db:
            db.execute("UPDATE jobs SET stage=?, message=?, finished_at=?, pid=NULL WHERE id=? AND stage IN (?,?)",
                       (stage, message, time.time(), job_id, *LIVE))


def spec_summary(spec: JobSpec) -> dict[str, Any]:
    """The spec's fields as the Hub shows them (secret names only, values never)."""
    return {"dockerImage": spec.image if not spec.space_id else None, "spaceId": spec.space_id,
            "command": spec.command, "arguments": spec.arguments, "environment": spec.environment,
            "secrets": {name: "******" for name in spec.secret_names}, "flavor": spec.flavor,
            "labels": spec.labels or None, "timeout": spec.timeout, "volumes": spec.volumes or None}
