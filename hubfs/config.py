"""Every setting hubfs reads from the environment, and the sizes its byte path is built on.

The Hub's own variables are read the same way as huggingface_hub reads them, so both tools agree on
one machine: ``HF_ENDPOINT``; ``HF_TOKEN`` (or ``HUGGING_FACE_HUB_TOKEN``), else the token file
``HF_TOKEN_PATH`` (default ``$HF_HOME/token``); ``HF_HOME`` (default ``$XDG_CACHE_HOME/huggingface``);
``HF_HUB_CACHE`` (default ``$HF_HOME/hub``); ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``.

hubfs's own variables, each read by one function here and nowhere else:

| variable            | read by              | meaning                                                            |
| ------------------- | -------------------- | ------------------------------------------------------------------ |
| HUBFS_MALLOPT       | malloc_tuning()      | 0: leave glibc's allocator alone (see hubfs.client.malloc)         |
| HUBFS_LOADER_HUGEPAGES | loader_hugepages() | 0: the loader's fresh buffers keep 4 KiB pages (hubfs.loader.pages) |
| HUBFS_LOADER_CACHESTAT | loader_cachestat() | 0: zero-copy loads populate every page, cached or not (same)      |
| HUBFS_LOADER_INLINE | loader_inline()      | 0: small local checkpoints are read by a thread pool too (hubfs.loader.pipeline) |
| HUBFS_INFERENCE_ZERO_COPY | inference_zero_copy() | 0: `serve --inference` copies weights stored whole instead of mapping them |
| HUBFS_MOUNT_HUGEPAGES | mount_hugepages() | 0: the mount daemon's read buffers keep 4 KiB pages (hubfs.mount.daemon) |
| HUBFS_MOUNT_PASSTHROUGH | mount_passthrough() | 0: no FUSE passthrough of cached blobs (hubfs.mount.passthrough) |
| HUBFS_MOUNT_KEEP_READS | mount_keep_reads() | 0: files read whole through a mount are not kept in the cache (hubfs.client.keeper) |
| HUBFS_MOUNT_DIRECT_READS | mount_direct_reads() | 1: cold reads of big weight and data files skip the page cache (direct I/O, hubfs.mount.ops) |
| HUBFS_DATA          | data_dir()           | the embedded hub's data folder (default ./hubfs-data)              |
| HUBFS_DATABASE_URL  | database_url_setting() | the hub's metadata database (postgresql://...; `serve --database-url`) |
| HUBFS_SERVE_SETTINGS | serve_settings()    | set by `hubfs serve --workers` for its worker processes (JSON)     |
| HUBFS_NO_SENDFILE   | sendfile_enabled()   | set: the hub copies file bodies instead of using sendfile          |
| HUBFS_GZIP_JSON | gzip_json() | 0: the hub sends large JSON answers uncompressed even to clients that accept gzip |
| HUBFS_REQUEST_LOG   | request_log()        | a file the hub appends "METHOD PATH RANGE" to per request (tests)  |
| HUBFS_FAULT_PAUSE   | fault_pause()        | <point>:<flag file>: the hub pauses at that point (crash tests)    |
| HUBFS_WEBHOOK_RETRY_BASE   | webhook_retry() | seconds before a failed webhook delivery's first retry (2) |
| HUBFS_WEBHOOK_MAX_ATTEMPTS | webhook_retry() | delivery attempts before a webhook delivery is given up (6)|
| HUBFS_REPO_TYPE     | HookEnv              | set by the hub for its git pre-receive hook, not by users: the     |
| HUBFS_REPO_ID       | HookEnv              | repo pushed to, the pusher, the data folder and the size from      |
| HUBFS_PUSHER        | HookEnv              | which a file must be stored with LFS (HUBFS_REGULAR_MAX, default   |
| HUBFS_REGULAR_MAX   | HookEnv              | 10 MiB, from `hubfs serve --regular-max-size`)                     |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}

# -- sizes of the byte path (defined here once) ---------------------------------------------------
PART_SIZE = 16 << 20  # one ranged GET of a big read or download; read-ahead ranges grow up to it
PROBE_SIZE = 64 << 10  # the first (or last) bytes fetched when a file is opened or peeked
REGULAR_MAX = 10 << 20  # the hub's default: files this big or bigger must be LFS objects


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def hf_home() -> Path:
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface"


def token_path() -> Path:
    return Path(os.environ.get("HF_TOKEN_PATH") or hf_home() / "token").expanduser()


def hub_cache() -> Path:
    value = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(value).expanduser() if value else hf_home() / "hub"


def find_token() -> str | None:
    """The token huggingface_hub would send: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    try:
        value = token_path().read_text().strip()
    except OSError:
        return None
    return value or None


