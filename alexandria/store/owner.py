"""The owner of an embedded shard: the only process that opens it, serving every other one.

Qdrant Edge lets one handle hold a shard at a time, across processes too, so a search during an
ingest used to fail ("open in another process"). Now whoever needs the shard (a search, status
--verify, the ingest's store, export, repair, doctor) is a client of one owner process per shard:

- The first client that finds nobody answering starts the owner (detached: its own session, no
  terminal, stdio to /dev/null) and connects to it. Two clients racing to start one: binding the
  socket's address is atomic, the loser's owner exits at once, both clients reach the winner.
- The address is in Linux's abstract socket namespace, named by a hash of the shard's real path:
  no socket file to go stale, no path-length limit. The kernel reports each peer's uid
  (SO_PEERCRED): only the same user, or root, is served.
- Calls are VectorStore methods, pickled both ways as over the ingest's old pipe (the client side is
  alexandria.store.process.StoreProcess). One thread per client, one lock around the shard: a search
  waits for one upsert block (or a run's index build of one segment, alexandria.run.writer) at
  most, never for a whole ingest, and answers from what is stored.
- It holds the shard while it has clients: the last one's close closes the shard before it is
  answered (a command that returned has its shard closed, as before), and the owner exits GRACE_S
  later unless a new client came (it reopens the shard), so nothing of a SIGKILLed run outlives it by
  more than a few seconds. Killed itself, it leaves no claim: the
  kernel drops the shard's lock and the socket's name; the next client starts a new owner.
- A client that vanished (a killed run) may leave writes queued in its socket: they are dropped,
  not applied, so they cannot land after the next run's recovery deleted that book's points.
- A folder it may not write (a mounted snapshot): Edge cannot open a shard read-only, so the owner
  copies the collection to a private temporary folder, serves that and refuses writes.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import pickle
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError
from alexandria.store.base import StoreError
from alexandria.store.config import check_same
from alexandria.store.edge import EdgeStore, edge_dimension

log = logging.getLogger("alexandria")

GRACE_S = 1.5  # how long the owner waits for a next client after its last one left
WRITES = frozenset({"upsert", "upsert_block", "delete_book", "set_book_payload", "add_sparse"})


def address(shard: Path) -> str:
    """The owner's socket address: abstract (a leading NUL), from the shard's real path."""
    real = os.path.realpath(Path(shard).expanduser())
    return "\0alexandria-shard-" + hashlib.sha256(real.encode()).hexdigest()[:40]


def peer_allowed(sock: socket.socket) -> bool:
    """Only this process's user, or root, may use the shard (SO_PEERCRED: pid, uid, gid)."""
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
    except OSError:
        return False
    return uid in (os.getuid(), 0)


def writable(folder: Path) -> bool:
    """False on a read-only mount or a folder this user may not write (access() sees both)."""
    return os.access(folder, os.W_OK)


