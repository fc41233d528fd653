"""LFS objects in S3-compatible object storage (AWS S3, MinIO, ...), through boto3.

Layout under ``s3://bucket/prefix``: verified objects at ``lfs/ab/cd/<sha256>``; Xet xorbs and shards at
``xet/xorbs/<h[:2]>/<hash>`` and ``xet/shards/<sha256>`` (see ``xet/store.py``); client uploads land
at ``staging/<upload id>`` (a presigned PUT, or an S3 multipart upload with presigned parts) and
become objects only in :meth:`S3ObjectStore.promote`, which streams the staged bytes once through
sha256 and checks their size before a server-side copy to the final key. S3 itself gives no sha256
of a multipart object (its checksums are per part, or a checksum of checksums), and the official
clients send none, so the hub hashes the bytes itself: the only check that holds for every client.

Credentials come from boto3's default chain (environment, ``~/.aws``, instance roles); they are
never logged, and presigned URLs (which carry a signature) are never logged either.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from hubfs.errors import BadRequestError, HubfsError, IntegrityError, NotFoundError
from hubfs.server.object_store import object_path

READ_CHUNK = 8 << 20
SIZE_CACHE = 100_000  # remembered object sizes per process (a few MB)
UUID_EPOCH = 0x01B21DD213814000  # 1970-01-01 in UUID time (100 ns steps since 1582-10-15)
UPLOAD_TTL = 24 * 3600  # presigned upload and part URLs, like the hub's own signed upload URLs


def _issued_at(key: str, fallback: float) -> float:
    """When the staging id at the end of ``key`` was handed out (ids are time-based UUIDs), else ``fallback``."""
    try:
        u = uuid.UUID(key.rsplit("/", 1)[-1])
    except ValueError:
        return fallback
    return (u.time - UUID_EPOCH) / 1e7 if u.version == 1 else fallback


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchUpload")


class S3ObjectStore:
    """Verified LFS objects in one bucket under one prefix (see the module docstring)."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._session = session = boto3.session.Session()
        self._lock = threading.Lock()
        self._sizes: dict[str, int] = {}  # oid -> size of objects seen in the bucket (see size())
        config = Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"},
                        s3={"addressing_style": "path"} if endpoint_url else {})
        self.client: Any = session.client("s3", endpoint_url=endpoint_url, config=config,
                                          region_name=session.region_name or "us-east-1")

    def _probe(self) -> Any:
        config = Config(signature_version="s3v4", retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=3,
                        read_timeout=5, s3={"addressing_style": "path"} if self.endpoint_url else {})
        with self._lock:  # a boto3 session is not safe to make clients from in several threads at once
            return self._session.client("s3", endpoint_url=self.endpoint_url, config=config,
                                        region_name=self._session.region_name or "us-east-1")

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def key(self, oid: str) -> str:
        """The object key of ``oid`` (validated)."""
        return self._key(str(object_path(Path("lfs"), oid)))

    def staging_key(self, upload_id: str) -> str:
        return self._key(f"staging/{upload_id}")

    def _head(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    # -- the ObjectStore interface -----------------------------------------------------------------

    def size(self, oid: str) -> int | None:
        """Objects are immutable and only this hub deletes them, so a size seen once is remembered
        (bounded): a resolve or batch answer then costs no request to the store."""
        known = self._sizes.get(oid)
        if known is not None:
            return known
        size = self._head(self.key(oid))
        if size is not None:
            self._remember(oid, size)
        return size

    def _remember(self, oid: str, size: int) -> None:
        with self._lock:
            if len(self._sizes) >= SIZE_CACHE:
                self._sizes.clear()
            self._sizes[oid] = size

    def open(self, oid: str) -> BinaryIO:
        try:
            return cast(BinaryIO, self.client.get_object(Bucket=self.bucket, Key=self.key(oid))["Body"])
        except ClientError as exc:
            if _missing(exc):
                raise NotFoundError(f"LFS object {oid} is not stored on this hub.") from None
            raise

    def install(self, tmp: Path, oid: str) -> None:
        size = Path(tmp).stat().st_size
        self.client.upload_file(str(tmp), self.bucket, self.key(oid))
        Path(tmp).unlink(missing_ok=True)
        self._remember(oid, size)

    def touch(self, oid: str) -> bool:
        return self.size(oid) is not None  # gc never removes S3 objects: nothing to refresh

    def delete(self, oid: str) -> bool:
        with self._lock:
            self._sizes.pop(oid, None)
        if self.size(oid) is None:
            return False
        with self._lock:
            self._sizes.pop(oid, None)
        self.client.delete_object(Bucket=self.bucket, Key=self.key(oid))
        return True

    def oids(self) -> Iterator[tuple[str, int]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key("lfs/"))
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"].rsplit("/", 1)[-1], int(item["Size"])

    def download_url(self, oid: str, ttl: int = 3600) -> str | None:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key(oid)}, ExpiresIn=ttl))

    def check(self) -> None:
        """One quick try (no retries, short timeouts): health probes must answer fast when S3 is down."""
        try:
            self._probe().head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise HubfsError(f"S3 bucket {self.bucket} is not reachable: {type(exc).__name__}") from None

    # -- named blobs: Xet xorbs and shards (``xet/...``), beside the LFS objects ------------------------

    def put_blob(self, name: str, path: Path) -> None:
        """Upload the file ``path`` as ``name`` (S3 makes an object visible only once it is whole)."""
        self.client.upload_file(str(path), self.bucket, self._key(name))

    def has_blob(self, name: str) -> bool:
        return self._head(self._key(name)) is not None

    def fetch_blob(self, name: str, dest: Path) -> bool:
        """Download ``name`` into ``dest``; False when it is not stored."""
        try:
            self.client.download_file(self.bucket, self._key(name), str(dest))
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def blob_tail(self, name: str, length: int) -> bytes:
        """The last ``length`` bytes of ``name`` (FileNotFoundError when it is not stored)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name), Range=f"bytes=-{length}")["Body"]
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(name) from None
            raise
        with body:
            return bytes(body.read())

    def blob_range_url(self, name: str, start: int, end: int, ttl: int) -> str:
        """A presigned GET of bytes ``start``-``end`` (inclusive) of ``name``. The Range header is part of the
        signature, so the URL reads that range and nothing else (the client must send exactly
        ``Range: bytes=start-end``, as Xet clients do with a reconstruction's ``url_range``)."""
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(name), "Range": f"bytes={start}-{end}"},
            ExpiresIn=ttl))

    def blob_names(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Every (name, size) stored under ``prefix`` (e.g. ``xet/``)."""
        strip = len(self._key(""))
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"][strip:], int(item["Size"])

    # -- uploads straight to the store (presigned), promoted once verified --------------------------

    def upload_url(self, upload_id: str, ttl: int) -> str:
        """A presigned PUT of one whole object into ``staging/<upload_id>``."""
        return str(self.client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": self.staging_key(upload_id)}, ExpiresIn=ttl))

    def start_multipart(self, upload_id: str) -> str:
        """Open an S3 multipart upload into ``staging/<upload_id>``; returns S3's UploadId."""
        out = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.staging_key(upload_id))
        return str(out["UploadId"])

    def part_url(self, upload_id: str, s3_upload: str, part: int, ttl: int) -> str:
        """A presigned PUT of part ``part`` (1-based) of a multipart upload."""
        return str(self.client.generate_presigned_url(
            "upload_part", Params={"Bucket": self.bucket, "Key": self.staging_key(upload_id), "UploadId": s3_upload,
                                   "PartNumber": part}, ExpiresIn=ttl))

    def complete_multipart(self, upload_id: str, s3_upload: str, parts: list[tuple[int, str]]) -> None:
        """Join the parts (S3 checks each part's ETag); a bad list aborts the upload."""
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.staging_key(upload_id), UploadId=s3_upload,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]})
        except ClientError as exc:
            self.abort_multipart(upload_id, s3_upload)
            code = exc.response.get("Error", {}).get("Code", "error")
            raise IntegrityError(f"The object store refused to join the parts ({code}).") from None

    def abort_multipart(self, upload_id: str, s3_upload: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.staging_key(upload_id), UploadId=s3_upload)
        except ClientError:
            pass  # already completed or aborted

    def promote(self, upload_id: str, oid: str, size: int) -> None:
        """Check the staged upload's size and sha256, then make it object ``oid``; a staged upload that
        fails is deleted. NotFound-like IntegrityError (404) when nothing was staged."""
        staged = self.staging_key(upload_id)
        try:
            got = self._head(staged)
            if got is None:
                raise IntegrityError(f"Object {oid} of size {size} was not uploaded.", status=404)
            if got != size:
                raise IntegrityError(f"Object {oid}: received {got} bytes, declared size {size}.")
            digest = hashlib.sha256()
            body = self.client.get_object(Bucket=self.bucket, Key=staged)["Body"]
            try:
                for chunk in body.iter_chunks(READ_CHUNK):
                    digest.update(chunk)
            finally:
                body.close()
            if digest.hexdigest() != oid:
                raise IntegrityError(f"Object hash mismatch: declared sha256 {oid}, content hashes to "
                                     f"{digest.hexdigest()}.")
            if self.size(oid) != size:
                self.client.copy({"Bucket": self.bucket, "Key": staged}, self.bucket, self.key(oid))
                self._remember(oid, size)
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=staged)

    def clean_staging(self, cutoff: float) -> tuple[int, int]:
        """Remove staged uploads written before ``cutoff`` (epoch seconds) and abort multipart uploads
        started before it: their signed links (verify, completion, parts) have expired, so nothing can
        promote them any more. Returns (entries removed, bytes freed)."""
        removed = freed = 0
        prefix = self._key("staging/")
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if _issued_at(item["Key"], item["LastModified"].timestamp()) < cutoff:
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    removed, freed = removed + 1, freed + int(item["Size"])
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if _issued_at(upload["Key"], upload["Initiated"].timestamp()) < cutoff:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    removed += 1
        return removed, freed

    def upload_actions(self, sign: Callable[[str], str], base: str, repo_id: int, oid: str, size: int,
                       chunk: int, multipart: bool) -> tuple[dict[str, Any], bool]:
        """The LFS batch ``actions`` of one object to upload straight into the store, and whether they are
        multipart: a presigned PUT (or presigned parts with a hub completion href) into a fresh staging key,
        and a hub-signed ``verify`` that promotes the staged bytes once they hash to ``oid``."""
        upload_id = str(uuid.uuid1(node=secrets.randbits(48) | 1 << 40))  # time-based: clean_staging reads it
        verify = f"{base}/{oid}/{size}/verify?upload={upload_id}&{sign(f'verify|{repo_id}|{oid}|{size}|{upload_id}')}"
        if not (multipart and size > chunk):
            return {"upload": {"href": self.upload_url(upload_id, UPLOAD_TTL)}, "verify": {"href": verify}}, False
        s3_upload = self.start_multipart(upload_id)
        header = {"chunk_size": str(chunk)}
        for n in range(1, math.ceil(size / chunk) + 1):
            header[str(n)] = self.part_url(upload_id, s3_upload, n, UPLOAD_TTL)
        signed = sign(f"complete|{repo_id}|{upload_id}|{oid}|{size}|{s3_upload}")
        complete = f"{base}/{oid}/{size}/parts/{upload_id}?s3={quote(s3_upload, safe='')}&{signed}"
        return {"upload": {"href": complete, "header": header}, "verify": {"href": verify}}, True

    @staticmethod
    def check_upload_id(upload_id: str) -> str:
        """A staging id from a signed URL must still look like one we made."""
        try:
            uuid.UUID(upload_id)
        except ValueError:
            raise BadRequestError("Invalid upload id.") from None
        return upload_id
