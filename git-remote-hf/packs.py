"""Received packs go to ``git index-pack``, exactly as git's own fetch-pack stores them.

The bytes dulwich reads from the hub are piped into ``git index-pack --stdin --fix-thin --keep``:
the pack is kept as sent (a thin pack gets its bases appended), every object is checked, and nothing
appears in ``objects/pack`` unless the whole pack arrived. The ``.keep`` file is the lock git
removes once it has written the refs (the helper prints ``lock <path>``). With
``--check-self-contained-and-connected`` index-pack also proves that the pack alone holds everything
its tips reach, which is when the helper may answer ``connectivity-ok`` (and git skips its own walk).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from hubfs.errors import HubfsError

__all__ = ["IndexPack"]


class IndexPack:
    """A sink for pack bytes (``write``), started on the first byte; :meth:`finish` installs the pack."""

    def __init__(self, git_dir: Path, *, check_connected: bool, origin: str) -> None:
        self.git_dir = git_dir
        self.check_connected = check_connected
        self.origin = origin
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.received = 0

    def _start(self) -> subprocess.Popen[bytes]:
        argv = ["git", "index-pack", "--stdin", "--fix-thin", f"--keep=fetch-pack {os.getpid()} from {self.origin}"]
        if self.check_connected:
            argv.append("--check-self-contained-and-connected")
        env = {**os.environ, "GIT_DIR": str(self.git_dir)}
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env)

    def write(self, data: bytes) -> int:
        """Pass pack bytes on to index-pack."""
        if self.proc is None:
            self.proc = self._start()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            pass  # index-pack gave up; finish() reports why
        self.received += len(data)
        return len(data)

    def finish(self) -> tuple[Path | None, bool]:
        """Wait for index-pack: (the ``.keep`` lock of the new pack or None if no pack came, self-contained and
        connected). A damaged or short pack raises :class:`HubfsError` and leaves no pack behind."""
        if self.proc is None:
            return None, False
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        out = self.proc.stdout.read().decode()
        code = self.proc.wait()
        if code not in (0, 1) or (code == 1 and not self.check_connected) or not out.startswith(("keep\t", "pack\t")):
            raise HubfsError(f"the pack from the hub could not be stored ({self._error() or f'index-pack exit {code}'}); "
                             "the local repository is unchanged.")
        digest = out.split("\t", 1)[1].strip()
        lock = self.git_dir / "objects" / "pack" / f"pack-{digest}.keep"
        return (lock if lock.exists() else None), code == 0 and self.check_connected

    def abort(self) -> None:
        """Stop index-pack (a transfer that broke off): it removes its temporary pack."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def _error(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""
