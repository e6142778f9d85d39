"""Clean chapters from web-made EPUBs: no navigation bars or running headers in the text, short
chapter titles, and TOC links to moved files still naming their chapters.

Each case is a small EPUB written here with ebooklib; the last tests read the real corpus.
"""

from __future__ import annotations

import zipfile
from functools import cache
from pathlib import Path

import pytest
from ebooklib import epub
from lxml import etree

from alexandria.sources.boilerplate import block_key
from alexandria.sources.epub import extract_epub
from alexandria.sources.titles import MAX_TITLE, short_label, title_path
from tests.conftest import EPUBS, have_corpus, need_corpus

NAV_BAR = '<div class="related"><h3>Navigation</h3><ul><li><a href="#">next</a> |</li>' \
          '<li><a href="#">previous</a> |</li></ul></div>'
FOOTER = '<table><tr><td><a href="#">Prev</a></td><td><a href="#">Up</a></td><td>Home</td>' \
         '<td><a href="#">Next</a></td></tr></table><p>Download the ebook</p>'


def write_book(path: Path, chapters: list[tuple[str, str, str]], *, toc: list | None = None,
               language: str = "en") -> Path:
    """chapters: (file name, TOC label, XHTML body); toc: ebooklib TOC entries (default: one
    link per chapter with its label)."""
    book = epub.EpubBook()
    book.set_identifier(f"alexandria-test-{path.stem}")
    book.set_title("A Web-Made Manual")
    book.set_language(language)
    docs = []
    for name, label, body in chapters:
        doc = epub.EpubHtml(uid=name.replace("/", "_").replace(".", "_"), title=label, file_name=name)
        doc.content = body
        book.add_item(doc)
        docs.append(doc)
    book.toc = toc if toc is not None else [epub.Link(d.file_name, label, d.id)
                                              for d, (_, label, _) in zip(docs, chapters, strict=True)]
    book.spine = docs
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(path), book)
    return path


def prose(topic: str, n: int = 3) -> str:
    return "".join(f"<p>{topic} paragraph {i}: the text a reader came for, long enough to be a "
                   f"paragraph of its own about {topic}.</p>" for i in range(n))


# -- repeated blocks --------------------------------------------------------------------------------


def test_a_navigation_bar_on_every_page_is_dropped_and_a_heading_in_two_chapters_is_kept(tmp_path):
    chapters = []
    for i in range(8):
        notes = "<h2>Exercises</h2>" if i in (2, 5) else ""
        chapters.append((f"ch{i}.xhtml", f"Chapter {i}",
                         f"{NAV_BAR}<h1>Chapter {i}</h1>{prose(f'topic{i}')}{notes}{FOOTER}"))
    book = extract_epub(write_book(tmp_path / "manual.epub", chapters).read_bytes())
    text = "\n\n".join(c.text for c in book.chapters)
    for line in ("Navigation", "next |", "previous |", "Prev", "Up", "Home", "Next",
                 "Download the ebook"):
        assert line not in text.split("\n\n"), line
    assert text.count("Exercises") == 2  # in 2 of 8 documents: content, not furniture
    assert [c.title for c in book.chapters] == [f"Chapter {i}" for i in range(8)]
    assert all(c.text.startswith(f"Chapter {c.index}\n\ntopic{c.index} paragraph 0") for c in book.chapters)
    assert any(w.startswith("dropped 8 block(s) repeated across") for w in book.warnings), book.warnings


def test_repeats_are_counted_per_document_not_per_occurrence(tmp_path):
    # A refrain sung ten times in one poem of six is not furniture.
    refrain = "<p>O Captain!</p>" * 10
    chapters = [(f"p{i}.xhtml", f"Poem {i}", prose(f"poem{i}", 2) + (refrain if i == 0 else ""))
                for i in range(6)]
    book = extract_epub(write_book(tmp_path / "poems.epub", chapters).read_bytes())
    assert book.chapters[0].text.count("O Captain!") == 10
    assert not any("repeated across" in w for w in book.warnings)


def test_a_book_of_two_documents_keeps_everything(tmp_path):
    chapters = [(f"c{i}.xhtml", f"C{i}", f"<p>Same header</p>{prose(f't{i}')}") for i in range(2)]
    book = extract_epub(write_book(tmp_path / "two.epub", chapters).read_bytes())
    assert all(c.text.startswith("Same header") for c in book.chapters)


