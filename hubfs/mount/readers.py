"""The mount's byte path: :class:`~hubfs.client.reader.FileReader` s sharing one fetcher, pools and caches.

Built the way :meth:`hubfs.fs.HubFileSystem.reader_deps` builds them (no fsspec, no HTTP of its own):
the complete blob in the local cache when there is one, the sparse block cache for partial reads of
big LFS objects, the read-ahead stream for sequential reads, exactly the bytes asked for random ones,
and one fetch for concurrent readers of one range. The range fetcher gets the mount's ``timeout``
and ``max_retries``, so that a stalled or vanished hub fails a read with EIO instead of hanging it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from hubfs.client.api import HubClient
from hubfs.client.blocks import BlockCache
from hubfs.client.cache import HubCache
from hubfs.client.fetch import RangeFetcher
from hubfs.client.malloc import keep_freed_buffers
from hubfs.client.reader import FileReader, ReaderDeps, ReadTarget, SingleFlight


class Readers:
    """Opens readers of one client's hub; ``close()`` stops the pools and drops idle connections."""

    def __init__(self, client: HubClient, *, timeout: float = 15.0, max_retries: int = 2, workers: int = 8,
                 block_cache: bool = True) -> None:
        self.fetcher = RangeFetcher(client.transport, max_retries=max_retries, timeout=timeout)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="hubfs-mount")
        self.part_pool = ThreadPoolExecutor(workers, thread_name_prefix="hubfs-mount-part")
        cache = HubCache(client.config.cache_dir)
        self.deps = ReaderDeps(self.fetcher, self.pool, self.part_pool, BlockCache(cache) if block_cache else None,
                               cache, client.config.offline, SingleFlight())
        keep_freed_buffers()

    def open(self, target: ReadTarget) -> FileReader:
        """A reader of ``target`` (no request: the size and hashes come with the target)."""
        return FileReader(target, self.deps)

    def close(self) -> None:
        for pool in (self.pool, self.part_pool):
            pool.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()


__all__ = ["Readers"]