def ca_locations() -> tuple[str | None, str | None]:
    """(CA file, CA folder) for https, as curl and requests read them: ``SSL_CERT_FILE``, else
    ``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``; and ``SSL_CERT_DIR``. (None, None): the default."""
    cafile = next((os.environ[n] for n in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
                   if os.environ.get(n)), None)
    return cafile, os.environ.get("SSL_CERT_DIR") or None


@dataclass(frozen=True)
class HubConfig:
    """One client's settings. ``token`` None means anonymous."""

    endpoint: str
    token: str | None
    cache_dir: Path
    offline: bool  # HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: send nothing, serve from cache_dir only

    @classmethod
    def load(cls, endpoint: str | None = None, token: str | bool | None = None,
             cache_dir: str | Path | None = None) -> HubConfig:
        """Explicit arguments win over the environment; ``token=False`` forces anonymous calls."""
        resolved = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        if token is False:
            tok = None
        elif isinstance(token, str):
            tok = token
        else:
            tok = find_token()
        return cls(resolved, tok, Path(cache_dir).expanduser() if cache_dir else hub_cache(),
                   _flag("HF_HUB_OFFLINE") or _flag("TRANSFORMERS_OFFLINE"))


# -- hubfs's own settings (HUBFS_*) ------------------------------------------------------------------


def malloc_tuning() -> bool:
    """Whether hubfs may tune glibc's allocator for big reads (``HUBFS_MALLOPT=0`` says no)."""
    return os.environ.get("HUBFS_MALLOPT", "1").strip() != "0"


def loader_hugepages() -> bool:
    """Whether the loader may advise huge pages for its fresh buffers (``HUBFS_LOADER_HUGEPAGES=0`` says no)."""
    return os.environ.get("HUBFS_LOADER_HUGEPAGES", "1").strip() != "0"


def mount_hugepages() -> bool:
    """Whether the mount daemon may back its heap (the read buffers it hands to the kernel) with huge pages
    (``HUBFS_MOUNT_HUGEPAGES=0`` says no)."""
    return os.environ.get("HUBFS_MOUNT_HUGEPAGES", "1").strip() != "0"


def mount_passthrough() -> bool:
    """Whether a read-only mount run as root may hand reads of complete cached blobs to the kernel (FUSE
    passthrough, see hubfs.mount.passthrough); ``HUBFS_MOUNT_PASSTHROUGH=0`` says no."""
    return os.environ.get("HUBFS_MOUNT_PASSTHROUGH", "1").strip() != "0"


def mount_direct_reads() -> bool:
    """Whether a mount with FUSE passthrough opens big weight and data files that are not cached yet with
    direct I/O (``HUBFS_MOUNT_DIRECT_READS=1`` says yes; off by default, see hubfs.mount.ops)."""
    return os.environ.get("HUBFS_MOUNT_DIRECT_READS", "0").strip() == "1"


def mount_keep_reads() -> bool:
    """Whether a mount keeps a file it served whole, in order, in the local cache as its blob
    (``HUBFS_MOUNT_KEEP_READS=0`` says no)."""
    return os.environ.get("HUBFS_MOUNT_KEEP_READS", "1").strip() != "0"


def loader_inline() -> bool:
    """Whether the loader reads a small local checkpoint on the calling thread, without a pool
    (``HUBFS_LOADER_INLINE=0`` says no)."""
    return os.environ.get("HUBFS_LOADER_INLINE", "1").strip() != "0"


