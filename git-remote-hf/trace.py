"""Phase timestamps for profiling a clone: ``GIT_REMOTE_HF_TRACE=<file>`` appends one line per phase.

Each line is ``<unix time> <pid> <role> <phase> [detail]``; the helper, its background prefetch and the
filter process all append to the same file (one ``write`` per line, ``O_APPEND``), so together with
``GIT_TRACE2_PERF`` a clone's timeline can be read end to end. Unset, :func:`mark` costs one lookup.
"""

from __future__ import annotations

import os
import time

__all__ = ["TRACE_ENV", "mark", "mark_cpu"]

TRACE_ENV = "GIT_REMOTE_HF_TRACE"


def mark(role: str, phase: str, detail: str = "") -> None:
    """Record that ``role`` (helper, prefetch, filter) reached ``phase`` now; nothing unless tracing."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    line = f"{time.time():.6f} {os.getpid()} {role} {phase}{' ' + detail if detail else ''}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass  # tracing never breaks a clone


def mark_cpu(role: str) -> None:
    """Record the CPU time this process has used (user + system, its threads included), when tracing."""
    if not os.environ.get(TRACE_ENV):
        return
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    mark(role, "cpu", f"{used.ru_utime:.2f}u+{used.ru_stime:.2f}s")
