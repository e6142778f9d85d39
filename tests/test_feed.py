"""The device threads (alexandria.feed) with the real minilm model: order, errors, stops."""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np
import pytest

from alexandria.feed import Feeder, Group
from alexandria.library import Book
from alexandria.orphan import child_context
from alexandria.pipeline import Planned, start_order

from .conftest import minilm_ids

TEXTS = [("The whale surfaced. " * (1 + (i * 5) % 30)) + f"Line {i}." for i in range(48)]


@pytest.fixture(scope="module")
def ids(embedder):
    return minilm_ids(embedder, TEXTS)


def _groups(ids, sizes):
    out, start = [], 0
    for n in sizes:
        part = ids[start:start + n]
        out.append(Group([f"book{start}"], part, sum(len(x) for x in part)))
        start += n
    return out


def test_two_device_threads_give_every_group_its_own_rows_in_order(embedder, ids):
    reference = embedder.encode_ids(ids, token_budget=4096)
    done: queue.Queue = queue.Queue()
    feeders = [Feeder(embedder, 1024, 64, done, lambda: False) for _ in range(2)]
    for f in feeders:
        f.start()
    groups = _groups(ids, [5, 17, 1, 25])
    for i, g in enumerate(groups):
        feeders[i % 2].put(g)
    for f in feeders:
        f.close()
    back = {}
    while not done.empty():
        e = done.get()
        assert e.error is None
        back[e.group.books[0]] = e.vectors
    assert sorted(back) == sorted(g.books[0] for g in groups)
    start = 0
    for g in groups:
        rows = reference[start:start + len(g.ids)]
        assert np.min(np.sum(back[g.books[0]] * rows, axis=1)) > 0.9999
        start += len(g.ids)
    assert all(f.queued_tokens == 0 for f in feeders)
    assert sum(f.busy_s for f in feeders) > 0


def test_a_device_error_reaches_the_main_thread(embedder, ids):
    def broken(_tokens: int) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    done: queue.Queue = queue.Queue()
    feeder = Feeder(embedder, 1024, 64, done, lambda: False)
    embedder.fault_hook = broken
    try:
        feeder.start()
        feeder.put(_groups(ids, [4])[0])
        e = done.get(timeout=60)
        assert isinstance(e.error, RuntimeError) and e.vectors is None
        with pytest.raises(RuntimeError, match="illegal memory access"):
            feeder.put(_groups(ids, [4])[0])
    finally:
        embedder.fault_hook = None
        feeder.close()
    assert not feeder.is_alive()


def test_a_stop_abandons_the_groups_not_yet_on_the_device(embedder, ids):
    done: queue.Queue = queue.Queue()
    feeder = Feeder(embedder, 1024, 64, done, lambda: True)
    feeder.start()
    feeder.put(_groups(ids, [6])[0])
    feeder.close()
    e = done.get_nowait()
    assert e.vectors is None and e.error is None  # the next run does these books


def test_start_order_puts_a_small_book_first_and_the_largest_early():
    sizes = [50, 10, 400, 30, 20, 300]
    planned = [Planned(Book(key=f"b{s}", title=str(s), path=Path(f"{s}.epub"), size=s), "ingest")
               for s in sizes]
    assert [p.book.size for p in start_order(planned)] == [10, 400, 20, 300, 30, 50]


def test_children_start_from_a_fork_server_on_linux():
    assert child_context().get_start_method() == "forkserver"
