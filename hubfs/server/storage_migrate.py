"""``hubfs storage migrate --to s3://bucket/prefix``: move a data folder's LFS objects into S3.

Idempotent and resumable: each local object is hashed (a corrupt one stops the move before anything
is switched), uploaded unless the bucket holds it with that size already, and checked there. Only
when every object is in the bucket does the data folder switch to it (``object-store.json``), and
only then are the local copies removed. Re-running after a crash continues where it stopped.
Run it with the hub stopped: a running hub keeps the store it started with.

Xet xorbs and shards move too: each xorb is uploaded in its framed form (``xet/store.py``; Xet
clients then read byte ranges of it through presigned GETs), each shard as is, unless the bucket
holds it already; once the data folder has switched, the local copies are removed (the local
``xet/xorbs`` folder is only a cache from then on). The Xet index stays in the hub's database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hubfs.errors import BadRequestError, IntegrityError
from hubfs.server.object_store import LocalObjectStore, parse_s3_url, read_config, s3_store, write_config
from hubfs.server.xet.store import XetStore


@dataclass
class MigrateReport:
    """What one run moved."""

    uploaded: int = 0
    uploaded_bytes: int = 0
    present: int = 0  # already in the bucket with the right size
    removed_local: int = 0
    xet_uploaded: int = 0  # xorbs and shards
    xet_present: int = 0


def migrate(data_dir: Path, url: str, endpoint_url: str | None = None,
            say: Callable[[str], None] = lambda line: None) -> MigrateReport:
    """Move every local LFS object of ``data_dir`` to ``url`` and switch the data folder to it."""
    parse_s3_url(url)
    cfg = read_config(data_dir)
    if cfg is not None and cfg["url"].rstrip("/") != url.rstrip("/"):
        raise BadRequestError(f"This data folder already uses {cfg['url']}; moving between buckets is not supported.")
    endpoint_url = endpoint_url or (cfg or {}).get("endpoint_url")
    target = s3_store(url, endpoint_url)
    target.check()
    local = LocalObjectStore(Path(data_dir) / "lfs")
    report = MigrateReport()
    for oid, size in list(local.oids()):
        if target.size(oid) == size:
            report.present += 1
            continue
        path = local.path(oid)
        with open(path, "rb") as fh:
            actual = hashlib.file_digest(fh, "sha256").hexdigest()
        if actual != oid:
            raise IntegrityError(f"Local object {oid} is corrupt (hashes to {actual}); nothing was switched.")
        target.client.upload_file(str(path), target.bucket, target.key(oid))
        if target.size(oid) != size:
            raise IntegrityError(f"Object {oid} did not arrive whole in {url}; run the migration again.")
        report.uploaded, report.uploaded_bytes = report.uploaded + 1, report.uploaded_bytes + size
        say(f"uploaded {oid} ({size} bytes)")
    xet_files = _xet_files(Path(data_dir))
    for name, path in xet_files:
        if target.has_blob(name):
            report.xet_present += 1
            continue
        if name.startswith("xet/shards/"):
            target.put_blob(name, path)
        else:
            framed = Path(data_dir) / "tmp" / f"migrate-{path.name}"
            framed.parent.mkdir(exist_ok=True)
            try:
                XetStore.write_framed(path, framed)
                target.put_blob(name, framed)
            finally:
                framed.unlink(missing_ok=True)
        report.xet_uploaded += 1
        say(f"uploaded {name}")
    write_config(data_dir, url, endpoint_url)  # every object is in the bucket: switch
    for oid, size in list(local.oids()):
        if target.size(oid) == size and local.delete(oid):
            report.removed_local += 1
    for name, path in xet_files:
        if target.has_blob(name):
            path.unlink(missing_ok=True)
            report.removed_local += 1
    return report


def _xet_files(data_dir: Path) -> list[tuple[str, Path]]:
    """The local xorbs and shards as (blob name, path)."""
    xet = data_dir / "xet"
    xorbs = [(f"xet/xorbs/{p.parent.name}/{p.name}", p) for p in sorted((xet / "xorbs").glob("*/*")) if p.is_file()]
    shards = [(f"xet/shards/{p.name}", p) for p in sorted((xet / "shards").glob("*")) if p.is_file()]
    return xorbs + shards