def hung_up(conn: Connection) -> bool:
    """The client closed its end (or died): what it left queued is not wanted any more."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLHUP | getattr(select, "POLLRDHUP", 0))
    return bool(poller.poll(0))


class Owner:
    """The shard and its clients; every shard call holds `lock`."""

    def __init__(self, root: Path, collection: str) -> None:
        self.root, self.collection = root, collection
        self.path = root / collection
        self.lock = threading.Lock()
        self.store: EdgeStore | None = None
        self.snapshot: Path | None = None  # the private copy served for a read-only folder
        self.clients = 0
        self.left_at = time.monotonic()
        self.count_lock = threading.Lock()

    def idle_s(self) -> float:
        with self.count_lock:
            return 0.0 if self.clients else time.monotonic() - self.left_at

    def attach(self, conn: Connection) -> None:
        with self.count_lock:
            self.clients += 1
        threading.Thread(target=self.serve, args=(conn,), name="alexandria-owner-client",
                         daemon=True).start()

    def _open(self, dimension: int | None, config: dict[str, Any] | None = None) -> None:
        """Called under the lock: the shard opened once, for the first client that needs it."""
        if self.store is not None:
            check_same(self.path, self.store.config, config or {})
            stored = edge_dimension(self.path / "edge_config.json")
            if dimension is not None and stored is not None and stored != dimension:
                raise UsageError(
                    f"Collection {self.collection!r} in {self.root} holds {stored}-dimensional "
                    f"vectors but the model makes {dimension}; use another --collection.")
            return
        if self.snapshot is not None:  # reopened after an idle moment: the same private copy
            self.store = EdgeStore(self.snapshot, self.collection, dimension, config)
            return
        if (self.path / "edge_config.json").is_file() and not writable(self.path):
            copy = Path(tempfile.mkdtemp(prefix="alexandria-snapshot-"))
            try:
                shutil.copytree(self.path, copy / self.collection, symlinks=True)
                self.store = EdgeStore(copy, self.collection, dimension, config)
            except BaseException:
                shutil.rmtree(copy, ignore_errors=True)
                raise
            self.snapshot = copy
            return
        self.store = EdgeStore(self.root, self.collection, dimension, config)

    def release_if_last(self, leaving: int) -> None:
        """The last client is leaving (`leaving` still counted): close the shard now, so that once
        a command returns the shard is closed, as when each command opened it itself (its files
        settled, another process free to load it). The owner stays its grace; a next client
        reopens it."""
        with self.lock:
            with self.count_lock:
                last = self.clients == leaving
            if last and self.store is not None:
                self.store.close()
                self.store = None

    def close(self) -> None:
        with self.lock:
            if self.store is not None:
                self.store.close()
                self.store = None
            if self.snapshot is not None:
                shutil.rmtree(self.snapshot, ignore_errors=True)
                self.snapshot = None

    def serve(self, conn: Connection) -> None:
        try:
            self._serve(conn)
        finally:
            conn.close()
            with self.count_lock:
                self.clients -= 1
                self.left_at = time.monotonic()
            self.release_if_last(0)  # a client that left without "close" (killed)

    def _serve(self, conn: Connection) -> None:
        try:
            name, args, _ = conn.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return
        try:
            if name != "open":
                raise StoreError(f"the store owner expected 'open', not {name!r}")
            with self.lock:
                self._open(*args)
            opened: Any = {"pid": os.getpid(), "snapshot": str(self.snapshot or "") or None}
            ok = True
        except BaseException as e:
            ok, opened = False, e
        if not reply(conn, ok, opened) or not ok:
            return
        pages: Any = iter(())
        spent: dict[str, float] = {}  # seconds in the engine per kind of call: the run report's
        while True:
            try:
                name, args, kwargs = conn.recv()
            except (EOFError, OSError, pickle.UnpicklingError):
                return
            if name == "close":  # the shard is closed before the answer if this is the last client
                try:
                    self.release_if_last(1)
                    ok, value = True, None
                except BaseException as e:
                    ok, value = False, e
                reply(conn, ok, value)
                return
            if name in WRITES and hung_up(conn):  # a killed client's queued writes: dropped
                return
            ok, started = True, time.perf_counter()
            try:
                with self.lock:
                    value = self._call(name, args, kwargs, spent)
                    if name == "iter_start":
                        pages, value = value, None
                    elif name == "iter_next":
                        value = next(pages, None)
            except BaseException as e:
                ok, value = False, e
            kind = name if name in ("flush", "delete_book") else (
                "upsert" if name.startswith("upsert") else "other")
            spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - started
            if not reply(conn, ok, value):
                return

    def _call(self, name: str, args: tuple, kwargs: dict, spent: dict[str, float]) -> Any:
        store = self.store
        if store is None:
            raise StoreError(f"the store {self.path} is closed")
        if self.snapshot is not None and name in WRITES:
            raise UsageError(f"The store {self.path} is read-only; nothing can be written to it.")
        if name == "seconds":
            return dict(spent)
        if name == "iter_start":
            return store.iter_points(*args, **kwargs)
        if name == "iter_next":
            return None
        if name.startswith("_") or not hasattr(store, name):
            raise StoreError(f"the store has no call {name!r}")
        return getattr(store, name)(*args, **kwargs)


def reply(conn: Connection, ok: bool, value: Any) -> bool:
    if not ok:
        try:
            pickle.dumps(value)
        except Exception:
            value = StoreError(f"{type(value).__name__}: {value}")
    try:
        conn.send((ok, value))
        return True
    except (OSError, ValueError):  # the client is gone
        return False


def main(root: str, collection: str) -> int:
    """Bind the shard's address (or leave: another owner has it), then serve until idle."""
    owner = Owner(Path(root), collection)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address(owner.path))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:  # lost the race to start an owner: the winner serves
            return 0
        raise
    listener.listen(128)
    listener.settimeout(0.2)
    try:
        while True:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                if owner.idle_s() > GRACE_S:
                    return 0
                continue
            if not peer_allowed(sock):
                refused = Connection(sock.detach())
                reply(refused, False, UsageError(
                    f"The store {owner.path} is served by another user's process; only that user "
                    "(or root) may use it."))
                refused.close()
                continue
            sock.setblocking(True)
            owner.attach(Connection(sock.detach()))
    finally:
        listener.close()  # first: a client arriving now starts the next owner
        owner.close()


if __name__ == "__main__":
    os.chdir("/")  # hold no mount busy
    for sig in (signal.SIGINT, signal.SIGHUP):  # no terminal's signal stops a shard others use
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(main(sys.argv[1], sys.argv[2]))
