"""Rebuild a damaged (or lost) manifest from what the store holds, so nothing is re-embedded.

Every point carries its book's key and library metadata, so the store alone says which books are
in it and with how many points. What it cannot say (the chunker settings, the file's size and
mtime) comes from the options of the ingest being repaired and from the files as they are now.
The damaged file is kept beside the new one, never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexandria.store.base import UPSERT_BATCH
from alexandria.store.location import Location
from alexandria.store.lock import RunLock
from alexandria.store.manifest import Manifest, ManifestCorrupt

# The payload fields Book.metadata() writes: the same keys give the same meta_hash.
METADATA_KEYS = ("book_key", "calibre_id", "title", "authors", "series", "series_index", "tags",
                 "language", "languages", "identifiers", "source_path")
FIELDS = [*METADATA_KEYS, "chunk_index", "tokens", "kind", "model"]
# A book written in several upsert batches and killed between two of them holds a whole number
# of batches (UPSERT_BATCH): such a count cannot be told from a complete book, so it is redone.


@dataclass
class BookSeen:
    """What the store says about one book, gathered while streaming its points."""

    first: dict[str, Any]
    points: int = 0
    tokens: int = 0
    chunk_indexes: set[int] = field(default_factory=set)


@dataclass
class RepairReport:
    manifest: str
    collection: str
    backup: str | None
    books_done: int
    books_redo: int
    points: int
    seconds: float
    note: str | None = None  # set when nothing was done, and why

    def sentence(self) -> str:
        if self.note:
            return self.note
        kept = f"; the damaged file is kept as {self.backup}" if self.backup else ""
        redo = (f", {self.books_redo} to redo on the next ingest (their points were incomplete)"
                if self.books_redo else "")
        return (f"Rebuilt {self.manifest} from {self.points} points in collection "
                f"{self.collection}: {self.books_done} books done{redo}{kept}.")


def manifest_state(path: Path) -> str:
    """'missing', 'healthy' or 'damaged' (without creating or changing anything)."""
    if not path.exists():
        return "missing"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            ok = [r[0] for r in con.execute("PRAGMA quick_check(1)")] == ["ok"]
            con.execute("SELECT count(*) FROM books").fetchone()
        finally:
            con.close()
        return "healthy" if ok else "damaged"
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return "healthy"  # an empty database: nothing to lose by filling it
        return "damaged"
    except sqlite3.DatabaseError:
        return "damaged"


def _move_aside(path: Path) -> Path:
    """path -> path.damaged-<time> (with its -wal and -shm), so the evidence is kept."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, Path(f"{backup}{suffix}"))
    return backup


def _meta_hash(payload: dict[str, Any]) -> str:
    """Book.metadata_hash() of the metadata the points carry: an edit made in calibre since then
    still shows as a metadata-only change on the next run."""
    meta = {k: payload.get(k) for k in METADATA_KEYS}
    blob = json.dumps(meta, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_fields(book_key: str, source_path: str | None) -> dict[str, Any]:
    """size, mtime_ns and content_hash from the file as it is now, when it is the same book.

    A plain file's key is its content hash, so it is checked; a calibre file is trusted. A file
    that is gone or differs gets no size, so the next run looks at it again.
    """
    empty = {"size": None, "mtime_ns": None, "content_hash": None}
    if not source_path:
        return empty
    path = Path(source_path)
    try:
        st = path.stat()
        content_hash = None
        if book_key.startswith("sha256:"):
            from alexandria.sources.library import file_hash

            content_hash = file_hash(path)
            if not content_hash.startswith(book_key[len("sha256:"):]):
                return empty  # replaced since: the next run ingests the new version
    except OSError:
        return empty
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "content_hash": content_hash}


def repair(where: Location, force: bool = False, wait_lock: float = 0.0) -> RepairReport:
    """Rebuild the manifest rows of `where`'s collection from its store, under the run lock.

    `where` must name the same model, collection and chunker settings as the ingest did: the
    rebuilt rows carry its fingerprint, so the next ingest re-embeds nothing.
    """
    with RunLock(where.lock, wait_lock):  # no ingest writes meanwhile
        return _repair(where, force)


def _repair(where: Location, force: bool) -> RepairReport:
    started = time.perf_counter()
    collection, spec, mpath = where.collection, where.spec, where.manifest
    state = manifest_state(mpath)
    store = where.open_store()
    try:
        backup = None
        if state == "damaged":
            backup = _move_aside(mpath)
        elif state == "healthy" and not force:
            m = Manifest(mpath)
            try:
                known = len(m.rows(collection))
            finally:
                m.close()
            if known:
                return RepairReport(str(mpath), collection, None, 0, 0, 0, 0.0, note=(
                    f"The manifest {mpath} is healthy and lists {known} books of {collection}; "
                    "nothing to repair (add --force to rebuild them from the store anyway)."))
        fingerprint = where.fingerprint
        books: dict[str, BookSeen] = {}
        points = 0
        for page in store.iter_points(FIELDS):
            for p in page:
                key = p.payload.get("book_key")
                if not key:
                    continue
                seen = books.get(key)
                if seen is None:
                    seen = books[key] = BookSeen(first=p.payload)
                seen.points += 1
                points += 1
                if p.payload.get("kind", "chunk") != "parent":
                    seen.tokens += int(p.payload.get("tokens") or 0)
                    if p.payload.get("chunk_index") is not None:
                        seen.chunk_indexes.add(int(p.payload["chunk_index"]))
        m = Manifest(mpath)
        done = redo = 0
        try:
            with m.transaction():
                m.clear(collection)
                for key, seen in books.items():
                    first = seen.first
                    n = len(seen.chunk_indexes)
                    complete = (seen.chunk_indexes == set(range(n))
                                and not (seen.points % UPSERT_BATCH == 0 and seen.points))
                    fields = {
                        "calibre_id": first.get("calibre_id"), "title": first.get("title"),
                        "source_path": first.get("source_path"), "meta_hash": _meta_hash(first),
                        "chunks": seen.points, "tokens": seen.tokens, "model": spec.source,
                        "chunker": fingerprint, "warnings": "manifest rebuilt by alexandria repair",
                        **_file_fields(key, first.get("source_path")),
                    }
                    if complete:
                        m.upsert(collection, key, status="done", stored_points=seen.points, **fields)
                        done += 1
                    else:  # the next run deletes these points and does the book again
                        m.upsert(collection, key, status="in-progress", stored_points=0,
                                 reason="repair-incomplete", **fields)
                        redo += 1
        finally:
            m.close()
    finally:
        store.close()
    report = RepairReport(str(mpath), collection, str(backup) if backup else None, done, redo,
                          points, round(time.perf_counter() - started, 2))
    return report


__all__ = ["ManifestCorrupt", "RepairReport", "manifest_state", "repair"]
