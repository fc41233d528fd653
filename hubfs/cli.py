"""The ``hubfs`` command: ``serve`` the embedded hub and manage its users and tokens.

Exit codes: 0 success, 1 a hubfs error (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hubfs.errors import HubfsError


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data or os.environ.get("HUBFS_DATA") or "hubfs-data")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    text = text.strip().lower().removesuffix("ib").removesuffix("b")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def cmd_serve(args: argparse.Namespace) -> int:
    from hubfs.server.app import serve

    serve(_data_dir(args), args.host, args.port, public_url=args.public_url,
          regular_max_size=args.regular_max_size, multipart_chunk_size=args.multipart_chunk_size,
          access_log=args.access_log, cdn_url=args.cdn_url)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from hubfs.server.hub import Hub

    hub = Hub(_data_dir(args))
    hub.add_user(args.name, org=args.org)
    print(f"user {args.name} ready" + (f" (member of {args.org})" if args.org else ""))
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from hubfs.server.hub import Hub

    hub = Hub(_data_dir(args))
    token = hub.meta.create_token(args.user, args.token_name or f"{args.user}-{args.role}", args.role)
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        print(f"{args.role} token for {args.user} written to {args.out}", file=sys.stderr)
    else:
        print(token)
    return 0


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
    serve.add_argument("--cdn-url", help="redirect LFS downloads to this origin (e.g. another `hubfs serve` "
                                         "on the same --data, or a caching proxy in front of this hub)")
    serve.set_defaults(func=cmd_serve)

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="add a user (and make them a member of --org)")
    data_arg(add)
    add.add_argument("name")
    add.add_argument("--org")
    add.set_defaults(func=cmd_user_add)

    token = sub.add_parser("token", help="manage access tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a token; printed once on stdout, or written to --out")
    data_arg(create)
    create.add_argument("user")
    create.add_argument("--role", choices=["read", "write"], default="write")
    create.add_argument("--name", dest="token_name")
    create.add_argument("--out", help="write the token to this file (mode 0600) instead of stdout")
    create.set_defaults(func=cmd_token_create)

    from hubfs.commands import register

    register(sub)
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
