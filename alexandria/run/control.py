"""A run's two control signals: a stop asked for by a signal, and the first failure of any thread."""

from __future__ import annotations

import queue
import threading
from typing import Any


class StopRequested:
    """Set by signal handlers: finish what is queued, start nothing new."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    def set(self, name: str) -> None:
        self.signal_name = name
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


class Failures:
    """The one error channel of a run: the first failure of any of its threads, with its cause.

    Every thread (the book workers' starter, the device feeders, the points thread, the writer)
    puts what killed it here; every wait of every other thread gives up as soon as there is one
    (put_unless_failed), and the main thread raises it. Later failures are consequences of the
    first (a queue nobody drains, a store closed under a writer) and are dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self.thread: str | None = None  # the name of the thread that failed first

    def put(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error, self.thread = error, threading.current_thread().name

    def get(self) -> BaseException | None:
        return self.error

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def __bool__(self) -> bool:
        return self.error is not None


def put_unless_failed(q: queue.Queue, item: Any, failures: Failures) -> None:
    """Block while the queue is full, but raise the run's failure instead of waiting forever."""
    while True:
        failures.check()
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            continue
