"""The book workers: extraction and chunking in worker processes, a window of books at a time."""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from alexandria.children import child_context
from alexandria.run.control import Failures
from alexandria.run.options import PART_CHARS
from alexandria.run.plan import Planned, start_order
from alexandria.run.prepare import (
    PartTask,
    PreparedBook,
    PrepareTask,
    init_worker,
    merge_parts,
    prepare,
    prepare_part,
    split_chapters,
)


class Preparing:
    """Books in the worker processes, a window of them at a time, smallest and largest first
    (start_order). It starts as soon as the plan is known, and its workers start on a thread of
    their own (each one a fork server request; the first starts the fork server), so the first
    books are parsed while the model loads and the store opens.
    """

    def __init__(self, to_ingest: list[Planned], workers: int, initargs: tuple, failures: Failures,
                 part_chars: int = PART_CHARS, extract_cache: str | None = None) -> None:
        self.by_key = {p.book.key: p for p in to_ingest}
        self._queue = deque(p for p in start_order(to_ingest))
        self._max_parts = workers = max(1, workers)
        self._window = 2 * min(workers, len(to_ingest))
        self._inflight: dict[Future, str] = {}
        # big books whose parts are out: key -> (the extracted book, its parts so far)
        self._split: dict[str, tuple[PreparedBook, list[PreparedBook | None]]] = {}
        # A fork server's pool starts a worker only when no idle one can take a task: a nightly
        # run of 3 books starts 3, more only for a big book's parts (a one-book test run too).
        self._pool = ProcessPoolExecutor(workers, mp_context=child_context(),
                                         initializer=init_worker, initargs=initargs)
        self._failures = failures
        self._part_chars = part_chars
        self._extract_cache = extract_cache
        self._starting = threading.Thread(target=self._start, name="alexandria-prepare-start",
                                          daemon=True)
        self._starting.start()

    def _start(self) -> None:
        try:
            self._fill()
        except BaseException as e:  # raised by wait(), on the main thread
            self._failures.put(e)

    def _fill(self) -> None:
        while self._queue and len(self._inflight) < self._window:
            p = self._queue.popleft()
            b = p.book
            task = PrepareTask(b.key, str(b.path), b.fmt or "epub", b.title,
                               title_is_file_name=b.calibre_id is None,
                               max_parts=self._max_parts, part_chars=self._part_chars,
                               extract_cache=self._extract_cache)
            self._inflight[self._pool.submit(prepare, task)] = b.key

    def _started(self) -> None:
        """Wait for the first window to be handed out: until then a book is in neither the queue
        nor the futures (a run of one book once ended here as if it had none left)."""
        self._starting.join()
        self._failures.check()

    def wait(self, timeout: float) -> list[PreparedBook]:
        """The books finished within `timeout` seconds (maybe none); more are started in their place."""
        self._started()
        self._fill()
        done, _ = wait(list(self._inflight), timeout=timeout, return_when=FIRST_COMPLETED)
        ready = []
        for f in done:
            self._inflight.pop(f)
            result = f.result()
            if result.part is not None:
                head, parts = self._split[result.book_key]
                parts[result.part] = result
                if all(part is not None for part in parts):
                    del self._split[result.book_key]
                    ready.append(merge_parts(head, parts))  # type: ignore[arg-type]
            elif result.parts:
                self.start_parts(result)
            else:
                ready.append(result)
        self._fill()
        return ready

    def start_parts(self, head: PreparedBook) -> None:
        """A big book's chapter groups go to the pool at once. They count in the window, so no
        more books are started until they are taken: only the books already handed out run
        before them."""
        groups = split_chapters(head.chapters or [], head.parts)
        self._split[head.book_key] = (head, [None] * len(groups))
        for number, chapters in enumerate(groups):
            task = PartTask(head.book_key, number, chapters, head.prompt_title)
            future = self._pool.submit(prepare_part, task)
            self._inflight[future] = head.book_key
        head.chapters = None

    @property
    def all_started(self) -> bool:
        """Every book is in a worker or done: what is left of the run is its last few books."""
        self._started()
        return not self._queue

    def __bool__(self) -> bool:
        self._started()
        return bool(self._queue or self._inflight)

    def close(self) -> None:
        """Idempotent; the workers finish their current book and exit on their own."""
        self._starting.join()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def abandon(self) -> None:
        """A failed run: the books in the workers are of no use now, so the workers go at once
        (a wrong --collection found after they started must not wait for a big book to be parsed)."""
        self._starting.join()
        terminate = getattr(self._pool, "terminate_workers", None)  # Python 3.14
        if terminate is not None:
            terminate()
            return
        workers = self.worker_processes()  # before close()
        self.close()
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.terminate()

    def worker_processes(self) -> list:
        """The pool's live worker processes (ProcessPoolExecutor keeps them in `_processes`,
        which Python before 3.14 offers no public way to reach)."""
        return list((getattr(self._pool, "_processes", None) or {}).values())
