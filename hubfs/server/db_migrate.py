"""``hubfs migrate --from DATA --to postgresql://...``: copy a one-machine hub's metadata
(``DATA/hub.sqlite``, every table) into PostgreSQL and switch the data folder to it.

- Every table of the SQLite file is created in the target from its own ``CREATE`` statement
  (through the dialect layer, so tables that stores add later come along), with its indexes.
- Rows keep their ids (repo ids are referenced by other tables); identity sequences restart past
  the highest id; rows are inserted in SQLite's row order, so ``ORDER BY rowid`` keeps its meaning.
- One transaction: the copy is whole or absent. Row counts are compared per table before commit.
- A target that already holds rows is refused unless ``force`` (then those tables are emptied first).
- ``DATA/database.json`` then points at the target (no password); ``hub.sqlite`` stays as it was, as
  a backup. The Xet index is among those tables; an older folder's ``DATA/xet/index.sqlite`` is first
  imported into ``hub.sqlite`` (as the hub's next start would do; the file is kept, renamed
  ``index.sqlite.imported``), so it comes along too.

Stop the hub before migrating (writes made during the copy would stay behind in SQLite).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hubfs.errors import ConflictError, HubfsError, NotFoundError
from hubfs.server.db import open_database
from hubfs.server.db.sqlite import SqliteDb
from hubfs.server.db.url import is_postgres, read_config, redact, write_config
from hubfs.server.xet.store import import_legacy_index

BATCH = 1000


@dataclass
class MigrateReport:
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def _if_not_exists(sql: str) -> str:
    return re.sub(r"^\s*CREATE\s+(UNIQUE\s+)?(TABLE|INDEX)\s+(?!IF\s+NOT\s+EXISTS)",
                  lambda m: f"CREATE {m.group(1) or ''}{m.group(2)} IF NOT EXISTS ", sql, count=1, flags=re.IGNORECASE)


def migrate(data_dir: Path, to_url: str, *, force: bool = False, say: Callable[[str], None] = print) -> MigrateReport:
    """Copy ``data_dir``'s SQLite metadata to ``to_url`` (PostgreSQL) and switch the folder to it."""
    data_dir = Path(data_dir)
    source_path = data_dir / "hub.sqlite"
    if not source_path.is_file():
        raise NotFoundError(f"No hub data in {data_dir} (no hub.sqlite).")
    if not is_postgres(to_url):
        raise HubfsError(f"--to must be a postgresql:// URL, not {redact(to_url)!r}.", status=400)
    current = read_config(data_dir)
    if current is not None and is_postgres(current) and not force:
        raise ConflictError(f"{data_dir} already uses {current}; --force copies hub.sqlite over it again.")
    source = SqliteDb(source_path)
    import_legacy_index(data_dir / "xet", source)
    target = open_database(to_url)
    report = MigrateReport(redact(to_url))
    try:
        ddl = source.query("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                           "AND name NOT LIKE 'sqlite_%' ORDER BY type DESC, rowid")  # tables, then indexes
        tables = [r["name"] for r in ddl if r["type"] == "table"]
        with target.tx() as db:
            for row in ddl:
                db.execute(_if_not_exists(row["sql"]))
            full = [t for t in tables if db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone()]
            if full and not force:
                raise ConflictError(f"The target database already holds rows ({', '.join(full)}); "
                                    "--force empties those tables and copies again.")
            for table in full:
                db.execute(f"DELETE FROM {table}")
            for table in tables:
                columns = source.columns(table)
                order = "" if _without_rowid(source, table) else " ORDER BY rowid"
                rows = source.query(f"SELECT {', '.join(columns)} FROM {table}{order}")
                insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                for i in range(0, len(rows), BATCH):
                    db.executemany(insert, [tuple(r) for r in rows[i:i + BATCH]])
                copied = int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                if copied != len(rows):
                    raise HubfsError(f"{table}: {len(rows)} rows in SQLite, {copied} in the target; nothing was "
                                     "switched.")
                report.rows[table] = copied
                say(f"{table}: {copied} rows")
            for table, column in db.execute(
                    "SELECT table_name, column_name FROM information_schema.columns WHERE "
                    "table_schema = current_schema() AND is_identity = 'YES'").fetchall():
                if table in report.rows:
                    db.execute(f"SELECT setval(pg_get_serial_sequence(?, ?), COALESCE(MAX({column}), 0) + 1, false) "
                               f"FROM {table}", (table, column))
        write_config(data_dir, to_url)
    finally:
        target.close()
        source.close()
    say(f"copied {report.total} rows of {len(report.rows)} tables to {report.target}; {data_dir} now uses it "
        f"(hub.sqlite is kept as a backup)")
    return report


def _without_rowid(db: SqliteDb, table: str) -> bool:
    rows = db.query("SELECT sql FROM sqlite_master WHERE type='table' AND name=?", (table,))
    return bool(rows) and re.search(r"WITHOUT\s+ROWID\s*$", rows[0]["sql"], re.IGNORECASE) is not None
