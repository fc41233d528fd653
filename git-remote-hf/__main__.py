"""The ``git-remote-hf`` executable: ``git-remote-hf <remote> <url>`` (run by git) or ``git-remote-hf filter-process``."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch: the LFS filter process, or the remote-helper protocol on stdin/stdout."""
    # git starts this program for every fetch, push and LFS checkout: skip httpx's command-line client
    # (its import pulls in click, rich and pygments when they are installed; httpx has a fallback for it).
    if "httpx" not in sys.modules:
        sys.modules["httpx._main"] = None  # type: ignore[assignment]
    args = sys.argv[1:] if argv is None else argv
    if args == ["filter-process"]:  # a remote named "filter-process" comes with its URL: the helper
        from git_remote_hf import filter_process

        code = filter_process.main()  # it has closed its transfers and linked what it smudged
    else:
        from git_remote_hf.helper import run

        code = run(args)  # it has closed the client, the repository and index-pack
    if argv is None:  # the executable: git waits for it to exit before it goes on (checkout, refs)
        # What remains is the interpreter's teardown of some 40k objects (0.2-0.4 s on a busy
        # machine), which nothing needs: skip it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
