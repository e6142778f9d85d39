"""Stage 6: the per-book ledger that makes a killed run resumable and a nightly run incremental.

A book is `done` only after its points are flushed and counted in the store; a row left
`in-progress` by a killed run means "points may be partial": they are deleted and the book redone.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexandria.errors import RunFailure, UsageError

SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
    collection TEXT NOT NULL,
    book_key TEXT NOT NULL,
    calibre_id INTEGER,
    title TEXT,
    source_path TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    content_hash TEXT,
    meta_hash TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    warnings TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    stored_points INTEGER NOT NULL DEFAULT 0,
    seconds REAL,
    chunks_per_min REAL,
    tokens_per_s REAL,
    vram_peak_mb REAL,
    model TEXT,
    chunker TEXT,
    run_id INTEGER,
    updated_at REAL,
    PRIMARY KEY (collection, book_key)
);
CREATE INDEX IF NOT EXISTS books_path ON books (collection, source_path);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    outcome TEXT,
    report TEXT
);
"""

STATUSES = ("pending", "in-progress", "done", "failed", "skipped", "removed")

EXIT_MANIFEST_CORRUPT = 65  # EX_DATAERR: the data is damaged; `alexandria repair` rebuilds it


class ManifestCorrupt(UsageError):
    """The manifest file is damaged: one sentence naming it, exit 65, `alexandria repair` fixes it."""

    exit_code = EXIT_MANIFEST_CORRUPT

    def __init__(self, path: Path, detail: str) -> None:
        self.path = Path(path)
        lines = [ln.strip() for ln in str(detail).splitlines() if ln.strip() and "***" not in ln]
        detail = (lines[0] if lines else "unreadable")[:120]
        super().__init__(
            f"The manifest {self.path} is damaged ({detail}); run `alexandria repair` with the same "
            "--model, --store and --collection to rebuild it from the store."
        )


@dataclass
class Row:
    collection: str
    book_key: str
    calibre_id: int | None
    title: str | None
    source_path: str | None
    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    meta_hash: str | None
    status: str
    reason: str | None
    warnings: str | None
    chunks: int
    tokens: int
    stored_points: int
    seconds: float | None
    chunks_per_min: float | None
    tokens_per_s: float | None
    vram_peak_mb: float | None
    model: str | None
    chunker: str | None
    run_id: int | None
    updated_at: float | None


