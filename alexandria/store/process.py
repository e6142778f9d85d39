"""Qdrant Edge in a child process while ingesting.

Turning a payload into a Qdrant point costs more under the GIL than the upsert itself, so at a
GPU's rate the point building kept the GIL busy and starved the threads that feed the GPU. The
child does that work on its own interpreter, from blocks of points in columns
(alexandria.store.base.PointBlock); the writer thread only pickles them
and does not wait for an upsert's answer, so pickling the next block overlaps storing this one.

The child owns the shard and answers one call at a time, in order. It ignores SIGINT, SIGTERM and
SIGHUP (the parent stops cleanly and closes it) and exits when the pipe closes. A parent killed
with SIGKILL takes the fork server with it, and the kernel then kills this child too, possibly in
the middle of a call: the shard's write-ahead log keeps what was written, and the next run's
recovery redoes the book that was in progress (alexandria.children says how).
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alexandria.children import child_context, exit_with_parent
from alexandria.store.base import StoreError
from alexandria.store.edge import EdgeStore

# Calls whose answers are read later: each is followed by a flush that is waited for (the child
# answers in order), so their errors still stop the book before the manifest says done.
NOT_WAITED = frozenset({"upsert", "upsert_block", "delete_book"})
AHEAD = 4  # writes the child may have queued before the parent waits for their answers


class StoreProcess:
    """An EdgeStore in a child process: the same methods, each one a call over a pipe."""

    def __init__(self, root: Path, collection: str, dimension: int | None) -> None:
        ctx = child_context()  # torch may be loaded here: never fork it
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, str(root), collection, dimension),
                                 name="alexandria-store", daemon=True)
        self._proc.start()
        child.close()
        self._lock = threading.Lock()
        self._closed = False
        self._died: str | None = None
        self._unanswered = 0  # writes sent, their answers not yet read
        self.collection = collection
        self.path = Path(root).expanduser() / collection
        try:
            self._call("opened")
        except BaseException:
            self._closed = True
            self._conn.close()
            self._proc.join(10)
            raise

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Upserts are not waited for (the parent pickles the next block while the child stores
        this one): their errors come back with the next call that is."""
        with self._lock:
            if self._died:
                raise StoreError(self._died)
            if self._closed:
                raise StoreError(f"the store {self.path} is already closed")
            try:
                waited = name not in NOT_WAITED
                error = self._answers(keep=0 if waited else AHEAD - 1)
                if error is None:
                    self._conn.send((name, args, kwargs))
                    if not waited:
                        self._unanswered += 1
                        return None
                    ok, value = self._conn.recv()
                    error = None if ok else value
            except (EOFError, OSError) as e:
                self._proc.join(5)
                code = self._proc.exitcode
                why = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
                self._died = f"the store process for {self.path} died ({why})"
                raise StoreError(self._died) from e
        if error is not None:
            raise error
        return value

    def _answers(self, keep: int) -> BaseException | None:
        """Read upsert answers until at most `keep` are outstanding; the first error, if any."""
        error = None
        while self._unanswered > keep:
            ok, value = self._conn.recv()
            self._unanswered -= 1
            error = error or (None if ok else value)
        return error

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)

    def iter_points(self, *args: Any, **kwargs: Any):
        """Pages one call at a time: the child keeps the scroll, the pipe never holds it all."""
        self._call("iter_start", *args, **kwargs)
        while (page := self._call("iter_next")) is not None:
            yield page

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self._died:  # a dead child's error was raised already
                with contextlib.suppress(StoreError, OSError, EOFError):
                    with self._lock:  # a book cut off by a stop: its upserts' answers no longer matter
                        self._answers(keep=0)
                self._call("close")
        finally:
            self._closed = True
            self._conn.close()
            self._proc.join(30)
            if self._proc.is_alive():
                self._proc.kill()


def _serve(conn, root: str, collection: str, dimension: int | None) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    exit_with_parent()  # SIGKILLed once the run is gone, even mid-call (no end-of-file to notice then)
    try:
        store = EdgeStore(Path(root), collection, dimension)
    except BaseException as e:
        _reply(conn, False, e)
        return
    pages: Iterator[Any] = iter(())
    spent: dict[str, float] = {}  # seconds in the engine per kind of call: what the run report shows
    try:
        while True:
            try:
                name, args, kwargs = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if name == "close":  # reply once the shard is released
                store.close()
                _reply(conn, True, None)
                return
            ok = True
            started = time.perf_counter()
            try:
                if name == "opened":
                    value = None
                elif name == "seconds":
                    value = dict(spent)
                elif name == "iter_start":
                    pages, value = store.iter_points(*args, **kwargs), None
                elif name == "iter_next":
                    value = next(pages, None)
                else:
                    value = getattr(store, name)(*args, **kwargs)
            except BaseException as e:
                ok, value = False, e
            kind = name if name in ("flush", "delete_book") else (
                "upsert" if name.startswith("upsert") else "other")
            spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - started
            if not _reply(conn, ok, value):
                return
    finally:
        store.close()  # a second close is a no-op


def _reply(conn, ok: bool, value: Any) -> bool:
    if not ok:
        try:
            pickle.dumps(value)
        except Exception:
            value = StoreError(f"{type(value).__name__}: {value}")
    try:
        conn.send((ok, value))
        return True
    except (OSError, ValueError):  # the parent is gone
        return False
