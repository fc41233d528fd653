"""Where hubfs talks to and with what: endpoint, token, cache folders and offline mode.

Read the same way as huggingface_hub reads them, so both tools agree on one machine:
``HF_ENDPOINT``; ``HF_TOKEN`` (or ``HUGGING_FACE_HUB_TOKEN``), else the token file ``HF_TOKEN_PATH``
(default ``$HF_HOME/token``); ``HF_HOME`` (default ``$XDG_CACHE_HOME/huggingface``);
``HF_HUB_CACHE`` (default ``$HF_HOME/hub``); ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


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


@dataclass(frozen=True)
class HubConfig:
    """One client's settings. ``token`` None means anonymous."""

    endpoint: str
    token: str | None
    cache_dir: Path
    offline: bool

    @classmethod
    def load(cls, endpoint: str | None = None, token: str | bool | None = None,
             cache_dir: str | Path | None = None) -> "HubConfig":
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
