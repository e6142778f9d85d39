"""The writer thread: the only one that changes the store or the manifest during a run.

It applies operations strictly in the order they were queued, which is what makes a kill at any
instant recoverable: a book's row is in-progress before its first point is touched, and done only
after its points are flushed and counted.

Where the run embeds on servers and the shard has its own owner process, the writer also has the
store index what it wrote every `index_every` points, after the book that crossed the mark is done:
the owner builds while the run keeps embedding into the writer's queue, and the build at the end
of the run is left with the rest.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alexandria.run.control import Failures, put_unless_failed
from alexandria.run.report import BookResult
from alexandria.sources.library import Book
from alexandria.store.base import PointBlock, VectorStore
from alexandria.store.manifest import Manifest


class Writer(threading.Thread):
    """Owns the store and the manifest for the run; applies operations strictly in queue order."""

    def __init__(self, store: VectorStore, manifest_file: Path, collection: str,
                 on_result: Callable[[BookResult], None], failures: Failures,
                 index_every: int = 0) -> None:
        super().__init__(name="alexandria-writer", daemon=True)
        self.store = store
        self.manifest_file = manifest_file
        self.collection = collection
        self.on_result = on_result
        self.queue: queue.Queue = queue.Queue(maxsize=32)
        self.failures = failures
        self.seconds = 0.0
        self.waited_s = 0.0
        self.index_every = index_every  # 0: the store indexes only at the end of the run
        self.unindexed = 0  # points written since the last build
        self.index_s = 0.0  # spent in builds during the run (part of `seconds`)
        self.index_builds = 0

    def submit(self, *op: Any) -> None:
        started = time.perf_counter()
        put_unless_failed(self.queue, op, self.failures)
        self.waited_s += time.perf_counter() - started  # the queue was full: the writer is behind

    def close(self) -> None:
        """Write what is queued, then stop; raises the run's failure, whichever thread it was.

        "stop" goes in even after another thread failed, so the books whose points are all
        queued are still finished; only a writer that died itself has nothing left to do.
        """
        while self.is_alive():
            try:
                self.queue.put(("stop",), timeout=0.2)
                break
            except queue.Full:
                continue
        self.join()
        self.failures.check()

    def run(self) -> None:
        manifest = Manifest(self.manifest_file, check=False)  # the run checked it already
        try:
            while True:
                op = self.queue.get()
                if op[0] == "stop":
                    return
                started = time.perf_counter()
                getattr(self, f"_{op[0]}")(manifest, *op[1:])
                self.seconds += time.perf_counter() - started
        except BaseException as e:  # the run's failure: every submit() from now on raises it
            self.failures.put(e)
            # Drain so the producer never blocks on a dead consumer.
            while True:
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
        finally:
            manifest.close()

    def _begin(self, m: Manifest, book: Book, fields: dict) -> None:
        # in-progress is committed before the first point is touched: a kill from here on
        # makes the next run delete this book's points and redo it.
        m.upsert(self.collection, book.key, **{**fields, "status": "in-progress", "reason": None,
                                               "stored_points": 0})
        self.store.delete_book(book.key)

    def _points(self, m: Manifest, block: PointBlock) -> None:
        self.store.upsert_block(block)
        self.unindexed += len(block.fields)

    def _finish(self, m: Manifest, book: Book, result: BookResult, fields: dict, replaces) -> None:
        self.store.flush()
        stored = self.store.count_book(book.key)
        if stored != result.chunks:
            self.store.delete_book(book.key)
            self.store.flush()
            result.status, result.reason = "failed", "store-mismatch"
            m.upsert(self.collection, book.key, status="failed", reason="store-mismatch",
                     stored_points=0)
        else:
            m.upsert(self.collection, book.key, **{**fields, "status": "done",
                                                   "stored_points": stored})
            for old in replaces:  # an older version of this file, now superseded
                self.store.delete_book(old)
                self.store.flush()
                m.upsert(self.collection, old, status="removed", stored_points=0,
                         reason="replaced")
        self.on_result(result)
        if self.index_every and self.unindexed >= self.index_every:
            self._index_part()

    def _index_part(self) -> None:
        """The store declines once another segment would make its optimiser merge segments:
        from then on only the end of the run builds."""
        started = time.perf_counter()
        if self.store.index_part():
            self.index_builds += 1
            self.unindexed = 0
        else:
            self.index_every = 0
        self.index_s += time.perf_counter() - started

    def _remove(self, m: Manifest, book_key: str, why: str) -> None:
        """The library no longer has this book (or its file): the store must not either."""
        self.store.delete_book(book_key)
        self.store.flush()
        row = m.get(self.collection, book_key)
        if why == "file-missing":  # the book is still in calibre: it stays a visible failure
            m.upsert(self.collection, book_key, status="failed", reason=why, stored_points=0)
        else:
            m.upsert(self.collection, book_key, status="removed", reason=why, stored_points=0)
            title = row.title if row else book_key
            self.on_result(BookResult(book_key, title or book_key, row.source_path if row else None,
                                      "removed", why))

    def _record(self, m: Manifest, book: Book, result: BookResult, fields: dict) -> None:
        m.upsert(self.collection, book.key, **fields)
        self.on_result(result)

    def _metadata(self, m: Manifest, book: Book, result: BookResult, fields: dict) -> None:
        self.store.set_book_payload(book.key, book.metadata())
        self.store.flush()
        m.upsert(self.collection, book.key, **fields)
        self.on_result(result)
