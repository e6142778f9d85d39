"""No chunk is a heading alone: a chapter of a few tokens goes before the one that follows it,
and the last window of a long chapter is never a scrap."""

from __future__ import annotations

from pathlib import Path

import pytest
from ebooklib import epub

from alexandria.chunking.chunker import MIN_CHUNK_TOKENS, Chunker, ChunkSettings
from alexandria.chunking.windows import windows
from alexandria.sources.epub import extract_epub
from tests.conftest import EPUBS, need_corpus


@pytest.fixture(scope="module")
def chunker(embedder) -> Chunker:
    return Chunker(embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings())


def part_book(path: Path) -> Path:
    """Two parts, each a title page of its own (heading only) before its chapters, and a short
    last page: the shape of the Debian Live manual's '73 / Live システムプロジェクトへの貢献'."""
    book = epub.EpubBook()
    book.set_identifier("alexandria-test-parts")
    book.set_title("A Manual in Parts")
    book.set_language("en")
    docs = {}

    def add(name: str, body: str) -> epub.EpubHtml:
        doc = epub.EpubHtml(uid=name.split(".")[0], title=name, file_name=name)
        doc.content = body
        book.add_item(doc)
        docs[name] = doc
        return doc

    def prose(topic: str) -> str:
        return "".join(f"<p>Paragraph {i} on {topic}: enough words to make this a real chapter that a "
                       f"reader would search for, with some detail about {topic}.</p>" for i in range(6))

    add("part1.xhtml", "<h1>Part One: Contributing to the project</h1>")
    add("ch1.xhtml", "<h2>Chapter 1</h2>" + prose("patches"))
    add("ch2.xhtml", "<h2>Chapter 2</h2>" + prose("translations"))
    add("part2.xhtml", "<h1>Part Two</h1><p>Reference.</p>")
    add("ch3.xhtml", "<h2>Chapter 3</h2>" + prose("options"))
    add("end.xhtml", "<p>The end.</p>")
    link = {name: epub.Link(name, label, name.split(".")[0]) for name, label in [
        ("ch1.xhtml", "Chapter 1"), ("ch2.xhtml", "Chapter 2"), ("ch3.xhtml", "Chapter 3"),
        ("end.xhtml", "Colophon")]}
    book.toc = [(epub.Section("Part One", "part1.xhtml"), [link["ch1.xhtml"], link["ch2.xhtml"]]),
                (epub.Section("Part Two", "part2.xhtml"), [link["ch3.xhtml"]]), link["end.xhtml"]]
    book.spine = list(docs.values())
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(path), book)
    return path


def test_a_heading_only_chapter_joins_the_chapter_after_it(chunker, tmp_path):
    chapters = extract_epub(part_book(tmp_path / "parts.epub").read_bytes()).chapters
    assert [c.title for c in chapters][:2] == ["Part One", "Part One > Chapter 1"]
    joined = chunker.join_short(chapters)
    assert [c.title for c in joined] == ["Part One > Chapter 1", "Part One > Chapter 2",
                                         "Part Two > Chapter 3", "Colophon"]
    assert [c.index for c in joined] == [0, 1, 2, 3]
    assert joined[0].text.startswith("Part One: Contributing to the project\n\nChapter 1\n\nParagraph 0")
    assert joined[2].text.startswith("Part Two\n\nReference.\n\nChapter 3")
    chunks = chunker.chunk(joined)
    specials = chunker.specials
    short = [c for c in chunks if c.tokens - specials < MIN_CHUNK_TOKENS]
    # Only the colophon stays short: it is the last chapter, nothing follows it to join.
    assert [c.chapter for c in short] == ["Colophon"]
    assert "Part One: Contributing" in chunks[0].text


def test_the_last_window_of_a_long_text_is_never_a_scrap(chunker):
    text = " ".join(f"word{i}." for i in range(400))
    enc = chunker.tokenizer.encode(text, add_special_tokens=False)
    n = len(enc.ids)
    for capacity in range(100, 200, 7):
        spans = windows(text, enc.offsets, capacity, 0, MIN_CHUNK_TOKENS)
        assert spans[-1].start + len(text) > 0 and spans[-1].tokens >= MIN_CHUNK_TOKENS
        assert sum(w.tokens for w in spans) == n  # no overlap: the windows tile the text
        assert all(w.tokens <= capacity for w in spans)


def test_paged_chapters_are_not_joined(chunker):
    from alexandria.sources.pdf import PagedChapter

    chapters = [PagedChapter(0, "Cover", "", "A title", first_page=1, page_starts=[0]),
                PagedChapter(1, "One", "", "Body text. " * 50, first_page=2, page_starts=[0])]
    assert chunker.join_short(chapters) == chapters


@pytest.mark.slow
def test_no_corpus_chunk_is_short_unless_its_chapter_is(chunker):
    need_corpus("the real books")
    for path in sorted((EPUBS / "books").glob("*.epub")):
        try:
            chapters = chunker.join_short(extract_epub(path.read_bytes()).chapters)
        except Exception:  # image-only books: no text, no chunks
            continue
        whole = dict(zip((c.index for c in chapters), chunker.count_tokens([c.text for c in chapters]),
                         strict=True))
        for c in chunker.chunk(chapters):
            if c.tokens - chunker.specials < MIN_CHUNK_TOKENS:
                assert whole[c.chapter_index] - chunker.specials < MIN_CHUNK_TOKENS, (path.name, c.text)
                assert c.chapter_index == chapters[-1].index, (path.name, c.text)
