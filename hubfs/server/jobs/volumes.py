"""Job volumes (the Hub's ``Volume``: ``{type, source, mountPath, path?, readOnly?}``), bucket volumes only.

This is how ``hf jobs uv run script.py`` ships a local script: the client uploads it to the caller's
``jobs-artifacts`` bucket and runs ``uv run /data/script.py`` with that bucket folder mounted at ``/data``.

On this hub a bucket volume is copied, when the job starts, into the job's working directory
(``work/<mountPath>``, e.g. ``work/data``). A local job sees it there: each command argument that
names the mount path (``/data`` or ``/data/...``) is rewritten to that folder. A container job gets the
folder bind-mounted at the mount path itself. The copy is one-way: files a job writes there stay in the
job's folder and are not uploaded back to the bucket (push results with ``HF_TOKEN`` instead).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from hubfs.errors import BadRequestError
from hubfs.server.buckets import tokens
from hubfs.server.buckets.files import write_folder
from hubfs.server.buckets.store import BucketStore
from hubfs.server.hub import Caller, Hub

MAX_VOLUMES = 8


def parse_volumes(value: Any) -> list[dict[str, Any]]:
    """The volumes of a ``run_job`` body, checked and normalised; 400 naming the first bad one."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_VOLUMES:
        raise BadRequestError(f"volumes must be a list of at most {MAX_VOLUMES} volumes.")
    out: list[dict[str, Any]] = []
    for v in value:
        if not isinstance(v, dict):
            raise BadRequestError("Each volume must be an object {type, source, mountPath}.")
        kind, source, mount = v.get("type"), v.get("source"), v.get("mountPath")
        if kind != "bucket":
            raise BadRequestError(f"Volumes of type {str(kind)[:40]!r} are not supported by this hub's jobs; "
                                  "bucket volumes are (read repos with HF_TOKEN instead).")
        if not isinstance(source, str) or source.count("/") != 1:
            raise BadRequestError("A bucket volume's source must be 'namespace/bucket'.")
        if (not isinstance(mount, str) or not mount.startswith("/") or posixpath.normpath(mount) != mount
                or mount == "/" or ".." in mount.split("/")):
            raise BadRequestError(f"A volume's mountPath must be an absolute, normalised path, not {str(mount)[:80]!r}.")
        path = v.get("path") or ""
        if not isinstance(path, str) or ".." in path.split("/") or path.startswith("/"):
            raise BadRequestError("A volume's path must be a folder inside the bucket.")
        if any(m["mountPath"] == mount for m in out):
            raise BadRequestError(f"Two volumes are mounted at {mount}.")
        out.append({"type": "bucket", "source": source, "mountPath": mount, "path": path or None,
                    "readOnly": bool(v.get("readOnly", False))})
    return out


def check_access(hub: Hub, store: BucketStore, caller: Caller, volumes: list[dict[str, Any]]) -> None:
    """404 for a volume whose bucket the caller may not read (a private bucket of others does not exist)."""
    for v in volumes:
        tokens.visible(hub, store, caller, v["source"])


def local_folder(work: Path, mount: str) -> Path:
    return work / mount.strip("/")


def prepare(hub: Hub, store: BucketStore, volumes: list[dict[str, Any]], work: Path) -> list[tuple[Path, str]]:
    """Copy each volume's bucket folder into ``work``; (local folder, mount path) for each."""
    mounts = []
    for v in volumes:
        folder = local_folder(work, v["mountPath"])
        write_folder(hub, store, v["source"], v.get("path") or "", folder)
        mounts.append((folder, v["mountPath"]))
    return mounts


def rewrite(argv: list[str], mounts: list[tuple[Path, str]]) -> list[str]:
    """``argv`` with each argument that names a mount path (``/data``, ``/data/x.py``) pointing at its folder."""
    out = []
    for arg in argv:
        for folder, mount in mounts:
            if arg == mount or arg.startswith(mount + "/"):
                arg = str(folder) + arg[len(mount):]
                break
        out.append(arg)
    return out
