"""The client commands of ``hubfs`` (the documented ``hf`` command reference, same options and meaning):
download, upload, ls, cat, repo create|delete|info|settings, cache ls|rm, auth login|logout|whoami|token,
and mirror (another hub's repo copied with the same commit shas, :mod:`hubfs.mirror`).

Every command takes ``--endpoint`` (default ``HF_ENDPOINT``) and ``--token`` (default ``HF_TOKEN`` or
the token file). Errors print one line on stderr and exit 1; tokens are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hubfs.config import HubConfig, find_token, token_path
from hubfs.errors import BadRequestError, NotFoundError


def _client(args: argparse.Namespace) -> Any:
    from hubfs.client import HubClient

    return HubClient(config=HubConfig.load(args.endpoint, args.token, getattr(args, "cache_dir", None)))


def _common(p: argparse.ArgumentParser, repo_type: bool = True) -> None:
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")
    if repo_type:
        p.add_argument("--repo-type", "--type", dest="repo_type", choices=["model", "dataset", "space"],
                       default="model", help="model (default), dataset or space")


def cmd_download(args: argparse.Namespace) -> int:
    from hubfs.client.cache import HubCache
    from hubfs.client.download import Downloader

    client = _client(args)
    downloader = Downloader(client, HubCache(client.config.cache_dir), max_workers=args.max_workers,
                            progress=not args.quiet)
    path = downloader.download(args.repo_type, args.repo_id, args.revision, files=args.files or None,
                               include=args.include, exclude=args.exclude,
                               local_dir=Path(args.local_dir) if args.local_dir else None)
    if len(args.files) == 1:
        path = path / args.files[0]
    print(path)
    return 0


def _collect(local: Path, path_in_repo: str, include: list[str] | None, exclude: list[str] | None) -> list[Any]:
    import fnmatch

    from hubfs.client.commit import Add

    if local.is_file():
        return [Add(path_in_repo or local.name, local)]
    if not local.is_dir():
        raise NotFoundError(f"{local} does not exist.")
    ops = []
    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = file.relative_to(local).as_posix()
        if rel.startswith((".git/", ".cache/huggingface/")) or "/.git/" in rel:
            continue
        if include and not any(fnmatch.fnmatch(rel, g) for g in include):
            continue
        if exclude and any(fnmatch.fnmatch(rel, g) for g in exclude):
            continue
        ops.append(Add(f"{path_in_repo.rstrip('/')}/{rel}" if path_in_repo else rel, file))
    return ops


def cmd_upload(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    client = _client(args)
    local = Path(args.local_path or ".")
    ops = _collect(local, args.path_in_repo or "", args.include, args.exclude)
    if not ops:
        raise BadRequestError(f"Nothing to upload from {local}.")
    url = client.create_repo(args.repo_type, args.repo_id, private=args.private, exist_ok=True)
    total = sum(op.size for op in ops)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"Uploading {len(ops)} files",
              disable=args.quiet) as bar:
        sha = client.commit(args.repo_type, args.repo_id, ops, args.commit_message or f"Upload {local.name} with hubfs",
                            revision=args.revision, description=args.commit_description or "", progress=bar)
    print(f"{url}/commit/{sha}" if args.repo_type == "model" else f"{url} @ {sha}")
    return 0


def _fs(args: argparse.Namespace) -> Any:
    from hubfs.fs import HubFileSystem

    return HubFileSystem(endpoint=args.endpoint, token=args.token, skip_instance_cache=True)


def cmd_ls(args: argparse.Namespace) -> int:
    fs = _fs(args)
    path = args.path.removeprefix("hf://").removeprefix("hubfs://")
    entries = fs.find(path, withdirs=True, detail=True).values() if args.recursive else fs.ls(path, detail=True)
    for e in entries:
        if e["name"].rstrip("/") == path.rstrip("/"):
            continue  # the folder being listed
        name = e["name"] + ("/" if e["type"] == "directory" else "")
        if args.long:
            kind = "lfs " if e.get("lfs") else ("dir " if e["type"] == "directory" else "file")
            print(f"{kind} {e['size']:>14} {name}")
        else:
            print(name)
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    fs = _fs(args)
    out = sys.stdout.buffer
    for path in args.paths:
        with fs.open(path.removeprefix("hf://").removeprefix("hubfs://"), "rb") as f:
            while chunk := f.read(8 << 20):
                out.write(chunk)
    out.flush()
    return 0


def cmd_repo_create(args: argparse.Namespace) -> int:
    repo_id = args.repo_id
    if args.organization:
        if "/" in repo_id:
            raise BadRequestError(f"{repo_id!r} already names a namespace: drop --organization or give a bare NAME.")
        repo_id = f"{args.organization}/{repo_id}"
    if args.space_sdk and args.repo_type != "space":
        raise BadRequestError("--space-sdk is for spaces: add --type space.")
    print(_client(args).create_repo(args.repo_type, repo_id, private=args.private, exist_ok=args.exist_ok,
                                    space_sdk=args.space_sdk))
    return 0


def cmd_repo_settings(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    body: dict[str, Any] = {}
    if args.private is not None:
        body["private"] = args.private
    if args.gated is not None:
        body["gated"] = False if args.gated == "false" else args.gated
    if not body:
        raise BadRequestError("Nothing to change: pass --private, --public or --gated auto|manual|false.")
    client = _client(args)
    client.transport.request("PUT", f"{client.api_path(args.repo_type, quote(args.repo_id, safe='/'))}/settings",
                             json_body=body, retry=False)
    changes = ", ".join(f"{k}={str(v).lower()}" for k, v in body.items())
    print(f"updated {args.repo_type} {args.repo_id}: {changes}")
    return 0


def cmd_repo_delete(args: argparse.Namespace) -> int:
    question = f"Delete {args.repo_type} {args.repo_id} and all its files? [y/N] "
    if not args.yes and sys.stdin.isatty() and input(question).strip().lower() != "y":
        print("Aborted.", file=sys.stderr)
        return 1
    try:
        _client(args).delete_repo(args.repo_type, args.repo_id)
    except FileNotFoundError:
        if not args.missing_ok:
            raise
    print(f"deleted {args.repo_type} {args.repo_id}")
    return 0


def cmd_repo_info(args: argparse.Namespace) -> int:
    info = _client(args).repo_info(args.repo_type, args.repo_id, args.revision)
    print(json.dumps(info, indent=2, sort_keys=True))
    return 0


def _cache(args: argparse.Namespace) -> Any:
    from hubfs.client.cache import HubCache

    return HubCache(HubConfig.load(cache_dir=args.cache_dir).cache_dir)


def cmd_cache_ls(args: argparse.Namespace) -> int:
    from hubfs.cache_admin import ago, scan

    entries = scan(_cache(args))
    print(f"{'REPO ID':<40} {'TYPE':<8} {'SIZE':>12} {'FILES':>6} {'REVISIONS':>9}  {'LAST ACCESSED':<20} REFS")
    for e in entries:
        r = e.repo
        refs = ", ".join(sorted(ref for names in r.revisions.values() for ref in names)) or "-"
        print(f"{e.label:<40} {r.repo_type:<8} {_human(r.size):>12} {r.files:>6} {len(r.revisions):>9}  "
              f"{ago(e.last_access):<20} {refs}")
        if args.verbose:
            for sha, names in r.revisions.items():
                snap = r.path / "snapshots" / sha
                files = sum(len(f) for _, _, f in os.walk(snap)) if snap.is_dir() else 0
                print(f"    {sha}  {files:>6} files  refs: {', '.join(names) or '-'}")
    if args.verbose:
        print(f"\ncache folder: {_cache(args).root}")
    print(f"\n{len(entries)} repos, {_human(sum(e.repo.size for e in entries))} on disk")
    return 0


def cmd_cache_rm(args: argparse.Namespace) -> int:
    from hubfs.cache_admin import scan, select

    if args.all == bool(args.targets):
        raise BadRequestError("Name the repos to remove (ids or patterns such as 'facebook/*'), or pass --all.")
    cache = _cache(args)
    entries = scan(cache)
    chosen = entries if args.all else select(entries, args.targets)
    if not chosen:
        print("the cache is empty")
        return 0
    size = _human(sum(e.repo.size for e in chosen))
    if not args.yes:
        names = ", ".join(e.label for e in chosen[:5]) + (f" and {len(chosen) - 5} more" if len(chosen) > 5 else "")
        print(f"Delete {len(chosen)} cached repos ({size}): {names}? [y/N] ", end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Aborted: nothing deleted.", file=sys.stderr)
            return 1
    freed = sum(cache.remove(e.repo.repo_type, e.repo.repo_id) for e in chosen)
    print(f"removed {len(chosen)} repos, freed {_human(freed)}")
    return 0


def cmd_auth_login(args: argparse.Namespace) -> int:
    """Ask for the token (hidden) unless --token; check it with whoami; only then save it."""
    import getpass

    from hubfs.client import HubClient

    token = args.token
    if not token:
        token = getpass.getpass("Token (input hidden): ") if sys.stdin.isatty() else sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        raise BadRequestError("No token given: pass --token or type it when asked.")
    with HubClient(args.endpoint, token) as client:
        name = client.whoami()["name"]
        endpoint = client.endpoint
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(f"logged in as {name}; token saved to {path}")
    if args.add_to_git_credential:
        from hubfs import git_credential

        if not git_credential.helpers(endpoint):
            print("hubfs: no git credential helper is configured, so git will not remember the token "
                  "(e.g. `git config --global credential.helper store`, then log in again).", file=sys.stderr)
        else:
            git_credential.approve(endpoint, name, token)
            print(f"token stored in git's credential helper for {endpoint}")
    return 0


def cmd_auth_logout(args: argparse.Namespace) -> int:
    path = token_path()
    if path.exists():
        path.unlink()
        print(f"logged out: removed {path}")
    else:
        print("not logged in")
    from hubfs import git_credential

    endpoint = HubConfig.load(args.endpoint, False).endpoint
    if git_credential.helpers(endpoint):
        git_credential.reject(endpoint)
    return 0


def cmd_auth_token(args: argparse.Namespace) -> int:
    """Print the token in use (the one command that prints a token)."""
    token = args.token or find_token()
    if not token:
        print("hubfs: not logged in (no --token, HF_TOKEN or token file).", file=sys.stderr)
        return 1
    print(token)
    return 0


def cmd_auth_whoami(args: argparse.Namespace) -> int:
    client = _client(args)
    if not client.config.token:
        print("not logged in", file=sys.stderr)
        return 1
    info = client.whoami()
    print(info["name"])
    orgs = [o["name"] for o in info.get("orgs", [])]
    if orgs:
        print("orgs: " + ", ".join(orgs))
    print(f"endpoint: {client.endpoint}")
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    from hubfs.mirror import mirror

    src_token = args.src_token
    if args.src_token_file:
        src_token = Path(args.src_token_file).read_text().strip() or None
    with _client(args) as dest:
        result = mirror(args.source, dest, src_token=src_token, to=args.to, revisions=args.revision,
                        work_dir=Path(args.work_dir) if args.work_dir else None, prune=not args.no_prune,
                        staged_bytes=args.max_staged,
                        log=None if args.quiet else lambda line: print(line, file=sys.stderr))
    for line in result.lines():
        print(line)
    return 0


def _size(text: str) -> int:
    """Bytes from ``512``, ``64k``, ``10MiB``, ``2G``."""
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        return int(float(value[:-1]) * units[value[-1]]) if value[-1:] in units else int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use e.g. 512, 64k, 10MiB or 2G") from None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def register(sub: Any) -> None:
    """Add the client commands to the ``hubfs`` parser."""
    p = sub.add_parser("download", help="download a repo or some of its files into the cache or a folder")
    _common(p)
    p.add_argument("repo_id")
    p.add_argument("files", nargs="*", help="files to download (default: all)")
    p.add_argument("--revision")
    p.add_argument("--include", nargs="+", help="glob patterns to include")
    p.add_argument("--exclude", nargs="+", help="glob patterns to exclude")
    p.add_argument("--local-dir", help="copy the files into this folder")
    p.add_argument("--cache-dir", help="cache folder (default: $HF_HUB_CACHE)")
    p.add_argument("--max-workers", type=int, default=8)
    p.add_argument("--resume", action="store_true",
                   help="resume interrupted downloads (always done; accepted for compatibility)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("upload", help="upload a file or folder as one commit (creates the repo if needed)")
    _common(p)
    p.add_argument("repo_id")
    p.add_argument("local_path", nargs="?")
    p.add_argument("path_in_repo", nargs="?")
    p.add_argument("--revision")
    p.add_argument("--private", action="store_true")
    p.add_argument("--include", nargs="+")
    p.add_argument("--exclude", nargs="+")
    p.add_argument("--commit-message")
    p.add_argument("--commit-description")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_upload)

    p = sub.add_parser("ls", help="list files: hf://[datasets/|spaces/]ns/name[@rev][/path]")
    _common(p, repo_type=False)
    p.add_argument("path")
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("-l", "--long", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("cat", help="print files to stdout")
    _common(p, repo_type=False)
    p.add_argument("paths", nargs="+")
    p.set_defaults(func=cmd_cat)

    repo = sub.add_parser("repo", help="create, delete or inspect repos").add_subparsers(dest="action", required=True)
    p = repo.add_parser("create", help="create a repo: NAME or ns/name")
    _common(p)
    p.add_argument("repo_id", metavar="NAME")
    p.add_argument("--organization", metavar="ORG", help="create it in this org (NAME is then a bare name)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--exist-ok", action="store_true")
    p.add_argument("--space-sdk", choices=["gradio", "streamlit", "docker", "static"])
    p.set_defaults(func=cmd_repo_create)
    p = repo.add_parser("settings", help="change a repo's visibility or gating")
    _common(p)
    p.add_argument("repo_id")
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", action="store_const", const=True, default=None)
    vis.add_argument("--public", dest="private", action="store_const", const=False)
    p.add_argument("--gated", choices=["auto", "manual", "false"],
                   help="ask users to request access: approved at once (auto), by you (manual), or not gated")
    p.set_defaults(func=cmd_repo_settings)
    p = repo.add_parser("delete")
    _common(p)
    p.add_argument("repo_id")
    p.add_argument("--missing-ok", action="store_true")
    p.add_argument("-y", "--yes", action="store_true")
    p.set_defaults(func=cmd_repo_delete)
    p = repo.add_parser("info")
    _common(p)
    p.add_argument("repo_id")
    p.add_argument("--revision")
    p.set_defaults(func=cmd_repo_info)

    cache = sub.add_parser("cache", help="inspect or clean the local cache").add_subparsers(dest="action", required=True)
    p = cache.add_parser("ls", help="cached repos: size, files, revisions, last access")
    _common(p, repo_type=False)
    p.add_argument("--cache-dir")
    p.add_argument("-v", "--verbose", action="store_true", help="also each revision: commit, files, refs")
    p.set_defaults(func=cmd_cache_ls)
    p = cache.add_parser("rm", help="remove cached repos (asks first unless -y)")
    _common(p, repo_type=False)
    p.add_argument("targets", nargs="*", metavar="REPO",
                   help="repo ids or globs: gpt2, facebook/*, datasets/ns/name (a bare id is a model)")
    p.add_argument("--all", action="store_true", help="remove every cached repo")
    p.add_argument("--cache-dir")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.set_defaults(func=cmd_cache_rm)

    p = sub.add_parser("mirror", help="copy a repo from another Hub-compatible endpoint, with the same commit shas",
                       description="Copy every branch and tag (or --revision ones) of SRC_ENDPOINT/REPO (e.g. "
                                   "https://huggingface.co/gpt2, http://host:8080/datasets/ns/name) into the hub at "
                                   "--endpoint, through git smart HTTP and the LFS batch API: same commit shas, LFS "
                                   "content verified. Creates the repo (same type and visibility) when missing. "
                                   "Re-run it to fetch only what changed; an interrupted run resumes.")
    _common(p, repo_type=False)
    p.add_argument("source", metavar="SRC_ENDPOINT/REPO")
    p.add_argument("--to", metavar="REPO", help="the destination repo id (default: the source's)")
    p.add_argument("--revision", action="append", metavar="REV",
                   help="mirror only this branch or tag (repeatable; default: all)")
    p.add_argument("--src-token", help="token for the source endpoint (default: anonymous)")
    p.add_argument("--src-token-file", metavar="FILE", help="read the source's token from FILE (keeps it off argv)")
    p.add_argument("--no-prune", action="store_true",
                   help="keep destination branches and tags the source no longer has (default: delete them)")
    p.add_argument("--work-dir", help="staging folder (default: $HF_HOME/hubfs/mirrors/<host>/<repo>)")
    p.add_argument("--max-staged", type=_size, default=2 << 30, metavar="SIZE",
                   help="LFS content kept on local disk at a time: downloaded, uploaded, removed (default 2GiB)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_mirror)

    auth = sub.add_parser("auth", help="log in and out").add_subparsers(dest="action", required=True)
    p = auth.add_parser("login", help="save a token (asked for, hidden, unless --token) after checking it")
    _common(p, repo_type=False)
    p.add_argument("--add-to-git-credential", action="store_true",
                   help="also store it with `git credential approve` for the endpoint's host")
    p.set_defaults(func=cmd_auth_login)
    p = auth.add_parser("logout", help="remove the saved token (and git's stored credential for the endpoint)")
    _common(p, repo_type=False)
    p.set_defaults(func=cmd_auth_logout)
    p = auth.add_parser("token", help="print the token in use")
    _common(p, repo_type=False)
    p.set_defaults(func=cmd_auth_token)
    p = auth.add_parser("whoami")
    _common(p, repo_type=False)
    p.set_defaults(func=cmd_auth_whoami)

