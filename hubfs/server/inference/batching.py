"""Batching of concurrent requests to one model.

Requests of the same task with the same parameters that arrive within ``window`` seconds of each other run as one call of
``run(task, inputs, params)`` (up to ``max_batch`` inputs). One thread at a time runs a model's batches (the
leader: the first caller that finds no batch under way); the others wait for their results. With
``max_batch`` 1 every request runs alone, still one at a time per model. Blocking: call off the loop.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

RunBatch = Callable[[str, list[Any], dict[str, Any]], list[Any]]


@dataclass
class _Pending:
    key: str
    task: str
    inputs: Any
    params: dict[str, Any]
    result: Future[Any]


class Batcher:
    """Groups concurrent :meth:`submit` calls into batches for ``run``; see the module docstring."""

    def __init__(self, run: RunBatch, *, max_batch: int = 8, window: float = 0.005) -> None:
        self.run, self.max_batch, self.window = run, max(1, max_batch), window
        self._lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._leading = False
        self._closed = False
        self.batches: list[int] = []  # sizes of the last batches run (the newest 64), for stats and tests

    def submit(self, task: str, inputs: Any, params: dict[str, Any]) -> Any:
        """The result of ``run(task, [inputs], params)[0]``, possibly computed in a batch with other requests."""
        item = _Pending(task + json.dumps(params, sort_keys=True, default=str), task, inputs, params, Future())
        with self._lock:
            self._queue.append(item)
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead()
        return item.result.result()

    def close(self) -> None:
        """Mark the model gone; batches under way finish."""
        with self._lock:
            self._closed = True

    def _lead(self) -> None:
        """Run batches until the queue is empty, then hand the lead back."""
        if self.max_batch > 1 and self.window > 0:
            time.sleep(self.window)  # let concurrent requests join the first batch
        while True:
            with self._lock:
                if not self._queue:
                    self._leading = False
                    return
                first = self._queue[0]
                batch = [p for p in self._queue if p.key == first.key][:self.max_batch]
                for p in batch:
                    self._queue.remove(p)
            self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        self.batches = (self.batches + [len(batch)])[-64:]
        try:
            outputs = self.run(batch[0].task, [p.inputs for p in batch], batch[0].params)
            if len(outputs) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} inputs gave {len(outputs)} outputs")
        except BaseException as exc:  # noqa: BLE001 - every waiter gets the error
            for p in batch:
                p.result.set_exception(exc)
            return
        for p, out in zip(batch, outputs):
            p.result.set_result(out)
