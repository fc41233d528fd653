"""The embedded hub's service layer: who the caller is, what they may see and write, and the
operations that touch git, the LFS store and the metadata together (create, commit, index).

Routes parse and format the wire contract; everything they decide goes through :class:`Hub`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import uuid
from base64 import b64decode
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubfs.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GatedRepoError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from hubfs.paths import is_pr_ref, public_repo_id, validate_name, validate_repo_id, validate_revision
from hubfs.server.cards import DEFAULT_GITATTRIBUTES, CardParser, card_tags, readme_text, space_readme
from hubfs.server.db import open_database
from hubfs.server.db.url import database_url
from hubfs.server.faults import fault_point
from hubfs.server.gc import ReclaimLock
from hubfs.server.git_store import Change, GitRepo, GitStore
from hubfs.server.lfs_store import LfsStore
from hubfs.server.metadata import TOKEN_ID_LEN, Metadata, Repo, hash_token
from hubfs.server.objects import Objects
from hubfs.server.xet.store import XetStore

log = logging.getLogger("hubfs.server")
DEFAULT_REGULAR_MAX = 10 * 1024 * 1024
DEFAULT_MULTIPART_CHUNK = 64 * 1024 * 1024
ADMIN = "admin"
RESERVED_NAMES = ("datasets", "spaces", "models", "api", "kernels", "buckets")  # URL words, never a namespace


@dataclass(frozen=True)
class Caller:
    """The authenticated user behind a request (``user`` None: anonymous), the token's role and its
    public id (see ``Metadata.list_tokens``)."""

    user: str | None = None
    role: str | None = None
    token_id: str | None = None


ANONYMOUS = Caller()


class Hub:
    """One hub's state in ``data_dir``: ``hub.sqlite``, ``repos/``, ``lfs/``, ``xet/``, ``tmp/``, ``secret.key``."""

    def __init__(self, data_dir: Path, *, regular_max_size: int = DEFAULT_REGULAR_MAX,
                 multipart_chunk_size: int = DEFAULT_MULTIPART_CHUNK, public_url: str | None = None,
                 cdn_url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = open_database(database_url(self.data_dir))  # DATA/hub.sqlite or PostgreSQL (DATA/database.json)
        self.meta = Metadata(self.db)
        self.git = GitStore(self.data_dir, self.db)
        self.lfs = LfsStore(self.data_dir)
        self.xet = XetStore(self.data_dir, self.lfs.tmp_dir, self.db)
        self.objects = Objects(self.lfs, self.xet)
        self.regular_max_size = regular_max_size
        self.multipart_chunk_size = multipart_chunk_size
        self.public_url = public_url.rstrip("/") if public_url else None
        self.cdn_url = cdn_url.rstrip("/") if cdn_url else None
        self._secret = _load_secret(self.data_dir / "secret.key")
        self.reclaim = ReclaimLock(self.data_dir / "gc.lock")  # gc: exclusive; writers that reuse objects: shared
        self.cards = CardParser()
        # History walks (lastCommit of expanded listings) are CPU-bound Python: one at a time per process,
        # so that they queue instead of starving every other request of the interpreter lock.
        self.history_walks = threading.BoundedSemaphore(1)

    # -- start-up ------------------------------------------------------------------------------

    def bootstrap(self) -> Path | None:
        """First start: create user ``admin`` and a write token in ``admin.token`` (0600).

        Every start: drop lock files and dead upload temporaries a killed process left, and re-index
        cards that lag behind. Returns the token file path when it was just created.
        """
        created = None
        if self.meta.account(ADMIN) is None:
            self.meta.add_account(ADMIN)
            token = self.meta.create_token(ADMIN, "admin", "write")
            path = self.data_dir / "admin.token"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            created = path
        self.git.recover()
        removed, freed = self.lfs.clean_temporaries()
        if removed:
            log.info("removed %d dead upload temporaries (%d bytes)", removed, freed)
        self.reconcile()
        return created

    def reconcile(self) -> None:
        """Bring the card index in line with each repo's default branch (after a crash, or a push).

        Cards stored by older versions (unbounded, in ``repos.card_data``) are re-indexed too.
        """
        legacy = self.meta.legacy_card_repos()
        for repo in self.meta.all_repos():
            if not self.git.exists(repo.type, repo.repo_id):
                continue
            with self.git.open(repo.type, repo.repo_id) as g:
                head = g.branch_head("refs/heads/main")
                if head and (head != repo.indexed_sha or repo.id in legacy):
                    self.index_card(repo, g, head)

    # -- identity and access -------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        """Bearer token, or Basic with the token as password (the user name is ignored, as on the Hub)."""
        if not authorization:
            return ANONYMOUS
        scheme, _, value = authorization.strip().partition(" ")
        token = value.strip()
        if scheme.lower() == "basic":
            try:
                token = b64decode(token).decode().partition(":")[2]
            except Exception:  # noqa: BLE001 - malformed Basic credentials are just invalid
                token = ""
        elif scheme.lower() != "bearer":
            token = ""
        info = self.meta.lookup_token(token) if token else None
        if info is None:
            raise AuthenticationError("Invalid credentials in Authorization header")
        return Caller(info.user, info.role, hash_token(token)[:TOKEN_ID_LEN])

    def visible_repo(self, caller: Caller, repo_type: str, repo_id: str) -> Repo:
        """The repo if it exists and the caller may see it; RepoNotFound otherwise (401 if anonymous)."""
        validate_repo_id(repo_id, canonical=True)
        repo = self.meta.get_repo(repo_type, repo_id)
        if repo is None or (repo.private and not (caller.user and self.meta.is_member(caller.user, repo.namespace))):
            raise repo_not_found(repo_type, repo_id, caller)
        return repo

    def writable_repo(self, caller: Caller, repo_type: str, repo_id: str) -> Repo:
        """The repo if the caller holds a write token of its owner or of a member of its org."""
        repo = self.visible_repo(caller, repo_type, repo_id)
        self.require_write(caller, repo.namespace)
        return repo

    def require_write(self, caller: Caller, namespace: str) -> None:
        if caller.user is None:
            raise AuthenticationError("You must be authenticated with a write token to do this.")
        if not self.meta.can_write_namespace(caller.user, namespace):
            raise PermissionDeniedError(f"You don't have the rights to write to the {namespace} namespace.")
        if caller.role != "write":
            raise PermissionDeniedError("This token is read-only: a write token is needed.")

    def require_signed_in_writer(self, caller: Caller, what: str) -> str:
        """The caller's user name when signed in with a write token (``what`` names the action refused)."""
        if caller.user is None:
            raise AuthenticationError(f"You must be authenticated to {what}.")
        if caller.role != "write":
            raise PermissionDeniedError("This token is read-only: a write token is needed.")
        return caller.user

    def repo_for_commit(self, caller: Caller, repo_type: str, repo_id: str, revision: str, create_pr: bool) -> Repo:
        """The repo a commit (or preupload) to ``revision`` may write: the pull request write rules.

        Branch commits need namespace write. Opening a PR needs any signed-in write token (the Hub's
        rule); pushing to ``refs/pr/N`` needs that too, and to be the PR's author or an owner.
        """
        if not (create_pr or is_pr_ref(revision)):
            return self.writable_repo(caller, repo_type, repo_id)
        repo = self.visible_repo(caller, repo_type, repo_id)
        user = self.require_signed_in_writer(caller, "open or update a pull request")
        if is_pr_ref(revision) and not self.meta.can_write_namespace(user, repo.namespace):
            pr = self.meta.discussion(repo, int(revision.rsplit("/", 1)[1]))
            if pr is None or pr["author"] != user:
                raise PermissionDeniedError("Only the PR's author or the repo's owners can push to it.")
        return repo

    def require_lfs_upload(self, caller: Caller, repo: Repo, ref: str) -> None:
        """LFS uploads for a branch need namespace write; for a pull request (no ref, or ``refs/pr/N``)
        any signed-in write token will do, as for :meth:`repo_for_commit`."""
        self.require_write(caller, repo.namespace if ref and not ref.startswith("refs/pr/") else (caller.user or ""))

    def check_gate(self, caller: Caller, repo: Repo) -> None:
        """Gated repos serve files only to members and granted users."""
        if not repo.gated:
            return
        if caller.user and (self.meta.is_member(caller.user, repo.namespace)
                            or self.meta.access_status(repo, caller.user) == "accepted"):
            return
        raise GatedRepoError(
            f"Access to {repo.type} {repo.public_id} is restricted. You must have access to it and be authenticated "
            "to access it. Please ask the repo owner for access.",
            status=401 if caller.user is None else 403,
        )

    # -- repositories --------------------------------------------------------------------------

    def create_repo(self, caller: Caller, repo_type: str, repo_id: str, *, private: bool | None,
                    sdk: str | None = None) -> Repo:
        """Create a repo with the Hub's initial commit (a default ``.gitattributes``, and for a Space
        its default README). ``repo_id`` without a namespace is a canonical repo (the site admin's).
        ``private`` None: the org's default visibility (public unless the org defaults to private)."""
        ns, name = validate_repo_id(repo_id, canonical=True)
        repo_id = f"{ns}/{name}"
        if ns in RESERVED_NAMES or (not ns and name in RESERVED_NAMES):
            raise BadRequestError(f"{ns or name} is a reserved name.")
        if not ns and caller.user != ADMIN:
            raise PermissionDeniedError("Only the hub's admin can create a repo without a namespace.")
        self.require_write(caller, ns)
        existing = self.meta.get_repo(repo_type, repo_id)
        if existing is not None:
            if existing.private and not self.meta.is_member(caller.user or "", ns):
                raise PermissionDeniedError("You don't have the rights to create this repo.")
            raise ConflictError(f"You already created this {repo_type} repo")
        if private is None:
            private = bool(ns) and self.meta.org_default_private(ns)
        repo = self.meta.create_repo(repo_type, repo_id, private=private, sdk=sdk)
        try:
            with self.git.init(repo_type, repo_id) as g:
                changes = [Change("put", ".gitattributes", g.add_blob(DEFAULT_GITATTRIBUTES.encode()))]
                if repo_type == "space":
                    changes.append(Change("put", "README.md", g.add_blob(space_readme(name, sdk or "gradio").encode())))
                tree = g.build_tree(None, changes)
                sha = g.write_commit(tree, [], "initial commit", self.signature(caller.user or ADMIN))
                g.set_ref("refs/heads/main", sha, None)
                self.index_card(repo, g, sha)
        except BaseException:
            self.git.delete(repo_type, repo_id)
            self.meta.delete_repo(repo)
            raise
        return repo

    def delete_repo(self, caller: Caller, repo_type: str, repo_id: str) -> None:
        repo = self.writable_repo(caller, repo_type, repo_id)
        self.meta.delete_repo(repo)
        self.git.delete(repo_type, repo_id)

    def move_repo(self, caller: Caller, repo_type: str, from_id: str, to_id: str) -> None:
        """Rename ``from_id`` to ``to_id``; 409 when the target exists (other than by case)."""
        repo = self.writable_repo(caller, repo_type, from_id)
        ns, name = validate_repo_id(to_id, canonical=True)
        if ns.lower() == repo.namespace.lower():
            ns = repo.namespace  # namespaces are found without regard to case too
        to_id = f"{ns}/{name}"
        if ns in RESERVED_NAMES or (not ns and name in RESERVED_NAMES):
            raise BadRequestError(f"{ns or name} is a reserved name.")
        self.require_write(caller, ns)
        target = self.meta.get_repo(repo_type, to_id)
        if target is not None and target.id != repo.id:
            raise ConflictError(f"Cannot move {repo_type} {repo.public_id} to {public_repo_id(to_id)}: "
                                f"you already have a {repo_type} repo with that name.")
        old_id = repo.repo_id
        self.meta.move_repo(repo, to_id)
        if old_id != to_id:
            self.git.move(repo_type, old_id, to_id)

    # -- commits -------------------------------------------------------------------------------

    def signature(self, user: str) -> str:
        row = self.meta.account(user)
        email = row["email"] if row else f"{user}@users.noreply.hubfs"
        return f"{user} <{email}>"

    def write_ref_for(self, g: GitRepo, revision: str) -> str:
        """The ref a commit to ``revision`` moves: an existing branch, or ``refs/pr/N``."""
        validate_revision(revision)
        if is_pr_ref(revision):
            if g.branch_head(revision) is None:
                raise RevisionNotFoundError(f"Invalid rev id: {revision}")
            return revision
        ref = revision if revision.startswith("refs/heads/") else f"refs/heads/{revision}"
        if g.branch_head(ref) is None:
            raise RevisionNotFoundError(f"Invalid rev id: {revision}")
        return ref

    def commit(self, caller: Caller, repo: Repo, g: GitRepo, ref: str, changes: list[Change], *, summary: str,
               description: str, parent: str | None, create_pr: bool, pr_title: str | None = None) -> tuple[str, int | None]:
        """Commit to ``ref`` (or, with ``create_pr``, open PR N at ``refs/pr/N`` based on it).

        Returns (commit sha, PR number or None). The card index follows commits to main.
        """
        message = summary.strip() or "Update files"
        if description.strip():
            message += "\n\n" + description.strip()
        author = self.signature(caller.user or ADMIN)
        if create_pr:
            base = g.branch_head(ref)
            if parent and not (base or "").startswith(parent.lower()):
                raise PreconditionFailedError("A commit has happened since. Please refresh and try again.")
            tree = g.build_tree(base, changes)
            sha = g.write_commit(tree, [base] if base else [], message, author)
            user = caller.user or ADMIN
            events = [comment_event(user, description)] if description.strip() else []
            num = self.meta.create_discussion(repo, title=pr_title or summary or "Upload files", author=user,
                                              is_pr=True, base_ref=ref, events=events)
            g.set_ref(f"refs/pr/{num}", sha, None)
            return sha, num
        try:
            sha, _ = g.commit(ref, changes, message, author, expected_parent=parent)
        except PreconditionFailedError as exc:
            if type(exc) is not PreconditionFailedError:
                raise  # a ref that kept moving (RefMovedError): not a stale parent
            raise PreconditionFailedError("A commit has happened since. Please refresh and try again.") from None
        fault_point("after-ref-update")
        self.after_ref_update(repo, g, ref, sha)
        return sha, None

    def after_ref_update(self, repo: Repo, g: GitRepo, ref: str, sha: str | None) -> None:
        """Keep the metadata in step with a moved ref (REST commit or git push)."""
        if ref == "refs/heads/main" and sha:
            self.index_card(repo, g, sha)
        else:
            self.meta.touch(repo)

    def index_card(self, repo: Repo, g: GitRepo, sha: str) -> None:
        """Parse README.md's front matter at ``sha`` into cardData and search tags.

        A card that is malformed or over the limits of ``cards`` is not indexed (logged); the
        commit that brought it stands.
        """
        card: dict[str, Any] | None = None
        entry = g.lookup(sha, "README.md")
        if entry is not None and entry.type == "file" and entry.lfs is None:
            try:
                card = self.cards.front_matter(readme_text(g.read_blob(entry.oid)))
            except (BadRequestError, PayloadTooLargeError) as exc:
                log.warning("card of %s/%s not indexed: %s", repo.type, repo.repo_id, exc)
        info = g.commit_info(sha)
        pipeline = card.get("pipeline_tag") if card else None
        library = card.get("library_name") if card else None
        self.meta.index_card(repo, sha, card, card_tags(repo.type, card),
                             pipeline if isinstance(pipeline, str) else None,
                             library if isinstance(library, str) else None, float(info.timestamp))

    # -- signed URLs (LFS upload hrefs carry no auth header) ----------------------------------------

    def sign(self, payload: str, ttl: int = 24 * 3600) -> str:
        """A query string authorising ``payload`` until now + ttl."""
        expires = int(time.time()) + ttl
        mac = hmac.new(self._secret, f"{payload}|{expires}".encode(), hashlib.sha256).hexdigest()
        return f"expires={expires}&sig={mac}"

    def derive_key(self, purpose: str) -> bytes:
        """A secret key for one purpose (e.g. Xet CAS tokens), derived from the hub's secret."""
        return hmac.new(self._secret, f"hubfs-key|{purpose}".encode(), hashlib.sha256).digest()

    def verify_signature(self, payload: str, expires: str | None, sig: str | None) -> None:
        if not expires or not sig or not expires.isdigit():
            raise AuthenticationError("This upload URL is missing its signature.")
        mac = hmac.new(self._secret, f"{payload}|{expires}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, sig):
            raise AuthenticationError("This upload URL's signature is invalid.")
        if int(expires) < time.time():
            raise AuthenticationError("This upload URL has expired; request a new one.")

    # -- accounts --------------------------------------------------------------------------------

    def add_user(self, name: str, org: str | None = None) -> None:
        validate_name(name, "user name")
        row = self.meta.account(name)
        if row is None:
            self.meta.add_account(name)
        elif row["is_org"]:
            raise ConflictError(f"{name} is an organization.")
        if org:
            validate_name(org, "organization name")
            self.meta.ensure_org(org)
            self.meta.add_member(org, name)


def repo_not_found(repo_type: str, repo_id: str, caller: Caller) -> RepoNotFoundError:
    """The Hub's answer for a repo that does not exist or that the caller may not see: 404, or 401 for
    an anonymous caller (the client then suggests logging in)."""
    message = (f"Repository Not Found for url: {repo_type}s/{public_repo_id(repo_id)}. Please make sure you specified "
               "the correct `repo_id` and `repo_type`. If you are trying to access a private or gated repo, make "
               "sure you are authenticated.")
    return RepoNotFoundError(message, status=401 if caller.user is None else 404)


def discussion_event(kind: str, author: str, data: dict[str, Any]) -> dict[str, Any]:
    """A discussion event in the Hub's shape (comment, status-change, commit, title-change)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    return {"id": uuid.uuid4().hex[:24], "type": kind, "createdAt": stamp, "author": {"name": author}, "data": data}


def comment_event(author: str, text: str) -> dict[str, Any]:
    return discussion_event("comment", author, {"edited": False, "hidden": False, "latest": {"raw": text, "html": text}})


def _load_secret(path: Path) -> bytes:
    """The data folder's secret, the one every hub process on it signs with: created once, atomically
    (written whole to a temporary, then hard-linked into place; a process that loses the race reads
    the winner's), never per-process random."""
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()
