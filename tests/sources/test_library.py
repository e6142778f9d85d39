"""Stage 1 against the real calibre 6.13 library: metadata exactly as stored, never from folder names."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest

from alexandria.errors import UsageError
from alexandria.sources import library
from tests.conftest import CALIBRE, corpus_book, need_corpus


def by_id(books):
    return {b.calibre_id: b for b in books}


def test_reads_every_book_with_metadata_from_the_database():
    need_corpus()
    books = by_id(library.scan(CALIBRE))
    assert len(books) == 12
    hebrew = books[5]
    assert hebrew.title == "מפליגים בישראל"  # the folder name is an ASCII transliteration
    assert hebrew.authors == ["אורי עידן"]
    assert hebrew.languages == ["heb"]
    japanese = books[6]
    assert japanese.title == "ガリ版の話" and japanese.series == "日本語サンプル"
    assert books[7].series == "Exemples EPUB 3" and books[7].series_index == 2.5
    assert books[4].authors == ["Pr David Khayat", "Nathalie Hutter-Lardeau"]
    assert books[1].tags == ["Detective", "Mystery", "Short Stories"]
    assert books[1].identifiers == {"gutenberg": "1661"}
    assert books[1].key == "84dcb994-4a89-4218-9f77-6bb248601b07"
    assert books[2].series is None and books[2].series_index is None


def test_prefers_epub_and_skips_books_without_one():
    need_corpus()
    books = by_id(library.scan(CALIBRE))
    assert books[2].fmt == "epub" and books[2].path.suffix == ".epub"  # EPUB + AZW3
    assert books[12].skip_reason == "no-epub" and books[12].path is None  # TXT only
    assert sum(1 for b in books.values() if b.skip_reason) == 1
    # Two editions of the same title by the same author stay two books.
    assert books[9].key != books[10].key and books[9].title == books[10].title


def test_missing_file_is_a_failure_not_a_crash(tmp_path, calibre_library):
    lib = tmp_path / "lib"
    shutil.copytree(calibre_library, lib)
    victim = by_id(library.scan(lib))[3].path
    victim.chmod(0o644)
    victim.unlink()
    assert by_id(library.scan(lib))[3].fail_reason == "file-missing"


def test_reads_a_snapshot_and_never_touches_the_library(tmp_path, calibre_library):
    lib = tmp_path / "lib"
    shutil.copytree(calibre_library, lib)
    before = tree_digest(lib)
    library.scan(lib)
    assert tree_digest(lib) == before
    assert sorted(p.name for p in lib.iterdir() if p.is_file()) == ["metadata.db"]


def test_locked_database_is_still_readable(tmp_path):
    """calibre holding a write lock must not stop a run: we read a private copy."""
    need_corpus()
    lib = tmp_path / "lib"
    shutil.copytree(CALIBRE, lib)
    (lib / "metadata.db").chmod(0o644)
    con = sqlite3.connect(lib / "metadata.db")
    con.execute("BEGIN EXCLUSIVE")
    try:
        assert len(library.scan(lib)) == 12
    finally:
        con.rollback()
        con.close()


def test_plain_folder_walks_recursively(tmp_path, sample_epubs):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(corpus_book("books/idpf-wasteland.epub", sample_epubs, 0), tmp_path / "a" / "b" / "W.EPUB")
    shutil.copy(corpus_book("edge/idpf-hefty-water.epub", sample_epubs, 1), tmp_path / "hefty water é.epub")
    (tmp_path / "notes.txt").write_text("not a book")
    books = library.scan(tmp_path)
    assert sorted(b.path.name for b in books) == ["W.EPUB", "hefty water é.epub"]
    assert all(b.key == "" and b.calibre_id is None for b in books)  # hashed by the planner


def test_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        library.scan(tmp_path / "nope")


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }
