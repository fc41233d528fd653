"""A bucket folder written out to local disk: what a job's bucket volume holds when the job starts."""

from __future__ import annotations

from pathlib import Path

from hubfs.errors import NotFoundError, PayloadTooLargeError
from hubfs.server.buckets.store import BucketStore
from hubfs.server.hub import Hub
from hubfs.server.xet.format import str_to_hash


def write_folder(hub: Hub, store: BucketStore, bucket_id: str, prefix: str, dest: Path,
                 max_bytes: int = 16 << 30) -> int:
    """Write the files of ``bucket_id`` under ``prefix`` (a folder; "" for all) into ``dest``, at their
    paths below the prefix; the number of files. Paths were checked when they were added."""
    base = prefix.strip("/")
    files = store.files(bucket_id, f"{base}/" if base else "")
    if sum(f.size for f in files) > max_bytes:
        raise PayloadTooLargeError(f"Bucket {bucket_id}/{base} holds more than {max_bytes} bytes: too much to copy "
                                   "into a job.")
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        stored = hub.xet.file(str_to_hash(f.xet_hash))
        if stored is None:
            raise NotFoundError(f"The content of {bucket_id}/{f.path} is missing from this hub's storage.")
        target = dest / f.path[len(base) + 1:] if base else dest / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            out.writelines(hub.xet.chunk_data(stored.terms))
    return len(files)
