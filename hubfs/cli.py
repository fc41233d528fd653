"""The ``hubfs`` command: ``serve`` the embedded hub, manage its users and tokens, ``gc`` its disk, ``mount`` and
``umount`` repos (the client commands live in :mod:`hubfs.commands`).

Exit codes: 0 success, 1 a hubfs error (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hubfs import config
from hubfs.errors import HubfsError

if TYPE_CHECKING:
    from hubfs.paths import RepoPath
    from hubfs.server.inference.models import InferenceOptions
    from hubfs.server.jobs.runner import JobsOptions


def _data_dir(args: argparse.Namespace) -> Path:
    return config.data_dir(args.data)


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``30d`` or ``2w`` (:func:`hubfs.durations.parse_duration`)."""
    from hubfs.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _when(ts: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts is not None else "never"


def cmd_serve(args: argparse.Namespace) -> int:
    from hubfs.server.app import serve
    from hubfs.server.db.url import configure as configure_database

    url = configure_database(_data_dir(args), args.database_url)  # remembered in DATA/database.json (no password)
    if args.database_url:  # this process, its workers and git hooks use it as given (a password in it too)
        config.export_database_url(url)

    serve(_data_dir(args), args.host, args.port, public_url=args.public_url,
          regular_max_size=args.regular_max_size, multipart_chunk_size=args.multipart_chunk_size,
          access_log=args.access_log, cdn_url=args.cdn_url, send_timeout=args.send_timeout,
          gc_interval=args.gc_interval, gc_grace=args.gc_grace, allow_signup=args.allow_signup,
          inference=_inference_options(args), jobs=_jobs_options(args), object_store=args.object_store,
          s3_endpoint_url=args.s3_endpoint_url,
          workers=args.workers)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from hubfs.server.db_migrate import migrate

    migrate(config.data_dir(args.source), args.to, force=args.force, say=print)
    return 0


def cmd_storage_migrate(args: argparse.Namespace) -> int:
    from hubfs.server.storage_migrate import migrate

    report = migrate(_data_dir(args), args.to, args.s3_endpoint_url, say=print)
    print(f"moved {report.uploaded} objects ({report.uploaded_bytes} bytes) to {args.to}; {report.present} were "
          f"there already; {report.removed_local} local copies removed; the data folder now uses {args.to}")
    return 0


def _jobs_options(args: argparse.Namespace) -> JobsOptions | None:
    """``JobsOptions`` from ``serve --jobs ...``; None without ``--jobs``."""
    if not args.jobs:
        return None
    import shutil

    from hubfs.server.jobs.runner import JobsOptions

    if args.jobs_runtime != "local" and shutil.which(args.jobs_runtime) is None:
        raise HubfsError(f"--jobs-runtime {args.jobs_runtime}: no {args.jobs_runtime} command on PATH")
    if args.max_jobs < 1:
        raise HubfsError("--max-jobs must be at least 1")
    jobs_dir = Path(args.jobs_dir) if args.jobs_dir else _data_dir(args) / "jobs"
    if args.jobs_user:
        import pwd

        try:
            pwd.getpwnam(args.jobs_user)
        except KeyError:
            raise HubfsError(f"--jobs-user {args.jobs_user}: no such user") from None
        if os.geteuid() != 0:
            raise HubfsError("--jobs-user needs the hub to run as root")
        if jobs_dir.resolve().is_relative_to(_data_dir(args).resolve()):
            raise HubfsError("--jobs-user needs a --jobs-dir outside the data folder (which becomes 0700)")
    return JobsOptions(jobs_dir=jobs_dir, max_jobs=args.max_jobs, runtime=args.jobs_runtime, user=args.jobs_user)


def _inference_options(args: argparse.Namespace) -> InferenceOptions | None:
    """``InferenceOptions`` from ``serve --inference ...``; None without ``--inference``."""
    if not args.inference:
        return None
    from hubfs.server.inference.models import InferenceOptions

    if args.max_models < 1 or args.max_batch < 1 or args.inference_timeout <= 0:
        raise HubfsError("--max-models and --max-batch must be at least 1, --inference-timeout above 0")
    return InferenceOptions(device=args.device, max_models=args.max_models, max_memory=args.max_memory,
                            max_batch=args.max_batch, timeout=args.inference_timeout)


def cmd_user_add(args: argparse.Namespace) -> int:
    from hubfs.server.hub import Hub

    hub = Hub(_data_dir(args))
    password = _read_password_file(args.password_file) if args.password_file else None
    if password is not None:
        from hubfs.server.web.passwords import check_password_rules

        check_password_rules(password)  # refused before the user is made
    hub.add_user(args.name, org=args.org)
    if password is not None:
        from hubfs.server.web.passwords import PasswordStore

        PasswordStore(hub.data_dir / "hub.sqlite").set_password(args.name, password)
    print(f"user {args.name} ready" + (f" (member of {args.org})" if args.org else "")
          + (" with a web password" if password is not None else ""))
    return 0


def _read_password_file(path: str) -> str:
    """The first line of ``path`` (``-``: stdin), without its line ending."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return text.splitlines()[0] if text else ""


def cmd_user_passwd(args: argparse.Namespace) -> int:
    """Set a user's web sign-in password from --password-file or a prompt (asked twice); their browser
    sessions end."""
    import getpass

    from hubfs.server.metadata import Metadata
    from hubfs.server.web.passwords import PasswordStore, check_password_rules

    sqlite = _data_dir(args) / "hub.sqlite"
    Metadata(sqlite)  # the accounts table, on a fresh data dir too
    if args.password_file:
        password = _read_password_file(args.password_file)
    else:
        password = getpass.getpass(f"New password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            print("hubfs: the two passwords differ; nothing changed", file=sys.stderr)
            return 1
    check_password_rules(password)
    PasswordStore(sqlite).set_password(args.name, password)
    print(f"password of {args.name} set")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from hubfs.server.hub import Hub

    hub = Hub(_data_dir(args))
    token = hub.meta.create_token(args.user, args.token_name or f"{args.user}-{args.role}", args.role,
                                  expires_in=args.expires_in)
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        print(f"{args.role} token for {args.user} written to {args.out}", file=sys.stderr)
    else:
        print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from hubfs.server.metadata import Metadata

    rows = Metadata(_hub_sqlite(args)).list_tokens(args.user)
    print(f"{'ID':<14}{'NAME':<28}{'ROLE':<7}{'CREATED':<22}EXPIRES")
    for t in rows:
        print(f"{t.id:<14}{t.name:<28}{t.role:<7}{_when(t.created_at):<22}{_when(t.expires_at)}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from hubfs.server.metadata import Metadata

    row = Metadata(_hub_sqlite(args)).revoke_token(args.token_id)
    print(f"revoked token {row.id} ({row.name}, {row.role}) of {row.user}")
    return 0


def _hub_sqlite(args: argparse.Namespace) -> Path:
    from hubfs.errors import NotFoundError

    path = _data_dir(args) / "hub.sqlite"
    if not path.is_file() and not (path.parent / "database.json").is_file():  # PostgreSQL: DATA/database.json
        raise NotFoundError(f"No hub data in {_data_dir(args)} (no hub.sqlite).")
    return path


def cmd_gc(args: argparse.Namespace) -> int:
    from hubfs.server.gc import collect

    report = collect(_data_dir(args), args.grace)
    for line in report.lines():
        print(line)
    return 0


def cmd_mount(args: argparse.Namespace) -> int:
    from hubfs.errors import BadRequestError, MountError
    from hubfs.mount.daemon import MountSpec, one_line, serve, start
    from hubfs.paths import RepoPath

    if len(args.targets) != (1 if args.all else 2):
        print("hubfs: mount takes REPO[@REV] MOUNTPOINT, or --all MOUNTPOINT.", file=sys.stderr)
        return 2
    repo = RepoPath.parse(args.targets[0]) if not args.all else None
    if repo is not None and repo.path:
        raise BadRequestError(f"{args.targets[0]}: mount a whole repo (REPO[@REV]), not a path inside it.")
    if args.refresh is not None and args.refresh <= 0:
        raise BadRequestError("--refresh takes a number of seconds above 0.")
    if args.commit_delay < 0:
        raise BadRequestError("--commit-delay takes a number of seconds, 0 or more.")
    if args.read_write and repo is not None and repo.revision:
        refused = _not_a_branch(repo, args)
        if refused:
            print(f"hubfs: {refused}", file=sys.stderr)
            return 2
    spec = MountSpec(os.path.abspath(args.targets[-1]), repo.repo_type.value if repo else None,
                     repo.repo_id if repo else None, repo.revision if repo else None, args.endpoint,
                     os.path.abspath(args.cache_dir) if args.cache_dir else None, args.refresh, args.timeout,
                     log_file=os.path.abspath(args.log_file) if args.log_file else None, read_write=args.read_write,
                     commit_delay=args.commit_delay, allow_other=not args.no_allow_other)
    if args.foreground:
        if args.token:
            os.environ["HF_TOKEN"] = args.token  # read by the client like any token, never put on a command line
        try:
            serve(spec, lambda line: print(f"hubfs: {line.split(' ', 1)[1]} mounted at {spec.mountpoint} "
                                           f"(foreground: Ctrl-C or `hubfs umount` to stop)", file=sys.stderr))
        except MountError:
            raise
        except HubfsError as exc:
            raise MountError(one_line(exc, spec)) from exc
        return 0
    started = start(spec, args.token)
    print(f"mounted {started.what} at {spec.mountpoint} (daemon pid {started.pid}, log {started.log_file})")
    return 0


def _not_a_branch(repo: RepoPath, args: argparse.Namespace) -> str | None:
    """Why ``--read-write`` cannot mount ``repo``'s revision (a commit sha or a tag), or None. A failure to
    ask is left to the daemon, which says what is wrong in one line."""
    from hubfs.client.api import HubClient
    from hubfs.config import HubConfig
    from hubfs.errors import MountError
    from hubfs.mount.writable import check_branch

    try:
        with HubClient(config=HubConfig.load(args.endpoint, args.token, args.cache_dir), timeout=args.timeout,
                       max_retries=1) as client:
            check_branch(client, repo.repo, repo.revision)
    except MountError as exc:
        return str(exc)
    except HubfsError:
        return None
    return None


def cmd_umount(args: argparse.Namespace) -> int:
    from hubfs.mount.daemon import umount

    print(umount(args.mountpoint))
    return 0


def _add_mount_commands(sub: argparse._SubParsersAction) -> None:
    mount = sub.add_parser(
        "mount", help="mount a repo (REPO[@REV] MOUNTPOINT) or the whole hub (--all MOUNTPOINT); read-only unless --read-write",
        description="Mount one commit of a repo as a read-only folder (FUSE, libfuse3), or with --all the "
                    "whole hub: ns/name, datasets/ns/name and spaces/ns/name appear on first lookup. Runs as "
                    "a daemon logging to a file it names; exits 1 with one line, and mounts nothing, when the "
                    "endpoint, the token or the repo is wrong.")
    mount.add_argument("targets", nargs="+", metavar="REPO[@REV] MOUNTPOINT",
                       help="[datasets/|spaces/]ns/name[@rev] and the folder to mount it on (--all: the folder)")
    mount.add_argument("--all", action="store_true", help="mount the whole hub, not one repo")
    mount.add_argument("--read-write", action="store_true",
                       help="stage changes on local disk and commit them to the branch in batches (with --all: every "
                            "repo, to its main branch or the branch of name@BRANCH)")
    mount.add_argument("--commit-delay", type=float, default=2.0, metavar="SECONDS",
                       help="--read-write: commit this long after the last change (default 2; fsync and unmount "
                            "commit at once)")
    mount.add_argument("--no-allow-other", action="store_true",
                       help="only the mounting user may use the mount (default: other users too, with the modes "
                            "it reports enforced, when root mounts or /etc/fuse.conf has user_allow_other)")
    mount.add_argument("--cache-dir", help="cache folder (default: $HF_HUB_CACHE)")
    mount.add_argument("--foreground", action="store_true", help="serve in this process (logs on stderr)")
    mount.add_argument("--refresh", type=float, metavar="SECONDS",
                       help="follow the branch: poll it this often and switch to its new commit")
    mount.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    mount.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")
    mount.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                       help="a request stalled this long is retried, twice, then the read fails with EIO "
                            "instead of hanging (default 15)")
    mount.add_argument("--log-file", help="the daemon's log (default: $HF_HOME/hubfs/mounts/<mountpoint>.log)")
    mount.set_defaults(func=cmd_mount)
    umount = sub.add_parser("umount", help="unmount a hubfs mount (also one whose daemon died)")
    umount.add_argument("mountpoint")
    umount.set_defaults(func=cmd_umount)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubfs", description="Hub repositories as files, git remotes and weights.")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", help="the hub's data folder (default: $HUBFS_DATA or ./hubfs-data)")

    serve = sub.add_parser("serve", help="run the embedded hub")
    data_arg(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--public-url", help="the URL clients use, when behind a proxy")
    serve.add_argument("--regular-max-size", type=_size, default=None,
                       help="files at least this big are uploaded with LFS (default 10MiB)")
    serve.add_argument("--multipart-chunk-size", type=_size, default=None,
                       help="LFS objects above this size use multipart uploads (default 64MiB)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--send-timeout", type=float, default=60.0,
                       help="cut a download whose client reads nothing for this many seconds (default 60)")
    serve.add_argument("--object-store", metavar="s3://BUCKET/PREFIX",
                       help="keep LFS objects in S3-compatible storage (credentials: the standard AWS environment "
                            "and files); downloads redirect to presigned URLs. Remembered in the data folder")
    serve.add_argument("--s3-endpoint-url", metavar="URL", help="the S3 API's URL (MinIO, Ceph, ...; default AWS)")
    serve.add_argument("--database-url", metavar="URL", default=None,
                       help="metadata in PostgreSQL: postgresql://user@host:port/db (password via PGPASSFILE or "
                            "PGPASSWORD; also HUBFS_DATABASE_URL; remembered in the data folder); default: DATA/hub.sqlite")
    serve.add_argument("--cdn-url", help="redirect LFS downloads to this origin (e.g. another `hubfs serve` "
                                         "on the same --data, or a caching proxy in front of this hub)")
    serve.add_argument("--gc-interval", type=_duration, default=6 * 3600, metavar="DURATION",
                       help="run `hubfs gc` in the background this often (e.g. 6h; default 6h; 0 disables)")
    serve.add_argument("--gc-grace", type=_duration, default=24 * 3600, metavar="DURATION",
                       help="the background gc's grace period (default 1d): see `hubfs gc --grace`")
    serve.add_argument("--allow-signup", action="store_true",
                       help="let visitors create their own account at /join (off by default)")
    serve.add_argument("--inference", action="store_true",
                       help="run the hub's models: the task API (/models/NS/NAME) and /v1/chat/completions "
                            "(needs torch and transformers)")
    serve.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="where --inference runs models (auto: cuda when there is one)")
    serve.add_argument("--max-models", type=int, default=2, metavar="N",
                       help="models --inference keeps loaded (least recently used evicted first)")
    serve.add_argument("--max-memory", type=_size, default=None, metavar="SIZE",
                       help="bytes of weights --inference keeps loaded (e.g. 8G); a larger model answers 503")
    serve.add_argument("--max-batch", type=int, default=8, metavar="N",
                       help="concurrent requests --inference runs as one batch (1: no batching)")
    serve.add_argument("--inference-timeout", type=float, default=300.0, metavar="SECONDS",
                       help="per-request limit of --inference (504 past it)")
    serve.add_argument("--jobs", action="store_true",
                       help="run jobs for signed-in users (the Hub's Jobs API, `hf jobs`, `hubfs jobs`)")
    serve.add_argument("--jobs-dir", metavar="DIR", help="jobs' working folders and logs (default: DATA/jobs)")
    serve.add_argument("--max-jobs", type=int, default=2, metavar="N",
                       help="jobs --jobs runs at once; more wait as SCHEDULING (default 2)")
    serve.add_argument("--jobs-runtime", choices=("local", "docker", "podman"), default="local",
                       help="local: a process group on this machine (the image is not pulled); docker/podman: "
                            "the job's image in a container")
    serve.add_argument("--jobs-user", metavar="USER",
                       help="run local jobs as this OS user (hub running as root, --jobs-dir outside the data "
                            "folder); without it local jobs run as the hub's user and can read its files")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes accepting on the one port (default 1; not with --jobs)")
    serve.set_defaults(func=cmd_serve)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="add a user (and make them a member of --org)")
    data_arg(add)
    add.add_argument("name")
    add.add_argument("--org")
    add.add_argument("--password-file", help="set the web sign-in password from the first line of this file "
                                             "(- reads stdin)")
    add.set_defaults(func=cmd_user_add)
    passwd = user.add_parser("passwd", help="set a user's web sign-in password (prompted, or --password-file)")
    data_arg(passwd)
    passwd.add_argument("name")
    passwd.add_argument("--password-file", help="read the password from the first line of this file (- reads stdin)")
    passwd.set_defaults(func=cmd_user_passwd)

    token = sub.add_parser("token", help="manage access tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a token; printed once on stdout, or written to --out")
    data_arg(create)
    create.add_argument("user")
    create.add_argument("--role", choices=["read", "write"], default="write")
    create.add_argument("--name", dest="token_name")
    create.add_argument("--out", help="write the token to this file (mode 0600) instead of stdout")
    create.add_argument("--expires-in", type=_duration, metavar="DURATION",
                        help="the token stops working after this long (e.g. 12h, 30d; default: never)")
    create.set_defaults(func=cmd_token_create)
    listing = token.add_parser("list", help="list a user's tokens: id, name, role, created, expires (never the token)")
    data_arg(listing)
    listing.add_argument("user")
    listing.set_defaults(func=cmd_token_list)
    revoke = token.add_parser("revoke", help="delete a token by its id (from `hubfs token list`); a running "
                                             "server refuses it from the next request on")
    data_arg(revoke)
    revoke.add_argument("token_id", metavar="ID")
    revoke.set_defaults(func=cmd_token_revoke)

    gc = sub.add_parser("gc", help="reclaim disk: unreachable git objects, unreferenced LFS objects, dead uploads",
                        description="Remove loose git objects no ref reaches (git prune), LFS objects no pointer "
                                    "reachable from any ref names (and their links), and temporaries of dead "
                                    "uploads, when older than --grace. Safe beside a running `hubfs serve` on the "
                                    "same --data: commits and pushes in flight are waited for. Prints what it "
                                    "removed.")
    data_arg(gc)
    gc.add_argument("--grace", type=_duration, default=24 * 3600, metavar="DURATION",
                    help="keep anything younger than this (e.g. 3600, 12h, 1d; default 1d). An uploaded LFS "
                         "object not yet committed survives for this long; 0 removes all garbage at once")
    gc.set_defaults(func=cmd_gc)

    storage = sub.add_parser("storage", help="manage where LFS objects live").add_subparsers(dest="action",
                                                                                            required=True)
    move = storage.add_parser("migrate", help="move the local LFS objects into S3 and switch the data folder "
                                              "to it (stop the hub first; resumable, verified)")
    data_arg(move)
    move.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX")
    move.add_argument("--s3-endpoint-url", metavar="URL", help="the S3 API's URL (MinIO, Ceph, ...; default AWS)")
    move.set_defaults(func=cmd_storage_migrate)

    dbm = sub.add_parser("migrate", help="copy a hub's SQLite metadata into PostgreSQL and switch its data folder to it")
    dbm.add_argument("--from", dest="source", metavar="DATA", help="the hub's data folder (default: as for serve)")
    dbm.add_argument("--to", required=True, metavar="postgresql://USER@HOST:PORT/DB")
    dbm.add_argument("--force", action="store_true", help="copy even into a database that already holds rows "
                                                          "(those tables are emptied first)")
    dbm.set_defaults(func=cmd_migrate)

    _add_mount_commands(sub)

    from hubfs.commands import register
    from hubfs.jobs_cli import register as register_jobs
    from hubfs.loader.cli import register as register_load

    register(sub)
    register_load(sub)
    register_jobs(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (HubfsError, FileNotFoundError, FileExistsError, PermissionError) as exc:
        print(f"hubfs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `hubfs cat ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
