"""Where verified LFS objects live: the :class:`ObjectStore` interface, its local-disk implementation,
and the choice between it and S3 (``DATA/object-store.json``).

An object store only ever holds objects whose sha256 and size the hub checked: :class:`LfsStore`
verifies uploads in ``tmp/`` and then ``install``-s them. The choice of store is remembered in the
data folder, so every process that opens it (the server, the git pre-receive hook, ``hubfs gc``)
uses the same one; credentials are never written there (boto3 finds them in the standard AWS
environment and files).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol
from urllib.parse import urlsplit

from hubfs.errors import BadRequestError, HubfsError, NotFoundError
from hubfs.lfs import is_valid_oid

if TYPE_CHECKING:
    from hubfs.server.s3_store import S3ObjectStore

CONFIG_NAME = "object-store.json"


class ObjectStore(Protocol):
    """Verified objects by sha256 oid. ``install`` takes a local file whose bytes hash to ``oid``."""

    kind: str  # "local" or "s3"

    def size(self, oid: str) -> int | None:
        """The stored object's size, None when not stored."""

    def open(self, oid: str) -> BinaryIO:
        """The object's bytes (NotFoundError when not stored)."""

    def install(self, tmp: Path, oid: str) -> None:
        """Move the verified file ``tmp`` in as ``oid`` (``tmp`` is gone afterwards)."""

    def touch(self, oid: str) -> bool:
        """Mark the object as just used (gc's grace); False when not stored."""

    def delete(self, oid: str) -> bool:
        """Remove the object; False when it was not stored."""

    def oids(self) -> Iterator[tuple[str, int]]:
        """Every stored (oid, size)."""

    def download_url(self, oid: str, ttl: int = 3600) -> str | None:
        """A URL on the store's own origin that serves the object without the hub's token, or None
        when the store serves no such URL (the hub sends the bytes itself)."""

    def check(self) -> None:
        """Raise when the store cannot be reached or written (health)."""

    def clean_staging(self, cutoff: float) -> tuple[int, int]:
        """Remove uploads staged in the store before ``cutoff`` that nothing can promote any more;
        returns (entries removed, bytes freed)."""


def object_path(root: Path, oid: str) -> Path:
    """``root/ab/cd/<oid>``, after checking ``oid`` is 64 lowercase hex."""
    if not is_valid_oid(oid):
        raise BadRequestError(f"Invalid LFS oid {oid!r}: expected 64 lowercase hex characters.")
    return Path(f"{root}/{oid[:2]}/{oid[2:4]}/{oid}")  # one parse: this is on every download


class LocalObjectStore:
    """Objects as files ``root/ab/cd/<sha256>`` (the one-machine layout)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, oid: str) -> Path:
        return object_path(self.root, oid)

    def size(self, oid: str) -> int | None:
        try:
            return self.path(oid).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, oid: str) -> BinaryIO:
        try:
            return open(self.path(oid), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"LFS object {oid} is not stored on this hub.") from None

    def install(self, tmp: Path, oid: str) -> None:
        final = self.path(oid)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def touch(self, oid: str) -> bool:
        try:
            os.utime(self.path(oid))
        except FileNotFoundError:
            return False
        return True

    def delete(self, oid: str) -> bool:
        try:
            self.path(oid).unlink()
        except FileNotFoundError:
            return False
        return True

    def oids(self) -> Iterator[tuple[str, int]]:
        for path in sorted(self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*")):
            if is_valid_oid(path.name):
                try:
                    yield path.name, path.stat().st_size
                except FileNotFoundError:
                    continue

    def download_url(self, oid: str, ttl: int = 3600) -> str | None:
        return None

    def clean_staging(self, cutoff: float) -> tuple[int, int]:
        return 0, 0  # uploads to local disk stage in tmp/ (LfsStore.clean_temporaries)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise HubfsError(f"the LFS folder {self.root} is not writable")


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` -> (bucket, prefix without slashes); a clear error otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise BadRequestError(f"Invalid object store {url!r}: expected s3://bucket[/prefix].")
    return parts.netloc, parts.path.strip("/")


def read_config(data_dir: Path) -> dict[str, str] | None:
    """The data folder's remembered object store ({url, endpoint_url?}), None for the local store."""
    try:
        raw = json.loads((Path(data_dir) / CONFIG_NAME).read_text())
    except FileNotFoundError:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise HubfsError(f"{Path(data_dir) / CONFIG_NAME} is not a valid object store setting.")
    return {k: v for k, v in raw.items() if isinstance(v, str)}


def write_config(data_dir: Path, url: str, endpoint_url: str | None) -> None:
    """Remember the object store in the data folder (atomic; no credentials)."""
    parse_s3_url(url)
    path = Path(data_dir) / CONFIG_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, **({"endpoint_url": endpoint_url} if endpoint_url else {})}) + "\n")
    os.replace(tmp, path)


def s3_store(url: str, endpoint_url: str | None) -> S3ObjectStore:
    """An S3 store for ``s3://bucket/prefix`` (boto3 imported here: it is an optional extra)."""
    try:
        from hubfs.server.s3_store import S3ObjectStore
    except ImportError as exc:
        raise HubfsError(f"S3 object storage needs boto3 ({exc}): pip install 'hubfs[s3]'") from None
    bucket, prefix = parse_s3_url(url)
    return S3ObjectStore(bucket, prefix, endpoint_url=endpoint_url)


def open_object_store(data_dir: Path) -> ObjectStore:
    """The object store the data folder is set up for: S3 when ``object-store.json`` says so, else local."""
    cfg = read_config(data_dir)
    if cfg is None:
        return LocalObjectStore(Path(data_dir) / "lfs")
    return s3_store(cfg["url"], cfg.get("endpoint_url"))


def configure(data_dir: Path, url: str | None, endpoint_url: str | None) -> None:
    """``hubfs serve --object-store URL``: check the flag agrees with the data folder, remember it.

    A data folder that already holds local objects must be moved first (``hubfs storage migrate``);
    one set up for another store is refused rather than silently switched.
    """
    cfg = read_config(data_dir)
    if url is None:
        if endpoint_url is not None and cfg is None:
            raise BadRequestError("--s3-endpoint-url needs --object-store s3://...")
        return
    parse_s3_url(url)
    if cfg is not None:
        if cfg["url"].rstrip("/") != url.rstrip("/"):
            raise BadRequestError(f"This data folder uses the object store {cfg['url']}, not {url}: "
                                  "run `hubfs storage migrate` to move it.")
        if endpoint_url and endpoint_url != cfg.get("endpoint_url"):
            write_config(data_dir, cfg["url"], endpoint_url)
        return
    local = LocalObjectStore(Path(data_dir) / "lfs")
    if next(local.oids(), None) is not None:
        raise BadRequestError(f"This data folder holds LFS objects on local disk: move them first with "
                              f"`hubfs storage migrate --to {url}`.")
    s3_store(url, endpoint_url).check()
    write_config(data_dir, url, endpoint_url)
