"""The FUSE mount: a repo, or a whole hub, as a folder (``hubfs mount``; ``--read-write``: commits to branches).

- :mod:`~hubfs.mount.tree`: one commit's entry table, from one recursive listing;
- :mod:`~hubfs.mount.repo`: a repo at one commit, switched atomically on refresh; the Namespace protocol;
- :mod:`~hubfs.mount.hub_root`: the whole hub (``--all``), repos appearing on first lookup;
- :mod:`~hubfs.mount.readers`: the byte path (the client's FileReader, shared fetcher and caches);
- :mod:`~hubfs.mount.inorder`: the kernel's parallel read-ahead requests, put back in file order;
- :mod:`~hubfs.mount.ops`: the mfusepy operations (write operations forwarded to one hook);
- :mod:`~hubfs.mount.writable`: ``--read-write``: the staged overlay namespace and the write operations;
- :mod:`~hubfs.mount.hub_writes`: ``--all --read-write``: each repo's writes, above them EPERM;
- :mod:`~hubfs.mount.staging` (with :mod:`~hubfs.mount.overlay`, :mod:`~hubfs.mount.journal`,
  :mod:`~hubfs.mount.batch`): changes staged on local disk, journaled, committed in batches;
- :mod:`~hubfs.mount.libfuse`: mfusepy over libfuse3, kernel cache invalidation;
- :mod:`~hubfs.mount.kernel`: mountinfo, the bdi read-ahead, fusermount3;
- :mod:`~hubfs.mount.refresh`: ``--refresh`` polling;
- :mod:`~hubfs.mount.daemon`: validation, the daemon, ``hubfs mount``/``hubfs umount``.

Importing this package does not load libfuse; :mod:`~hubfs.mount.ops` does.
"""
