"""The run's collector: what exists at the start is frozen, the pauses are timed, nothing stays frozen."""

from __future__ import annotations

import gc

from alexandria.run.gcwatch import GcWatch


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycles(n: int) -> list[_Node]:
    nodes = [_Node() for _ in range(2 * n)]
    for a, b in zip(nodes[::2], nodes[1::2], strict=True):
        a.other, b.other = b, a
    return nodes


def test_the_objects_of_before_the_run_are_frozen_and_thawed_after():
    gc.unfreeze()
    before = len(gc.get_objects())
    with GcWatch():
        assert gc.get_freeze_count() >= before // 2  # the run's collections skip them
    assert gc.get_freeze_count() == 0


def test_pauses_are_timed_and_full_collections_counted():
    with GcWatch() as watch:
        nodes = _cycles(20_000)
        del nodes
        assert gc.collect() >= 40_000  # the run's own garbage is still collected
        watch.freeze()
        assert gc.collect() == 0
    assert watch.full_collections == 2
    assert watch.total_s > 0 and 0 < watch.longest_s <= watch.total_s
    assert watch._callback not in gc.callbacks
