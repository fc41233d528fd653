"""``GET /api/health``: unauthenticated, no secrets, 200 when the database, the object store and the git
volume work, 503 naming the failing part when one does not (here: the S3 server goes away)."""

from __future__ import annotations

import json

import httpx
from hub_server import HubServer
from moto_s3 import s3_server


def test_health_of_a_one_machine_hub(hub):
    r = httpx.get(f"{hub.endpoint}/api/health")  # no token
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": {"status": "ok", "kind": "sqlite"},
                              "objectStore": {"status": "ok", "kind": "local"},
                              "gitVolume": {"status": "ok"}}
    assert str(hub.data_dir) not in r.text and hub.admin_token not in r.text
    assert httpx.head(f"{hub.endpoint}/api/health").status_code == 200


def test_health_reports_the_object_store_going_away(tmp_path):
    with s3_server(tmp_path) as s3:
        bucket = s3.bucket()
        hub = HubServer(tmp_path / "hub", "--object-store", f"s3://{bucket}/h", "--s3-endpoint-url", s3.endpoint,
                        env=s3.hub_env).start()
        try:
            ok = httpx.get(f"{hub.endpoint}/api/health", timeout=30)
            assert ok.status_code == 200 and ok.json()["checks"]["objectStore"] == {"status": "ok", "kind": "s3"}
            s3.server.stop()
            down = httpx.get(f"{hub.endpoint}/api/health", timeout=30)
            assert down.status_code == 503
            checks = down.json()["checks"]
            assert down.json()["status"] == "failed" and checks["objectStore"]["status"] == "failed"
            assert checks["database"]["status"] == "ok" and checks["gitVolume"]["status"] == "ok"
            text = json.dumps(down.json())
            assert bucket not in text and s3.endpoint not in text and "hubfs-test-secret" not in text
        finally:
            hub.stop()
