"""The client commands of ``hubfs`` (following the ``hf`` CLI's habits): download, upload, ls, cat,
repo create|delete|info, cache ls|rm, auth login|logout|whoami.

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

from hubfs.config import HubConfig, token_path
from hubfs.errors import BadRequestError, NotFoundError
from hubfs.paths import RepoPath


def _client(args: argparse.Namespace) -> Any:
    from hubfs.client import HubClient

    return HubClient(config=HubConfig.load(args.endpoint, args.token, getattr(args, "cache_dir", None)))


def _common(p: argparse.ArgumentParser, repo_type: bool = True) -> None:
    p.add_argument("--endpoint", help="hub URL (default: $HF_ENDPOINT or https://huggingface.co)")
    p.add_argument("--token", help="access token (default: $HF_TOKEN or the token file)")
    if repo_type:
        p.add_argument("--repo-type", choices=["model", "dataset", "space"], default="model")


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
    print(_client(args).create_repo(args.repo_type, args.repo_id, private=args.private, exist_ok=args.exist_ok,
                                    space_sdk=args.space_sdk))
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


def cmd_cache_ls(args: argparse.Namespace) -> int:
    from hubfs.client.cache import HubCache

    repos = HubCache(HubConfig.load(cache_dir=args.cache_dir).cache_dir).scan()
    print(f"{'REPO ID':<40} {'TYPE':<8} {'SIZE':>12} {'FILES':>6}  REVISIONS")
    for r in repos:
        revs = ", ".join(f"{sha[:8]}" + (f" ({', '.join(refs)})" if refs else "") for sha, refs in r.revisions.items())
        print(f"{r.repo_id:<40} {r.repo_type:<8} {_human(r.size):>12} {r.files:>6}  {revs}")
    print(f"\n{len(repos)} repos, {_human(sum(r.size for r in repos))} on disk")
    return 0


def cmd_cache_rm(args: argparse.Namespace) -> int:
    from hubfs.client.cache import HubCache

    cache = HubCache(HubConfig.load(cache_dir=args.cache_dir).cache_dir)
    freed = 0
    for target in args.targets:
        rp = RepoPath.parse(target) if "/" in target else None
        if rp is None:
            raise BadRequestError(f"{target!r}: expected a repo id like ns/name or datasets/ns/name.")
        if not cache.repo_dir(rp.repo_type.value, rp.repo_id).exists():
            raise NotFoundError(f"{target} is not in the cache.")
        freed += cache.remove(rp.repo_type.value, rp.repo_id)
    print(f"removed {len(args.targets)} repos, freed {_human(freed)}")
    return 0


def cmd_auth_login(args: argparse.Namespace) -> int:
    from hubfs.client import HubClient

    token = args.token or (input("Token: ").strip() if sys.stdin.isatty() else sys.stdin.readline().strip())
    if not token:
        raise BadRequestError("No token given: pass --token or type it on stdin.")
    name = HubClient(args.endpoint, token).whoami()["name"]
    path = token_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(f"logged in as {name}; token saved to {path}")
    return 0


def cmd_auth_logout(args: argparse.Namespace) -> int:
    path = token_path()
    if path.exists():
        path.unlink()
        print(f"logged out: removed {path}")
    else:
        print("not logged in")
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
    p = repo.add_parser("create")
    _common(p)
    p.add_argument("repo_id")
    p.add_argument("--private", action="store_true")
    p.add_argument("--exist-ok", action="store_true")
    p.add_argument("--space-sdk", choices=["gradio", "streamlit", "docker", "static"])
    p.set_defaults(func=cmd_repo_create)
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
    p = cache.add_parser("ls")
    p.add_argument("--cache-dir")
    p.set_defaults(func=cmd_cache_ls)
    p = cache.add_parser("rm")
    p.add_argument("targets", nargs="+", help="repo ids (datasets/ns/name for datasets)")
    p.add_argument("--cache-dir")
    p.add_argument("-y", "--yes", action="store_true")
    p.set_defaults(func=cmd_cache_rm)

    auth = sub.add_parser("auth", help="log in and out").add_subparsers(dest="action", required=True)
    p = auth.add_parser("login")
    _common(p, repo_type=False)
    p.set_defaults(func=cmd_auth_login)
    p = auth.add_parser("logout")
    p.set_defaults(func=cmd_auth_logout)
    p = auth.add_parser("whoami")
    _common(p, repo_type=False)
    p.set_defaults(func=cmd_auth_whoami)

