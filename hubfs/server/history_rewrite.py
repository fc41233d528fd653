"""Rewriting a repository's history without some files (``permanently_delete_lfs_files`` with
``rewrite_history``): every branch, tag and PR ref is moved to a copy of its history in which no tree
holds the given blobs (the LFS pointers of the deleted objects).

Commits that do not change keep their sha; the first commit that held a dropped file and all its
descendants get new shas (same author, date and message; signatures dropped). Folders left empty
disappear. Each ref moves by compare-and-swap: a ref that moved meanwhile (a push) fails the call
with 412 and is left as it was.
"""

from __future__ import annotations

import stat

from dulwich.objects import Commit, ObjectID, Tag, Tree

from hubfs.server.git_store import GitRepo


class _Rewriter:
    def __init__(self, g: GitRepo, blobs: set[str]) -> None:
        self.g = g
        self.drop = {b.encode() for b in blobs}
        self.trees: dict[bytes, bytes | None] = {}
        self.commits: dict[bytes, bytes] = {}
        self.empty: bytes | None = None

    def tree(self, sha: bytes) -> bytes | None:
        """The rewritten tree (the same sha when nothing in it changes; None when it ends up empty)."""
        if sha in self.trees:
            return self.trees[sha]
        old = self.g.tree(sha)
        new, changed = Tree(), False
        for item in old.iteritems():
            name, mode, child = item.path, item.mode, item.sha
            if stat.S_ISDIR(mode):
                sub = self.tree(child)
                changed |= sub != child
                if sub is not None:
                    new.add(name, mode, ObjectID(sub))
            elif child in self.drop and not stat.S_ISLNK(mode):
                changed = True
            else:
                new.add(name, mode, child)
        result: bytes | None = sha
        if changed:
            if not new.items():
                result = None
            else:
                self.g.writer.add_object(new)
                result = new.id
        self.trees[sha] = result
        return result

    def _empty_tree(self) -> bytes:
        if self.empty is None:
            tree = Tree()
            self.g.writer.add_object(tree)
            self.empty = tree.id
        return self.empty

    def commit(self, sha: bytes) -> bytes:
        """The rewritten commit, parents first (iteratively: histories can be long)."""
        stack = [sha]
        while stack:
            cur = stack[-1]
            if cur in self.commits:
                stack.pop()
                continue
            c = self.g.store[ObjectID(cur)]
            assert isinstance(c, Commit)
            missing = [p for p in c.parents if p not in self.commits]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            tree = self.tree(c.tree) or self._empty_tree()
            parents = [self.commits[p] for p in c.parents]
            if tree == c.tree and parents == list(c.parents):
                self.commits[cur] = cur
                continue
            new = c.copy()
            assert isinstance(new, Commit)
            new.tree = ObjectID(tree)
            new.parents = [ObjectID(p) for p in parents]
            new.gpgsig = None
            self.g.writer.add_object(new)
            self.commits[cur] = new.id
        return self.commits[sha]

    def ref_value(self, value: bytes) -> bytes:
        """A ref's new value: a rewritten commit, or a copy of an annotated tag pointing at one."""
        obj = self.g.store[ObjectID(value)]
        if isinstance(obj, Tag):
            target = self.ref_value(obj.object[1])
            if target == obj.object[1]:
                return value
            tag = obj.copy()
            assert isinstance(tag, Tag)
            kind = Tag if isinstance(self.g.store[ObjectID(target)], Tag) else Commit
            tag.object = (kind, ObjectID(target))
            tag.signature = None
            self.g.writer.add_object(tag)
            return tag.id
        if isinstance(obj, Commit):
            return self.commit(value)
        return value


def rewrite_without(g: GitRepo, blobs: set[str]) -> dict[str, tuple[str, str]]:
    """Move every ref of ``g`` to a history without files whose blob sha is in ``blobs``.

    Returns ``{ref: (old value, new value)}`` for the refs that moved.
    """
    if not blobs:
        return {}
    rewriter = _Rewriter(g, blobs)
    moved: dict[str, tuple[str, str]] = {}
    with g.caches.repo_lock(g.path):
        for name, value in g.repo.get_refs().items():
            if not name.startswith(b"refs/"):
                continue
            new = rewriter.ref_value(value)
            if new != value:
                moved[name.decode()] = (value.decode(), new.decode())
        for ref, (old, new_value) in sorted(moved.items()):
            g.set_ref(ref, new_value, old)
    return moved
