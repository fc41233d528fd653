"""Which LFS objects a checkout needs: pointer blobs of commits' trees, and git-lfs's fetch include/exclude rules.

Trees are listed by git itself (``git ls-tree -r -l``) and the candidate blobs (under 1,024 bytes, git-lfs's
cutoff) read in one ``git cat-file --batch``; a blob is a pointer only if it parses strictly
(:meth:`hubfs.lfs.LfsPointer.parse`). Before the pack has arrived, the hub's tree listing names them
(:func:`listed_pointers`): a clone's download starts from it (:mod:`git_remote_hf.background`).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from git_remote_hf.gitconfig import GitConfig
from git_remote_hf.lfs_store import lfs_enabled
from hubfs.errors import HubfsError
from hubfs.lfs import LFS_ONLY_HEADER, LFS_ONLY_PARAM, POINTER_MAX_SIZE, LfsPointer, is_valid_oid

if TYPE_CHECKING:
    from hubfs.client.api import HubClient

__all__ = ["PathFilter", "hub_listing", "listed_pointers", "listed_tree", "skip_smudge", "tree_pointers",
           "wanted_objects"]


def skip_smudge(env: Mapping[str, str] | None = None) -> bool:
    """``GIT_LFS_SKIP_SMUDGE`` set to a true value: leave pointers in the worktree, fetch nothing."""
    value = (os.environ if env is None else env).get("GIT_LFS_SKIP_SMUDGE", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def _git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(["git", "--git-dir", str(git_dir), *args], input=stdin, capture_output=True, check=False)
    if proc.returncode != 0:
        raise HubfsError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


@dataclass(frozen=True)
class PathFilter:
    """``lfs.fetchinclude`` / ``lfs.fetchexclude``: comma-separated gitignore-style patterns. A path is
    fetched when it matches an include (or there are none) and no exclude."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def from_git(cls, git_dir: Path, config: GitConfig | None = None) -> PathFilter:
        """The patterns in the repo's git config (any level; ``config`` when the caller read it already)."""
        config = config or GitConfig.read(Path(git_dir))
        include = [p for v in config.get_all("lfs.fetchinclude") if v for p in _split(v)]
        exclude = [p for v in config.get_all("lfs.fetchexclude") if v for p in _split(v)]
        return cls(tuple(include), tuple(exclude))

    def allows(self, path: str) -> bool:
        if self.include and not any(_matches(path, p) for p in self.include):
            return False
        return not any(_matches(path, p) for p in self.exclude)


def _matches(path: str, pattern: str) -> bool:
    """git-lfs's rules, in short: ``dir/`` or ``dir`` matches what is under it; a pattern without ``/``
    matches any path component; one with ``/`` matches the whole path (``*`` and ``**`` cross ``/``)."""
    pattern = pattern.lstrip("/")
    if pattern.endswith("/"):
        pattern = pattern.rstrip("/")
        return path.startswith(pattern + "/") or ("/" not in pattern and f"/{pattern}/" in f"/{path}")
    if "/" not in pattern:
        parts = path.split("/")
        return any(fnmatch.fnmatchcase(part, pattern) for part in parts)
    pattern = pattern.replace("**/", "*").replace("/**", "/*")
    return fnmatch.fnmatchcase(path, pattern) or path.startswith(pattern + "/")


def tree_pointers(git_dir: Path, tips: Iterable[str], paths: PathFilter | None = None
                  ) -> list[tuple[str, LfsPointer]]:
    """``(path, pointer)`` for every LFS pointer blob in the trees of ``tips`` that ``paths`` allows."""
    small: dict[str, list[str]] = {}  # blob sha -> paths
    for tip in dict.fromkeys(tips):
        listing = _git(git_dir, "ls-tree", "-r", "-l", "-z", "--full-tree", tip)
        for record in listing.split(b"\0"):
            if not record:
                continue
            meta, _, name = record.partition(b"\t")
            mode, kind, blob_id, blob_size = meta.split()
            if kind != b"blob" or mode == b"120000" or not blob_size.isdigit() or int(blob_size) >= POINTER_MAX_SIZE:
                continue
            path = name.decode("utf-8", "surrogateescape")
            if paths is None or paths.allows(path):
                small.setdefault(blob_id.decode(), []).append(path)
    if not small:
        return []
    shas = list(small)
    data = _git(git_dir, "cat-file", "--batch", stdin="".join(s + "\n" for s in shas).encode())
    out: list[tuple[str, LfsPointer]] = []
    pos = 0
    for sha in shas:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        if len(header) < 3 or header[1] != b"blob":
            pos = end + 1
            continue
        size = int(header[2])
        blob = data[end + 1:end + 1 + size]
        pos = end + 1 + size + 1
        pointer = LfsPointer.parse(blob)
        if pointer is not None:
            out.extend((path, pointer) for path in small[sha])
    return out


