"""Stage 3 with the real minilm tokenizer: bounds, chapters, spans, overlap."""

from __future__ import annotations

from pathlib import Path

import pytest

from alexandria.chunking.chunker import Chunker, ChunkSettings, IdReuse
from alexandria.embedding.models import resolve_model
from alexandria.sources.book import Chapter
from alexandria.sources.epub import extract_epub
from tests.conftest import EPUBS, need_corpus


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


# -- chunk tokens reused as model inputs ----------------------------------------------------------

REUSE_BOOKS = ("books/idpf-moby-dick.epub", "books/idpf-jlreq-in-japanese.epub",
               "books/idpf-regime-anticancer-arabic.epub", "books/idpf-sous-le-vent.epub",
               "books/se-the-devils-dictionary.epub")


@pytest.fixture(scope="module")
def reuse_chapters() -> list[list[Chapter]]:
    return [chapters_of(name) for name in REUSE_BOOKS]


@pytest.fixture(scope="module")
def sentencepiece_jsons(reuse_chapters) -> dict[str, str]:
    """Unigram + Metaspace tokenizers trained on these books: one normalizing like bge-m3's
    (nmt_nfkc: newlines become spaces), one keeping newlines, one marking no first word, and
    the bench's EmbeddingGemma stand-in, which splits no words first (as Gemma's own)."""
    from tokenizers import Tokenizer, pre_tokenizers

    from alexandria.tools.bench.synthetic import SYNTHETIC, train_tokenizer

    texts = [c.text for book in reuse_chapters for c in book]
    nmt = train_tokenizer(texts, SYNTHETIC["bge-m3"], vocab_size=8000).backend_tokenizer
    unsplit = train_tokenizer(texts, SYNTHETIC["embeddinggemma"], vocab_size=8000).backend_tokenizer
    newlines = Tokenizer.from_str(unsplit.to_str())
    newlines.pre_tokenizer = pre_tokenizers.Metaspace()
    never = Tokenizer.from_str(nmt.to_str())
    never.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    return {"nmt": nmt.to_str(), "newlines": newlines.to_str(), "never": never.to_str(),
            "unsplit": unsplit.to_str()}


def _inputs_both_ways(chunker: Chunker, chapters: list[Chapter]):
    from alexandria.run.prepare import chunk_inputs, model_inputs

    chunks = chunker.chunk(chapters)
    reused = [(c.ids, c.text) for c in chunks if c.ids is not None]  # before chunk_inputs
    alone = model_inputs(chunker, [c.text for c in chunks])
    return chunks, reused, chunk_inputs(chunker, chunks, None, "t"), alone


# Training the sentencepiece tokenizers takes about a minute on two cores: those cases are slow.
@pytest.mark.parametrize("kind, least", [("minilm", 0.8), pytest.param("nmt", 0.8, marks=pytest.mark.slow),
                                         pytest.param("newlines", 0.2, marks=pytest.mark.slow)])
def test_chunk_tokens_are_reused_only_where_they_read_the_same_alone(
        kind, least, tokenizer_json, reuse_chapters, request):
    from alexandria.run.prepare import model_inputs

    tj = tokenizer_json if kind == "minilm" else request.getfixturevalue("sentencepiece_jsons")[kind]
    chunker = Chunker(tj, 512, ChunkSettings(chunk_tokens=200, overlap=32))
    total = reused_total = 0
    for chapters in reuse_chapters:
        chunks, reused, inputs, alone = _inputs_both_ways(chunker, chapters)
        for ids, text in reused:  # each one exact, not only the two that chunk_inputs checks
            assert chunker.with_specials(ids).tolist() == model_inputs(chunker, [text])[0].tolist()
        assert [a.tolist() for a in inputs] == [b.tolist() for b in alone]
        assert all(c.ids is None for c in chunks)  # not sent back to the main process
        total += len(chunks)
        reused_total += len(reused)
    # BERT splits at every whitespace; nmt_nfkc turns newlines into spaces, so paragraph cuts
    # are clean; a tokenizer that keeps newlines as tokens has clean cuts between sentences only.
    # Japanese has no spaces to cut after: its chunks are tokenized again.
    assert reused_total >= least * total


@pytest.mark.slow
def test_a_tokenizer_whose_cut_words_read_differently_tokenizes_every_chunk(
        sentencepiece_jsons, reuse_chapters):
    from alexandria.run.prepare import model_inputs

    chunker = Chunker(sentencepiece_jsons["never"], 512, ChunkSettings(chunk_tokens=200, overlap=32))
    chapters = reuse_chapters[0]
    _, reused, inputs, alone = _inputs_both_ways(chunker, chapters)
    assert not reused  # no mark before a text's first word: a chunk's first word reads differently
    assert [a.tolist() for a in inputs] == [b.tolist() for b in alone]
    # Reused anyway, the tokens are wrong, and the two chunks checked per book catch it.
    chunker.reuse = IdReuse(chunker.tokenizer, {"type": "Metaspace"})
    _, reused, inputs, alone = _inputs_both_ways(chunker, chapters)
    assert reused and any(chunker.with_specials(ids).tolist() != model_inputs(chunker, [text])[0].tolist()
                          for ids, text in reused)
    assert [a.tolist() for a in inputs] == [b.tolist() for b in alone]


@pytest.mark.slow
def test_a_tokenizer_that_splits_no_words_first_tokenizes_every_chunk(
        sentencepiece_jsons, reuse_chapters):
    """EmbeddingGemma's stand-in in the bench, like Gemma's own tokenizer: no reuse."""
    chunker = Chunker(sentencepiece_jsons["unsplit"], 512, ChunkSettings(chunk_tokens=200, overlap=32))
    assert not chunker.reuse
    _, reused, inputs, alone = _inputs_both_ways(chunker, reuse_chapters[0])
    assert not reused and [a.tolist() for a in inputs] == [b.tolist() for b in alone]
