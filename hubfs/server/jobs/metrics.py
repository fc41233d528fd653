"""Live resource use of a running job's process group, in the Hub's metrics shape (``fetch_job_metrics``,
``hf jobs stats``): ``{cpu_usage_pct, cpu_millicores, memory_used_bytes, memory_total_bytes, rx_bps, tx_bps,
gpus, replica}``.

Read from ``/proc``: CPU time and resident memory of every process in the group. Network rates are not
accounted per process group on a local runner and read 0; ``gpus`` is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    rss_bytes: int


def group_usage(pgid: int) -> Usage:
    """CPU seconds used so far and resident bytes now, summed over the processes of group ``pgid``."""
    ticks = rss = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) != pgid:
            continue
        ticks += int(fields[11]) + int(fields[12])
        rss += int(fields[21]) * _PAGE
    return Usage(ticks / _TICK, rss)


def sample(before: Usage, after: Usage, seconds: float, cpus: int, memory_total: int, replica: str) -> dict[str, Any]:
    """One metrics event from two readings ``seconds`` apart; CPU percent is of the flavor's vCPUs."""
    used = max(0.0, after.cpu_seconds - before.cpu_seconds) / max(seconds, 1e-6)
    return {"cpu_usage_pct": round(100 * used / max(cpus, 1), 1), "cpu_millicores": cpus * 1000,
            "memory_used_bytes": after.rss_bytes, "memory_total_bytes": memory_total, "rx_bps": 0, "tx_bps": 0,
            "gpus": {}, "replica": replica}