def test_an_anchor_after_a_dropped_bar_still_starts_its_chapter(tmp_path):
    chapters = [(f"c{i}.xhtml", f"C{i}",
                 f"{NAV_BAR}{prose(f'a{i}', 1)}<h2 id='s'>Second {i}</h2>{prose(f'b{i}', 1)}")
                for i in range(4)]
    toc = [epub.Link(f"c{i}.xhtml", f"C{i}", f"c{i}") for i in range(4)]
    toc.append(epub.Link("c3.xhtml#s", "C3 second part", "c3s"))
    book = extract_epub(write_book(tmp_path / "anchors.epub", chapters, toc=toc).read_bytes())
    last = [c for c in book.chapters if c.href.endswith("c3.xhtml")]
    assert [c.title for c in last] == ["C3", "C3 second part"]
    assert last[0].text.startswith("a3 paragraph 0") and last[1].text.startswith("Second 3\n\nb3")


# -- titles -----------------------------------------------------------------------------------------


def test_a_toc_label_holding_the_chapters_contents_becomes_its_first_line(tmp_path):
    # What calibre's chapter detection wrote for the Debian Administrator's Handbook: the
    # heading, the chapter's own table of contents and its first paragraph, in one label.
    contents = "\n".join(f"3.{i}. Section {i} of the setup analysis" for i in range(1, 30))
    label = ("Chapter 3. Analyzing the Existing Setup\n" + contents + "\n"
             + "Any computer upgrade should take the existing system into account. " * 6)
    chapters = [("ch1.xhtml", "Chapter 1", prose("intro")), ("ch3.xhtml", label, prose("setup"))]
    book = extract_epub(write_book(tmp_path / "handbook.epub", chapters).read_bytes())
    assert len(label) > 1000
    assert [c.title for c in book.chapters] == ["Chapter 1", "Chapter 3. Analyzing the Existing Setup"]


def test_a_long_label_without_lines_is_cut_at_its_first_sentence_then_at_a_word():
    sentence = "Chapter 3. " + "Analyzing the existing setup and planning the migration " * 10
    assert short_label(sentence) == "Chapter 3."
    words = "word " * 100
    cut = short_label(words)
    assert len(cut) <= 200 and cut.endswith("\u2026") and "wor\u2026" not in cut
    assert short_label("Chapter 1\n   Loomings") == "Chapter 1 Loomings"  # short labels stay whole


def test_a_deep_chapter_path_stays_under_the_limit():
    labels = ("EPUB Publications 3.0", "3. Publication Resources " * 3, "3.2 Core Media Types " * 4,
              "3.2.1 Rules for the use of core media types in a publication")
    title = title_path(labels)
    assert len(title) <= MAX_TITLE
    assert title.startswith("EPUB Publications 3.0 > \u2026 > ") and title.endswith("publication")
    assert title_path(("Part I", "Chapter 2")) == "Part I > Chapter 2"


# -- TOC links to files that moved -------------------------------------------------------------------


def test_a_toc_link_to_a_moved_file_finds_the_only_file_of_that_name(tmp_path):
    # The Ubuntu Packaging Guide: the nav names introduction.xhtml, the file is en/introduction.xhtml.
    chapters = [("en/introduction.xhtml", "Introduction", prose("intro")),
                ("en/getting-set-up.xhtml", "Getting set up", prose("setup")),
                ("en/index.xhtml", "Index", prose("index"))]
    toc = [epub.Link("introduction.xhtml", "Introduction to Ubuntu development", "i"),
           epub.Link("getting-set-up.xhtml#top", "Getting set up", "g"),
           epub.Link("missing.xhtml", "Nowhere", "m")]
    path = write_book(tmp_path / "guide.epub", chapters, toc=toc)
    book = extract_epub(path.read_bytes())
    assert [c.title for c in book.chapters] == ["Introduction to Ubuntu development", "Getting set up",
                                                "Getting set up"]
    moved = [w for w in book.warnings if "matched by file name" in w]
    assert moved and moved[0].startswith("2 ")
    assert "introduction.xhtml -> EPUB/en/introduction.xhtml" in moved[0]
    assert any("not in the book" in w and "missing.xhtml" in w for w in book.warnings)
    assert extract_epub(path.read_bytes(), use_ebooklib=False).chapters == book.chapters


