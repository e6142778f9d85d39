"""Books to groups to devices: what the main thread gives each embedding device, and when.

Several books share one encode call so the model sees full batches, sorted by length over more
chunks; a big book is cut into parts of about one group each, so its vectors come back (and its
points are written) while the rest of it is still on a GPU, and several GPUs share it.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alexandria.run.control import Failures, put_unless_failed
from alexandria.run.options import GROUP_BUDGETS, MAX_UNWRITTEN_GROUPS
from alexandria.store.base import UPSERT_BATCH


@dataclass
class Part:
    """Rows [start, end) of one prepared book."""

    book: Any  # PreparedBook
    start: int
    end: int
    tokens: int


@dataclass
class Group:
    """Parts of several books embedded in one call, so that small books still fill batches."""

    parts: list[Part]  # in the order their rows appear in ids
    ids: list[np.ndarray]
    tokens: int
    texts: list[str] | None = None  # what an embedding server reads (alexandria.embedding.remote)


def parts_of(book: Any, limit: int, align: int) -> list[Part]:
    """A book of more than `limit` tokens, cut into parts of about `limit` tokens.

    Parts end on a multiple of `align` rows (the upsert batch): a book's points are written in
    row order and in blocks of `align` from its first row, so whatever a kill leaves of it is a
    whole number of blocks, which is how `alexandria repair` tells it from a finished book.
    """
    chunks, total = book.chunks, book.tokens
    if total <= limit or len(chunks) <= align:
        return [Part(book, 0, len(chunks), total)]
    rows = max(align, limit * len(chunks) // total // align * align)
    return [Part(book, start, min(start + rows, len(chunks)),
                 sum(c.tokens for c in chunks[start:start + rows]))
            for start in range(0, len(chunks), rows)]


class Grouper:
    """Fills groups across the books as they come; a group is given out once full, or sooner
    when a device is running out of work (`hungry`)."""

    def __init__(self, budget: int, budgets_per_group: int = GROUP_BUDGETS,
                 align: int = UPSERT_BATCH) -> None:
        self.budget, self.budgets_per_group, self.align = budget, budgets_per_group, align
        self.parts: list[Part] = []
        # Every book is in a worker: one budget per group from now on, so the last groups end
        # together on several GPUs and the run's last vectors, written after the GPU is done,
        # are one budget's worth.
        self.tail = False

    @property
    def limit(self) -> int:
        return self.budget * (1 if self.tail else self.budgets_per_group)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.parts)

    def add(self, book: Any) -> Iterator[list[Part]]:
        """Cut `book` into parts and take them in; yields each group that is full before the
        next part fits (the caller gives it to a device, or stops taking books)."""
        limit = self.limit
        tokens = self.tokens
        for part in parts_of(book, limit, self.align):
            if self.parts and tokens + part.tokens > limit:
                yield self.take()
                tokens = 0
            self.parts.append(part)
            tokens += part.tokens

    def take(self) -> list[Part]:
        """The group as it is, part-filled or not."""
        group, self.parts = self.parts, []
        return group

    def hungry(self, backlogs: Sequence[int]) -> bool:
        """A device has less than a group's worth of work queued: better a part-filled group now
        than an idle GPU while the next books are still being prepared."""
        return min(backlogs) < self.limit

    def __bool__(self) -> bool:
        return bool(self.parts)


class Devices:
    """The embedding devices' feeders: each group goes to the one with the least work queued.

    Giving waits only while every device is full, or while the points of too many groups are
    still to be written (their vectors wait in memory until the points thread has them).
    """

    def __init__(self, feeders: list, failures: Failures, should_stop: Callable[[], bool],
                 max_unwritten: int = MAX_UNWRITTEN_GROUPS,
                 texts_of: Callable[[Part], list[str]] | None = None) -> None:
        self.feeders = feeders
        self.texts_of = texts_of  # set when the feeders embed on servers, which read texts
        self.failures = failures
        self.should_stop = should_stop
        # a slot per group given to a device whose points are not yet queued for the writer
        self._unwritten: queue.Queue = queue.Queue(maxsize=max_unwritten * len(feeders))
        self.first_given: float | None = None  # when a device first had work: the run's start-up
        self.points_wait_s = 0.0  # waiting for the points thread to catch up
        self.device_wait_s = 0.0  # waiting for a device with room

    def start(self) -> None:
        for feeder in self.feeders:
            feeder.start()

    @property
    def backlogs(self) -> list[int]:
        return [f.queued_tokens for f in self.feeders]

    @property
    def busy_s(self) -> float:
        return sum(f.busy_s for f in self.feeders)

    def give(self, parts: list[Part]) -> None:
        """Hand a group to the device with the least work queued."""
        started = time.perf_counter()
        put_unless_failed(self._unwritten, None, self.failures)
        self.points_wait_s += time.perf_counter() - started
        if self.should_stop():
            self.written()
            return
        feeder = min(self.feeders, key=lambda f: f.queued_tokens)
        ids = [x for part in parts for x in part.book.token_ids[part.start:part.end]]
        texts = [t for part in parts for t in self.texts_of(part)] if self.texts_of else None
        started = time.perf_counter()
        if self.first_given is None:
            self.first_given = started
        feeder.put(Group(parts, ids, sum(p.tokens for p in parts), texts))
        self.device_wait_s += time.perf_counter() - started

    def written(self) -> None:
        """A group's points are queued for the writer (or it came back empty): free its slot."""
        with contextlib.suppress(queue.Empty):
            self._unwritten.get_nowait()

    def close(self) -> None:
        """The last groups' vectors still come back, even after a stop."""
        for feeder in self.feeders:
            feeder.close()