class Manifest:
    """One SQLite file, one connection per thread that uses it."""

    @classmethod
    def for_reading(cls, path: Path, always: bool = False) -> Manifest:
        """For commands that only read it (status, plan): read-only where it cannot be written (a
        mounted snapshot, a backup), so they work there and write nothing; `always` (serve, which
        never writes it) read-only everywhere."""
        return cls(path, read_only=always or not writable(path))

    def __init__(self, path: Path, check: bool = True, read_only: bool = False) -> None:
        """read_only: for a store nobody may write (a mounted snapshot): no folder, no schema, no
        journal setting is written; what it reads is the file as it is."""
        self.path = Path(path)
        self.con = None
        try:
            if read_only:
                self.con = _connect_read_only(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.con = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.con.row_factory = sqlite3.Row
            if not read_only:
                self.con.execute("PRAGMA journal_mode=WAL")
                self.con.execute("PRAGMA synchronous=FULL")
            if check:  # damaged pages otherwise surface as a traceback deep inside a run
                problems = [r[0] for r in self.con.execute("PRAGMA quick_check(1)")]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError(problems[0])
            if not read_only:
                self.con.executescript(SCHEMA)
        except PermissionError as e:
            self._close_quietly()
            raise UsageError(f"The manifest {self.path} cannot be written ({e.strerror}).") from e
        except sqlite3.OperationalError as e:
            self._close_quietly()
            if "locked" in str(e) or "busy" in str(e):
                raise UsageError(f"The manifest {self.path} is locked by another process ({e}).") from e
            if "readonly" in str(e) or "unable to open" in str(e):
                raise UsageError(f"The manifest {self.path} cannot be written ({e}).") from e
            raise ManifestCorrupt(self.path, str(e)) from e
        except sqlite3.DatabaseError as e:
            self._close_quietly()
            raise ManifestCorrupt(self.path, str(e)) from e

    def _close_quietly(self) -> None:
        if self.con is not None:
            try:
                self.con.close()
            except sqlite3.Error:
                pass

    def close(self) -> None:
        self.con.close()

    # -- reading -------------------------------------------------------------------------------
    def rows(self, collection: str) -> dict[str, Row]:
        cur = self.con.execute("SELECT * FROM books WHERE collection = ?", (collection,))
        return {r["book_key"]: Row(**dict(r)) for r in cur}

    def get(self, collection: str, book_key: str) -> Row | None:
        r = self.con.execute(
            "SELECT * FROM books WHERE collection = ? AND book_key = ?", (collection, book_key)
        ).fetchone()
        return Row(**dict(r)) if r else None

    def in_progress(self, collection: str) -> list[str]:
        cur = self.con.execute(
            "SELECT book_key FROM books WHERE collection = ? AND status = 'in-progress'",
            (collection,),
        )
        return [r[0] for r in cur]

    def last_run(self, collection: str) -> dict[str, Any] | None:
        r = self.con.execute(
            "SELECT * FROM runs WHERE collection = ? ORDER BY id DESC LIMIT 1", (collection,)
        ).fetchone()
        return dict(r) if r else None

    def runs(self, collection: str, limit: int = 10) -> list[dict[str, Any]]:
        """The last `limit` runs, newest first (the library page's history)."""
        cur = self.con.execute(
            "SELECT * FROM runs WHERE collection = ? ORDER BY id DESC LIMIT ?", (collection, limit))
        return [dict(r) for r in cur]

    def run_counts(self, collection: str, run_id: int) -> dict[str, Any]:
        """What a run recorded so far, from its books' rows: an unfinished run's counts."""
        cur = self.con.execute(
            "SELECT status, COUNT(*), COALESCE(SUM(chunks), 0), COALESCE(SUM(tokens), 0) FROM books "
            "WHERE collection = ? AND run_id = ? GROUP BY status", (collection, run_id))
        by_status = {r[0]: (r[1], r[2], r[3]) for r in cur}
        done = by_status.get("done", (0, 0, 0))
        return {"books_done": done[0], "books_failed": by_status.get("failed", (0, 0, 0))[0],
                "books_skipped": by_status.get("skipped", (0, 0, 0))[0],
                "books_in_progress": by_status.get("in-progress", (0, 0, 0))[0],
                "chunks": done[1], "tokens": done[2]}

    def collections(self) -> dict[str, dict[str, Any]]:
        """Each collection the manifest knows: its books by status, the model and chunker
        fingerprint its rows record (with how many rows record each), and its last finished
        run's report (the model's name, dtype and device)."""
        out: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            return out.setdefault(name, {"statuses": Counter(), "models": Counter(),
                                         "chunkers": Counter(), "report": None})

        try:
            rows = self.con.execute("SELECT collection, status, model, chunker, COUNT(*) FROM books "
                                    "GROUP BY collection, status, model, chunker").fetchall()
            runs = self.con.execute("SELECT collection, report FROM runs ORDER BY id").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):  # read-only, in the moment an ingest creates the file
                return {}
            raise
        for name, status, model, chunker, n in rows:
            e = entry(name)
            e["statuses"][status] += n
            if model:
                e["models"][model] += n
            if chunker:
                e["chunkers"][chunker] += n
        for name, report in runs:
            e = entry(name)
            if report:
                with contextlib.suppress(ValueError):
                    e["report"] = json.loads(report)
        return out

    # -- writing -------------------------------------------------------------------------------
    def _write(self, sql: str, params=()) -> sqlite3.Cursor:
        """One committed statement; a full disk or a vanished folder is one sentence, exit 74."""
        try:
            return self.con.execute(sql, params)
        except sqlite3.OperationalError as e:
            text = str(e)
            if "full" in text:
                raise RunFailure(f"The disk holding the manifest {self.path} is full ({text}); "
                                 "free some space and run again: books already done are kept.") from e
            if "readonly" in text or "disk I/O" in text or "unable to open" in text:
                raise RunFailure(f"The manifest {self.path} cannot be written any more ({text}); "
                                 "books already done are kept.") from e
            raise
        except sqlite3.DatabaseError as e:
            raise ManifestCorrupt(self.path, str(e)) from e

    def upsert(self, collection: str, book_key: str, **fields: Any) -> None:
        """Insert or update one row; every call is its own committed transaction."""
        fields["updated_at"] = time.time()
        cols = ["collection", "book_key", *fields]
        values = [collection, book_key, *fields.values()]
        updates = ", ".join(f"{c} = excluded.{c}" for c in fields)
        self._write(
            f"INSERT INTO books ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT (collection, book_key) DO UPDATE SET {updates}",
            values,
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes committed together, or none of them (a repair's rebuilt rows)."""
        self._write("BEGIN")
        try:
            yield
        except BaseException:
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            raise
        self._write("COMMIT")

    def clear(self, collection: str) -> None:
        """Every book row of one collection (the run history stays)."""
        self._write("DELETE FROM books WHERE collection = ?", (collection,))

    def delete(self, collection: str, book_key: str) -> None:
        self._write(
            "DELETE FROM books WHERE collection = ? AND book_key = ?", (collection, book_key)
        )

    def start_run(self, collection: str, books_planned: int | None = None) -> int:
        """books_planned: the books this run will record (its report until it finishes), so a
        reader can tell how far a running ingest has got."""
        report = json.dumps({"books_planned": books_planned}) if books_planned is not None else None
        cur = self._write(
            "INSERT INTO runs (collection, started_at, report) VALUES (?, ?, ?)",
            (collection, time.time(), report),
        )
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, outcome: str, report: dict[str, Any]) -> None:
        self._write(
            "UPDATE runs SET finished_at = ?, outcome = ?, report = ? WHERE id = ?",
            (time.time(), outcome, json.dumps(report, ensure_ascii=False), run_id),
        )


def writable(path: Path) -> bool:
    """Whether a manifest at PATH can be written: the file if it is there, else its folder."""
    import os

    probe = path if path.exists() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """mode=ro; where SQLite cannot make the WAL's shared-memory file beside it (a read-only
    mount), immutable=1: the file is read as it is, with no locking."""
    uri = path.resolve().as_uri()
    try:
        con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, isolation_level=None)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)