def test_two_files_of_that_name_leave_the_link_unresolved(tmp_path):
    chapters = [("en/intro.xhtml", "Intro", prose("en")), ("fr/intro.xhtml", "Intro", prose("fr"))]
    book = extract_epub(write_book(tmp_path / "two-langs.epub", chapters,
                                   toc=[epub.Link("intro.xhtml", "Intro", "i")]).read_bytes())
    assert all(c.title != "Intro" for c in book.chapters)
    assert any("not in the book" in w for w in book.warnings)


# -- the real corpus --------------------------------------------------------------------------------


def corpus_books() -> list[Path]:
    return sorted((EPUBS / "books").glob("*.epub")) if have_corpus() else []


@cache
def navigation_lines(path: Path) -> frozenset[str]:
    """Lines of text (read straight from the XHTML, not through the extractor) that repeat
    across at least half of a book's spine documents (and at least 3): navigation and running
    headers by the issue's definition."""
    counts: dict[str, int] = {}
    documents = 0
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            if not name.endswith((".xhtml", ".html", ".htm")) or "nav" in name.rsplit("/", 1)[-1]:
                continue
            try:
                root = etree.fromstring(zf.read(name), etree.HTMLParser())
            except (etree.XMLSyntaxError, ValueError):
                continue
            body = root.find(".//body") if root is not None else None
            if body is None:
                continue
            lines = {block_key(t) for t in "".join(body.itertext()).splitlines() if t.strip()}
            if lines:
                documents += 1
                for key in lines:
                    counts[key] = counts.get(key, 0) + 1
    if documents < 3:
        return frozenset()
    return frozenset(k for k, n in counts.items() if n >= max(3, documents / 2))


@pytest.mark.slow
def test_no_corpus_chunk_holds_a_navigation_line_that_repeats_across_its_book(embedder):
    need_corpus("the real books")
    from alexandria.chunking.chunker import Chunker, ChunkSettings

    chunker = Chunker(embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings())
    checked = 0
    for path in corpus_books():
        try:
            book = extract_epub(path.read_bytes(), path.name)
        except Exception:  # image-only books have no text: nothing to hold a line
            continue
        # TOC labels are headings, never furniture, however often they repeat (a poem's "1")
        labels = {block_key(part) for c in book.chapters for part in (c.title or "").split(" > ")}
        lines = navigation_lines(path) - labels
        chunks = chunker.chunk(chunker.join_short(book.chapters))
        for chunk in chunks:
            held = {block_key(p) for p in chunk.text.split("\n\n")} & lines
            assert not held, f"{path.name}: chunk {chunk.index} holds {sorted(held)[:3]}"
        checked += 1
    assert checked >= 10


def test_no_corpus_chapter_title_is_over_200_characters():
    need_corpus("the real books")
    for path in corpus_books():
        try:
            book = extract_epub(path.read_bytes(), path.name)
        except Exception:
            continue
        long = [c.title for c in book.chapters if len(c.title) > MAX_TITLE]
        assert not long, f"{path.name}: {long[0][:80]}..."


@pytest.mark.slow
def test_the_moved_file_warning_is_in_the_books_manifest_row(tmp_path):
    from alexandria.run.ingest import ingest
    from alexandria.run.options import IngestOptions
    from alexandria.store.manifest import Manifest

    chapters = [("en/introduction.xhtml", "Introduction", prose("intro")),
                ("en/getting-set-up.xhtml", "Getting set up", prose("setup"))]
    toc = [epub.Link("introduction.xhtml", "Introduction to Ubuntu development", "i"),
           epub.Link("getting-set-up.xhtml", "Getting set up", "g")]
    path = write_book(tmp_path / "guide.epub", chapters, toc=toc)
    report = ingest(IngestOptions(files=(path,), model="minilm", device="cpu", store=tmp_path / "store"))
    assert report.books_done == 1
    manifest = Manifest(tmp_path / "store" / "manifest.sqlite")
    try:
        (row,) = manifest.rows(report.collection).values()
    finally:
        manifest.close()
    assert "matched by file name" in (row.warnings or "")
    assert "introduction.xhtml -> EPUB/en/introduction.xhtml" in row.warnings
