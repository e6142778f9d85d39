"""A small demo Calibre library, written offline: the README's first command needs nothing else.

The four books are short original texts on distinct topics (in English and French), so that a
semantic search over them has obvious right answers. Their metadata covers what a library reader
must cope with: two authors on one book, an author shared between books, non-ASCII names, tags, a
series with a fractional index, identifiers and two languages. Every value is fixed, so the
library has the same ids and content (and, with the same zlib and SQLite, the same bytes) each time.
"""

from __future__ import annotations

import io
import json
import sqlite3
import unicodedata
import zipfile
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from importlib.resources import files
from pathlib import Path

from ebooklib import epub

__all__ = ["SAMPLE_BOOKS", "SampleBook", "make_sample_library"]

# When calibre "added" every book; fixed so that the output is deterministic.
ADDED = "2026-11-01 10:00:00+00:00"
_ADDED_DT = datetime(2026, 11, 1, 10, 0, 0, tzinfo=timezone.utc)
_LIBRARY_UUID = "a01de4df-c1a6-54b9-8723-50acaf78bc06"
_EPUB_LANG = {"eng": "en", "fra": "fr"}  # calibre stores ISO 639-2, EPUB wants BCP 47
_CSS = "body { font-family: serif; line-height: 1.4; }\nh1 { font-size: 1.6em; }\n"


@dataclass(frozen=True)
class SampleBook:
    """One book of the demo library, with calibre's metadata and its text."""

    id: int
    title: str
    title_sort: str
    authors: tuple[tuple[str, str], ...]  # (name, sort), first author names the folder
    language: str  # ISO 639-2, as calibre stores it
    tags: tuple[str, ...]
    isbn: str
    uuid: str
    pubdate: str
    publisher: str
    comments: str  # HTML, as calibre stores it
    text: str  # "## Chapter title" lines, paragraphs separated by blank lines
    series: str | None = None
    series_index: float = 1.0

    @property
    def path(self) -> str:
        """books.path: "Author/Title (id)", ASCII like calibre's folder names."""
        return f"{_ascii_filename(self.authors[0][0])}/{_ascii_filename(self.title)} ({self.id})"

    @property
    def file_stem(self) -> str:
        """data.name: "Title - Author", the format files' name without extension."""
        return f"{_ascii_filename(self.title)} - {_ascii_filename(self.authors[0][0])}"

    @property
    def author_sort(self) -> str:
        return " & ".join(sort for _, sort in self.authors)

    def chapters(self) -> list[tuple[str, list[str]]]:
        """(title, paragraphs) in reading order, parsed from `text`."""
        chapters: list[tuple[str, list[str]]] = []
        for block in self.text.strip().split("\n\n"):
            lines = block.strip().splitlines()
            if lines[0].startswith("## "):
                chapters.append((lines[0][3:].strip(), []))
                lines = lines[1:]
            if lines:
                chapters[-1][1].append(" ".join(line.strip() for line in lines))
        return chapters


def make_sample_library(dest: Path) -> Path:
    """Write a small Calibre-style library at dest and return dest.

    metadata.db plus one "Author/Title (id)/" folder per book holding its EPUB and metadata.opf,
    laid out as calibre does. dest must be new or an empty folder, so that a real library is
    never written into: anything else raises FileExistsError.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(
            f"{dest} already exists and is not an empty folder; "
            "the sample library needs a new or empty folder"
        )
    dest.mkdir(parents=True, exist_ok=True)
    sizes: dict[int, int] = {}
    for book in SAMPLE_BOOKS:
        folder = dest / book.path
        folder.mkdir(parents=True)
        data = _epub_bytes(book)
        (folder / f"{book.file_stem}.epub").write_bytes(data)
        (folder / "metadata.opf").write_text(_metadata_opf(book), encoding="utf-8")
        sizes[book.id] = len(data)
    _write_metadata_db(dest / "metadata.db", SAMPLE_BOOKS, sizes)
    return dest


def _ascii_filename(name: str) -> str:
    """Calibre names folders and files in ASCII: accents dropped, unsafe characters replaced."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    for char in '/\\:*?"<>|':
        ascii_name = ascii_name.replace(char, "_")
    return ascii_name.strip(" .") or "Unknown"


