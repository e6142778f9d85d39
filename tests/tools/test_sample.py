"""The demo library must look like calibre's to a reader: real SQLite, real paths, real EPUBs."""

from __future__ import annotations

import re
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from ebooklib import ITEM_DOCUMENT, epub

from alexandria.tools.sample import SAMPLE_BOOKS, make_sample_library

XHTML = "{http://www.w3.org/1999/xhtml}"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("sample") / "library"
    assert make_sample_library(dest) == dest
    return dest


@pytest.fixture
def db(library: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{library / 'metadata.db'}?mode=ro", uri=True)
    yield conn
    conn.close()


def _by_book(db: sqlite3.Connection, sql: str) -> dict[int, list[object]]:
    out: dict[int, list[object]] = {}
    for book, value in db.execute(sql):
        out.setdefault(book, []).append(value)
    return out


def _read(path: Path) -> epub.EpubBook:
    return epub.read_epub(str(path), {"ignore_ncx": True})


def _paragraphs(item: epub.EpubHtml) -> tuple[str, list[str]]:
    root = ET.fromstring(item.get_content())
    body = root.find(f"{XHTML}body")
    assert body is not None
    heading = body.find(f"{XHTML}h1")
    assert heading is not None and heading.text
    return heading.text, ["".join(p.itertext()) for p in body.iter(f"{XHTML}p")]


def _isbn13_ok(isbn: str) -> bool:
    digits = [int(c) for c in isbn]
    checksum = sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return len(digits) == 13 and checksum % 10 == 0


def test_metadata_db_lists_four_books_with_their_metadata(db: sqlite3.Connection) -> None:
    columns = "id, title, sort, path, uuid, series_index, author_sort, timestamp"
    books = db.execute(f"SELECT {columns} FROM books ORDER BY id").fetchall()
    assert [b[1] for b in books] == [
        "A Short History of Whaling",
        "The Night Sky for Beginners",
        "Le pain au levain",
        "Gardening in Small Spaces",
    ]
    assert books[0][2] == "Short History of Whaling, A"
    assert all(re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", b[4]) for b in books)
    assert all(b[7] == "2026-11-01 10:00:00+00:00" for b in books)
    for book_id, _, _, path, *_ in books:
        assert path.isascii() and path.endswith(f" ({book_id})") and path.count("/") == 1

    authors = _by_book(
        db,
        "SELECT l.book, a.name FROM books_authors_link l JOIN authors a ON a.id = l.author"
        " ORDER BY l.book, l.id",
    )
    assert authors == {
        1: ["Ruth Ellery", "Samuel J. Pratt"],
        2: ["Zoë Brontë-Müller"],
        3: ["Hélène Dufresne"],
        4: ["Tobias Fenwick", "Zoë Brontë-Müller"],
    }
    assert db.execute("SELECT count(*) FROM authors").fetchone() == (5,)  # one shared author
    assert books[3][6] == "Fenwick, Tobias & Brontë-Müller, Zoë"
    assert books[1][3] == "Zoe Bronte-Muller/The Night Sky for Beginners (2)"

    tags = _by_book(
        db,
        "SELECT l.book, t.name FROM books_tags_link l JOIN tags t ON t.id = l.tag ORDER BY l.id",
    )
    assert set(tags) == {1, 2, 3, 4}
    assert "Whaling" in tags[1] and "Gardening" in tags[4]

    series = db.execute(
        "SELECT l.book, s.name, b.series_index FROM books_series_link l"
        " JOIN series s ON s.id = l.series JOIN books b ON b.id = l.book"
    ).fetchall()
    assert series == [(4, "Home Skills", 2.5)]

    languages = _by_book(
        db,
        "SELECT l.book, g.lang_code FROM books_languages_link l"
        " JOIN languages g ON g.id = l.lang_code ORDER BY l.book, l.item_order",
    )
    assert languages == {1: ["eng"], 2: ["eng"], 3: ["fra"], 4: ["eng"]}

    isbns = dict(db.execute("SELECT book, val FROM identifiers WHERE type = 'isbn'").fetchall())
    assert set(isbns) == {1, 2, 3, 4} and all(_isbn13_ok(v) for v in isbns.values())
    comments = dict(db.execute("SELECT book, text FROM comments").fetchall())
    assert set(comments) == {1, 2, 3, 4}
    assert db.execute("PRAGMA user_version").fetchone() == (25,)


def test_each_data_row_is_a_file_at_the_calibre_path(library: Path, db: sqlite3.Connection) -> None:
    rows = db.execute(
        "SELECT b.id, b.path, b.uuid, d.format, d.name, d.uncompressed_size FROM data d"
        " JOIN books b ON b.id = d.book ORDER BY b.id"
    ).fetchall()
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    for book_id, path, uuid, fmt, name, size in rows:
        assert fmt == "EPUB"
        file = library / path / f"{name}.{fmt.lower()}"
        assert file.is_file() and file.stat().st_size == size
        title, author = name.split(" - ")
        assert path == f"{author}/{title} ({book_id})"
        opf = ET.parse(library / path / "metadata.opf").getroot()
        ids = [e.text for e in opf.iter("{http://purl.org/dc/elements/1.1/}identifier")]
        assert uuid in ids and str(book_id) in ids
    expected = {
        "metadata.db",
        *(f"{r[1]}/{r[4]}.epub" for r in rows),
        *(f"{r[1]}/metadata.opf" for r in rows),
    }
    found = {p.relative_to(library).as_posix() for p in library.rglob("*") if p.is_file()}
    assert found == expected


def test_epubs_open_with_chapters_in_spine_order(library: Path, db: sqlite3.Connection) -> None:
    for book, (path, name, lang) in zip(
        SAMPLE_BOOKS,
        db.execute(
            "SELECT b.path, d.name, g.lang_code FROM books b JOIN data d ON d.book = b.id"
            " JOIN books_languages_link l ON l.book = b.id"
            " JOIN languages g ON g.id = l.lang_code ORDER BY b.id"
        ),
        strict=True,
    ):
        eb = _read(library / path / f"{name}.epub")
        assert eb.get_metadata("DC", "title")[0][0] == book.title
        assert eb.get_metadata("DC", "language")[0][0] == {"eng": "en", "fra": "fr"}[lang]
        creators = [c[0] for c in eb.get_metadata("DC", "creator")]
        assert creators == [a for a, _ in book.authors]

        spine = [eb.get_item_with_id(idref) for idref, _ in eb.spine]
        assert all(item is not None and item.get_type() == ITEM_DOCUMENT for item in spine)
        assert [item.get_name() for item in spine] == [
            f"chapter_{n:02d}.xhtml" for n in range(1, len(spine) + 1)
        ]
        assert 3 <= len(spine) <= 5
        assert eb.get_item_with_id("nav") is not None and eb.get_item_with_id("ncx") is not None
        assert [link.title for link in eb.toc] == [t for t, _ in book.chapters()]

        for item, (title, paragraphs) in zip(spine, book.chapters(), strict=True):
            heading, found = _paragraphs(item)
            assert heading == title and found == paragraphs
            assert 4 <= len(found) <= 8
            assert all(len(re.findall(r"[.!?](\s|$)", p)) >= 3 for p in found)


def test_whaling_book_mentions_harpoons(library: Path) -> None:
    whaling = SAMPLE_BOOKS[0]
    eb = _read(library / whaling.path / f"{whaling.file_stem}.epub")
    text = " ".join(" ".join(_paragraphs(eb.get_item_with_id(i))[1]) for i, _ in eb.spine)
    assert "harpoon" in text.lower() and "Nantucket" in text and "whale oil" in text.lower()


def test_same_bytes_every_time(library: Path, tmp_path: Path) -> None:
    again = make_sample_library(tmp_path / "again")
    files = sorted(p.relative_to(library) for p in library.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (library / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_empty_existing_folder_is_accepted(tmp_path: Path) -> None:
    assert make_sample_library(tmp_path) == tmp_path
    assert (tmp_path / "metadata.db").is_file()


def test_refuses_a_non_empty_folder_or_a_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        make_sample_library(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(FileExistsError):
        make_sample_library(tmp_path / "notes.txt")
