"""``uv run [--with DEP]... [--python V] SCRIPT [ARGS]`` for a local job on a hub without ``uv``.

Runs inside the job's process: reads SCRIPT (a path, or an http(s) URL fetched with the job's
``HF_TOKEN`` when it is on this hub), checks that every dependency of its inline metadata block
(PEP 723 ``# /// script``) and of ``--with`` is installed in the hub's Python, then runs it as
``__main__`` with ``sys.argv = [SCRIPT, *ARGS]``. A missing dependency ends the job with exit code 2
and one line naming it (install it into the hub's environment, or install ``uv``).
"""

from __future__ import annotations

import re
import runpy
import sys
import tempfile
from importlib import metadata
from pathlib import Path

_BLOCK = re.compile(r"(?m)^# /// script\s*$\s(?P<content>(^#(| .*)$\s)+)^# ///\s*$")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def inline_dependencies(source: str) -> list[str]:
    """The ``dependencies`` of the script's PEP 723 block (none without one)."""
    import tomllib

    match = _BLOCK.search(source)
    if not match:
        return []
    toml = "".join(line[2:] if line.startswith("# ") else line[1:]
                   for line in match.group("content").splitlines(keepends=True))
    deps = tomllib.loads(toml).get("dependencies", [])
    return [str(d) for d in deps]


def missing(requirements: list[str]) -> list[str]:
    """The requirements whose distribution is not installed (versions are not checked)."""
    out = []
    for req in requirements:
        m = _NAME.match(req)
        if not m:
            continue
        try:
            metadata.distribution(m.group(1))
        except metadata.PackageNotFoundError:
            out.append(req)
    return out


def _fetch(url: str) -> str:
    import os

    from hubfs.client.http import Transport
    from hubfs.config import HubConfig

    transport = Transport(HubConfig.load(os.environ.get("HF_ENDPOINT"), os.environ.get("HF_TOKEN")))
    try:
        return transport.request("GET", url).text
    finally:
        transport.close()


def main(argv: list[str]) -> int:
    deps: list[str] = []
    args = list(argv)
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        if opt in ("--with", "-w") and args:
            deps += [d.strip() for d in args.pop(0).split(",") if d.strip()]
        elif opt == "--python" and args:
            args.pop(0)  # the hub's interpreter is the one there is
        elif opt in ("--no-project", "--script", "-q", "--quiet"):
            continue
        else:
            print(f"uv run (hub without uv): option {opt} is not supported here; install uv on the hub", file=sys.stderr)
            return 2
    if not args:
        print("uv run: no script given", file=sys.stderr)
        return 2
    script, script_args = args[0], args[1:]
    if script.startswith(("http://", "https://")):
        source = _fetch(script)
        folder = Path(tempfile.mkdtemp(prefix="uvshim-", dir="."))
        path = folder / (script.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "script.py")
        path.write_text(source)
    else:
        path = Path(script)
        source = path.read_text()
    absent = missing(inline_dependencies(source) + deps)
    if absent:
        print(f"uv run (hub without uv): not installed in the hub's Python: {', '.join(absent)}; "
              "install them into the hub's environment, or install uv on the hub", file=sys.stderr)
        return 2
    sys.argv = [str(path), *script_args]
    runpy.run_path(str(path), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
