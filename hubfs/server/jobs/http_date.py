"""An accurate ``Date`` header for a hub that serves jobs.

uvicorn refreshes its ``Date`` once a second from its main loop, so it lags the clock by up to two
seconds (more on a busy loop). ``fetch_job_logs`` (non-follow) stops at the first log event later than
``Date`` + 1 s, so with uvicorn's header it drops a finished job's last lines. ``hubfs serve --jobs``
turns uvicorn's header off and wraps the app in :class:`AccurateDate`.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AccurateDate:
    """ASGI wrapper: every HTTP response starts with ``Date`` = now (computed once per second)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._second = -1
        self._value = b""

    def _now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second, self._value = second, formatdate(second, usegmt=True).encode()
        return self._value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [(b"date", self._now()), *message.get("headers", [])]}
            await send(message)

        await self.app(scope, receive, dated)