def _epub_bytes(book: SampleBook) -> bytes:
    """An EPUB 3 (with nav and NCX) built by ebooklib, repacked with fixed zip timestamps."""
    lang = _EPUB_LANG[book.language]
    eb = epub.EpubBook()
    eb.set_identifier(book.uuid)
    eb.set_title(book.title)
    eb.set_language(lang)
    for n, (name, sort) in enumerate(book.authors):
        # Not add_author(file_as=...): ebooklib would mark file-as with the marc:relators scheme.
        eb.add_author(name, uid=f"creator{n}")
        eb.add_metadata(None, "meta", sort, {"refines": f"#creator{n}", "property": "file-as"})
        eb.add_metadata(
            None,
            "meta",
            "aut",
            {"refines": f"#creator{n}", "property": "role", "scheme": "marc:relators"},
        )
    eb.add_metadata("DC", "identifier", f"urn:isbn:{book.isbn}", {"id": "isbn"})
    eb.add_metadata("DC", "publisher", book.publisher)
    eb.add_metadata("DC", "date", book.pubdate[:10])
    eb.add_metadata("DC", "description", _plain(book.comments))
    for tag in book.tags:
        eb.add_metadata("DC", "subject", tag)
    if book.series:  # as calibre writes it, and as EPUB 3 says it
        position = f"{book.series_index:g}"
        for value, attrs in (
            ("", {"name": "calibre:series", "content": book.series}),
            ("", {"name": "calibre:series_index", "content": f"{book.series_index}"}),
            (book.series, {"property": "belongs-to-collection", "id": "series"}),
            ("series", {"refines": "#series", "property": "collection-type"}),
            (position, {"refines": "#series", "property": "group-position"}),
        ):
            eb.add_metadata(None, "meta", value, attrs)

    css = epub.EpubItem(uid="style", file_name="style/book.css", media_type="text/css")
    css.content = _CSS.encode()
    eb.add_item(css)
    chapters = []
    for n, (title, paragraphs) in enumerate(book.chapters(), 1):
        chapter = epub.EpubHtml(
            uid=f"chapter_{n:02d}", title=title, file_name=f"chapter_{n:02d}.xhtml", lang=lang
        )
        body = "\n".join(f"<p>{escape(p, quote=False)}</p>" for p in paragraphs)
        chapter.content = f"<h1>{escape(title, quote=False)}</h1>\n{body}\n"
        chapter.add_item(css)
        eb.add_item(chapter)
        chapters.append(chapter)
    eb.toc = chapters
    eb.add_item(epub.EpubNcx())
    eb.add_item(epub.EpubNav())
    eb.spine = chapters  # the nav lives in the manifest; readers and indexers want only the text

    raw = io.BytesIO()
    epub.write_epub(raw, eb, {"mtime": _ADDED_DT, "raise_exceptions": True})
    return _repack(raw.getvalue())


def _repack(raw: bytes) -> bytes:
    """Same entries, same order (mimetype first, stored), but fixed timestamps and attributes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=_ADDED_DT.timetuple()[:6])
            fixed.compress_type = info.compress_type
            fixed.create_system = 3
            fixed.external_attr = 0o100644 << 16
            dst.writestr(fixed, src.read(info))
    return out.getvalue()


def _plain(html: str) -> str:
    """Comments are stored as calibre stores them (HTML); the EPUB's description is plain text."""
    return " ".join(html.replace("<p>", " ").replace("</p>", " ").split())


_OPF_NS = 'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf"'


