"""The embedded store in a child process: same answers as in-process, errors come back, no leaks."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from alexandria.errors import UsageError
from alexandria.store import EdgeStore, PointData, StoreError
from alexandria.store_process import StoreProcess


def points(book: str, n: int) -> list[PointData]:
    return [PointData(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{book}/{i}")),
                      [1.0, float(i), 0.5, -float(i % 3)], {"book_key": book, "chunk_index": i})
            for i in range(n)]


def test_child_store_answers_like_the_engine_in_process(tmp_path):
    store = StoreProcess(tmp_path, "c", 4)
    try:
        store.upsert(points("a", 30))
        store.upsert(points("b", 7))
        store.flush()
        assert store.count() == 37
        assert store.count_book("a") == 30
        assert store.counts_by_book() == {"a": 30, "b": 7}
        hits = store.search([1.0, 6.0, 0.5, 0.0], 3, must={"book_key": "a"})
        assert [h.payload["chunk_index"] for h in hits][0] == 6
        pages = list(store.iter_points(batch=10))
        assert [len(p) for p in pages] == [10, 10, 10, 7]
        store.delete_book("b")
        store.flush()
    finally:
        store.close()
    assert store._proc.exitcode == 0
    # the child closed the shard: it opens here at once, with what the child wrote
    direct = EdgeStore(tmp_path, "c", 4)
    try:
        assert direct.counts_by_book() == {"a": 30}
    finally:
        direct.close()


def test_errors_come_back_as_the_same_sentences(tmp_path):
    with pytest.raises(UsageError, match="There is no collection"):
        StoreProcess(tmp_path, "missing", None)
    StoreProcess(tmp_path, "c", 4).close()
    with pytest.raises(UsageError, match="4-dimensional"):
        StoreProcess(tmp_path, "c", 8)


def test_a_dead_store_process_is_a_store_error_not_a_hang(tmp_path):
    store = StoreProcess(tmp_path, "c", 4)
    store.upsert(points("a", 3))
    os.kill(store._proc.pid, signal.SIGKILL)
    with pytest.raises(StoreError, match="died \\(killed by signal 9\\)"):
        store.upsert(points("a", 3))
    store.close()  # nothing left to close: no second error
    # its lock went with it: the store opens again and the flushed-or-not points are consistent
    again = StoreProcess(tmp_path, "c", 4)
    try:
        assert again.count() in (0, 3)
    finally:
        again.close()


def test_terminal_signals_do_not_stop_the_child(tmp_path):
    """Ctrl-C reaches the whole process group: the parent stops cleanly, so the child must stay."""
    store = StoreProcess(tmp_path, "c", 4)
    try:
        os.kill(store._proc.pid, signal.SIGINT)
        os.kill(store._proc.pid, signal.SIGTERM)
        store.upsert(points("a", 2))
        store.flush()
        assert store.count() == 2
    finally:
        store.close()
