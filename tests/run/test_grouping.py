"""Books to groups, without a run: what the main thread hands the devices, and when."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from alexandria.run.control import Failures
from alexandria.run.grouping import Devices, Grouper, Part


@dataclass
class Chunk:
    tokens: int


@dataclass
class Book:
    """Stands for a PreparedBook: chunks with token counts, and their token ids."""

    book_key: str
    sizes: list[int]
    chunks: list[Chunk] = field(init=False)
    token_ids: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.chunks = [Chunk(n) for n in self.sizes]
        self.token_ids = [np.zeros(n, np.int32) for n in self.sizes]

    @property
    def tokens(self) -> int:
        return sum(self.sizes)


def books_of(groups: list[list[Part]]) -> list[list[str]]:
    return [[p.book.book_key for p in g] for g in groups]


def test_small_books_share_a_group_until_the_next_one_would_not_fit():
    grouper = Grouper(budget=100, budgets_per_group=4, align=8)
    full = []
    for key in "abcde":
        full += list(grouper.add(Book(key, [30, 30, 30])))  # 90 tokens each
    assert books_of(full) == [["a", "b", "c", "d"]]  # 360 of a 400-token limit; e would be 450
    assert books_of([grouper.take()]) == [["e"]] and not grouper


def test_a_big_book_goes_out_in_parts_that_end_on_whole_upsert_batches():
    grouper = Grouper(budget=100, budgets_per_group=1, align=4)
    groups = list(grouper.add(Book("big", [10] * 30))) + [grouper.take()]
    rows = [(p.start, p.end) for g in groups for p in g]
    assert rows == [(0, 8), (8, 16), (16, 24), (24, 30)]
    assert all(p.start % 4 == 0 for g in groups for p in g)
    assert sum(p.tokens for g in groups for p in g) == 300


def test_once_every_book_is_started_a_group_holds_one_budget():
    grouper = Grouper(budget=100, budgets_per_group=4, align=8)
    assert grouper.limit == 400
    grouper.tail = True
    assert grouper.limit == 100
    full = list(grouper.add(Book("a", [60]))) + list(grouper.add(Book("b", [60])))
    assert books_of(full) == [["a"]] and books_of([grouper.take()]) == [["b"]]


def test_a_device_with_less_than_a_group_queued_is_hungry():
    grouper = Grouper(budget=100, budgets_per_group=4, align=8)
    assert grouper.hungry([500, 399])
    assert not grouper.hungry([400, 1000])


class FakeFeeder:
    """Records what a device is given (the real Feeder is tested with a model in test_feed)."""

    def __init__(self, queued: int = 0) -> None:
        self.queued_tokens, self.given, self.busy_s = queued, [], 0.0

    def put(self, group) -> None:
        self.given.append(group)
        self.queued_tokens += group.tokens

    def start(self) -> None: ...

    def close(self) -> None: ...


def test_each_group_goes_to_the_device_with_the_least_work_queued():
    feeders = [FakeFeeder(50), FakeFeeder(10)]
    devices = Devices(feeders, Failures(), lambda: False)
    book = Book("a", [5, 5])
    devices.give([Part(book, 0, 2, 10)])
    devices.give([Part(book, 0, 1, 5)])
    assert [len(f.given) for f in feeders] == [0, 2]
    assert [len(ids) for ids in feeders[1].given[0].ids] == [5, 5]  # the parts' own token ids
    assert devices.first_given is not None


def test_giving_waits_for_the_points_thread_and_gives_up_on_a_failure():
    failures = Failures()
    devices = Devices([FakeFeeder()], failures, lambda: False, max_unwritten=1)
    book = Book("a", [5])
    devices.give([Part(book, 0, 1, 5)])  # the one slot is taken until its points are written
    blocked = threading.Thread(target=lambda: pytest.raises(RuntimeError, devices.give,
                                                            [Part(book, 0, 1, 5)]))
    blocked.start()
    blocked.join(0.5)
    assert blocked.is_alive()  # waiting for a slot
    failures.put(RuntimeError("the writer died"))
    blocked.join(5)
    assert not blocked.is_alive()


def test_a_stopped_run_gives_nothing_more_to_the_devices():
    feeder = FakeFeeder()
    devices = Devices([feeder], Failures(), lambda: True, max_unwritten=1)
    for _ in range(3):  # each give frees its own slot again: no wait, nothing given
        devices.give([Part(Book("a", [5]), 0, 1, 5)])
    assert feeder.given == []


def test_the_first_failure_of_any_thread_is_the_one_the_run_raises():
    failures = Failures()
    first, later = RuntimeError("first"), ValueError("later")
    thread = threading.Thread(target=failures.put, args=(first,), name="alexandria-writer")
    thread.start()
    thread.join()
    failures.put(later)
    assert failures.error is first and failures.thread == "alexandria-writer"
    with pytest.raises(RuntimeError, match="first"):
        failures.check()
    with pytest.raises(RuntimeError, match="first"):  # a full queue does not hide it
        from alexandria.run.control import put_unless_failed

        full: queue.Queue = queue.Queue(maxsize=1)
        full.put(None)
        put_unless_failed(full, None, failures)