def inference_zero_copy() -> bool:
    """Whether ``serve --inference`` maps weights stored whole (an LFS object, a Xet file at the start of its
    xorb) rather than copying them into memory (``HUBFS_INFERENCE_ZERO_COPY=0`` says no)."""
    return os.environ.get("HUBFS_INFERENCE_ZERO_COPY", "1").strip() != "0"


def loader_cachestat() -> bool:
    """Whether zero-copy loads skip populating tensors already in the page cache (``HUBFS_LOADER_CACHESTAT=0``:
    populate them all)."""
    return os.environ.get("HUBFS_LOADER_CACHESTAT", "1").strip() != "0"


def data_dir(explicit: str | Path | None = None) -> Path:
    """The embedded hub's data folder: ``explicit``, else ``HUBFS_DATA``, else ``./hubfs-data``."""
    return Path(explicit or os.environ.get("HUBFS_DATA") or "hubfs-data")


def database_url_setting() -> str | None:
    """The metadata database URL from ``HUBFS_DATABASE_URL``, or None (see hubfs.server.db.url)."""
    return os.environ.get("HUBFS_DATABASE_URL") or None


def export_database_url(url: str) -> None:
    """Hand ``url`` to this process's children (workers, git hooks) as ``HUBFS_DATABASE_URL``."""
    os.environ["HUBFS_DATABASE_URL"] = url


def serve_settings() -> str:
    """The JSON settings a ``hubfs serve --workers`` parent left for its workers (``HUBFS_SERVE_SETTINGS``)."""
    return os.environ["HUBFS_SERVE_SETTINGS"]


def export_serve_settings(settings_json: str) -> None:
    """Hand a worker's settings to the processes spawned next (``HUBFS_SERVE_SETTINGS``)."""
    os.environ["HUBFS_SERVE_SETTINGS"] = settings_json


def sendfile_enabled() -> bool:
    """Whether the hub may send file bodies with ``sendfile`` (``HUBFS_NO_SENDFILE`` set: no)."""
    return not os.environ.get("HUBFS_NO_SENDFILE")


def gzip_json() -> bool:
    """Whether the hub gzips large JSON answers for clients that accept it (``HUBFS_GZIP_JSON=0`` says no)."""
    return os.environ.get("HUBFS_GZIP_JSON", "1").strip() != "0"


def request_log() -> str | None:
    """The file the hub logs each request to (``HUBFS_REQUEST_LOG``), or None."""
    return os.environ.get("HUBFS_REQUEST_LOG") or None


def fault_pause() -> tuple[str, str]:
    """The fault point to pause at and the flag file to create there (``HUBFS_FAULT_PAUSE``), or empty."""
    point, _, flag = os.environ.get("HUBFS_FAULT_PAUSE", "").partition(":")
    return point, flag


def webhook_retry(base: float, attempts: int) -> tuple[float, int]:
    """The webhook back-off: (first retry delay in seconds, attempts), from ``HUBFS_WEBHOOK_RETRY_BASE``
    and ``HUBFS_WEBHOOK_MAX_ATTEMPTS``, else the given defaults."""
    return (float(os.environ.get("HUBFS_WEBHOOK_RETRY_BASE") or base),
            int(os.environ.get("HUBFS_WEBHOOK_MAX_ATTEMPTS") or attempts))


@dataclass(frozen=True)
class HookEnv:
    """What the hub tells its git ``pre-receive`` hook through the environment."""

    data: Path
    repo_type: str
    repo_id: str
    pusher: str
    regular_max: int = REGULAR_MAX

    @classmethod
    def read(cls, env: Mapping[str, str]) -> HookEnv:
        return cls(Path(env["HUBFS_DATA"]), env["HUBFS_REPO_TYPE"], env["HUBFS_REPO_ID"],
                   env.get("HUBFS_PUSHER", ""), int(env.get("HUBFS_REGULAR_MAX", REGULAR_MAX)))

    def variables(self) -> dict[str, str]:
        """The environment variables that :meth:`read` reads back."""
        return {"HUBFS_DATA": str(self.data), "HUBFS_REPO_TYPE": self.repo_type, "HUBFS_REPO_ID": self.repo_id,
                "HUBFS_PUSHER": self.pusher, "HUBFS_REGULAR_MAX": str(self.regular_max)}
