"""The throwaway PostgreSQL cluster of the tests (the core is ``scripts/benchlib/pg.py``, which the
benchmarks use too): ``PgCluster`` and ``pg_cluster``; see there."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from benchlib.pg import PgCluster, pg_bin, pg_cluster

__all__ = ["PgCluster", "pg_bin", "pg_cluster"]
