"""The nightly run touches only the books that changed: with millions of points in the store, one
scroll over all of them would take longer than the whole run. Counted on a real store (the shard's
owner process), wrapped so that every call the run makes is recorded."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from alexandria import IngestOptions, Location, status
from alexandria.run.ingest import Ingest
from tests.run.test_sync import add_book, calibre_db, epub_path

# Calls that read every point of the collection (a scroll), whatever they are asked.
FULL_SCANS = {"iter_points", "iter_start", "export"}


class CountingStore:
    """A real store, every call counted with its arguments; nothing of it is replaced."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.scans: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method):
            return method

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            whole = name in FULL_SCANS or (name == "payloads" and not (args or kwargs.get("book_key")))
            if whole:
                self.scans.append((name, args, kwargs))
            return method(*args, **kwargs)

        return counted


@pytest.mark.slow
def test_a_nightly_run_touches_only_the_changed_books_and_never_scans_the_store(
        tmp_path: Path, sample_library: Path):
    lib = tmp_path / "library"
    shutil.copytree(sample_library, lib)
    epubs = sorted(lib.rglob("*.epub"))
    for i in range(4):  # eight books in all
        add_book(lib, f"Reprint {i}", f"Reprinter {i}", epubs[i % len(epubs)])
    store = tmp_path / "store"
    opts = IngestOptions(directory=lib, model="minilm", device="cpu", store=store)
    first = Ingest(opts).run()
    assert first.books_done == 8 and first.books_failed == 0

    # The night's changes: one book's file changed, one removed, one added, two retitled.
    con = calibre_db(lib)
    ids = [i for (i,) in con.execute("SELECT id FROM books ORDER BY id")]
    con.close()
    changed, removed, retitled = ids[0], ids[1], ids[2:4]
    shutil.copy(epubs[3], epub_path(lib, changed))
    con = calibre_db(lib)
    with con:
        con.execute("DELETE FROM books WHERE id = ?", (removed,))
        con.execute("DELETE FROM data WHERE book = ?", (removed,))
        for book_id in retitled:
            con.execute("UPDATE books SET title = title || ' (revised)' WHERE id = ?", (book_id,))
    con.close()
    add_book(lib, "A New Arrival", "Someone New", epubs[1])

    wrapped: list[CountingStore] = []

    def opener(where: Location, dimension: int | None, server: dict) -> CountingStore:
        wrapped.append(CountingStore(where.open_store(dimension, **server)))
        return wrapped[0]

    night = Ingest(opts, open_store=opener).run()
    assert (night.books_done, night.books_removed, night.books_metadata_updated) == (2, 1, 2)
    (counted,) = wrapped
    assert counted.scans == []
    calls = counted.calls
    assert calls["set_book_payload"] == 2  # the retitled books: their payloads, in place
    assert calls["delete_book"] <= 3  # the changed book's old points, the removed book's
    assert calls["count_book"] == 2  # each written book checked by its own count (payload index)
    assert calls["finish"] == 1  # the new points indexed once, at the end
    assert set(calls) <= {"upsert_block", "flush", "delete_book", "count_book", "set_book_payload",
                          "finish", "close"}, calls
    verified = status(Location.of("minilm", store=store), verify=True)
    assert verified["mismatches"] == 0
