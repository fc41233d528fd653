"""A whole hub as one folder (``hubfs mount --all``): ``ns/name``, ``datasets/ns/name``, ``spaces/ns/name``.

Nothing is listed up front. Looking up a namespace ``ns`` lists the repos of that type the caller may
see (``GET /api/{models|datasets|spaces}?author=ns``, one request per 1,000 repos, kept ``ttl``
seconds): the namespace exists when that list is not empty, and ``ls`` of it shows the list. A repo
``ns/name`` in the list is a folder at once (no request); its files appear on the first lookup inside
it, which pins the repo's main branch (:class:`~hubfs.mount.repo.RepoView`). A name not in the list is
asked for directly before ENOENT (a repo created since the list was made); ``name@rev`` mounts another
revision of the same repo the same way. A private repo the token cannot see is simply absent (ENOENT),
as the hub hides it. Misses are remembered ``NEGATIVE_TTL`` seconds.

The root lists ``datasets``, ``spaces`` and the model namespaces found so far; ``datasets`` and
``spaces`` list the namespaces of their type found so far. Folder link counts are 2 + subfolders where
that costs no request (a repo's folder before anything inside it was looked at shows 1, "not counted").

A read-write whole-hub mount (:mod:`hubfs.mount.hub_writes`) puts a layer over a repo (:meth:`HubRoot.layer`:
its staged changes on top of the view); :meth:`HubRoot.place` tells where a mount path lies.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from hubfs.client.api import HubClient
from hubfs.errors import InvalidNameError, NotFoundError
from hubfs.mount.repo import NEGATIVE_TTL, ChangeListener, Namespace, Node, RepoView
from hubfs.paths import RepoRef, RepoType, validate_name, validate_revision

TYPE_FOLDERS = {"datasets": RepoType.DATASET, "spaces": RepoType.SPACE}
NamespaceKey = tuple[RepoType, str]
RepoKey = tuple[RepoType, str]  # (type, "ns/name[@rev]")
ROOT, NAMESPACE, REPO, INSIDE = 0, 1, 2, 3  # Place.depth


@dataclass(frozen=True)
class Place:
    """Where a mount path lies: ``depth`` ROOT (the root or a type folder), NAMESPACE, REPO (a repo's folder)
    or INSIDE a repo; ``key`` of the repo (REPO, INSIDE) and ``rest``, the path inside it (INSIDE)."""

    depth: int
    key: RepoKey | None = None
    rest: str = ""


class HubRoot:
    """The namespace of a whole-hub mount (see the module docstring). Thread-safe."""

    def __init__(self, client: HubClient, *, ttl: float = 10.0, recheck: bool = False,
                 on_change: ChangeListener | None = None) -> None:
        self.client, self.ttl, self.recheck, self.on_change = client, ttl, recheck, on_change
        self.born = time.time_ns()
        self._lock = threading.Lock()
        self._names: dict[NamespaceKey, tuple[float, frozenset[str]]] = {}  # (expiry, repo names)
        self._views: dict[tuple[RepoType, str], RepoView] = {}  # (type, "ns/name[@rev]")
        self._misses: dict[tuple[RepoType, str], float] = {}  # (type, "ns" or "ns/name[@rev]") -> expiry
        self._layers: dict[RepoKey, Namespace] = {}  # what a repo shows instead of its view (read-write mounts)

    # -- the namespace --------------------------------------------------------------------------------

    def lookup(self, path: str) -> Node | None:
        parts = path.split("/") if path else []
        repo_type, parts = self._typed(parts)
        if not parts:  # the root or a type folder
            return self._folder(2 + len(self.listdir(path) or ()))
        names = self._repo_names(repo_type, parts[0])
        if not names:
            return None
        if len(parts) == 1:
            return self._folder(2 + len(names))  # a namespace
        view = self._known_view(repo_type, parts[0], parts[1])
        if view is None and len(parts) == 2 and parts[1] in names:
            return self._folder()  # a listed repo: no request until something inside it is looked at
        view = view or self._view(repo_type, parts[0], parts[1])
        if view is None:
            return None
        shown = self._shown((repo_type, f"{parts[0]}/{parts[1]}"), view)
        if len(parts) == 2:
            top = shown.lookup("") if view.listed else None
            return self._folder(top.nlink if top is not None else 1)
        return shown.lookup("/".join(parts[2:]))

    def place(self, path: str) -> Place:
        """Where mount path ``path`` lies (nothing is asked of the hub)."""
        parts = path.split("/") if path else []
        repo_type, parts = self._typed(parts)
        if len(parts) < 2:
            return Place(ROOT if not parts else NAMESPACE)
        key = (repo_type, f"{parts[0]}/{parts[1]}")
        return Place(REPO, key) if len(parts) == 2 else Place(INSIDE, key, "/".join(parts[2:]))

    def repo(self, key: RepoKey) -> RepoView | None:
        """The view of the repo ``key`` names (created on first use); None when the caller cannot see it."""
        ns, _, name_rev = key[1].partition("/")
        return self._view(key[0], ns, name_rev)

    def layer(self, key: RepoKey, shown: Namespace) -> None:
        """Show ``shown`` (a namespace of the repo's paths, e.g. its view with staged changes on top) for
        repo ``key`` from now on."""
        with self._lock:
            self._layers[key] = shown

    def _shown(self, key: RepoKey, view: RepoView) -> Namespace:
        with self._lock:
            return self._layers.get(key, view)

    def listdir(self, path: str) -> list[tuple[str, bool]] | None:
        parts = path.split("/") if path else []
        repo_type, parts = self._typed(parts)
        if not parts:
            found = self._known_namespaces(repo_type)
            extra = list(TYPE_FOLDERS) if not path else []
            return [(name, True) for name in sorted({*extra, *found})]
        if len(parts) == 1:
            names = self._repo_names(repo_type, parts[0])
            return [(name, True) for name in sorted(names)] if names else None
        view = self._view(repo_type, parts[0], parts[1])
        if view is None:
            return None
        return self._shown((repo_type, f"{parts[0]}/{parts[1]}"), view).listdir("/".join(parts[2:]))

    def views(self) -> list[RepoView]:
        with self._lock:
            return [v for v in self._views.values() if v.listed]

    # -- namespaces and repos -------------------------------------------------------------------------

    @staticmethod
    def _typed(parts: list[str]) -> tuple[RepoType, list[str]]:
        if parts and parts[0] in TYPE_FOLDERS:
            return TYPE_FOLDERS[parts[0]], parts[1:]
        return RepoType.MODEL, parts

    def _folder(self, nlink: int = 1) -> Node:
        return Node(True, 0, self.born, nlink=nlink)

    def _known_namespaces(self, repo_type: RepoType) -> set[str]:
        with self._lock:
            listed = {ns for (t, ns), (_, names) in self._names.items() if t is repo_type and names}
            return listed | {rid.split("/")[0] for (t, rid) in self._views if t is repo_type}

    def _repo_names(self, repo_type: RepoType, ns: str) -> frozenset[str]:
        """The repos of ``ns`` the caller may see (empty: no such namespace for this type)."""
        try:
            validate_name(ns, "namespace")
        except InvalidNameError:
            return frozenset()
        now = time.monotonic()
        key = (repo_type, ns)
        with self._lock:
            hit = self._names.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        items = self.client.paginate(f"/api/{repo_type.plural}", {"author": ns, "limit": 1000})
        names = frozenset(str(item["id"]).split("/", 1)[1] for item in items if "/" in str(item.get("id", "")))
        with self._lock:
            self._names[key] = (now + self.ttl, names)
        return names

    def _known_view(self, repo_type: RepoType, ns: str, name_rev: str) -> RepoView | None:
        with self._lock:
            return self._views.get((repo_type, f"{ns}/{name_rev}"))

    def _view(self, repo_type: RepoType, ns: str, name_rev: str) -> RepoView | None:
        """The view of ``ns/name[@rev]`` (created on first use: one request); None when the caller cannot
        see it (remembered ``NEGATIVE_TTL`` seconds)."""
        key = (repo_type, f"{ns}/{name_rev}")
        with self._lock:
            view = self._views.get(key)
            if view is not None:
                return view
            if self._misses.get(key, 0) > time.monotonic():
                return None
        name, _, rev = name_rev.partition("@")
        try:
            validate_name(name, "repo name")
            if rev:
                validate_revision(rev)
        except InvalidNameError:
            return None
        try:
            view = RepoView(self.client, RepoRef(repo_type, f"{ns}/{name}"), rev or None, prefix=self._prefix(key),
                            recheck=self.recheck, on_change=self.on_change)
        except NotFoundError:
            with self._lock:
                self._misses[key] = time.monotonic() + NEGATIVE_TTL
            return None
        with self._lock:
            return self._views.setdefault(key, view)

    @staticmethod
    def _prefix(key: tuple[RepoType, str]) -> str:
        repo_type, rid = key
        return f"{repo_type.url_prefix}{rid}"


__all__ = ["INSIDE", "NAMESPACE", "REPO", "ROOT", "TYPE_FOLDERS", "HubRoot", "Place", "RepoKey"]
