"""The ``git-remote-hf`` executable: ``git-remote-hf <remote> <url>`` (run by git) or ``git-remote-hf filter-process``."""

from __future__ import annotations

import gc
import os
import sys

GC_ENV = "GIT_REMOTE_HF_GC"
GC_THRESHOLD = 50_000  # container allocations between young-generation collections (Python's default: 700)


def main(argv: list[str] | None = None) -> int:
    """Dispatch: the LFS filter process, or the remote-helper protocol on stdin/stdout."""
    # git starts this program for every fetch, push and LFS checkout: skip imports the synchronous client
    # never uses, each with a fallback where it is imported: httpx's command-line client (click, rich and
    # pygments when they are installed) and the async backends httpcore loads when they are installed
    # (trio and anyio: 0.1-0.2 s). GIT_REMOTE_HF_LEAN_IMPORTS=0 turns this off.
    if os.environ.get("GIT_REMOTE_HF_LEAN_IMPORTS", "1") != "0" and "httpx" not in sys.modules:
        for name in ("httpx._main", "trio", "anyio"):
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    if os.environ.get(GC_ENV, "1") != "0":
        # Collections of the young generation every 700 allocations, and full ones over the 40k objects
        # of the imports, cost the LFS downloader 4-5% of its CPU; these short-lived processes make
        # few cycles. GIT_REMOTE_HF_GC=0 keeps Python's defaults.
        gc.set_threshold(GC_THRESHOLD, 50, 100)
    args = sys.argv[1:] if argv is None else argv
    from git_remote_hf.trace import mark, mark_cpu

    role = "filter" if args == ["filter-process"] else "helper"
    mark(role, "start")
    if args == ["filter-process"]:  # a remote named "filter-process" comes with its URL: the helper
        from git_remote_hf.filter_handoff import hand_over

        handed = hand_over()  # a clone's filter, started in advance, runs the session (standard library only)
        if handed is None:
            from git_remote_hf import filter_process

            handed = filter_process.main()  # it has closed its transfers and linked what it smudged
        code = handed
    else:
        from git_remote_hf.helper import run

        code = run(args)  # it has closed the client, the repository and index-pack
    mark_cpu(role)
    mark(role, "exit", str(code))
    if argv is None:  # the executable: git waits for it to exit before it goes on (checkout, refs)
        # What remains is the interpreter's teardown of some 40k objects (0.2-0.4 s on a busy
        # machine), which nothing needs: skip it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
