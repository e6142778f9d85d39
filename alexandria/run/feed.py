"""Stage 4's driver: one thread per embedding device, so a GPU never waits on the main thread.

The main thread turns prepared books into groups (alexandria.run.grouping), and the points
thread (alexandria.run.points) writes the points of finished groups; each device's thread queues a
group on its device as soon as it arrives, before it waits for the vectors of the group before it,
so the GPU never idles while the main thread writes points or waits for books.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from alexandria.run.control import Failures, put_unless_failed
from alexandria.run.grouping import Group

POLL_S = 0.002  # how often a device thread looks for finished vectors while the next group is late


@dataclass
class Embedded:
    group: Group
    vectors: np.ndarray | None  # None: abandoned after a stop (the next run does these books)
    seconds: float = 0.0  # from queueing the group to having its vectors
    error: BaseException | None = None


class Feeder(threading.Thread):
    """Feeds one embedder from a short queue of groups; finished groups go to `done`."""

    def __init__(self, embedder: Any, token_budget: int, max_batch: int, done: queue.Queue,
                 should_stop: Callable[[], bool], failures: Failures | None = None) -> None:
        super().__init__(name=f"alexandria-feed-{embedder.device}", daemon=True)
        self.embedder, self.token_budget, self.max_batch = embedder, token_budget, max_batch
        self.done, self.should_stop = done, should_stop
        self.inbox: queue.Queue = queue.Queue(maxsize=2)
        self.queued_tokens = 0  # given to this device, not yet back: the next group goes to the least
        self.busy_s = 0.0  # time with a group on the device
        self.failures = failures if failures is not None else Failures()
        self.error: BaseException | None = None  # this device's own failure, if any
        self._lock = threading.Lock()
        self._last_end = 0.0

    def put(self, group: Group) -> None:
        with self._lock:
            self.queued_tokens += group.tokens
        put_unless_failed(self.inbox, group, self.failures)

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
                    if pending is not None:
                        self._flush()  # the next group is late: its tail goes out part-full
                        if pending[1].done():
                            self._finish(*pending)
                            pending = None
                    continue
                if item is None:
                    break
                started = time.perf_counter()
                if item.texts is not None:  # an embedding server: it reads texts, not token ids
                    # a part-full last batch waits for the next group's first texts
                    vectors = self.embedder.submit_texts(item.texts, should_stop=self.should_stop,
                                                         hold_tail=True)
                else:
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
                self._flush()
                self._finish(*pending)
        except BaseException as e:  # the run's failure: put() raises it, `done` wakes the points thread
            self.error = e
            self.failures.put(e)
            self.done.put(Embedded(Group([], [], 0), None, error=e))
            while self.inbox.get() is not None:  # let close() and put() return
                pass

    def _flush(self) -> None:
        flush = getattr(self.embedder, "flush", None)  # servers hold a part-full batch back
        if flush is not None:
            flush()

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
