"""The ``fetch`` batch: dulwich negotiates with the hub and the pack goes, as sent, to ``git index-pack``
(:mod:`git_remote_hf.packs`; same SHAs); ``--depth``/``--deepen``/``--shallow-since``/``--shallow-exclude``
make a shallow fetch; then the LFS objects of the tree git is about to check out are downloaded: during
a clone by a background process that git's checkout overlaps (:mod:`git_remote_hf.background`), else
before the helper answers.

During a clone (``option cloning true``) the new repository is first configured so that its checkout
smudges LFS pointers through ``git-remote-hf filter-process`` (no git-lfs needed; its session is handed to
a filter started now, :mod:`git_remote_hf.filter_handoff`), and the background
download starts at once from the hub's tree listing of the remote HEAD (:func:`start_early`), while the
pack streams; configuration is read once per run (:class:`~git_remote_hf.gitconfig.GitConfig`). A clone
that checks nothing out (``--no-checkout``, ``--sparse``) downloads no LFS object: its checkouts do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from dulwich.objects import ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo

from git_remote_hf.packs import IndexPack
from git_remote_hf.progress import SidebandRelay
from git_remote_hf.scan import git
from git_remote_hf.trace import mark
from hubfs.errors import HubfsError

if TYPE_CHECKING:
    from git_remote_hf.helper import Session
    from hubfs.lfs import LfsPointer

__all__ = ["checkout_tips", "fetch_batch", "start_early"]


def fetch_batch(session: Session, lines: list[str]) -> None:
    """Handle ``fetch <sha> <name>`` lines: fetch the objects, answer ``connectivity-ok`` if asked, then a blank line."""
    wanted: dict[str, str] = {}
    for line in lines:
        _, sha, name = line.split(" ", 2)
        wanted[name] = sha
    if session.options.cloning and not session.configured:
        _configure_clone(session)
    relay = SidebandRelay(session.progress)
    repo = Repo(str(session.git_dir))
    try:
        shas = sorted({ObjectID(sha.encode()) for sha in wanted.values()})
        opts = session.options
        depth = _depth(session, repo, shas)
        deepen = depth is not None or opts.deepen_since is not None or bool(opts.deepen_not)

        def determine_wants(refs: Mapping[Ref, ObjectID], depth: int | None = None) -> list[ObjectID]:
            return [s for s in shas if deepen or s not in repo.object_store]

        sink = IndexPack(session.git_dir, check_connected=opts.check_connectivity and not deepen,
                         origin=session.remote.endpoint)
        try:
            result = session.git.fetch_pack("", determine_wants, repo.get_graph_walker(), sink.write, progress=relay,
                                            depth=depth, shallow_since=_timestamp(session, opts.deepen_since),
                                            shallow_exclude=opts.deepen_not or None)
            mark("helper", "pack-received", f"{sink.received} bytes")
            lock, connected = sink.finish()
            mark("helper", "index-pack-done")
        except BaseException:
            sink.abort()
            raise
        sink.close()
        relay.flush()
        repo.update_shallow(result.new_shallow, result.new_unshallow)
        tips = checkout_tips(session, repo, wanted)
    finally:
        repo.close()
    early, session.early = session.early, None
    if early is not None and tips != [early[1]]:  # the early download was for another commit: stop it
        from git_remote_hf import background

        background.stop(early[0])
        mark("helper", "early-prefetch-stopped", f"checkout of {tips} instead of {early[1]}")
        early = None
    if tips and early is None:
        _prefetch_lfs(session, tips)
        mark("helper", "lfs-prefetch-done")
    if lock is not None:
        session.reply(f"lock {lock}")
    if connected:
        session.reply("connectivity-ok")
    session.reply("")


def _configure_clone(session: Session) -> None:
    """The new repository's local config, in one write: the LFS filter (:func:`configure_repo`) and parallel
    checkout with one worker per core (``checkout.workers=0``, git >= 2.32; an older git ignores it): git
    then queues the files that need no filter, so the LFS filter starts at once and the background
    download runs while the workers write the rest. A ``checkout.workers`` the user set (at any level,
    ``git clone -c checkout.workers=1`` included) is left as it is. Then the clone's filter server starts
    (:func:`_start_filter_server`)."""
    from git_remote_hf.lfs_store import configure_repo

    config = session.config
    extra = [] if config.has("checkout.workers") else [("checkout.workers", "0")]
    configure_repo(session.git_dir, config, extra)
    session.configured = True
    _start_filter_server(session)


def _start_filter_server(session: Session) -> None:
    """Fork the server that the clone's checkout hands its LFS filter session to
    (:mod:`git_remote_hf.filter_handoff`), when the clone checks out and smudges: not bare, no
    ``GIT_LFS_SKIP_SMUDGE``, LFS on, not turned off (``GIT_REMOTE_HF_FILTER_SERVER=0``,
    ``hf.lfs.filterServer=false``)."""
    from git_remote_hf import filter_handoff
    from git_remote_hf.clone_args import checks_out, clone_process
    from git_remote_hf.lfs_select import skip_smudge
    from git_remote_hf.lfs_store import lfs_enabled

    config = session.config
    if skip_smudge() or config.get_bool("core.bare") or not filter_handoff.enabled(config.get_bool("hf.lfs.filterServer")):
        return
    clone = clone_process()
    if not checks_out(clone[1] if clone is not None else None) or not lfs_enabled(session.git_dir, config=config):
        return
    filter_handoff.start(session.git_dir, clone[0] if clone is not None else None)


def start_early(session: Session) -> None:
    """At ``option cloning true`` (right after ``list``): configure the new repository and fork the
    background download of the LFS objects of the commit the clone checks out (the remote HEAD's), named
    by the hub's tree listing (:func:`git_remote_hf.background.start_listing`), so that it runs while the
    pack is fetched and indexed. Nothing when the LFS download would not happen in the background anyway
    (``GIT_LFS_SKIP_SMUDGE``, LFS or background off, a bare clone), or with ``GIT_REMOTE_HF_EARLY=0`` /
    ``hf.lfs.early=false``: then it starts once the pack is in, from the trees themselves.
    :func:`fetch_batch` stops it if the clone checks out another commit after all."""
    from git_remote_hf import background
    from git_remote_hf.clone_args import checks_out
    from git_remote_hf.lfs_select import PathFilter, hub_listing, skip_smudge
    from git_remote_hf.lfs_store import lfs_enabled
    from hubfs.client.api import HubClient

    sha, config = session.head_sha, session.config
    if sha is None or session.early is not None or skip_smudge() or config.get_bool("core.bare") or not checks_out():
        return
    if not (lfs_enabled(session.git_dir, config=config) and background.enabled(config.get_bool("hf.lfs.background"))
            and background.early_enabled(config.get_bool("hf.lfs.early"))):
        return
    _configure_clone(session)
    paths, remote = PathFilter.from_git(session.git_dir, config), session.remote
    url = f"{HubClient.api_path(remote.repo_type, remote.repo_id)}/tree/{sha}"

    def pages(client: HubClient) -> Iterator[list[tuple[str, LfsPointer]]]:
        return hub_listing(client, url, paths)

    pid = background.start_listing(session.git_dir, session.client, remote.lfs_url, pages)
    if pid is not None:
        session.early = (pid, sha)


def _depth(session: Session, repo: Repo, shas: list[ObjectID]) -> int | None:
    """The depth to ask for: ``--depth N``, or for ``--deepen N`` the local history's length plus N."""
    depth = session.options.depth
    if depth is None or not session.options.deepen_relative:
        return depth
    local = [s.decode() for s in shas if s in repo.object_store] or ["HEAD"]
    longest = 0
    for sha in local:
        count = git(session.git_dir, "rev-list", "--count", sha, check=False).stdout.strip()
        longest = max(longest, int(count) if count.isdigit() else 0)
    return longest + depth


def _timestamp(session: Session, since: str | None) -> str | None:
    """``--shallow-since`` as the server wants it (seconds since the epoch), parsed by git's own date parser."""
    if since is None:
        return None
    out = git(session.git_dir, "rev-parse", f"--since={since}").stdout.decode().strip()
    return out.removeprefix("--max-age=")


def checkout_tips(session: Session, repo: Repo, wanted: dict[str, str]) -> list[str]:
    """The commits whose LFS objects to fetch now: what a clone checks out (the remote HEAD's branch, the
    URL's revision), or for a fetch the remote branch the current branch tracks (what ``git pull`` merges)."""
    if session.options.cloning:
        if repo.get_config().get_boolean((b"core",), b"bare", False):
            return []  # a bare clone or mirror checks nothing out
        for name in ([session.head_ref] if session.head_ref else []) + ["HEAD"]:  # as listed to git
            if name in wanted:
                return [wanted[name]]
        if session.head_sha is not None and session.head_sha in wanted.values():  # a detached HEAD (a tag, a commit)
            return [session.head_sha]
        branches = [sha for name, sha in wanted.items() if name.startswith("refs/heads/")]
        return branches[:1]
    try:
        current = repo.refs.get_symrefs().get(Ref(b"HEAD"))
        if current is None or not current.startswith(b"refs/heads/"):
            return []
        branch = current[len(b"refs/heads/"):]
        config = repo.get_config()
        remote = config.get((b"branch", branch), b"remote")
        merge = config.get((b"branch", branch), b"merge")
    except KeyError:
        return []
    if remote.decode() != session.remote_name or merge.decode() not in wanted:
        return []
    return [wanted[merge.decode()]]


def _prefetch_lfs(session: Session, tips: list[str]) -> None:
    """Download the tips' missing LFS objects: for a clone in a background process that git's checkout
    overlaps (:mod:`git_remote_hf.background`), else here; nothing for a clone that checks nothing out
    (:func:`~git_remote_hf.clone_args.checks_out`: the filter fetches what a later checkout smudges). A failure is a warning (the checkout's filter
    retries, and what was downloaded stays for the next run)."""
    from git_remote_hf import background
    from git_remote_hf.clone_args import checks_out
    from git_remote_hf.lfs_select import wanted_objects

    if session.options.cloning and not checks_out():
        mark("helper", "no-checkout", "LFS objects come when a checkout smudges them")
        return
    try:
        # none with GIT_LFS_SKIP_SMUDGE, GIT_REMOTE_HF_LFS=0 or hf.lfs=false (LFS left to git-lfs, or to nothing)
        wanted = wanted_objects(session.git_dir, tips, session.config)
        if not wanted:
            return
        if session.options.cloning and background.enabled(session.config.get_bool("hf.lfs.background")) and \
                background.start(session.git_dir, session.client, session.remote.lfs_url, wanted):
            return
        from git_remote_hf.lfs_transfer import fetch_objects

        fetch_objects(session.git_dir, session.client, session.remote.lfs_url, [p for _, p in wanted],
                      progress=session.options.progress and session.options.verbosity > 0,
                      names={p.oid: path for path, p in reversed(wanted)})
    except (HubfsError, OSError) as exc:
        session.err(f"git-remote-hf: warning: LFS download incomplete ({exc}); the checkout fetches what is missing, "
                    "and a rerun resumes.")

