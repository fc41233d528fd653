"""The helper's Hub client and its token: ``HF_TOKEN``, the huggingface_hub token file, then ``git credential``.

The token travels only in request headers (through :class:`hubfs.client.http.Transport`) and on the
stdin of ``git credential``: never in argv, URLs, ``.git/config``, the reflog, logs or stderr.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from git_remote_hf.url import Remote
from hubfs.client.api import HubClient
from hubfs.client.http import origin
from hubfs.config import DEFAULT_ENDPOINT, find_token

__all__ = ["client_for", "credential_token", "git_credential"]


def client_for(remote: Remote, git_dir: Path | None, *, prompt: bool = False) -> HubClient:
    """A :class:`HubClient` for ``remote.endpoint`` with the first token found, or anonymous.

    Order: ``HF_TOKEN`` / ``HUGGING_FACE_HUB_TOKEN``, the token file (:func:`hubfs.config.find_token`),
    then, when ``git_dir`` is given, ``git credential fill`` for the endpoint: without ``prompt`` only
    stored credentials answer (no terminal prompt); with it git may ask on the terminal unless
    ``GIT_TERMINAL_PROMPT=0``. The first two are the token of the configured hub (``HF_ENDPOINT``, default
    https://huggingface.co): an ``hf::https://other-host/...`` remote gets only git's credentials for its host.
    """
    configured = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    token = find_token() if origin(remote.endpoint) == origin(configured.rstrip("/")) else None
    if token is None and git_dir is not None:
        token = credential_token(remote, git_dir, prompt=prompt)
    return HubClient(remote.endpoint, token if token else False)


def credential_token(remote: Remote, git_dir: Path, *, prompt: bool = False) -> str | None:
    """The password ``git credential fill`` returns for the endpoint (the token), or None."""
    answer = git_credential("fill", remote, git_dir, prompt=prompt)
    return answer.get("password") or None


def _credential_request(remote: Remote, extra: Mapping[str, str] | None = None) -> bytes:
    """The request git credential reads: the endpoint's protocol and host (a Hub token is per host)."""
    parts = urlsplit(remote.endpoint)
    fields = {"protocol": parts.scheme, "host": parts.netloc, **(extra or {})}
    return "".join(f"{k}={v}\n" for k, v in fields.items()).encode() + b"\n"


def git_credential(action: str, remote: Remote, git_dir: Path, *, prompt: bool = False,
                   fields: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run ``git credential <action>`` (fill, approve, reject) for the endpoint's host; its answer as a dict.

    Errors (no helper, no terminal) give an empty answer; git's own messages are not shown.
    """
    env = dict(os.environ)
    env["GIT_DIR"] = str(git_dir)
    if not prompt:
        env["GIT_TERMINAL_PROMPT"] = "0"
        env.pop("GIT_ASKPASS", None)
        env.pop("SSH_ASKPASS", None)
    argv = ["git", "credential", action] if prompt else ["git", "-c", "core.askPass=", "credential", action]
    try:
        proc = subprocess.run(argv, input=_credential_request(remote, fields),
                              capture_output=True, env=env, timeout=None if prompt else 30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0 or action != "fill":
        return {}
    answer: dict[str, str] = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            answer[key] = value
    return answer
