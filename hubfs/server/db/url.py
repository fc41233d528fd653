"""Which metadata database a data folder uses: ``sqlite:///path`` (the default, ``DATA/hub.sqlite``)
or ``postgresql://user@host:port/db``.

The choice is, first to last: the URL given (``hubfs serve --database-url``), ``HUBFS_DATABASE_URL``,
the URL remembered in ``DATA/database.json`` (written by ``serve`` and ``migrate``, so that git hooks,
gc and the ``hubfs user``/``token`` commands find the same database), else ``DATA/hub.sqlite``.
A password is never written there nor shown: give it through PGPASSFILE or PGPASSWORD.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hubfs.config import database_url_setting
from hubfs.errors import BadRequestError, HubfsError

ENV = "HUBFS_DATABASE_URL"
CONFIG_NAME = "database.json"
SCHEMES = ("postgresql", "postgres")


def is_postgres(url: str) -> bool:
    return urlsplit(url).scheme in SCHEMES


def redact(url: str) -> str:
    """``url`` without its password (safe to log or store)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}{':' + str(parts.port) if parts.port else ''}"
    return urlunsplit(parts._replace(netloc=netloc))


def check_url(url: str) -> str:
    """``url`` if it names a database hubfs can use, else a 400-style error saying what is accepted."""
    scheme = urlsplit(url).scheme
    if scheme in SCHEMES or (scheme == "sqlite" and url.startswith("sqlite:///")):
        return url
    raise BadRequestError(f"Unsupported database URL {redact(url)!r}: use postgresql://user@host:port/db "
                          "or sqlite:///path/hub.sqlite.")


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite://"))


def read_config(data_dir: Path) -> str | None:
    """The URL remembered in the data folder, None when there is none."""
    try:
        raw = json.loads((Path(data_dir) / CONFIG_NAME).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raw = None
    if not isinstance(raw, dict) or not isinstance(raw.get("url"), str):
        raise HubfsError(f"{Path(data_dir) / CONFIG_NAME} is not a valid database setting.")
    return check_url(raw["url"])


def write_config(data_dir: Path, url: str) -> None:
    """Remember ``url`` (without its password) as the data folder's database (atomic)."""
    path = Path(data_dir) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": redact(check_url(url))}) + "\n")
    os.replace(tmp, path)


def database_url(data_dir: Path, url: str | None = None) -> str:
    """The database of ``data_dir`` (see the module docstring for the order)."""
    chosen = url or database_url_setting() or read_config(data_dir)
    return check_url(chosen) if chosen else f"sqlite:///{Path(data_dir).absolute() / 'hub.sqlite'}"


def configure(data_dir: Path, url: str | None) -> str:
    """``hubfs serve``: settle and remember the data folder's database; returns its URL.

    A PostgreSQL URL (given or from the environment) is remembered; a SQLite one, or none, leaves
    what the folder already uses."""
    chosen = database_url(data_dir, url)
    if is_postgres(chosen):
        write_config(data_dir, chosen)
    return chosen