def _metadata_opf(book: SampleBook) -> str:
    """The per-book metadata.opf backup that calibre keeps next to the formats."""

    def e(value: str) -> str:
        return escape(value, quote=True)

    pubdate = book.pubdate.replace(" ", "T")
    link_map = json.dumps({name: "" for name, _ in book.authors}, ensure_ascii=False)
    lines = [
        "<?xml version='1.0' encoding='utf-8'?>",
        '<package xmlns="http://www.idpf.org/2007/opf" unique-identifier="uuid_id" version="2.0">',
        f"    <metadata {_OPF_NS}>",
        f'        <dc:identifier opf:scheme="calibre" id="calibre_id">{book.id}</dc:identifier>',
        f'        <dc:identifier opf:scheme="uuid" id="uuid_id">{book.uuid}</dc:identifier>',
        f"        <dc:title>{e(book.title)}</dc:title>",
    ]
    lines += [
        f'        <dc:creator opf:file-as="{e(sort)}" opf:role="aut">{e(name)}</dc:creator>'
        for name, sort in book.authors
    ]
    lines += [
        f"        <dc:date>{pubdate}</dc:date>",
        f"        <dc:description>{e(book.comments)}</dc:description>",
        f"        <dc:publisher>{e(book.publisher)}</dc:publisher>",
        f'        <dc:identifier opf:scheme="ISBN">{book.isbn}</dc:identifier>',
        f"        <dc:language>{book.language}</dc:language>",
    ]
    lines += [f"        <dc:subject>{e(tag)}</dc:subject>" for tag in book.tags]
    lines.append(f'        <meta name="calibre:author_link_map" content="{e(link_map)}"/>')
    if book.series:
        lines.append(f'        <meta name="calibre:series" content="{e(book.series)}"/>')
        lines.append(f'        <meta name="calibre:series_index" content="{book.series_index}"/>')
    lines += [
        f'        <meta name="calibre:timestamp" content="{ADDED.replace(" ", "T")}"/>',
        f'        <meta name="calibre:title_sort" content="{e(book.title_sort)}"/>',
        "    </metadata>",
        "</package>",
        "",
    ]
    return "\n".join(lines)


# The subset of calibre 6's schema (user_version 25) that a reader needs; same names and types.


# Link and per-book tables: the columns that _write_metadata_db fills, in row order.
_BOOK_ROWS = {
    "books_authors_link": "book, author",
    "books_tags_link": "book, tag",
    "books_languages_link": "book, lang_code, item_order",
    "books_series_link": "book, series",
    "books_publishers_link": "book, publisher",
    "identifiers": "book, type, val",
    "comments": "book, text",
    "data": "book, format, uncompressed_size, name",
}


def _write_metadata_db(path: Path, books: tuple[SampleBook, ...], sizes: dict[int, int]) -> None:
    """Fill calibre's tables; ids of names follow the order in which they first appear."""

    def item_id(table: dict[str, int], name: str) -> int:
        return table.setdefault(name, len(table) + 1)

    authors: dict[str, int] = {}
    sorts: dict[str, str] = {}
    tags: dict[str, int] = {}
    languages: dict[str, int] = {}
    series: dict[str, int] = {}
    publishers: dict[str, int] = {}
    rows: dict[str, list[tuple[object, ...]]] = {table: [] for table in _BOOK_ROWS}
    for b in books:
        for name, sort in b.authors:
            sorts[name] = sort
            rows["books_authors_link"].append((b.id, item_id(authors, name)))
        for tag in b.tags:
            rows["books_tags_link"].append((b.id, item_id(tags, tag)))
        rows["books_languages_link"].append((b.id, item_id(languages, b.language), 0))
        if b.series:
            rows["books_series_link"].append((b.id, item_id(series, b.series)))
        rows["books_publishers_link"].append((b.id, item_id(publishers, b.publisher)))
        rows["identifiers"].append((b.id, "isbn", b.isbn))
        rows["comments"].append((b.id, b.comments))
        rows["data"].append((b.id, "EPUB", sizes[b.id], b.file_stem))

    with closing(sqlite3.connect(path)) as db:
        db.executescript(_resource("calibre-schema.sql"))
        db.execute("PRAGMA user_version = 25")
        db.executemany(
            "INSERT INTO books (id, title, sort, timestamp, pubdate, series_index, author_sort,"
            " isbn, lccn, path, flags, uuid, has_cover, last_modified)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, '', '', ?, 1, ?, 0, ?)",
            [
                (b.id, b.title, b.title_sort, ADDED, b.pubdate, b.series_index, b.author_sort)
                + (b.path, b.uuid, ADDED)
                for b in books
            ],
        )
        db.executemany(
            "INSERT INTO authors (id, name, sort, link) VALUES (?, ?, ?, '')",
            [(i, name, sorts[name]) for name, i in authors.items()],
        )
        db.executemany("INSERT INTO tags (id, name) VALUES (?, ?)", _swap(tags))
        db.executemany("INSERT INTO languages (id, lang_code) VALUES (?, ?)", _swap(languages))
        db.executemany(
            "INSERT INTO series (id, name, sort) VALUES (?, ?, ?)",
            [(i, name, name) for name, i in series.items()],
        )
        db.executemany(
            "INSERT INTO publishers (id, name, sort) VALUES (?, ?, ?)",
            [(i, name, name) for name, i in publishers.items()],
        )
        for table, columns in _BOOK_ROWS.items():
            marks = ", ".join("?" * (columns.count(",") + 1))
            db.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows[table])
        db.execute("INSERT INTO library_id (id, uuid) VALUES (1, ?)", (_LIBRARY_UUID,))
        db.commit()


