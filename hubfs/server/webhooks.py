"""Webhook delivery: a background worker of ``hubfs serve`` POSTs queued deliveries
(:class:`WebhookStore`) to their webhook's URL, never on the event loop.

Each delivery is a JSON POST of the Hub's payload with ``X-Webhook-Secret`` (when the webhook has
a secret). A 2xx answer delivers it; anything else (an error status, a refused connection, a
timeout) is retried with exponential back-off (``retry_base`` * 2^n seconds) up to ``max_attempts``
times, then marked failed. Every outcome stays visible through ``GET /api/settings/webhooks/{id}/deliveries``.
The git ``post-receive`` hook that queues push events is installed here too.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from hubfs.config import webhook_retry
from hubfs.server.git_hooks import write_hook
from hubfs.server.webhooks_store import Delivery, WebhookStore

log = logging.getLogger("hubfs.server.webhooks")
DEFAULT_RETRY_BASE = 2.0
DEFAULT_MAX_ATTEMPTS = 6
TIMEOUT = 10.0  # seconds for one POST (connect, send, answer)
POLL = 0.2  # seconds between looks at the queue when it is idle
SENDERS = 4  # deliveries in flight at once
HOOK_SCRIPT = """#!/bin/sh
# Installed by hubfs serve: queues webhook deliveries for the refs a push moved.
exec "{python}" -m hubfs.server.git_hooks post-receive
"""


def install_hook(data_dir: Path) -> None:
    """Write ``DATA/hooks/post-receive`` (beside the pre-receive hook) for this Python."""
    write_hook(Path(data_dir) / "hooks", "post-receive", HOOK_SCRIPT.format(python=sys.executable))


class Deliverer:
    """Sends due deliveries of one store and records each outcome."""

    def __init__(self, store: WebhookStore, client: httpx.Client, *, retry_base: float = DEFAULT_RETRY_BASE,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.store, self.client = store, client
        self.retry_base, self.max_attempts = retry_base, max(1, max_attempts)

    def run_once(self, pool: ThreadPoolExecutor) -> int:
        """Send every delivery due now (at most a batch), in parallel; returns how many were tried."""
        due = self.store.claim(time.time(), lease=TIMEOUT * 3)
        list(pool.map(self.deliver, due))
        return len(due)

    def deliver(self, delivery: Delivery) -> None:
        hook = self.store.get(delivery.webhook)
        attempts = delivery.attempts + 1
        if hook is None or hook.disabled:
            self.store.finish(delivery.id, status="failed", attempts=delivery.attempts, next_at=None,
                              response_status=None, error="the webhook was disabled or deleted before delivery")
            return
        headers = {"Content-Type": "application/json", "User-Agent": "hubfs-webhooks/1",
                   "X-Webhook-Delivery": str(delivery.id)}
        if hook.secret:
            headers["X-Webhook-Secret"] = hook.secret
        status: int | None = None
        try:
            resp = self.client.post(hook.url, content=json.dumps(delivery.payload).encode(), headers=headers)
            status = resp.status_code
            error = None if 200 <= status < 300 else f"HTTP {status} from the webhook URL"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300]}" if str(exc) else type(exc).__name__
        if error is None:
            self.store.finish(delivery.id, status="delivered", attempts=attempts, next_at=None,
                              response_status=status, error=None)
        elif attempts >= self.max_attempts:
            log.warning("webhook %s: delivery %d failed for good after %d attempts: %s", hook.id, delivery.id,
                        attempts, error)
            self.store.finish(delivery.id, status="failed", attempts=attempts, next_at=None,
                              response_status=status, error=error)
        else:
            self.store.finish(delivery.id, status="pending", attempts=attempts,
                              next_at=time.time() + self.retry_base * 2 ** (attempts - 1),
                              response_status=status, error=error)


def start_delivery(data_dir: Path, endpoint: str) -> threading.Event:
    """Record the hub's public ``endpoint`` (payload URLs) and start the delivery worker, a daemon
    thread; set the returned event to stop it. ``HUBFS_WEBHOOK_RETRY_BASE`` (seconds) and
    ``HUBFS_WEBHOOK_MAX_ATTEMPTS`` tune the back-off."""
    store = WebhookStore(Path(data_dir) / "hub.sqlite")
    store.set_endpoint(endpoint)
    retry_base, max_attempts = webhook_retry(DEFAULT_RETRY_BASE, DEFAULT_MAX_ATTEMPTS)
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client, \
                ThreadPoolExecutor(SENDERS, thread_name_prefix="hubfs-webhook-send") as pool:
            deliverer = Deliverer(store, client, retry_base=retry_base, max_attempts=max_attempts)
            while not stop.is_set():
                try:
                    tried = deliverer.run_once(pool)
                except Exception:
                    log.exception("webhook delivery round failed")
                    tried = 0
                if not tried:
                    stop.wait(POLL)

    threading.Thread(target=loop, name="hubfs-webhooks", daemon=True).start()
    return stop
