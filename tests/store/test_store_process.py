"""The embedded store served by its owner process: same answers as in-process, errors come back,
no leaks."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from alexandria.errors import UsageError
from alexandria.store.base import PointData, StoreError
from alexandria.store.edge import EdgeStore
from alexandria.store.process import StoreProcess


def points(book: str, n: int) -> list[PointData]:
    return [PointData(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{book}/{i}")),
                      [1.0, float(i), 0.5, -float(i % 3)], {"book_key": book, "chunk_index": i})
            for i in range(n)]


def gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


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
    assert gone(store.owner_pid), "the owner outlived its last client by more than seconds"
    # the owner closed the shard: it opens here at once, with what the owner wrote
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
    os.kill(store.owner_pid, signal.SIGKILL)
    with pytest.raises(StoreError, match="died or closed the connection"):
        store.upsert(points("a", 3))  # not waited for: the next call that waits reports it
        store.count()
    store.close()  # nothing left to close: no second error
    # its lock went with it: the store opens again and the flushed-or-not points are consistent
    again = StoreProcess(tmp_path, "c", 4)
    try:
        assert again.count() in (0, 3)
    finally:
        again.close()


def test_terminal_signals_do_not_stop_the_owner(tmp_path):
    """Ctrl-C reaches the whole process group: the run stops cleanly, so the owner must stay (it is
    in a session of its own, and ignores SIGINT and SIGHUP besides)."""
    store = StoreProcess(tmp_path, "c", 4)
    try:
        assert os.getsid(store.owner_pid) != os.getsid(0)
        os.kill(store.owner_pid, signal.SIGINT)
        os.kill(store.owner_pid, signal.SIGHUP)
        store.upsert(points("a", 2))
        store.flush()
        assert store.count() == 2
    finally:
        store.close()


def test_an_upsert_is_not_waited_for_but_its_error_comes_back_with_the_next_call(tmp_path):
    store = StoreProcess(tmp_path, "c", 4)
    try:
        store.upsert(points("a", 2))
        store.upsert([PointData(str(uuid.uuid4()), [1.0, 2.0], {"book_key": "b"})])  # 2-d, not 4
        store.upsert(points("c", 2))
        with pytest.raises(StoreError, match="expected dim: 4, got 2"):
            store.flush()
        store.flush()  # reported once; the child goes on in order
        assert store.counts_by_book() == {"a": 2, "c": 2}
    finally:
        store.close()


def test_a_point_block_stores_the_same_points_as_point_by_point(tmp_path):
    import numpy as np

    from alexandria.store.base import PointBlock, point_id

    base = {"book_key": "k", "title": "T"}
    fields = [{"chunk_index": i, "chapter_index": 0, "kind": "chunk", "text": f"t{i}"} for i in range(3)]
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    block = PointBlock(base, fields, vectors)
    expected = [p.id for p in block.points()]
    assert expected == [point_id("k", i) for i in range(3)]
    store = StoreProcess(tmp_path, "c", 4)
    try:
        store.upsert_block(block)
        store.flush()
        got = store.get(expected)
        assert got[expected[2]] == {"book_key": "k", "title": "T", "chunk_index": 2, "chapter_index": 0,
                                    "kind": "chunk", "text": "t2"}
    finally:
        store.close()


def test_a_block_and_its_points_store_the_same_vectors_and_ids(tmp_path):
    """The block path hands Edge numpy rows (buffer protocol), the point path Python lists."""
    import uuid

    import numpy as np

    from alexandria.store.base import POINT_NAMESPACE, PointBlock, parent_point_id
    from alexandria.store.edge import EdgeStore

    key = "calibre:7:Übersetzung/日記"
    fields = [{"chunk_index": i, "chapter_index": 0, "kind": "chunk", "text": "ß" * i}
              for i in range(5)] + [{"chunk_index": None, "chapter_index": 0, "kind": "parent"}]
    vectors = np.random.default_rng(1).standard_normal((6, 16)).astype(np.float32)
    block = PointBlock({"book_key": key}, fields, vectors[:, :])
    assert block.ids() == [str(uuid.uuid5(POINT_NAMESPACE, f"{key}#{i}")) for i in range(5)] + [
        str(uuid.uuid5(POINT_NAMESPACE, f"{key}#parent#0"))]
    assert parent_point_id(key, 0) == block.ids()[-1]
    stored = {}
    for name, write in (("block", lambda s: s.upsert_block(block)),
                        ("points", lambda s: s.upsert(block.points()))):
        store = EdgeStore(tmp_path / name, "c", 16)
        try:
            write(store)
            store.flush()
            pages = [p for page in store.iter_points(with_vectors=True) for p in page]
            stored[name] = {p.id: (p.vector, p.payload) for p in pages}
        finally:
            store.close()
    assert stored["block"] == stored["points"] and len(stored["block"]) == 6
