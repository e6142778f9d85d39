"""Several embedding devices fed in turn from one extraction pool (CPU stands in for GPUs here)."""

from __future__ import annotations

import shutil

import pytest

from alexandria import IngestOptions, RunLimits, ingest
from alexandria.embedding.embedder import resolve_devices
from alexandria.errors import UsageError
from alexandria.run.grouping import Grouper
from alexandria.run.ingest import Ingest
from alexandria.run.options import GROUP_BUDGETS
from alexandria.run.points import PointsAssembler
from alexandria.run.workers import Preparing
from alexandria.store.edge import EdgeStore
from tests.conftest import EPUBS, need_corpus, status_json

MORE_BOOKS = ["idpf-childrens-literature.epub", "idpf-epub30-spec.epub", "idpf-mymedia_lite.epub"]


def test_device_lists_and_gpus():
    assert resolve_devices("cpu,cpu") == ["cpu", "cpu"]
    assert resolve_devices("cpu") == ["cpu"]
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_devices("auto", gpus="all")
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_devices("cuda:0,cuda:1")


def test_groups_alternate_between_devices_and_nothing_is_lost(small_library, tmp_path, monkeypatch):
    store = tmp_path / "store"
    # a small budget makes several groups, so both device slots get work and queue it; small
    # upsert batches let the bigger books be cut into parts that the two devices share
    opts = IngestOptions(directory=small_library, model="minilm", device="cpu,cpu", store=store,
                         token_budget=1024, workers=1)
    report = Ingest(opts, limits=RunLimits(upsert_batch=8)).run()
    assert report.books_failed == 0 and report.books_done == len(list(small_library.iterdir()))
    assert report.device == "cpu,cpu"
    status = status_json(store)
    assert status["mismatches"] == 0
    assert sum(b["store_points"] for b in status["books"]) == report.chunks
    # a book over one group's tokens (4 budgets) and over one 8-row batch went in several parts
    assert any(b["tokens"] > 4 * 1024 and b["chunks"] > 8 for b in status["books"])
    store_ = EdgeStore(store, report.collection, None)
    try:
        for b in status["books"]:
            indexes = sorted(p["chunk_index"] for _, p in store_.payloads(b["book_key"]))
            assert indexes == list(range(b["chunks"]))
    finally:
        store_.close()


def test_the_devices_wait_for_the_points_thread_and_a_failure_there_fails_the_run(
        small_library, tmp_path, monkeypatch):
    """At most MAX_UNWRITTEN_GROUPS groups per device are embedded ahead of their points; a
    points thread that fails stops the run with its error (no hang, nothing marked done)."""
    opts = IngestOptions(directory=small_library, model="minilm", device="cpu", store=tmp_path / "s",
                         token_budget=1024, workers=1)
    report = Ingest(opts, limits=RunLimits(max_unwritten_groups=1)).run()
    assert report.books_failed == 0 and report.books_done == len(list(small_library.iterdir()))
    assert report.stages_s["points_wait"] > 0  # one group at a time: the main thread waited
    assert status_json(tmp_path / "s")["mismatches"] == 0

    calls = []
    add = PointsAssembler.add

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("points thread broke")
        return add(self, *args, **kwargs)

    monkeypatch.setattr(PointsAssembler, "add", failing)
    opts = IngestOptions(directory=small_library, model="minilm", device="cpu", store=tmp_path / "t",
                         token_budget=1024, workers=1)
    with pytest.raises(RuntimeError, match="points thread broke"):
        ingest(opts)
    status = status_json(tmp_path / "t")
    assert status["mismatches"] == 0
    assert sum(b["status"] == "done" for b in status["books"]) < len(list(small_library.iterdir()))


def test_a_group_fills_across_books_unless_a_device_runs_out_of_work(small_library, tmp_path,
                                                                     monkeypatch):
    """Books prepared one at a time still share groups (fuller batches, one length sort over
    more chunks) while the devices have work queued; a hungry device gets what there is."""
    groups: list[tuple[int, int]] = []  # (books, tokens) of each group given to a device
    take = Grouper.take

    def recording(self):
        parts = take(self)
        groups.append((len({id(p.book) for p in parts}), sum(p.tokens for p in parts)))
        return parts

    monkeypatch.setattr(Grouper, "take", recording)
    # four books are soon all in the one worker's window, which cuts groups to one budget (the
    # next test): here the group limit stays at four budgets
    monkeypatch.setattr(Preparing, "all_started", property(lambda self: False))
    books = len(list(small_library.iterdir()))
    budget = 4096
    for hungry, store in ((False, tmp_path / "full"), (True, tmp_path / "hungry")):
        groups.clear()
        monkeypatch.setattr(Grouper, "hungry", lambda self, backlogs, h=hungry: h)
        opts = IngestOptions(directory=small_library, model="minilm", device="cpu", store=store,
                             token_budget=budget, workers=1)
        report = ingest(opts)
        assert report.books_failed == 0 and report.books_done == books
        status = status_json(store)
        assert status["mismatches"] == 0
        assert sum(b["store_points"] for b in status["books"]) == report.chunks
        assert sum(t for _, t in groups) == sum(b["tokens"] for b in status["books"])
        if hungry:  # one book (or part of one) per group, as each book came from the worker
            assert len(groups) >= books and all(n == 1 for n, _ in groups)
        else:
            limit = budget * GROUP_BUDGETS
            # a part of a big book may be over the limit (it ends on a whole upsert batch); it
            # then goes alone
            assert all(t <= limit or n == 1 for n, t in groups)
            assert any(n > 1 for n, _ in groups) and len(groups) < books


@pytest.mark.long  # grouping's own tests are fast; this is its whole run
def test_the_last_books_go_in_groups_of_one_budget(small_library, tmp_path, monkeypatch):
    """Once every book is in a worker, a group holds one token budget, not four: the last groups
    end together on several GPUs, and the last vectors (written after the GPU is done) are few."""
    groups: list[tuple[int, int, bool]] = []  # (books, tokens, every book started) per group
    take = Grouper.take

    def recording(self):
        parts = take(self)
        groups.append((len({id(p.book) for p in parts}), sum(p.tokens for p in parts), self.tail))
        return parts

    monkeypatch.setattr(Grouper, "take", recording)
    monkeypatch.setattr(Grouper, "hungry", lambda self, backlogs: False)
    need_corpus()  # three particular books of the corpus
    for name in MORE_BOOKS:  # more books than the one worker's window of two
        shutil.copy2(EPUBS / "books" / name, small_library / name)
    budget = 1024
    opts = IngestOptions(directory=small_library, model="minilm", device="cpu",
                         store=tmp_path / "store", token_budget=budget, workers=1)
    # small upsert batches: big books in parts of about a group
    report = Ingest(opts, limits=RunLimits(upsert_batch=8)).run()
    assert report.books_failed == 0 and report.books_done == len(list(small_library.iterdir()))
    assert status_json(tmp_path / "store")["mismatches"] == 0
    before = [(n, t) for n, t, tail in groups if not tail]
    tail = [(n, t) for n, t, tail in groups if tail]
    assert before and tail and sum(t for _, t in before + tail) == report.tokens
    assert any(t > budget for _, t in before)  # four budgets while books keep coming
    # One at the end. The first group given out after the switch may have been filled before it
    # (up to four budgets); a part of a big book may be over the budget alone (it ends on a whole
    # upsert batch).
    assert len(tail) > 2 and all(t <= budget or n == 1 for n, t in tail[1:])
