"""Jobs on the embedded hub (``hubfs serve --jobs``): the Hub's Jobs API over local processes or containers.

:mod:`routes` (the wire contract), :mod:`store` (the ``jobs`` table), :mod:`runner` (processes, logs,
limits, restart recovery), :mod:`images` (images, runtimes and flavors), :mod:`uvshim` (``uv run``
without uv).
"""

from __future__ import annotations

from hubfs.server.hub import Hub
from hubfs.server.jobs.runner import JobRunner, JobsOptions
from hubfs.server.jobs.store import JobsStore


def start(hub: Hub, options: JobsOptions) -> JobRunner:
    """The hub's job runner; jobs a previous run left live are marked ERROR first."""
    return JobRunner(hub, JobsStore(hub.db), options)


__all__ = ["JobRunner", "JobsOptions", "start"]
