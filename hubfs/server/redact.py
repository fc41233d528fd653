"""Keeping capabilities out of logs: signed-URL signatures, tokens and passwords in query strings, and
anything shaped like a Hub token, are replaced by ``REDACTED`` before a log line is written."""

from __future__ import annotations

import logging
import re

REDACTED = "REDACTED"
# query parameters whose value grants access: sig, signature, token, access_token, api_key, password...
_SECRET_PARAM = re.compile(
    r"(?i)([?&;](?:sig|signature|[\w.-]*token|[\w.-]*secret|[\w.-]*key|password|passwd|authorization)=)[^&;#\s\"']*")
_HUB_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{10,}")


def redact(text: str) -> str:
    """``text`` with secret query values and Hub tokens replaced by ``REDACTED``."""
    return _HUB_TOKEN.sub(REDACTED, _SECRET_PARAM.sub(rf"\g<1>{REDACTED}", text))


class RedactFilter(logging.Filter):
    """Rewrites a record's message arguments (uvicorn's access log passes the path with its query there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install(logger_name: str = "uvicorn.access") -> RedactFilter:
    """Attach a :class:`RedactFilter` to a logger (idempotent) and return it."""
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, RedactFilter):
            return existing
    f = RedactFilter()
    logger.addFilter(f)
    return f
