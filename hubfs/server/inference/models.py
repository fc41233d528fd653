"""Loaded inference models: the small files of a repo at a commit materialised from the hub's own storage,
models built with :mod:`hubfs.loader` from the weights where the hub stores them (no copy), kept in an
LRU bounded by count and memory, loaded once per key.

A model is keyed by (repo id, commit sha, transformers pipeline task). The commit is resolved per request
(:meth:`ModelCache.current`), so a new commit to ``main`` is picked up by the next request: a new key,
loaded once, while the old one ages out of the LRU. Two requests for the same cold key share one load
(single flight): the second waits for the first's result. Everything here blocks: call it off the loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubfs.errors import BadRequestError, HubfsError, ModelLoadError, SafetensorsError
from hubfs.paths import public_repo_id
from hubfs.server.git_store import Entry
from hubfs.server.hub import Hub
from hubfs.server.inference.batching import Batcher
from hubfs.server.inference.weights import open_weights
from hubfs.server.metadata import Repo

log = logging.getLogger("hubfs.server.inference")
OTHER_WEIGHTS = (".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".ckpt", ".gguf", ".ot", ".tflite")
FILE_MAX = 64 << 30  # one file of a model repo larger than this is refused


@dataclass(frozen=True)
class InferenceOptions:
    """``hubfs serve --inference`` settings: device (``cpu``, ``cuda`` or ``auto``), LRU bounds (models,
    bytes of weights; None: unbounded), batching (largest batch, window in seconds; ``max_batch`` 1: off),
    heavy calls at once, and the per-request timeout in seconds."""

    device: str = "auto"
    max_models: int = 2
    max_memory: int | None = None
    max_batch: int = 8
    batch_window: float = 0.005
    concurrency: int = 8
    timeout: float = 300.0


@dataclass(frozen=True)
class ModelKey:
    repo_id: str
    sha: str
    task: str  # the transformers pipeline task the model was built for

    def __str__(self) -> str:
        return f"{public_repo_id(self.repo_id)}@{self.sha[:12]}:{self.task}"


@dataclass
class LoadedModel:
    """A transformers pipeline over a model loaded by hubfs.loader, its weight bytes, batcher and files."""

    key: ModelKey
    pipeline: Any
    size: int
    batcher: Batcher
    folder: Path  # its small files (shared by every model with the same ones)
    loaded_at: float = field(default_factory=time.time)


@dataclass
class Stats:
    loads: dict[str, int] = field(default_factory=dict)
    evictions: int = 0
    load_seconds: dict[str, float] = field(default_factory=dict)


def pick_device(option: str) -> str:
    """``cpu`` or ``cuda`` for ``option`` (``auto``: cuda when torch sees a GPU)."""
    import torch

    if option == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if option.startswith("cuda") and not torch.cuda.is_available():
        raise HubfsError(f"--device {option}: torch {torch.__version__} sees no CUDA device")
    return option


class ModelCache:
    """The hub's loaded models (one per :class:`ModelKey`), least recently used evicted first."""

    def __init__(self, hub: Hub, options: InferenceOptions) -> None:
        self.hub, self.options = hub, options
        self.device = pick_device(options.device)
        self.root = hub.data_dir / "inference" / "models"
        self._lock = threading.Lock()
        self._loaded: OrderedDict[ModelKey, LoadedModel] = OrderedDict()
        self._inflight: dict[ModelKey, Future[LoadedModel]] = {}
        self._inflight_folders: dict[ModelKey, Path] = {}
        self.stats = Stats()

    # -- the repo at its current commit --------------------------------------------------------

    def current(self, repo: Repo, revision: str = "main") -> tuple[str, list[Entry], dict[str, Any]]:
        """(commit sha, file entries, config.json) of ``repo`` at ``revision`` now."""
        import json

        from hubfs.server.revisions import resolve

        with self.hub.git.open(repo.type, repo.repo_id) as g:
            sha = resolve(g, revision)
            entries = [e for e in g.list_tree(sha, "", recursive=True) if e.type == "file"]
            cfg = next((e for e in entries if e.path == "config.json"), None)
            config: dict[str, Any] = {}
            if cfg is not None and cfg.lfs is None and cfg.size <= 16 << 20:
                try:
                    loaded = json.loads(g.read_blob(cfg.oid))
                    config = loaded if isinstance(loaded, dict) else {}
                except ValueError:
                    config = {}
        return sha, entries, config

    @staticmethod
    def weight_bytes(entries: list[Entry]) -> int:
        return sum(e.size for e in entries if e.path.endswith(".safetensors"))

    # -- LRU with single-flight loads ----------------------------------------------------------

    def get(self, repo: Repo, sha: str, entries: list[Entry], task: str) -> LoadedModel:
        """The model for (repo, sha, task): from the LRU, from a load already under way, or loaded now."""
        key = ModelKey(repo.repo_id, sha, task)
        size = self.weight_bytes(entries)
        limit = self.options.max_memory
        if limit is not None and size > limit:
            raise HubfsError(f"Model {repo.public_id} needs {size} bytes of weights, more than this hub's "
                             f"--max-memory of {limit} bytes.", status=503)
        with self._lock:
            found = self._loaded.get(key)
            if found is not None:
                self._loaded.move_to_end(key)
                return found
            waiting = self._inflight.get(key)
            if waiting is None:
                mine: Future[LoadedModel] = Future()
                self._inflight[key] = mine
                self._inflight_folders[key] = self._folder(entries)
        if waiting is not None:
            return waiting.result()
        try:
            model = self._load(repo, key, entries, size)
        except BaseException as exc:
            with self._lock:
                del self._inflight[key], self._inflight_folders[key]
            mine.set_exception(exc)
            raise
        with self._lock:
            del self._inflight[key], self._inflight_folders[key]
            self._loaded[key] = model
            self._evict(keep=key)
            self._drop_unused_folders()
        mine.set_result(model)
        return model

    def _drop_unused_folders(self) -> None:
        """Remove the file folders that no loaded model or load under way uses (called under the lock,
        after a load); temporaries of loads under way are left alone."""
        in_use = {m.folder.name for m in self._loaded.values()} | {f.name for f in self._inflight_folders.values()}
        for old in self.root.iterdir():
            if not old.name.startswith(".") and old.name not in in_use:
                shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def small_files(entries: list[Entry]) -> list[Entry]:
        """The files a model's folder holds: all but weights (safetensors and other formats) and huge files."""
        return [e for e in entries if not e.path.endswith((*OTHER_WEIGHTS, ".safetensors")) and e.size <= FILE_MAX]

    def _folder(self, entries: list[Entry]) -> Path:
        """The folder of these small files, named by their paths and contents: a new commit that changes
        only weights (or another repo with the same configs and tokenizer) uses the same one."""
        digest = hashlib.sha256()
        for e in sorted(self.small_files(entries), key=lambda e: e.path):
            digest.update(f"{e.path}\0{e.lfs.oid if e.lfs else e.oid}\n".encode())
        return self.root / digest.hexdigest()[:40]

    def _evict(self, keep: ModelKey) -> None:
        """Drop least recently used models (never ``keep``) until the count and memory bounds hold."""
        limit = self.options.max_memory
        while len(self._loaded) > 1:
            total = sum(m.size for m in self._loaded.values())
            if len(self._loaded) <= self.options.max_models and (limit is None or total <= limit):
                break
            oldest = next(k for k in self._loaded if k != keep)
            dropped = self._loaded.pop(oldest)
            dropped.batcher.close()
            self.stats.evictions += 1
            log.info("inference: evicted %s", oldest)
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return list(self._loaded.values())

    def _load(self, repo: Repo, key: ModelKey, entries: list[Entry], size: int) -> LoadedModel:
        from hubfs.server.inference.tasks import build_pipeline

        started = time.perf_counter()
        folder = self.materialise(repo, key.sha, entries)
        files_done = time.perf_counter()
        try:
            with open_weights(self.hub, repo, entries, str(folder)) as weights:
                pipe = build_pipeline(folder, key.task, self.device, weights)
        except (SafetensorsError, ModelLoadError, OSError, ValueError, KeyError) as exc:
            raise BadRequestError(f"Model {repo.public_id} cannot run {key.task}: {exc}") from None
        seconds = time.perf_counter() - started
        name = str(key)
        with self._lock:
            self.stats.loads[name] = self.stats.loads.get(name, 0) + 1
            self.stats.load_seconds[name] = seconds
        log.info("inference: loaded %s on %s in %.3fs (files %.3fs)", key, self.device, seconds,
                 files_done - started)
        from hubfs.server.inference.tasks import run_batch

        batcher = Batcher(lambda task, inputs, params: run_batch(pipe, task, inputs, params),
                          max_batch=self.options.max_batch, window=self.options.batch_window)
        return LoadedModel(key, pipe, size, batcher, folder)

    # -- files of a commit on local disk -------------------------------------------------------

    def materialise(self, repo: Repo, sha: str, entries: list[Entry]) -> Path:
        """A folder holding ``repo``'s small files at ``sha`` (configs, tokenizer and processor files; no
        weights: the loader reads those from the hub's storage, see :mod:`.weights`), reused when it
        exists (see :meth:`_folder`): LFS objects hard-linked from the store where they lie whole, written
        otherwise. Built in a temporary folder and renamed into place, so it is whole or absent."""
        folder = self._folder(entries)
        if folder.is_dir():
            return folder
        if not any(e.path.endswith(".safetensors") for e in entries):
            raise BadRequestError(f"Model {repo.public_id} has no safetensors weights at {sha[:12]}: nothing "
                                  "to run (other weight formats are not loaded).")
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(parents=True)
        try:
            with self.hub.git.open(repo.type, repo.repo_id) as g:
                for e in self.small_files(entries):
                    dest = tmp / e.path
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if e.lfs is None:
                        dest.write_bytes(g.read_blob(e.oid))
                    else:
                        self._place_object(repo, e, dest)
            try:
                os.rename(tmp, folder)
            except OSError:
                if not folder.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process made it first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder

    def _place_object(self, repo: Repo, e: Entry, dest: Path) -> None:
        assert e.lfs is not None
        oid = e.lfs.oid
        stored = self.hub.objects.get(oid) if self.hub.meta.lfs_linked(repo, oid) else None
        if stored is None or stored.size != e.lfs.size:
            raise HubfsError(f"The content of {e.path} ({oid}) is missing from this hub's storage.", status=404)
        layout = stored.layout
        if self.hub.lfs.size(oid) == stored.size:  # a whole file in the LFS store (Xet files live in xorbs)
            try:
                os.link(self.hub.lfs.path(oid), dest)
                return
            except OSError:
                pass  # another file system, or no hard links: copy below
        with open(dest, "wb") as out:
            for piece in layout:
                if isinstance(piece, bytes):
                    out.write(piece)
                    continue
                with open(piece.path, "rb") as src:
                    src.seek(piece.offset)
                    left = piece.length
                    while left:
                        chunk = src.read(min(left, 8 << 20))
                        if not chunk:
                            raise HubfsError(f"{piece.path} ended early while copying {e.path}.")
                        out.write(chunk)
                        left -= len(chunk)
