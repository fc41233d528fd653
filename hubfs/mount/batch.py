"""One batch of staged changes turned into one commit's operations, checked against the branch head.

A :class:`Batch` is what a :class:`~hubfs.mount.staging.StagingArea` snapshot holds for one commit (staged
files and deletions, frozen copies of files still open, downloads of renamed regular files);
:meth:`Planner.ops` makes the commit's operations against the head: a path whose remote state changed
since its ``base`` is a conflict (:class:`~hubfs.errors.ConflictError`, nothing committed); a staged file
is an add of its content, a renamed LFS file an ``lfsFile`` line naming the same object, a renamed regular
file its bytes (downloaded here, a few at a time), a deletion a file or folder delete -- or, when files
land in the deleted folder again, a delete of each other file in it (the commit drops adds the branch
already has, which a folder delete would take away).
"""

from __future__ import annotations

import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hubfs.client.api import HubClient
from hubfs.client.commit import Add, Delete, LfsRef, Operation
from hubfs.client.snapshot import Snapshot
from hubfs.errors import ConflictError, HubfsError, RevisionNotFoundError
from hubfs.mount.overlay import Deleted, Entry, Origin
from hubfs.paths import RepoRef

FETCH_WORKERS = 8  # renamed regular files downloaded at once for a commit


@dataclass
class Batch:
    """The changes one commit takes (see the module docstring)."""

    files: dict[str, Entry]
    deleted: dict[str, Deleted]
    frozen: dict[str, Path] = field(default_factory=dict)  # copies of files open for writing
    fetched: dict[str, Path] = field(default_factory=dict)  # renamed regular remote files, downloaded
    ops: int = 0


@dataclass(frozen=True)
class Planner:
    """Turns batches of ``repo``@``branch``'s staging area (in ``root``: content files in ``root/files``,
    downloads in ``root/tmp``) into commit operations."""

    client: HubClient
    repo: RepoRef
    branch: str
    root: Path
    log: logging.Logger

    def ops(self, batch: Batch, head: str) -> list[Operation]:
        """The commit's operations against ``head``; raises ConflictError when a staged path changed on
        the hub since its base."""
        now = self._states(head, sorted(set(batch.files) | set(batch.deleted)))
        wanted: dict[str, set[str]] = {}
        bases = [(p, e.base) for p, e in batch.files.items()] + [(p, d.base) for p, d in batch.deleted.items()]
        for p, b in bases:
            if b is not None and b != head:
                wanted.setdefault(b, set()).add(p)
        then: dict[str, dict[str, tuple[str, str]]] = {}
        for b, ps in wanted.items():
            try:
                then[b] = self._states(b, sorted(ps))
            except RevisionNotFoundError:  # history rewritten on the hub: the base is gone, nothing to compare
                self.log.warning("%s: base commit %s is gone; %s committed without a conflict check",
                                 self.repo, b, ", ".join(sorted(ps)))
                then[b] = {p: s for p, s in now.items() if p in ps}

        def was(base: str | None, p: str) -> tuple[str, str] | None:
            return now.get(p) if base is None or base == head else then[base].get(p)

        conflicts: list[str] = []
        ops: list[Operation] = []
        for p, d in sorted(batch.deleted.items()):
            cur, old = now.get(p), was(d.base, p)
            if cur is None or old is None:
                continue  # gone already, or created on the hub after we looked: not ours to delete
            if cur != old:
                conflicts.append(p)
            elif cur[0] == "directory" and any(_under(f, p) for f in batch.files):
                # files land in the folder again: delete the others one by one (a folder delete would also take
                # away the files put back unchanged, which the commit drops as already on the branch)
                kept = set(batch.files)
                ops.extend(Delete(e.path) for e in Snapshot(self.client, self.repo, self.branch, head).walk(p)
                           if not e.is_dir and e.path not in kept)
            elif not (cur[0] == "file" and p in batch.files):  # a put replaces a file anyway
                ops.append(Delete(p, folder=cur[0] == "directory"))
        for p, e in sorted(batch.files.items()):
            if was(e.base, p) != now.get(p):
                conflicts.append(p)
            elif e.origin is None:
                ops.append(Add(p, batch.frozen.get(p) or self.root / "files" / (e.blob or "")))
            elif e.origin.path == p and e.base == e.origin.commit:
                continue  # moved back where it was, unchanged
            elif e.origin.lfs_oid:
                ops.append(LfsRef(p, e.origin.lfs_oid, e.origin.size))
            else:
                ops.append(Add(p, batch.fetched.setdefault(p, self.root / "tmp" / f"fetch-{uuid.uuid4().hex}")))
        if conflicts:
            raise ConflictError(f"{self.repo}@{self.branch}: {', '.join(sorted(conflicts))} changed on the hub "
                                f"since staged; nothing committed, the staged versions are kept in {self.root}.")
        self._fetch_all(batch)
        return ops

    def _states(self, sha: str, paths: list[str]) -> dict[str, tuple[str, str]]:
        """(type, oid) of each path that exists at ``sha``."""
        if not paths:
            return {}
        found = self.client.paths_info(self.repo.type.value, self.repo.id, sha, paths)
        return {r["path"]: (r["type"], r.get("oid") or "") for r in found}

    def _fetch_all(self, batch: Batch) -> None:
        """Download the renamed regular (non-LFS, so small) remote files a commit needs the bytes of, to
        their temp files in ``batch.fetched``, a few at a time (once per batch, whatever the retries)."""
        todo = [(p, tmp) for p, tmp in batch.fetched.items() if not tmp.exists()]
        if todo:
            with ThreadPoolExecutor(min(FETCH_WORKERS, len(todo))) as pool:
                list(pool.map(lambda item: self._fetch(batch.files[item[0]].origin, item[1]), todo))

    def _fetch(self, origin: Origin | None, dest: Path) -> None:
        assert origin is not None
        data = b""
        if origin.size:
            url = self.client.file_url(self.repo.type.value, self.repo.id, origin.commit, origin.path)
            data, _ = self.client.read_range(url, 0, origin.size)
        if len(data) != origin.size:
            raise HubfsError(f"{origin.path}@{origin.commit}: expected {origin.size} bytes, got {len(data)}.")
        tmp = dest.with_name(dest.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, dest)


def message(ops: list[Operation]) -> tuple[str, str]:
    """Commit summary and description: the paths changed."""
    lines = [f"{'-' if isinstance(op, Delete) else '+'} {op.path}{'/' if isinstance(op, Delete) and op.folder else ''}"
             for op in ops]
    summary = f"Update {ops[0].path}" if len(ops) == 1 else f"Update {len(ops)} files"
    return summary + " through a hubfs mount", "\n".join(lines[:200]) + ("\n..." if len(lines) > 200 else "")


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


__all__ = ["Batch", "Planner", "message"]
