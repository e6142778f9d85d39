"""A big book's chapters chunked by several workers: the same chunks, tokens and vectors as one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from alexandria import IngestOptions, RunLimits
from alexandria.chunking.chunker import ChunkSettings
from alexandria.embedding.models import resolve_model
from alexandria.run.ingest import Ingest
from alexandria.run.prepare import (
    PartTask,
    PrepareTask,
    init_worker,
    merge_parts,
    prepare,
    prepare_part,
    split_chapters,
)
from alexandria.run.workers import Preparing
from alexandria.store.edge import EdgeStore
from tests.conftest import EPUBS, need_corpus, status_json

MOBY = "books/idpf-moby-dick.epub"
DEVILS = "books/se-the-devils-dictionary.epub"  # 32 chapters, 360k characters


def _layout(book) -> list[tuple]:
    return [(c.index, c.kind, c.chapter, c.chapter_index, c.char_start, c.char_end, c.tokens,
             c.text) for c in book.chunks]


@pytest.mark.parametrize("strategy", ["structural", "hierarchical"])
def test_a_book_in_parts_is_the_book_prepared_whole(strategy):
    need_corpus()
    tokenizer_json = (Path(resolve_model("minilm").source) / "tokenizer.json").read_text()
    init_worker(tokenizer_json, 256, ChunkSettings(strategy=strategy), None)
    path = str(EPUBS / MOBY)
    whole = prepare(PrepareTask("moby", path, "epub", "Moby Dick"))
    head = prepare(PrepareTask("moby", path, "epub", "Moby Dick", max_parts=4, part_chars=50_000))
    assert head.reason is None and head.parts == 4 and not head.chunks
    groups = split_chapters(head.chapters, head.parts)
    assert len(groups) == 4 and [c for g in groups for c in g] == head.chapters
    sizes = [sum(len(c.text) for c in g) for g in groups]
    assert max(sizes) < 2 * min(sizes)  # about equal text, whole chapters
    parts = [prepare_part(PartTask("moby", i, g, head.prompt_title)) for i, g in enumerate(groups)]
    merged = merge_parts(head, parts)
    assert merged.chapters is None and merged.reason is None
    assert _layout(merged) == _layout(whole)
    assert [ids.tolist() for ids in merged.token_ids] == [ids.tolist() for ids in whole.token_ids]
    assert (merged.title, merged.content_hash) == (whole.title, whole.content_hash)


def test_a_failed_part_fails_the_book_and_small_or_semantic_books_are_never_split():
    need_corpus()
    tokenizer_json = (Path(resolve_model("minilm").source) / "tokenizer.json").read_text()
    init_worker(tokenizer_json, 256, ChunkSettings(), None)
    path = str(EPUBS / MOBY)
    head = prepare(PrepareTask("moby", path, "epub", "", max_parts=2, part_chars=50_000))
    good = prepare_part(PartTask("moby", 0, head.chapters[:3], "none"))
    bad = prepare_part(PartTask("moby", 1, [object()], "none"))  # not a chapter: a bug, say
    assert bad.reason == "unexpected:AttributeError"
    failed = merge_parts(head, [good, bad])
    assert failed.reason == "unexpected:AttributeError" and not failed.chunks
    # a book under one part's text, or a run that allows one part, is prepared whole
    small = str(EPUBS / "books/idpf-wasteland.epub")
    assert prepare(PrepareTask("w", small, "epub", "", max_parts=8, part_chars=500_000)).parts == 0
    assert prepare(PrepareTask("moby", path, "epub", "", max_parts=1, part_chars=50_000)).chunks
    init_worker(tokenizer_json, 256, ChunkSettings(strategy="semantic"), None)
    semantic = prepare(PrepareTask("moby", path, "epub", "", max_parts=4, part_chars=50_000))
    assert semantic.parts == 0 and semantic.sentences is not None


@pytest.mark.long  # the corpus's dictionary, twice
def test_a_run_that_splits_its_big_books_stores_what_an_unsplit_run_stores(
        small_library, tmp_path, monkeypatch):
    need_corpus()  # the corpus's dictionary is the big book
    shutil.copy2(EPUBS / DEVILS, small_library / Path(DEVILS).name)
    split: list[int] = []
    start_parts = Preparing.start_parts

    def recording(self, head):
        split.append(head.parts)
        return start_parts(self, head)

    monkeypatch.setattr(Preparing, "start_parts", recording)
    stores = {}
    for name, part_chars in (("whole", 10**9), ("parts", 40_000)):
        stores[name] = tmp_path / name
        # fp32: bf16 (--dtype auto on a CPU that has it) rounds differently with the batch's shape
        opts = IngestOptions(directory=small_library, model="minilm", device="cpu", dtype="fp32",
                             store=stores[name], workers=3)
        report = Ingest(opts, limits=RunLimits(part_chars=part_chars)).run()
        assert report.books_failed == 0 and status_json(stores[name])["mismatches"] == 0
    assert split and max(split) == 3  # the dictionary went to all three workers

    def points(store: Path) -> dict[str, tuple]:
        s = EdgeStore(store, report.collection, None)
        try:
            return {p.id: (p.payload["text"], p.payload["chunk_index"], p.payload["tokens"],
                           p.vector) for page in s.iter_points(["text", "chunk_index", "tokens"],
                                                               with_vectors=True) for p in page}
        finally:
            s.close()

    whole, parts = points(stores["whole"]), points(stores["parts"])
    assert whole.keys() == parts.keys() and len(whole) == report.chunks
    for pid, (text, index, tokens, vector) in whole.items():
        assert parts[pid][:3] == (text, index, tokens)
        assert np.allclose(parts[pid][3], vector, atol=1e-5)
