"""The real EmbeddingGemma tokenizer against the chunk-token reuse rule, on corpus text in many
languages: a reused chunk's model input (document prompt, then its tokens in the chapter) must be
exactly what tokenizing the prompted chunk text alone gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alexandria.chunking.chunker import Chunker, ChunkSettings
from alexandria.embedding.models import resolve_model
from tests.chunking.test_chunk import chapters_of
from tests.embedding.gemma import gemma_folder

# English, French, Arabic, Hebrew, Japanese (with and without spaces), a dictionary, a diary.
BOOKS = ("books/idpf-moby-dick.epub", "books/idpf-sous-le-vent.epub",
         "books/idpf-regime-anticancer-arabic.epub", "books/idpf-israelsailing.epub",
         "books/idpf-jlreq-in-japanese.epub", "books/se-the-devils-dictionary.epub",
         "books/idpf-accessible_epub_3.epub", "books/se-the-adventures-of-sherlock-holmes.epub")


@pytest.fixture(scope="module")
def gemma_tokenizer_json() -> str:
    folder = gemma_folder()
    return (folder / "tokenizer.json").read_text(encoding="utf-8")


def test_gemma_merges_cross_the_space_marker_only_after_a_closing_angle_bracket(gemma_tokenizer_json):
    """The reason reuse is safe: BPE runs over the whole text (no pre-tokenizer splits it), but of
    262,144 tokens one only holds the marker after another character."""
    spec = json.loads(gemma_tokenizer_json)
    vocab = spec["model"]["vocab"]
    crossing = [t for t in vocab if any(c == "\u2581" and t[j - 1] != "\u2581"
                                        for j, c in enumerate(t) if j)]
    assert crossing == [">\u2581</"]
    chunker = Chunker(gemma_tokenizer_json, 2048, ChunkSettings())
    assert chunker.reuse.kind == "marker" and chunker.reuse.joins_marker == {">"}
    # the prompt's tokens go before a reused chunk's; a prompt ending in ">" cannot take them
    assert chunker.prompt_ids("title: none | text: ") is not None
    assert chunker.prompt_ids("title: a > | text: ") is not None
    assert chunker.prompt_ids("title: x | text:> ") is None
    assert chunker.prompt_ids("no space at the end") is None


@pytest.mark.slow
def test_every_reused_gemma_chunk_reads_as_its_prompted_text_alone(gemma_tokenizer_json):
    """Each chunk of each book, not only the two that chunk_inputs checks, in 8 books and 5
    languages: the chapter tokenized once gives the same model inputs as every chunk tokenized
    again inside its document prompt."""
    from alexandria.run.prepare import chunk_chapters, model_inputs

    spec = resolve_model("embeddinggemma")
    chunker = Chunker(gemma_tokenizer_json, 2048, ChunkSettings(chunk_tokens=512, overlap=64))
    total = reused = 0
    for name in BOOKS:
        chapters = chapters_of(name)
        title = name.rsplit("/", 1)[-1]
        prompt = spec.document_template.format(title=title, text="")
        head = chunker.prompt_ids(prompt)
        assert head is not None
        chunks = chunker.chunk(chapters, reserved=len(head))
        for c in chunks:
            if c.ids is None:
                continue
            reused += 1
            mine = chunker.with_specials(np.concatenate((head, c.ids)))
            alone = model_inputs(chunker, [spec.document_template.format(title=title, text=c.text)])[0]
            assert mine.tolist() == alone.tolist(), (name, c.chapter, c.text[:80])
        total += len(chunks)

        # and through the run's own path: every input equals the prompted text tokenized alone
        class Out:
            chunks = token_ids = sentences = None
            prompt_title = ""

        out = Out()
        chunk_chapters(out, chapters, chunker, spec.document_template, title)
        again = model_inputs(chunker, [spec.document_template.format(title=title, text=c.text)
                                       for c in out.chunks])
        assert [a.tolist() for a in out.token_ids] == [b.tolist() for b in again]
    # Only a cut after a space is reused: most windows end at a paragraph, and a newline puts no
    # marker before the next word (Gemma's normalizer turns spaces only into it), so those chunks,
    # the first of each chapter and Japanese cut without spaces are tokenized again (152 of 1,941).
    assert reused >= 0.05 * total, (reused, total)
