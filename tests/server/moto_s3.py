"""moto's standalone S3 server on a free loopback port, and the environment a hub needs to use it.

The hub talks plain S3 to it through boto3 (as it would to MinIO or AWS). The credentials are moto's
dummies, handed to the hub process through the standard AWS variables, never through flags.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer

CREDS = {"AWS_ACCESS_KEY_ID": "hubfs-test-key", "AWS_SECRET_ACCESS_KEY": "hubfs-test-secret",
         "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """One running moto server: ``endpoint``, a boto3 ``client`` and ``hub_env`` for ``hubfs serve``."""

    def __init__(self, server: ThreadedMotoServer, tmp: Path) -> None:
        host, port = server.get_host_and_port()
        self.server, self.endpoint = server, f"http://{host}:{port}"
        self.client: Any = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"], config=Config(s3={"addressing_style": "path"}))
        # isolate the hub from any real AWS set-up of this machine
        self.hub_env = {**CREDS, "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials")}

    def bucket(self) -> str:
        name = f"hubfs-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every key under ``prefix`` -> its size."""
        out: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.update({item["Key"]: int(item["Size"]) for item in page.get("Contents", [])})
        return out


@contextmanager
def s3_server(tmp: Path) -> Iterator[S3Server]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request on the test run's output
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield S3Server(server, tmp)
    finally:
        server.stop()
