"""What the manifest says, read for the pages and the API: never written, a fresh read-only
connection per call (an ingest commits between two calls; a kept connection would be pinned to one
thread by sqlite3)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexandria.query.search import Searcher
from alexandria.query.status import status
from alexandria.store.base import CollectionMissing, point_id
from alexandria.store.location import Location
from alexandria.store.lock import LockHolder
from alexandria.store.manifest import Manifest

FACETS = ("authors", "tags", "language", "series")


@dataclass
class Facets:
    """The values the search page's filters offer, from the books that are stored."""

    authors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    language: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    by_book: dict[str, dict[str, Any]] = field(default_factory=dict)  # book_key -> its metadata

    def values(self, name: str) -> list[str]:
        return getattr(self, name)


class Library:
    """The manifest and the store's book metadata, as serve shows them."""

    def __init__(self, where: Location, searcher: Searcher) -> None:
        self.where = where
        self.searcher = searcher
        self._facets: tuple[Any, Facets] | None = None
        self._lock = threading.Lock()

    def _open(self) -> Manifest | None:
        if not self.where.manifest.exists():
            return None
        return Manifest(self.where.manifest, check=False, read_only=True)

    def status(self) -> dict[str, Any]:
        """`alexandria status --json`, read-only: with what the store recorded of the collection
        (model, dtype, chunker, dimension), as the command adds it."""
        out = status(self.where, read_only=True)
        if self.searcher is not None:
            found = self.searcher.opts.find()[1]
            out.update(model=found.model, dtype=found.dtype, chunker=found.chunker,
                       dimension=found.dimension)
        return out

    def runs(self, limit: int = 10) -> list[dict[str, Any]]:
        m = self._open()
        if m is None:
            return []
        try:
            rows = m.runs(self.where.collection, limit)
        finally:
            m.close()
        return [run_summary(r) for r in rows]

    def progress(self) -> dict[str, Any] | None:
        """A running ingest, from its run row and its books' rows: None when none runs."""
        m = self._open()
        if m is None:
            return None
        try:
            last = m.last_run(self.where.collection)
            if not last or last.get("finished_at") or not ingest_running(self.where.lock):
                return None  # none ran, it finished, or it was killed
            so_far = m.run_counts(self.where.collection, last["id"])
        finally:
            m.close()
        return live_progress(last, so_far, time.time())

    def facets_for(self, params: dict[str, str]) -> Facets:
        """The facets only where a request filters (they cost a manifest read and a store call)."""
        if not any(params.get(name) for name in ("author", "tag", "language", "series")):
            return Facets()
        return self.facets(self.status()["books"])

    def facets(self, books: list[dict[str, Any]]) -> Facets:
        """Filter values from each done book's first chunk; recomputed only when the done books
        change (one store call for all of them)."""
        done = sorted(b["book_key"] for b in books if b["status"] == "done")
        with self._lock:
            if self._facets is not None and self._facets[0] == done:
                return self._facets[1]
        try:
            payloads = self.searcher.get([point_id(key, 0) for key in done])
        except CollectionMissing:  # nothing ingested yet
            payloads = {}
        facets = Facets()
        seen: dict[str, set[str]] = {name: set() for name in FACETS}
        for payload in payloads.values():
            key = payload.get("book_key") or ""
            facets.by_book[key] = {name: payload.get(name) for name in
                                   ("authors", "tags", "language", "series", "calibre_id")}
            for name in FACETS:
                value = payload.get(name)
                for v in (value if isinstance(value, list) else [value]):
                    if v:
                        seen[name].add(str(v))
        for name in FACETS:
            setattr(facets, name, sorted(seen[name], key=str.casefold))
        with self._lock:
            self._facets = (done, facets)
        return facets


def ingest_running(lock: Path) -> bool:
    """Whether the run lock's holder still lives, read from the pid it wrote: never by taking the
    lock, which would make an ingest starting at that instant exit with 75."""
    try:
        holder = LockHolder.parse(lock.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False
    if holder.pid is None:
        return False
    if holder.host and holder.host != socket.gethostname():
        return True  # another machine's run: its pid means nothing here
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def run_summary(row: dict[str, Any]) -> dict[str, Any]:
    report = json.loads(row["report"]) if row.get("report") else {}
    return {
        "id": row["id"], "started_at": row["started_at"], "finished_at": row["finished_at"],
        "outcome": row["outcome"] or ("running or killed" if not row["finished_at"] else None),
        **{k: report.get(k) for k in ("books_done", "books_failed", "books_skipped", "chunks",
                                       "tokens", "elapsed_s", "chunks_per_min", "tokens_per_s")},
    }


def live_progress(run: dict[str, Any], so_far: dict[str, Any], now: float) -> dict[str, Any]:
    """Books done and to do, chunks/min and an ETA from the pace so far (books per second)."""
    planned = (json.loads(run["report"]) if run.get("report") else {}).get("books_planned")
    finished = so_far["books_done"] + so_far["books_failed"] + so_far["books_skipped"]
    elapsed = max(now - run["started_at"], 1e-6)
    to_do = max(planned - finished, 0) if planned is not None else None
    eta = None
    if to_do is not None and finished:
        eta = round(to_do * elapsed / finished, 1)
    return {
        "run_id": run["id"], "started_at": run["started_at"], "elapsed_s": round(elapsed, 1),
        "books_planned": planned, "books_done": so_far["books_done"],
        "books_failed": so_far["books_failed"], "books_skipped": so_far["books_skipped"],
        "books_in_progress": so_far["books_in_progress"], "books_to_do": to_do,
        "chunks": so_far["chunks"], "tokens": so_far["tokens"],
        "chunks_per_min": round(so_far["chunks"] * 60 / elapsed, 1),
        "tokens_per_s": round(so_far["tokens"] / elapsed, 1), "eta_s": eta,
    }
