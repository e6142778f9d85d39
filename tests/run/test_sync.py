"""Nightly sync against a copy of the real calibre library, edited the way calibre edits it.

calibre's triggers call SQL functions (title_sort, uuid4) that plain sqlite3 lacks: the test
registers stand-ins on its own connection, then changes the database as calibre would.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest

from alexandria import IngestOptions, Location, status
from alexandria import plan as plan_run
from alexandria.run.ingest import Ingest
from alexandria.store.edge import EdgeStore
from tests.conftest import CALIBRE, EPUBS, need_corpus

KEEP = {3, 4, 11, 12}  # small books: The Waste Land, the Arabic book, the broken OPF, TXT only


def calibre_db(lib: Path) -> sqlite3.Connection:
    con = sqlite3.connect(lib / "metadata.db")
    con.create_function("title_sort", 1, lambda t: t)
    con.create_function("uuid4", 0, lambda: str(uuid.uuid4()))
    return con


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    need_corpus()
    root = tmp_path / "calibre"
    shutil.copytree(CALIBRE, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    con = calibre_db(root)
    with con:
        for book_id, path in con.execute("SELECT id, path FROM books").fetchall():
            if book_id not in KEEP:
                con.execute("DELETE FROM books WHERE id = ?", (book_id,))
                con.execute("DELETE FROM data WHERE book = ?", (book_id,))
                shutil.rmtree(root / path)
    con.close()
    return root


def run(lib: Path, store: Path, **kw):
    opts = IngestOptions(directory=lib, model="minilm", device="cpu", store=store, **kw)
    return Ingest(opts).run()


def check_mirror(lib: Path, store: Path) -> dict:
    """Store == library: each calibre book with an EPUB has exactly its chunks; nothing else."""
    s = status(Location.of("minilm", store=store), verify=True)
    assert s["mismatches"] == 0 and s["orphans"] == [], s
    con = sqlite3.connect(f"file:{lib / 'metadata.db'}?mode=ro", uri=True)
    uuids = {u for (u,) in con.execute("SELECT uuid FROM books")}
    con.close()
    live = {b["book_key"]: b for b in s["books"] if b["store_points"]}
    assert set(live) <= uuids
    for b in live.values():
        assert b["status"] == "done" and b["store_points"] == b["chunks"]
    return live


def ids_and_payloads(store: Path, key: str) -> dict[str, dict]:
    s = EdgeStore(store, "alexandria_minilm", None)
    try:
        return dict(s.payloads(key))
    finally:
        s.close()


def uuid_of(lib: Path, book_id: int) -> str:
    con = sqlite3.connect(f"file:{lib / 'metadata.db'}?mode=ro", uri=True)
    try:
        return con.execute("SELECT uuid FROM books WHERE id = ?", (book_id,)).fetchone()[0]
    finally:
        con.close()


def epub_path(lib: Path, book_id: int) -> Path:
    con = sqlite3.connect(f"file:{lib / 'metadata.db'}?mode=ro", uri=True)
    try:
        path, name = con.execute(
            "SELECT b.path, d.name FROM books b JOIN data d ON d.book = b.id "
            "WHERE b.id = ? AND d.format = 'EPUB'", (book_id,)).fetchone()
    finally:
        con.close()
    return lib / path / f"{name}.epub"


def add_book(lib: Path, title: str, author: str, source: Path) -> int:
    """As calibre adds a book: a books row (triggers set sort and uuid), links, data, the file."""
    con = calibre_db(lib)
    with con:
        folder = f"{author}/{title} (new)"
        cur = con.execute(
            "INSERT INTO books (title, path, timestamp, last_modified, series_index) "
            "VALUES (?, ?, '2026-11-23 01:00:00+00:00', '2026-11-23 01:00:00+00:00', 1.0)",
            (title, folder))
        book_id = cur.lastrowid
        con.execute("INSERT OR IGNORE INTO authors (name, sort) VALUES (?, ?)", (author, author))
        author_id = con.execute("SELECT id FROM authors WHERE name = ?", (author,)).fetchone()[0]
        con.execute("INSERT INTO books_authors_link (book, author) VALUES (?, ?)",
                    (book_id, author_id))
        con.execute("INSERT INTO data (book, format, uncompressed_size, name) VALUES (?, 'EPUB', ?, ?)",
                    (book_id, source.stat().st_size, f"{title} - {author}"))
    con.close()
    dest = lib / folder / f"{title} - {author}.epub"
    dest.parent.mkdir(parents=True)
    shutil.copy(source, dest)
    return book_id


def test_every_sync_case_keeps_the_store_a_mirror_of_the_library(lib, tmp_path):
    store = tmp_path / "store"
    first = run(lib, store)
    assert first.books_done == 2 and first.books_failed == 1 and first.books_skipped == 1
    live = check_mirror(lib, store)
    waste, arabic = uuid_of(lib, 3), uuid_of(lib, 4)
    assert set(live) == {waste, arabic}
    waste_ids = set(ids_and_payloads(store, waste))

    # 1. Only metadata changed in calibre: payloads updated in place, same point ids, no embedding.
    con = calibre_db(lib)
    with con:
        con.execute("UPDATE books SET title = 'The Waste Land — annotated' WHERE id = 3")
        tag = con.execute("INSERT INTO tags (name) VALUES ('Épopée')").lastrowid
        con.execute("INSERT INTO books_tags_link (book, tag) VALUES (3, ?)", (tag,))
        con.execute("INSERT INTO identifiers (book, type, val) VALUES (3, 'isbn', '9780000000002')")
    con.close()
    assert plan_run(IngestOptions(directory=lib, model="minilm", store=store))["counts"][
        "metadata-only"] == 1
    second = run(lib, store)
    assert second.books_metadata_updated == 1 and second.books_done == 0 and second.chunks == 0
    after = ids_and_payloads(store, waste)
    assert set(after) == waste_ids
    assert all(p["title"] == "The Waste Land — annotated" for p in after.values())
    assert all("Épopée" in p["tags"] and p["identifiers"]["isbn"] == "9780000000002"
               for p in after.values())
    check_mirror(lib, store)

    # 2. The file changed: old points deleted, book re-ingested with its new chunk count.
    shutil.copy(EPUBS / "edge/idpf-hefty-water.epub", epub_path(lib, 4))
    third = run(lib, store)
    assert third.books_done == 1
    live = check_mirror(lib, store)
    texts = " ".join(p["text"] for p in ids_and_payloads(store, arabic).values())
    assert "water" in texts.lower()  # the new file's text, not the old one's
    assert live[arabic]["chunks"] == third.chunks

    # 3. A new book, and a second book with exactly the same file content: two books.
    new_a = add_book(lib, "Copy One", "Test Author", EPUBS / "books/idpf-wasteland.epub")
    new_b = add_book(lib, "Copy Two", "Test Author", EPUBS / "books/idpf-wasteland.epub")
    fourth = run(lib, store)
    assert fourth.books_done == 2
    live = check_mirror(lib, store)
    assert uuid_of(lib, new_a) in live and uuid_of(lib, new_b) in live
    assert live[uuid_of(lib, new_a)]["chunks"] == live[uuid_of(lib, new_b)]["chunks"]

    # 4. A book removed in calibre: its points go, its row says removed.
    con = calibre_db(lib)
    with con:
        con.execute("DELETE FROM books WHERE id = ?", (new_b,))
        con.execute("DELETE FROM data WHERE book = ?", (new_b,))
    con.close()
    fifth = run(lib, store)
    assert fifth.books_removed == 1
    live = check_mirror(lib, store)
    assert uuid_of(lib, new_a) in live and len(live) == 3

    # 5. A book whose file is gone: its points go and it stays listed as failed (file-missing).
    epub_path(lib, new_a).unlink()
    sixth = run(lib, store)
    assert sixth.books_failed == 2  # the broken OPF and the missing file
    live = check_mirror(lib, store)
    assert uuid_of(lib, new_a) not in live
    rows = {b["book_key"]: b for b in status(Location.of("minilm", store=store))["books"]}
    assert rows[uuid_of(lib, new_a)]["reason"] == "file-missing"

    # 6. --no-prune keeps what the library lost; --file runs never prune.
    con = calibre_db(lib)
    with con:
        con.execute("DELETE FROM books WHERE id = 3")
    con.close()
    run(lib, store, prune=False)
    assert waste in {b["book_key"] for b in status(Location.of("minilm", store=store), verify=True)["books"]
                     if b["store_points"]}
    run(lib, store)
    assert waste not in check_mirror(lib, store)


def test_selection_flags_pick_a_slice(lib, tmp_path):
    opts = dict(directory=lib, model="minilm", store=tmp_path / "s")
    by_id = plan_run(IngestOptions(book_ids=(3,), **opts))["books"]
    assert [b["calibre_id"] for b in by_id] == [3]
    by_tag = plan_run(IngestOptions(tags=("poetry",), **opts))["books"]
    assert [b["calibre_id"] for b in by_tag] == [3]
    by_author = plan_run(IngestOptions(authors=("Pr David Khayat",), **opts))["books"]
    assert [b["calibre_id"] for b in by_author] == [4]
    assert len(plan_run(IngestOptions(limit=2, **opts))["books"]) == 2
    from datetime import datetime

    assert plan_run(IngestOptions(since=datetime(2030, 1, 1), **opts))["books"] == []
    assert len(plan_run(IngestOptions(since=datetime(2020, 1, 1), **opts))["books"]) == 4
