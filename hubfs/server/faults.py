"""Fault points for crash tests: a real server process paused at a named point can be killed there.

``HUBFS_FAULT_PAUSE=<point>:<flag file>`` makes :func:`fault_point` create the flag file and sleep,
so a test can SIGKILL the server exactly at that point. Unset in normal runs: a no-op.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from hubfs.config import fault_pause


def fault_point(name: str) -> None:
    """Pause here forever (until killed) if this point is named in ``HUBFS_FAULT_PAUSE``."""
    point, flag = fault_pause()
    if point == name and flag:
        Path(flag).write_text(str(os.getpid()))
        time.sleep(3600)
