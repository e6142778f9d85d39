"""Token windows (alexandria.split) on real books with the real minilm tokenizer."""

from __future__ import annotations

import pytest

from alexandria.chunking.windows import PARAGRAPH, SENTENCE, WORD, break_levels, windows
from alexandria.embedding.embedder import load_tokenizer_json
from alexandria.embedding.models import resolve_model
from alexandria.sources.epub import extract_epub
from tests.conftest import EPUBS, need_corpus


@pytest.fixture(scope="module")
def tokenizer():
    from alexandria.chunking.chunker import plain_tokenizer

    tokenizer_json, _ = load_tokenizer_json(resolve_model("minilm"))
    return plain_tokenizer(tokenizer_json)


def _chapters(rel: str):
    need_corpus()
    return extract_epub((EPUBS / rel).read_bytes(), rel).chapters


def _covered(text: str, spans) -> bool:
    mask = [False] * len(text)
    for w in spans:
        for i in range(w.start, w.end):
            mask[i] = True
    return all(m or c.isspace() for m, c in zip(mask, text, strict=True))


@pytest.mark.parametrize("rel", ["books/idpf-wasteland.epub", "books/idpf-regime-anticancer-arabic.epub",
                                 "books/idpf-childrens-literature.epub"])
@pytest.mark.parametrize("capacity,overlap", [(64, 0), (254, 32)])
def test_windows_fit_cover_and_progress(tokenizer, rel, capacity, overlap):
    for chapter in _chapters(rel):
        enc = tokenizer.encode(chapter.text, add_special_tokens=False)
        spans = windows(chapter.text, enc.offsets, capacity, overlap)
        assert spans or not chapter.text.strip()
        for w in spans:
            assert 0 < w.tokens <= capacity
            # standalone, the window's text tokenizes to about what it was counted as in context
            alone = len(tokenizer.encode(chapter.text[w.start:w.end], add_special_tokens=False).ids)
            assert alone <= capacity + 2
            assert not chapter.text[w.start].isspace() and not chapter.text[w.end - 1].isspace()
        assert [w.start for w in spans] == sorted(w.start for w in spans)
        assert all(b.start > a.start for a, b in zip(spans, spans[1:], strict=False))
        if overlap == 0:
            assert all(b.start >= a.end for a, b in zip(spans, spans[1:], strict=False))
        assert _covered(chapter.text, spans)


def test_cuts_at_paragraphs_then_sentences(tokenizer):
    para = "The whale surfaced near the ship. The crew shouted and ran to the boats. " * 6
    text = (para.strip() + "\n\n") * 8
    enc = tokenizer.encode(text, add_special_tokens=False)
    spans = windows(text, enc.offsets, 200, 0)
    assert len(spans) > 2
    for w in spans[:-1]:
        assert text[w.end:w.end + 2] == "\n\n"  # every cut at a paragraph end
    long_para = " ".join(["The crew shouted and ran to the boats."] * 80)
    enc = tokenizer.encode(long_para, add_special_tokens=False)
    spans = windows(long_para, enc.offsets, 100, 0)
    assert all(long_para[w.end - 1] == "." for w in spans)  # no paragraph: sentence ends


def test_levels_for_cjk_and_arabic(tokenizer):
    text = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
    enc = tokenizer.encode(text, add_special_tokens=False)
    import numpy as np

    levels = break_levels(text, np.asarray(enc.offsets)[:, 1])
    starts = [s for s, _ in enc.offsets]
    after_stop = [i for i, s in enumerate(starts) if s > 0 and text[s - 1] == "。"]
    assert after_stop and all(levels[i] >= SENTENCE for i in after_stop)
    arabic = "هل تعرف الطريق؟ نعم أعرفه جيدا. شكرا لك"
    enc = tokenizer.encode(arabic, add_special_tokens=False)
    levels = break_levels(arabic, np.asarray(enc.offsets)[:, 1])
    assert (levels[1:-1] >= SENTENCE).sum() >= 2
    assert levels[0] > PARAGRAPH and (levels[1:-1] >= WORD).any()


def test_no_break_anywhere_still_cuts(tokenizer):
    text = "x" * 5000  # one "word": windows fall back to plain token boundaries
    enc = tokenizer.encode(text, add_special_tokens=False)
    spans = windows(text, enc.offsets, 50, 10)
    assert spans and all(w.tokens <= 50 for w in spans)
    assert spans[0].start == 0 and spans[-1].end == len(text)
    assert windows("", [], 50) == []
