"""The device threads (alexandria.run.feed) with the real minilm model: order, errors, stops."""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np
import pytest

from alexandria.children import child_context
from alexandria.chunking.chunker import Chunk
from alexandria.run.feed import Embedded, Feeder
from alexandria.run.grouping import Group, parts_of
from alexandria.run.plan import Planned, start_order
from alexandria.run.points import PointsAssembler
from alexandria.run.prepare import PreparedBook
from alexandria.sources.library import Book
from tests.conftest import minilm_ids

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
        back[e.group.parts[0]] = e.vectors
    assert sorted(back) == sorted(g.parts[0] for g in groups)
    start = 0
    for g in groups:
        rows = reference[start:start + len(g.ids)]
        assert np.min(np.sum(back[g.parts[0]] * rows, axis=1)) > 0.9999
        start += len(g.ids)
    assert all(f.queued_tokens == 0 for f in feeders)
    assert sum(f.busy_s for f in feeders) > 0


def test_a_device_error_reaches_the_main_thread(embedder, ids):
    def broken(_tokens: int) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    done: queue.Queue = queue.Queue()
    feeder = Feeder(embedder, 1024, 64, done, lambda: False)
    embedder.before_forward = broken
    try:
        feeder.start()
        feeder.put(_groups(ids, [4])[0])
        e = done.get(timeout=60)
        assert isinstance(e.error, RuntimeError) and e.vectors is None
        with pytest.raises(RuntimeError, match="illegal memory access"):
            feeder.put(_groups(ids, [4])[0])
    finally:
        embedder.before_forward = None
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


def test_groups_sent_to_a_server_each_get_their_own_rows_though_batches_cross_them():
    """The feeder holds a group's part-full last batch back for the next group's first texts:
    every group still gets exactly its own vectors, in order, and the last tail goes out."""
    from tests.embedding.tiny_server import Behaviour, client_of, own_vectors

    behaviour = Behaviour()
    with client_of(behaviour, batch=8, concurrency=2) as (remote, _):
        done: queue.Queue = queue.Queue()
        feeder = Feeder(remote, 1024, 64, done, lambda: False)
        feeder.start()
        groups = []
        for g, n in enumerate([13, 1, 1, 5, 8, 21, 1, 3]):  # tails shorter than a batch too
            texts = [f"group {g} text {i}" for i in range(n)]
            groups.append(Group([f"g{g}"], [], n, texts))
            feeder.put(groups[-1])
        feeder.close()
    back = [done.get_nowait() for _ in groups]
    assert [e.group.parts for e in back] == [g.parts for g in groups]  # in the order given
    for e in back:
        assert e.error is None
        np.testing.assert_allclose(e.vectors, own_vectors(e.group.texts), atol=1e-6)
    assert behaviour.largest == 8


def test_start_order_puts_a_small_book_first_and_the_largest_early():
    sizes = [50, 10, 400, 30, 20, 300]
    planned = [Planned(Book(key=f"b{s}", title=str(s), path=Path(f"{s}.epub"), size=s), "ingest")
               for s in sizes]
    assert [p.book.size for p in start_order(planned)] == [10, 400, 20, 300, 30, 50]


def test_children_start_from_a_fork_server_on_linux():
    assert child_context().get_start_method() == "forkserver"


def test_workers_preparing_for_a_gpu_yield_the_cores_to_the_device_threads(embedder):
    import os
    from concurrent.futures import ProcessPoolExecutor

    from alexandria.chunking.chunker import ChunkSettings
    from alexandria.run.options import PREP_NICE
    from alexandria.run.prepare import init_worker

    for nice in (PREP_NICE, 0):
        initargs = (embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings(), None, nice)
        with ProcessPoolExecutor(1, mp_context=child_context(), initializer=init_worker,
                                 initargs=initargs) as pool:
            assert pool.submit(os.nice, 0).result() == min(19, os.nice(0) + nice)


def _book(key: str, tokens: list[int]) -> PreparedBook:
    chunks = [Chunk(i, "Chapter", 0, 0, 1, n, f"text {i}") for i, n in enumerate(tokens)]
    return PreparedBook(key, chunks, token_ids=[np.zeros(n, np.int32) for n in tokens])


def test_a_big_book_is_cut_into_parts_on_whole_upsert_batches():
    book = _book("big", [100] * 1000 + [7])  # 100,007 tokens
    parts = parts_of(book, limit=30_000, align=64)
    # 30,000 tokens of 100-token rows: 300 rows, 256 on the 64-row grid; only the book's end is ragged
    assert [(p.start, p.end, p.tokens) for p in parts] == [
        (0, 256, 25_600), (256, 512, 25_600), (512, 768, 25_600), (768, 1001, 23_207)]
    small = _book("small", [100] * 10)
    assert [(p.start, p.end, p.tokens) for p in parts_of(small, 30_000, 64)] == [(0, 10, 1000)]
    # never a part smaller than one upsert batch, even where one batch is over the limit
    assert [(p.start, p.end) for p in parts_of(book, 50, 512)] == [(0, 512), (512, 1001)]


class _Recorder:
    """Stands in for the writer thread's queue: what the main thread hands it, in order."""

    def __init__(self) -> None:
        self.ops: list[tuple] = []

    def submit(self, *op) -> None:
        self.ops.append(op)


def test_a_books_parts_are_written_in_row_order_whatever_order_they_come_back(tmp_path):
    """Two GPUs can return part 2 before part 1: its points wait, so a kill leaves whole batches
    from the book's first row (what repair relies on), and the book finishes after its last."""
    book = _book("k", [10] * 12)
    parts = parts_of(book, limit=40, align=4)
    assert [(p.start, p.end) for p in parts] == [(0, 4), (4, 8), (8, 12)]
    planned = Planned(Book(key="k", title="K", path=tmp_path / "k.epub"), "ingest")
    writer = _Recorder()
    run = PointsAssembler({"k": planned}, lambda p: {"title": p.book.title}, "minilm", False,
                          writer.submit, upsert_batch=4)
    vectors = {p.start: np.full((p.end - p.start, 3), p.start, np.float32) for p in parts}

    def back(*which):
        group = Group([parts[i] for i in which], [], sum(parts[i].tokens for i in which))
        rows = np.concatenate([vectors[parts[i].start] for i in which])
        run.add(Embedded(group, rows, 1.0))

    back(2)
    assert [op[0] for op in writer.ops] == ["begin"]  # part 3 waits for parts 1 and 2
    back(1, 0)  # one group with parts 2 and 1, in that order
    assert [op[0] for op in writer.ops] == ["begin", "points", "points", "points", "finish"]
    blocks = [op[1] for op in writer.ops if op[0] == "points"]
    assert [f["chunk_index"] for b in blocks for f in b.fields] == list(range(12))
    assert all(b.vectors[0, 0] == b.fields[0]["chunk_index"] // 4 * 4 for b in blocks)
    assert writer.ops[-1][0] == "finish" and writer.ops[-1][2].chunks == 12
    assert len({b.base["ingested_at"] for b in blocks}) == 1 and not run.writing
