"""Stage 1: what books exist. Reads a Calibre library (metadata.db, never written) or a folder of books."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from alexandria.errors import UsageError

# Formats with a reader (prepare.READERS), as calibre names them (lower case) or as file extensions.
READABLE_FORMATS = (
    "epub", "azw3", "azw", "mobi", "prc", "pdf", "txt", "text", "md", "markdown", "html", "htm", "xhtml",
)


@dataclass
class Book:
    """One book as the library describes it; metadata here is what goes into every payload."""

    key: str  # calibre uuid, or "sha256:<hex>" of the file for plain folders
    title: str
    path: Path | None  # the chosen file, None when there is nothing to read
    fmt: str | None = None
    calibre_id: int | None = None
    authors: list[str] = field(default_factory=list)
    series: str | None = None
    series_index: float | None = None
    tags: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    identifiers: dict[str, str] = field(default_factory=dict)
    size: int | None = None
    mtime_ns: int | None = None
    added: str | None = None  # calibre's timestamp column
    modified: str | None = None  # calibre's last_modified
    skip_reason: str | None = None  # e.g. no-epub: nothing to do, not an error
    fail_reason: str | None = None  # e.g. file-missing: the library promises a file that is not there

    def changed_at(self) -> datetime | None:
        """When the book last changed, for --since: calibre's dates, else the file's mtime."""
        stamps = []
        for value in (self.added, self.modified):
            if value:
                try:
                    stamps.append(datetime.fromisoformat(value.replace(" ", "T")))
                except ValueError:
                    pass
        if self.mtime_ns is not None:
            stamps.append(datetime.fromtimestamp(self.mtime_ns / 1e9, tz=timezone.utc))
        stamps = [d if d.tzinfo else d.replace(tzinfo=timezone.utc) for d in stamps]
        return max(stamps) if stamps else None

    @property
    def language(self) -> str | None:
        return self.languages[0] if self.languages else None

    def metadata(self) -> dict:
        """The payload fields that come from the library (updated in place when only they change)."""
        return {
            "book_key": self.key,
            "calibre_id": self.calibre_id,
            "title": self.title,
            "authors": list(self.authors),
            "series": self.series,
            "series_index": self.series_index,
            "tags": list(self.tags),
            "language": self.language,
            "languages": list(self.languages),
            "identifiers": dict(self.identifiers),
            "source_path": str(self.path) if self.path else None,
        }

    def metadata_hash(self) -> str:
        blob = json.dumps(self.metadata(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_calibre_library(root: Path) -> bool:
    return (root / "metadata.db").is_file()


def scan(root: Path, formats: Iterable[str] = ("epub",)) -> list[Book]:
    """All books below root: from metadata.db when there is one, else every file of the formats."""
    if not root.exists():
        raise UsageError(f"The library folder {root} does not exist.")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder; use --file for a single book.")
    if is_calibre_library(root):
        return read_calibre(root, formats)
    return [book_from_file(p) for p in _book_files(root, formats)]


def _book_files(root: Path, formats: Iterable[str]) -> Iterator[Path]:
    """Files of the wanted formats; where one folder holds the same name in several formats
    (Moby-Dick.epub and Moby-Dick.pdf), only the first in preference order: one book, not two."""
    preference = [f.lower() for f in formats if f.lower() in READABLE_FORMATS]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        chosen: dict[str, tuple[int, str]] = {}
        for name in filenames:
            stem, dot, ext = name.rpartition(".")
            if dot and stem and ext.lower() in preference:
                rank = preference.index(ext.lower())
                if stem.casefold() not in chosen or rank < chosen[stem.casefold()][0]:
                    chosen[stem.casefold()] = (rank, name)
        for _, name in sorted(chosen.values(), key=lambda v: v[1]):
            yield Path(dirpath) / name


def book_from_file(path: Path) -> Book:
    """A book that is only a file: its key is its content hash (filled in by the planner)."""
    path = Path(path)
    book = Book(key="", title=path.stem, path=path, fmt=path.suffix.lower().lstrip("."))
    try:
        st = path.stat()
    except OSError:
        book.fail_reason = "file-missing"
        return book
    book.size, book.mtime_ns = st.st_size, st.st_mtime_ns
    if book.fmt not in READABLE_FORMATS:
        book.skip_reason = f"unsupported-format:{book.fmt}"
    return book


@contextmanager
def snapshot(db: Path, attempts: int = 5) -> Iterator[Path]:
    """A private copy of metadata.db: SQLite locking breaks on SMB, and calibre may be writing."""
    tmpdir = Path(tempfile.mkdtemp(prefix="alexandria-metadata-"))
    try:
        for attempt in range(attempts):
            before = db.stat()
            copy = tmpdir / "metadata.db"
            shutil.copyfile(db, copy)
            for suffix in ("-wal",):  # a WAL beside it holds committed pages not yet in the file
                side = db.with_name(db.name + suffix)
                if side.exists():
                    shutil.copyfile(side, copy.with_name(copy.name + suffix))
            after = db.stat()
            if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns):
                yield copy
                return
            time.sleep(0.2 * (attempt + 1))
        raise UsageError(f"{db} kept changing while it was copied; is calibre writing to it?")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def read_calibre(root: Path, formats: Iterable[str] = ("epub",)) -> list[Book]:
    """Whole library in a handful of queries, never one per book: 10,000 books plan in seconds."""
    preference = [f.lower() for f in formats]
    with snapshot(root / "metadata.db") as copy:
        con = sqlite3.connect(f"{copy.as_uri()}?mode=ro", uri=True)
        try:
            rows = _query_calibre(con)
        except sqlite3.DatabaseError as e:
            raise UsageError(f"{root / 'metadata.db'} is not a readable calibre database ({e}).") from e
        finally:
            con.close()
    books_rows, many = rows
    books: list[Book] = []
    for book_id, title, path, uuid, series_index, added, modified in books_rows:
        book = Book(
            key=uuid or f"calibre-id:{book_id}",
            title=title or "",
            path=None,
            calibre_id=book_id,
            authors=many["authors"].get(book_id, []),
            series=(many["series"].get(book_id) or [None])[0],
            series_index=series_index if many["series"].get(book_id) else None,
            tags=many["tags"].get(book_id, []),
            languages=many["languages"].get(book_id, []),
            identifiers=dict(many["identifiers"].get(book_id, [])),
            added=added,
            modified=modified,
        )
        files = dict(many["data"].get(book_id, []))  # fmt -> file stem
        chosen = next((f for f in preference if f in files and f in READABLE_FORMATS), None)
        if chosen is None:
            wanted = next((f for f in preference if f in files), None)
            if wanted:
                book.skip_reason = f"unsupported-format:{wanted}"
            else:
                book.skip_reason = "no-epub" if preference == ["epub"] else "no-readable-format"
            books.append(book)
            continue
        book.fmt = chosen
        book.path = root / path / f"{files[chosen]}.{chosen}"
        try:
            st = book.path.stat()
            book.size, book.mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            book.fail_reason = "file-missing"
        books.append(book)
    return books


def _query_calibre(con: sqlite3.Connection) -> tuple[list[tuple], dict[str, dict[int, list]]]:
    books = con.execute(
        "SELECT id, title, path, uuid, series_index, timestamp, last_modified FROM books ORDER BY id"
    ).fetchall()
    queries = {
        "authors": "SELECT l.book, a.name FROM books_authors_link l "
        "JOIN authors a ON a.id = l.author ORDER BY l.book, l.id",
        "tags": "SELECT l.book, t.name FROM books_tags_link l "
        "JOIN tags t ON t.id = l.tag ORDER BY l.book, t.name",
        "series": "SELECT l.book, s.name FROM books_series_link l "
        "JOIN series s ON s.id = l.series ORDER BY l.book",
        "languages": "SELECT l.book, g.lang_code FROM books_languages_link l "
        "JOIN languages g ON g.id = l.lang_code ORDER BY l.book, l.item_order",
        "identifiers": "SELECT book, type, val FROM identifiers ORDER BY book, type",
        "data": "SELECT book, lower(format), name FROM data ORDER BY book, id",
    }
    many: dict[str, dict[int, list]] = {}
    for name, sql in queries.items():
        grouped: dict[int, list] = defaultdict(list)
        for row in con.execute(sql):
            grouped[row[0]].append(row[1] if len(row) == 2 else tuple(row[1:]))
        many[name] = grouped
    return books, many
