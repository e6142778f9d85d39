"""The client of a shard's owner (alexandria.store.owner): every process that uses an embedded store.

An EdgeStore's methods, each one a pickled call over a Unix socket to the one process that holds
the shard; the owner is started on demand. The ingest's writer thread uses it as it used its own
store process before: turning a payload into a Qdrant point costs more under the GIL than the
upsert itself, so the owner does that work on its own interpreter from blocks of points in columns
(alexandria.store.base.PointBlock); upserts are not waited for, so pickling the next block
overlaps storing this one, and their errors come back with the next call that is.

A client killed with SIGKILL closes its socket with it; the owner drops what that client left
queued and exits a short grace after its last client, so nothing of a killed run lasts. The
shard's write-ahead log keeps what was written, and the next run's recovery redoes the book that was
in progress (alexandria.children says how).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from alexandria.store.base import StoreError
from alexandria.store.edge import min_free_bytes
from alexandria.store.owner import address

log = logging.getLogger("alexandria")

# Calls whose answers are read later: each is followed by a flush that is waited for (the owner
# answers each client in order), so their errors still stop the book before the manifest says done.
NOT_WAITED = frozenset({"upsert", "upsert_block", "delete_book"})
AHEAD = 4  # writes the owner may have queued before the client waits for their answers
CONNECT_S = 60.0  # how long a client tries to reach (or start) the owner before giving up


class StoreProcess:
    """An EdgeStore served by its owner process: the same methods, each one a call over a socket."""

    def __init__(self, root: Path, collection: str, dimension: int | None,
                 store_config: dict[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._died: str | None = None
        self._unanswered = 0  # writes sent, their answers not yet read
        self.collection = collection
        self.path = Path(root).expanduser().absolute() / collection
        self._conn, opened, self._started = connect(self.path, dimension, store_config)
        self.owner_pid = opened["pid"]
        if opened.get("snapshot"):
            log.warning("the store %s is read-only: searching a private copy of it in %s",
                     self.path, opened["snapshot"])

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Upserts are not waited for (the client pickles the next block while the owner stores
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
                self._died = (f"the store owner process {self.owner_pid} for {self.path} died or "
                              f"closed the connection ({self._fate()})")
                raise StoreError(self._died) from e
        if error is not None:
            raise error
        return value

    def _fate(self) -> str:
        """Why the owner went, as far as this client can tell: never a guess at a full disk."""
        proc = self._started if self._started and self._started.pid == self.owner_pid else None
        if proc is not None:
            try:
                code = proc.wait(5)
                why = (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
            except (subprocess.TimeoutExpired, ValueError):
                why = "it still runs"
        else:
            why = "it is gone" if not os.path.exists(f"/proc/{self.owner_pid}") else "it still runs"
        try:
            free = shutil.disk_usage(self.path).free
        except OSError:
            return why
        if free < min_free_bytes():
            why += f"; the disk holding the store has only {free / 2**20:.0f} MB free"
        return why

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
        """Pages one call at a time: the owner keeps the scroll, the socket never holds it all."""
        self._call("iter_start", *args, **kwargs)
        while (page := self._call("iter_next")) is not None:
            yield page

    def close(self) -> None:
        if self._closed:
            return
        try:
            if not self._died:  # a dead owner's error was raised already
                try:
                    with self._lock:  # a book cut off by a stop: its upserts' answers no longer matter
                        self._answers(keep=0)
                    self._call("close")
                except (StoreError, OSError, EOFError):
                    pass
        finally:
            self._closed = True
            self._conn.close()


def connect(shard: Path, dimension: int | None, store_config: dict[str, Any] | None = None
            ) -> tuple[Connection, dict[str, Any], subprocess.Popen | None]:
    """A connection to the shard's owner, started here if nobody answers, its 'open' answer and the
    owner this client started (if it did)."""
    where = address(shard)
    deadline = time.monotonic() + CONNECT_S
    started: subprocess.Popen | None = None
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(where)
            conn = Connection(sock.detach())
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            if started is None or started.poll() is not None:
                started = start_owner(shard)
            if time.monotonic() > deadline:
                raise StoreError(f"no store owner process for {shard} answered within "
                                 f"{CONNECT_S:g} s") from None
            time.sleep(0.02)
            continue
        try:
            try:
                conn.send(("open", (dimension, store_config), {}))
            except OSError:  # closed at once: a refusal may be waiting to be read
                pass
            ok, value = conn.recv()
        except (EOFError, OSError):  # the owner was leaving as we came: start the next one
            conn.close()
            if time.monotonic() > deadline:
                raise StoreError(f"the store owner process for {shard} kept closing the "
                                 "connection") from None
            time.sleep(0.02)
            continue
        if not ok:
            conn.close()
            raise value
        return conn, value, started


def start_owner(shard: Path) -> subprocess.Popen:
    """The owner, detached: its own session (no terminal's signals), stdio to /dev/null."""
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexandria.store.owner", str(shard.parent), shard.name],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, env=env, cwd="/")
    # Reap it when it leaves, so a long-lived client keeps no zombie.
    threading.Thread(target=proc.wait, name="alexandria-owner-reaper", daemon=True).start()
    return proc
