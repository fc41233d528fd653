"""The ``push`` batch: check each ref locally, refuse big non-LFS blobs, upload new LFS objects, then
send one pack with dulwich and report git's ``ok <dst>`` / ``error <dst> <why>`` lines.

Nothing moves on the hub unless every check passed: the 10 MiB refusal happens before any upload,
and the LFS objects are uploaded (and verified) before the pack whose refs point at them. The ``why``
keywords are git's own (``non-fast forward``, ``fetch first``, ``already exists``, ``stale info``,
``up to date``), so git prints its usual messages and hints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dulwich.errors import GitProtocolError
from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from git_remote_hf.progress import SidebandRelay
from git_remote_hf.scan import PushScan, git, scan_push
from hubfs.errors import HubfsError

if TYPE_CHECKING:
    from git_remote_hf.helper import Session
    from hubfs.lfs import LfsPointer

__all__ = ["PushSpec", "parse_push", "push_batch"]

ZERO = ObjectID(b"0" * 40)
MIB = 1 << 20


@dataclass
class PushSpec:
    """One ``push [+]<src>:<dst>`` line; ``sha`` is the resolved source (None: delete ``dst``)."""

    src: str
    dst: str
    force: bool
    sha: str | None = None


def parse_push(line: str) -> PushSpec:
    spec = line[len("push "):]
    force = spec.startswith("+")
    src, _, dst = spec.lstrip("+").rpartition(":")
    return PushSpec(src, dst, force)


def push_batch(session: Session, lines: list[str]) -> None:
    """Push every spec of the batch; one status line per ``dst``, then a blank line."""
    specs = [parse_push(line) for line in lines]
    status: dict[str, str | None] = {}
    for spec in specs:
        if spec.src:
            proc = git(session.git_dir, "rev-parse", "--verify", "--quiet", spec.src, check=False)
            if proc.returncode != 0:
                status[spec.dst] = f"src refspec {spec.src} does not match any object"
                continue
            spec.sha = proc.stdout.decode().strip()
    todo = [s for s in specs if s.dst not in status]
    if todo:
        _push(session, todo, status)
    session.reply(*(f"ok {s.dst}" if status.get(s.dst) is None else f"error {s.dst} {status[s.dst]}" for s in specs), "")


def _push(session: Session, specs: list[PushSpec], status: dict[str, str | None]) -> None:
    repo = Repo(str(session.git_dir))
    relay = SidebandRelay(session.write_err)
    sent: list[PushSpec] = []

    def update_refs(remote_refs: dict[Ref, ObjectID]) -> dict[Ref, ObjectID]:
        sent.extend(_prepare(session, repo, specs, remote_refs, status))
        if not sent or session.options.dry_run:
            for spec in sent:
                status.setdefault(spec.dst, None)
            return None  # type: ignore[return-value]  # dulwich: None aborts the push
        new = dict(remote_refs)
        for spec in sent:
            new[Ref(spec.dst.encode())] = ObjectID(spec.sha.encode()) if spec.sha else ZERO
        return new

    def pack_data(have: Any, want: Any, ofs_delta: bool = False, progress: Any = None) -> Any:
        return repo.generate_pack_data(have, want, shallow=repo.get_shallow(), ofs_delta=ofs_delta)

    try:
        result = session.git.send_pack("", update_refs, pack_data, progress=relay,
                                       push_options=[o.encode() for o in session.options.push_options] or None,
                                       atomic=session.options.atomic)
    except GitProtocolError as exc:  # the pack was refused as a whole (unpack error, fatal side-band message)
        relay.flush()
        for spec in sent:
            status[spec.dst] = _one_line(str(exc))
        return
    finally:
        repo.close()
    relay.flush()
    reported = {ref.decode("utf-8", "surrogateescape"): why for ref, why in (result.ref_status or {}).items()}
    for spec in sent:
        if spec.dst in status:
            continue
        why = reported.get(spec.dst)
        status[spec.dst] = None if why is None else _git_keyword(why)


def _prepare(session: Session, repo: Repo, specs: list[PushSpec], remote_refs: dict[Ref, ObjectID],
             status: dict[str, str | None]) -> list[PushSpec]:
    """The specs that may be sent: ref rules, the size pre-flight, then the LFS upload; errors go to ``status``."""
    ready: list[PushSpec] = []
    for spec in specs:
        why = _ref_rule(session, repo, spec, remote_refs.get(Ref(spec.dst.encode())))
        if why == "up to date":
            status[spec.dst] = None  # nothing to send; git prints "Everything up-to-date"
        elif why:
            status[spec.dst] = why
        else:
            ready.append(spec)
    haves = sorted({sha.decode() for sha in remote_refs.values() if sha != ZERO and sha in repo.object_store})
    pointers: dict[str, LfsPointer] = {}
    for spec in list(ready):
        if spec.sha is None:
            continue
        found: PushScan = scan_push(session.git_dir, spec.sha, haves)
        if found.too_big:
            path, size = found.too_big[0]
            status[spec.dst] = _too_big(path, size, len(found.too_big))
            session.err(f"hint: {path} is {size / MIB:.1f} MiB; the hub refuses regular git files of 10 MiB or more. "
                        "Track it with LFS: add '<pattern> filter=lfs diff=lfs merge=lfs -text' to .gitattributes, "
                        "`git rm --cached` the file, `git add` it again and amend or recommit, then push.")
            ready.remove(spec)
            continue
        for pointer in found.pointers:
            pointers.setdefault(pointer.oid, pointer)
    if session.options.atomic and ready and any(status.get(s.dst) for s in specs):
        for spec in ready:
            status[spec.dst] = "atomic push failed"
        return []
    if ready and pointers and not session.options.dry_run:
        from git_remote_hf.lfs_transfer import LfsTransferError, upload

        ref = next((s.dst for s in ready if s.sha), None)
        try:
            upload(session.git_dir, session.client, session.remote.lfs_url, list(pointers.values()), ref)
        except (LfsTransferError, HubfsError, OSError) as exc:
            session.err(f"git-remote-hf: LFS upload failed: {exc}")
            for spec in ready:
                status[spec.dst] = _one_line(f"LFS upload failed ({exc}); nothing was pushed")
            return []
    return ready


def _ref_rule(session: Session, repo: Repo, spec: PushSpec, old: bytes | None) -> str | None:
    """git's rules for moving one remote ref, checked here when git could not (it lacked the old object)."""
    old_sha = old.decode() if old and old != ZERO else None
    if spec.dst in session.options.cas:
        expect = session.options.cas[spec.dst]
        if (expect or None) != old_sha and not (expect and old_sha and old_sha.startswith(expect)):
            return "stale info"
    elif spec.sha is None:
        return None if old_sha else "remote ref does not exist"
    if old_sha == spec.sha:
        return "up to date"
    if old_sha is None or spec.force or session.options.force or spec.dst in session.options.cas:
        return None
    if spec.dst.startswith("refs/tags/"):
        return "already exists"
    if ObjectID(old_sha.encode()) not in repo.object_store:
        return "fetch first"
    assert spec.sha is not None
    ff = git(session.git_dir, "merge-base", "--is-ancestor", old_sha, f"{spec.sha}^{{commit}}", check=False)
    return None if ff.returncode == 0 else "non-fast forward"


def _too_big(path: str, size: int, count: int) -> str:
    more = f" (and {count - 1} more)" if count > 1 else ""
    return (f"{path}{more} is {size / MIB:.1f} MiB: files of 10 MiB or more must be stored with LFS; "
            "track it with LFS (a filter=lfs line in .gitattributes) and commit again")


def _git_keyword(why: str) -> str:
    """A server's ``ng`` reason in git's words where git has one."""
    if why.strip() in ("non-fast-forward", "non-fast forward"):
        return "non-fast forward"
    return _one_line(why)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"
