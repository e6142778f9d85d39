"""One Alexandria run per store at a time, so overlapping nightly cron jobs never share a store.

The lock is an advisory flock on a small file next to the manifest. The kernel drops it when the
holding process dies, however it dies, so a lock file left behind by a killed run never blocks the
next one; the JSON inside the file only says who holds the lock, it is never the lock itself.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError

try:  # Linux, macOS, BSD
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

EXIT_LOCKED = 75  # EX_TEMPFAIL: cron wrappers and systemd treat it as "try again later"
LOCK_NAME = "alexandria.lock"
RETRY_S = 0.2
# A probe (status, search, serve) holds the lock for an instant to learn whether a run holds it:
# a run starting in that instant tries this long before it calls the lock busy.
PROBE_GRACE_S = 0.5
# Windows locks a byte range and blocks other handles from reading it: lock a byte far past the
# JSON so a second run can still read who holds the lock.
_WIN_LOCK_OFFSET = 1 << 30


def lock_path(store: Path) -> Path:
    """Where a run over STORE keeps its lock (beside the default manifest)."""
    return Path(store).expanduser() / LOCK_NAME


@dataclass
class LockHolder:
    """What the running process wrote into the lock file; fields are None when it wrote nothing yet."""

    pid: int | None = None
    started: str | None = None
    host: str | None = None
    argv: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> LockHolder:
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        pid = data.get("pid")
        argv = data.get("argv")
        return cls(
            pid=pid if isinstance(pid, int) else None,
            started=str(data["started"]) if data.get("started") else None,
            host=str(data["host"]) if data.get("host") else None,
            argv=[str(a) for a in argv] if isinstance(argv, list) else [],
        )


class LockBusy(Exception):
    """Another run holds the lock: the caller exits with EXIT_LOCKED and cron tries again later."""

    exit_code = EXIT_LOCKED

    def __init__(
        self, path: Path, pid: int | None, started: str | None, host: str | None = None,
        waited_s: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.pid = pid
        self.started = started
        self.host = host
        self.waited_s = waited_s
        super().__init__(self._sentence())

    def _sentence(self) -> str:
        who = [f"PID {self.pid}" if self.pid is not None else "PID unknown"]
        if self.host and self.host != socket.gethostname():
            who[0] += f" on {self.host}"
        if self.started:
            who.append(f"started {self.started}")
        holder = f"Another Alexandria run ({', '.join(who)})"
        if self.waited_s > 0:
            return (f"{holder} still holds {self.path} after waiting {self.waited_s:g} s; "
                    "wait for it or use a longer --wait-lock SECONDS.")
        return f"{holder} holds {self.path}; wait for it or use --wait-lock SECONDS."


class RunLock:
    """`with RunLock(path, wait_s):` around a whole run; raises LockBusy when another run has it."""

    def __init__(self, path: Path, wait_s: float = 0.0) -> None:
        self.path = Path(path).expanduser()
        self.wait_s = max(0.0, float(wait_s))
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = _open(self.path, create=True)
        deadline = time.monotonic() + max(self.wait_s, PROBE_GRACE_S)
        try:
            while not _try_lock(fd, self.path):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holder = _read_holder(fd, settle=True)
                    raise LockBusy(self.path, holder.pid, holder.started, holder.host, self.wait_s)
                time.sleep(min(RETRY_S, remaining))
            _write_holder(fd)
        except BaseException:
            os.close(fd)  # closing the descriptor also drops a lock taken just before a failure
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Empty the file while still holding the lock: who-holds-it text never outlives the run.
            os.ftruncate(fd, 0)
        except OSError:
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)


def probe(path: Path) -> LockHolder | None:
    """Who holds the lock at PATH, or None when nobody does (or there is no lock file).

    It takes the lock for an instant to find out, so it never reports a dead process as running.
    """
    path = Path(path).expanduser()
    if not path.exists():
        return None
    fd = _open(path, create=False, write=fcntl is None)  # flock needs no write access
    try:
        if _try_lock(fd, path):
            _unlock(fd)
            return None
        return _read_holder(fd, settle=True)
    finally:
        os.close(fd)


# -- platform layer --------------------------------------------------------------------------------


def _open(path: Path, create: bool, write: bool = True) -> int:
    flags = (os.O_RDWR if write else os.O_RDONLY) | (os.O_CREAT if create else 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        # Never O_TRUNC: that would wipe the running holder's description before we know it runs.
        return os.open(path, flags, 0o644)
    except OSError as e:
        if create:
            raise UsageError(f"The folder {path.parent} is not writable: its lock file cannot be "
                             f"created ({e.strerror or e}).") from e
        raise UsageError(f"The lock file {path} cannot be opened ({e.strerror or e}).") from e


def _try_lock(fd: int, path: Path) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            import msvcrt

            os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except (BlockingIOError, PermissionError):  # EWOULDBLOCK (flock) / EACCES (msvcrt)
        return False
    except OSError as e:
        if fcntl is None and e.errno in (13, 36):  # msvcrt: EACCES / EDEADLOCK mean "held"
            return False
        raise UsageError(f"The lock file {path} cannot be locked ({e.strerror or e}).") from e


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        import msvcrt

        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _holder_info() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "started": datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "argv": list(sys.argv),
    }


def _write_holder(fd: int) -> None:
    data = json.dumps(_holder_info(), ensure_ascii=False).encode() + b"\n"
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    try:
        os.fsync(fd)  # the "flush": a reader in another process sees it at once anyway
    except OSError:
        pass


def _read_text(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while True:
        block = os.read(fd, 65536)
        if not block:
            break
        chunks.append(block)
        if sum(map(len, chunks)) > 1 << 20:
            break
    return b"".join(chunks).decode("utf-8", errors="replace")


def _read_holder(fd: int, settle: bool = False) -> LockHolder:
    """settle: the holder may have locked but not yet written; give it a moment."""
    holder = LockHolder.parse(_read_text(fd))
    tries = 5 if settle else 0
    while holder.pid is None and tries:
        time.sleep(0.05)
        holder = LockHolder.parse(_read_text(fd))
        tries -= 1
    return holder