def wanted_objects(git_dir: Path, tips: list[str], config: GitConfig | None = None) -> list[tuple[str, LfsPointer]]:
    """``(path, pointer)`` of the LFS files in the trees of ``tips`` (in path order) that a checkout smudges
    and ``lfs.fetchinclude``/``lfs.fetchexclude`` allow: none with ``GIT_LFS_SKIP_SMUDGE=1``, or when the
    user opted out of the helper's LFS handling (:func:`~git_remote_hf.lfs_store.lfs_enabled`)."""
    if skip_smudge() or not tips:
        return []
    config = config or GitConfig.read(Path(git_dir))
    if not lfs_enabled(git_dir, config=config):
        return []
    return tree_pointers(git_dir, tips, PathFilter.from_git(git_dir, config))


def listed_pointers(entries: Iterable[object], paths: PathFilter | None = None, batch: int = 100
                    ) -> Iterator[list[tuple[str, LfsPointer]]]:
    """``(path, pointer)`` of the LFS files among the entries of a hub tree listing (``GET .../tree/<sha>?
    recursive=true``: ``{"type": "file", "path", "lfs": {"oid", "size"}}``), in groups of up to ``batch`` as
    the (paginated, lazily fetched) ``entries`` come; entries that are not well-formed are skipped."""
    group: list[tuple[str, LfsPointer]] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("type") != "file" or not isinstance(entry.get("lfs"), dict):
            continue
        path, oid, size = entry.get("path"), entry["lfs"].get("oid"), entry["lfs"].get("size")
        if not isinstance(path, str) or not isinstance(oid, str) or not is_valid_oid(oid) \
                or type(size) is not int or size < 0:
            continue
        if paths is None or paths.allows(path):
            group.append((path, LfsPointer(oid, size)))
            if len(group) >= batch:
                yield group
                group = []
    if group:
        yield group


def listed_tree(list_dir: Callable[[str, bool], Iterable[object]], paths: PathFilter | None = None,
                workers: int = 4, root: Iterable[object] | None = None) -> Iterator[list[tuple[str, LfsPointer]]]:
    """:func:`listed_pointers` of a whole commit, listed folder by folder: ``list_dir(path, recursive)`` gives
    the tree entries of ``path`` ("" for the root). The root is listed alone, then each top-level folder
    recursively, ``workers`` at a time (a paginated recursive listing of the root would be one request
    after another, each as costly to the server as the whole tree); groups come as folders are listed."""
    root = list(list_dir("", False) if root is None else root)  # ``root``: that listing, asked already
    yield from listed_pointers(root, paths)
    folders = [e["path"] for e in root if isinstance(e, dict) and e.get("type") == "directory"
               and isinstance(e.get("path"), str)]
    if not folders:
        return
    with ThreadPoolExecutor(min(workers, len(folders)), thread_name_prefix="lfs-list") as pool:
        listings = [pool.submit(lambda folder: list(list_dir(folder, True)), folder) for folder in folders]
        for done in as_completed(listings):
            yield from listed_pointers(done.result(), paths)


def hub_listing(client: HubClient, url: str, paths: PathFilter | None = None
                ) -> Iterator[list[tuple[str, LfsPointer]]]:
    """:func:`listed_pointers` of the commit whose tree API is ``url`` (``.../tree/<sha>``). The first
    request is the root's listing asking for hubfs's LFS-only listing of the whole commit as well: a
    hub that has it (``hubfs serve``) says so in its answer and that one listing is all; any other
    answers the root's listing, and each folder is listed after it (:func:`listed_tree`)."""
    def list_dir(path: str, recursive: bool) -> Iterator[Any]:
        where = url + ("/" + quote(path, safe="") if path else "")
        return client.paginate(where, {"recursive": str(recursive).lower(), "expand": "false"})

    first = client.transport.request("GET", url, params={"recursive": "false", "expand": "false",
                                                         LFS_ONLY_PARAM: "all"})
    if first.headers.get(LFS_ONLY_HEADER) == "all":
        return listed_pointers(client.paginate_from(first), paths)
    return listed_tree(list_dir, paths, root=client.paginate_from(first))
