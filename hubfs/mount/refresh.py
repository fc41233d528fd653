"""``--refresh SECONDS``: follow the mounted branches.

Every ``interval`` seconds each repo the mount shows (:meth:`Namespace.views`) asks the hub where its
branch points (one request, :meth:`~hubfs.mount.repo.RepoView.refresh`); only a branch that moved
costs a listing of the new commit, and only the files whose content changed are dropped from the
kernel's cache (through the view's ``on_change``). A failed poll (hub down) is logged and retried at
the next interval; the mount keeps showing the commit it has.
"""

from __future__ import annotations

import logging
import threading

from hubfs.mount.repo import Namespace

log = logging.getLogger("hubfs.mount")


class Poller:
    """A daemon thread polling ``ns`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, ns: Namespace, interval: float) -> None:
        self.ns, self.interval = ns, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hubfs-refresh", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def poll(self) -> None:
        """One round: refresh every view, logging (not raising) failures."""
        for view in self.ns.views():
            try:
                view.refresh()
            except Exception as exc:  # noqa: BLE001 - a poll must never stop the mount
                log.warning("refresh of %s failed (still showing %s): %s", view.repo, view.sha, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


__all__ = ["Poller"]
