"""Stage 4's driver: one thread per embedding device, so a GPU never waits on the main thread.

The main thread turns prepared books into groups, and the points thread (alexandria.pipeline)
writes the points of finished groups; each device's thread queues a group on its device as soon
as it arrives, before it waits for the vectors of the group before it. Measured on an H100 before
this existed, the GPU sat idle while the main thread wrote points and waited for books: it was
busy 46% of the run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

POLL_S = 0.002  # how often a device thread looks for finished vectors while the next group is late


def put_unless_failed(q: queue.Queue, item: Any, failed: Callable[[], BaseException | None]) -> None:
    """Block while the queue is full, but raise the consumer's error instead of waiting forever."""
    while True:
        error = failed()
        if error is not None:
            raise error
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue


@dataclass
class Part:
    """Rows [start, end) of one prepared book.

    A big book goes to the devices in several parts, so its vectors come back (and its points are
    written) while the rest of it is still on a GPU, and several GPUs share it: a 1.9M-token diary
    in one piece was the last thing a run waited for, with its 5,000 points written after it.
    """

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


@dataclass
class Embedded:
    group: Group
    vectors: np.ndarray | None  # None: abandoned after a stop (the next run does these books)
    seconds: float = 0.0  # from queueing the group to having its vectors
    error: BaseException | None = None


class Feeder(threading.Thread):
    """Feeds one embedder from a short queue of groups; finished groups go to `done`."""

    def __init__(self, embedder: Any, token_budget: int, max_batch: int, done: queue.Queue,
                 should_stop: Callable[[], bool]) -> None:
        super().__init__(name=f"alexandria-feed-{embedder.device}", daemon=True)
        self.embedder, self.token_budget, self.max_batch = embedder, token_budget, max_batch
        self.done, self.should_stop = done, should_stop
        self.inbox: queue.Queue = queue.Queue(maxsize=2)
        self.queued_tokens = 0  # given to this device, not yet back: the next group goes to the least
        self.busy_s = 0.0  # time with a group on the device
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._last_end = 0.0

    def put(self, group: Group) -> None:
        with self._lock:
            self.queued_tokens += group.tokens
        put_unless_failed(self.inbox, group, lambda: self.error)

    def close(self) -> None:
        """Finish what was queued (vectors of groups already on the device still come back)."""
        if self.is_alive():
            self.inbox.put(None)
            self.join()

    def run(self) -> None:
        pending: tuple[Group, Any, float] | None = None
        try:
            while True:
                try:
                    item = self.inbox.get(timeout=POLL_S if pending else None)
                except queue.Empty:
                    if pending is not None and pending[1].done():
                        self._finish(*pending)
                        pending = None
                    continue
                if item is None:
                    break
                started = time.perf_counter()
                vectors = self.embedder.submit_ids(item.ids, self.token_budget, self.max_batch,
                                                   should_stop=self.should_stop)
                if pending is not None:  # queued before this one: its vectors are back or nearly
                    self._finish(*pending)
                    pending = None
                if vectors is None:
                    self._returned(item.tokens)
                    self.done.put(Embedded(item, None))
                else:
                    pending = (item, vectors, started)
            if pending is not None:
                self._finish(*pending)
        except BaseException as e:  # the main thread raises it: from put(), or from `done`
            self.error = e
            self.done.put(Embedded(Group([], [], 0), None, error=e))
            while self.inbox.get() is not None:  # let close() and put() return
                pass

    def _finish(self, group: Group, pending: Any, started: float) -> None:
        vectors = pending.result()
        end = time.perf_counter()
        self.busy_s += end - max(started, self._last_end)  # groups overlap on the device
        self._last_end = end
        self._returned(group.tokens)
        self.done.put(Embedded(group, vectors, end - started))

    def _returned(self, tokens: int) -> None:
        with self._lock:
            self.queued_tokens -= tokens