def _swap(table: dict[str, int]) -> list[tuple[int, str]]:
    return [(i, name) for name, i in table.items()]


# The books: original texts written for this sample, in a plain informative style, kept as
# package data (texts/*.md) beside this module.


def _resource(name: str) -> str:
    return (files("alexandria.tools.sample") / name).read_text(encoding="utf-8")


def _text(name: str) -> str:
    return _resource(f"texts/{name}.md")


SAMPLE_BOOKS: tuple[SampleBook, ...] = (
    SampleBook(
        id=1,
        title="A Short History of Whaling",
        title_sort="Short History of Whaling, A",
        authors=(("Ruth Ellery", "Ellery, Ruth"), ("Samuel J. Pratt", "Pratt, Samuel J.")),
        language="eng",
        tags=("History", "Whaling", "Maritime"),
        isbn="9781999900014",
        uuid="0280682c-063c-5314-86d4-23979d0b5daf",
        pubdate="2019-05-14 00:00:00+00:00",
        publisher="Harbour Lantern Press",
        comments="<p>From Basque shore stations to Nantucket whaleships and Antarctic factory "
        "ships: how whales were hunted, what their oil was used for, and why the trade "
        "declined.</p>",
        text=_text("whaling"),
    ),
    SampleBook(
        id=2,
        title="The Night Sky for Beginners",
        title_sort="Night Sky for Beginners, The",
        authors=(("Zoë Brontë-Müller", "Brontë-Müller, Zoë"),),
        language="eng",
        tags=("Astronomy", "Science", "Beginners"),
        isbn="9781999900021",
        uuid="ed84dc87-21a0-5c28-b185-fe90c4eedb74",
        pubdate="2021-09-02 00:00:00+00:00",
        publisher="Stargazer Books",
        comments="<p>A friendly first guide to the constellations, the phases of the Moon, the "
        "bright planets and choosing binoculars or a first telescope.</p>",
        text=_text("night-sky"),
    ),
    SampleBook(
        id=3,
        title="Le pain au levain",
        title_sort="pain au levain, Le",
        authors=(("Hélène Dufresne", "Dufresne, Hélène"),),
        language="fra",
        tags=("Cuisine", "Boulangerie"),
        isbn="9791099900036",
        uuid="3554be8f-fe18-53f8-8205-bf9f2e793ef3",
        pubdate="2018-03-20 00:00:00+00:00",
        publisher="Éditions du Fournil",
        comments="<p>Créer et entretenir un levain, choisir sa farine, pétrir, façonner et cuire "
        "un pain au levain à la maison.</p>",
        text=_text("pain-au-levain"),
    ),
    SampleBook(
        id=4,
        title="Gardening in Small Spaces",
        title_sort="Gardening in Small Spaces",
        authors=(
            ("Tobias Fenwick", "Fenwick, Tobias"),
            ("Zoë Brontë-Müller", "Brontë-Müller, Zoë"),
        ),
        language="eng",
        tags=("Gardening", "Home", "Beginners"),
        isbn="9781999900045",
        uuid="633d4f21-4145-5bca-b8f4-16b35cf4b232",
        pubdate="2023-04-11 00:00:00+00:00",
        publisher="Windowbox Press",
        comments="<p>Growing herbs, salads and vegetables on balconies, windowsills and patios: "
        "light, containers, compost, watering and growing upwards.</p>",
        text=_text("small-gardens"),
        series="Home Skills",
        series_index=2.5,
    ),
)
