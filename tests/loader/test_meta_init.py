"""SkipMetaInit: weight initialisers on meta tensors return at once, real tensors are still initialised."""

from __future__ import annotations

import threading

import pytest

torch = pytest.importorskip("torch")

from hubfs.loader.meta_init import SkipMetaInit  # noqa: E402


def test_meta_initialisers_are_skipped_and_real_ones_run() -> None:
    real = torch.empty(4, 4)
    with SkipMetaInit():
        meta = torch.empty(4, 4, device="meta")
        assert torch.nn.init.normal_(meta) is meta
        torch.nn.init.constant_(real, 3.0)
    assert torch.equal(real, torch.full((4, 4), 3.0))


def test_the_mode_holds_for_the_calling_thread_only() -> None:
    seen: list[bool] = []

    def other() -> None:  # a concurrent load elsewhere still initialises its real tensors
        t = torch.zeros(2)
        torch.nn.init.ones_(t)
        seen.append(bool(torch.equal(t, torch.ones(2))))

    with SkipMetaInit():
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert seen == [True]


def test_a_module_built_under_the_mode_has_the_right_shapes() -> None:
    with torch.device("meta"), SkipMetaInit():
        layer = torch.nn.Linear(8, 3)
    assert layer.weight.is_meta and tuple(layer.weight.shape) == (3, 8)
