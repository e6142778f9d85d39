"""Stage 3 with the real minilm tokenizer: bounds, chapters, spans, overlap."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexandria.chunk import Chunker, ChunkSettings
from alexandria.extract import Chapter, extract_epub
from alexandria.models import resolve_model

from .conftest import EPUBS, need_corpus


@pytest.fixture(scope="module")
def tokenizer_json() -> str:
    return (Path(resolve_model("minilm").source) / "tokenizer.json").read_text()


def chapters_of(name: str) -> list[Chapter]:
    need_corpus()
    return extract_epub((EPUBS / name).read_bytes(), name).chapters


def test_never_past_the_models_maximum_and_never_across_chapters(tokenizer_json):
    chunker = Chunker(tokenizer_json, 256, ChunkSettings(chunk_tokens=512, overlap=64))
    chapters = chapters_of("books/idpf-moby-dick.epub")
    chunks = chunker.chunk(chapters)
    assert chunker.capacity() == 254  # 256 minus [CLS] and [SEP]
    assert max(c.tokens for c in chunks) <= 256
    by_index = {ch.index: ch for ch in chapters}
    for c in chunks:
        chapter = by_index[c.chapter_index]
        assert chapter.text[c.char_start:c.char_end] == c.text  # spans point into the chapter
        assert c.chapter == chapter.title
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert [c.chapter_index for c in chunks] == sorted(c.chapter_index for c in chunks)
    # Most chunks are close to the target: the splitter packs paragraphs, not one per chunk.
    assert sum(c.tokens for c in chunks) / len(chunks) > 150


def test_smaller_target_and_overlap(tokenizer_json):
    chunker = Chunker(tokenizer_json, 256, ChunkSettings(chunk_tokens=64, overlap=16))
    chapter = max(chapters_of("books/idpf-moby-dick.epub"), key=lambda c: len(c.text))
    chunks = chunker.chunk([chapter])
    assert all(c.tokens <= 66 for c in chunks)
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:], strict=False) if b.char_start < a.char_end)
    assert overlapping > len(chunks) // 5  # long paragraphs are split with shared tokens
    no_overlap = Chunker(tokenizer_json, 256, ChunkSettings(chunk_tokens=64, overlap=0))
    plain = no_overlap.chunk([chapter])
    assert not any(b.char_start < a.char_end for a, b in zip(plain, plain[1:], strict=False))


def test_splits_at_paragraphs_first(tokenizer_json):
    chunker = Chunker(tokenizer_json, 256, ChunkSettings(chunk_tokens=40, overlap=0))
    para = "This sentence is about whales and ships. " * 3
    chapter = Chapter(index=0, title="One", href="one.xhtml", text=f"{para.strip()}\n\n{para.strip()}")
    chunks = chunker.chunk([chapter])
    assert [c.text for c in chunks] == [para.strip(), para.strip()]


def test_reserved_prompt_tokens_shrink_capacity(tokenizer_json):
    chunker = Chunker(tokenizer_json, 256, ChunkSettings())
    assert chunker.capacity(reserved=20) == 234
