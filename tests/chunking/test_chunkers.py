"""The three chunking strategies with the real minilm model and real EPUBs: semantic breaks where the
topic shifts and keeps its token bounds; hierarchical ingests parents and children consistently and
resumes without duplicates; `alexandria chunks --compare` shows every setting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from alexandria.chunking.chunker import Chunker, ChunkSettings
from alexandria.chunking.semantic import group_sentences, split_sentences
from alexandria.embedding.models import resolve_model
from alexandria.run.options import IngestOptions
from alexandria.run.prepare import PreparedBook, chunk_chapters, complete_semantic
from alexandria.sources.book import Chapter
from alexandria.sources.epub import extract_epub
from alexandria.store.location import default_collection, open_store
from alexandria.store.manifest import Manifest
from tests.conftest import EPUBS, corpus_book, have_corpus, ingest_args, need_corpus, run_cli


def test_sentences_split_at_ends_lines_and_cjk_but_not_abbreviations():
    text = "Mr. Holmes met Dr. Watson. They talked!\nA verse line\n\n“Was it?” he asked. 今日は。明日も。"
    pieces = [text[s:e] for s, e in split_sentences(text)]
    assert pieces == ["Mr. Holmes met Dr. Watson.", "They talked!", "A verse line",
                      "“Was it?” he asked.", "今日は。", "明日も。"]


def test_grouping_respects_threshold_bounds_and_chapters():
    tokens = [30] * 10
    sims = np.array([0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.1])
    same = np.ones(9, dtype=bool)
    assert group_sentences(tokens, sims, same, 0.5, 20, 1000) == [(0, 2), (2, 5), (5, 9), (9, 10)]
    # a piece under min_tokens joins its more similar neighbour
    assert group_sentences(tokens, sims, same, 0.5, 100, 1000) == [(0, 5), (5, 10)]
    # max_tokens wins over similarity: a long similar run breaks at its least similar gap
    assert all(sum(tokens[a:b]) <= 60 for a, b in group_sentences(tokens, sims, same, 0.5, 20, 60))
    same[6] = False  # a chapter boundary is always a break
    assert (7, 9) in group_sentences(tokens, sims, same, 0.5, 20, 1000)


def test_strategies_never_share_a_collection_or_a_fingerprint():
    spec = resolve_model("minilm")
    names = {c: default_collection(spec, c) for c in ("structural", "semantic", "hierarchical")}
    assert names["structural"] == "alexandria_minilm"  # existing stores keep their name
    assert len(set(names.values())) == 3
    prints = {IngestOptions(chunker=c).chunk_settings().fingerprint() for c in names}
    assert len(prints) == 3
    # structural fingerprints are what they were before the semantic options existed
    assert ChunkSettings().fingerprint() == '{"chunk_tokens": 512, "overlap": 64, "strategy": "structural"}'
    a = IngestOptions(chunker="semantic", threshold=0.2).chunk_settings().fingerprint()
    assert a != IngestOptions(chunker="semantic", threshold=0.3).chunk_settings().fingerprint()


def _chapter_text(name: str, longest: int) -> str:
    chapters = extract_epub((EPUBS / name).read_bytes(), name).chapters
    text = sorted(chapters, key=lambda c: -len(c.text))[longest].text[:3000]
    return text[:text.rfind("\n")].strip()


def test_semantic_breaks_at_the_seam_between_two_books_within_bounds():
    need_corpus()
    from alexandria.embedding.embedder import get_embedder

    whales = _chapter_text("books/idpf-moby-dick.epub", 3)  # Cetology
    detective = _chapter_text("books/se-the-adventures-of-sherlock-holmes.epub", 2)
    text = f"{whales}\n\n{detective}"
    seam = len(whales) + 2
    embedder = get_embedder(resolve_model("minilm"), "cpu")
    for threshold, min_tokens, max_tokens in ((None, 64, 512), (0.25, 64, 512), (0.25, 48, 128)):
        settings = ChunkSettings(chunk_tokens=max_tokens, strategy="semantic",
                                 threshold=threshold, min_tokens=min_tokens)
        chunker = Chunker(embedder.tokenizer_json(), embedder.max_seq_length, settings)
        book = PreparedBook("mixed")
        chunk_chapters(book, [Chapter(index=0, title="mixed", href="x", text=text)], chunker,
                       None, "mixed")
        assert complete_semantic([book], chunker, None, embedder, 8192, 4096)
        starts = [c.char_start for c in book.chunks]
        if max_tokens > 128:  # at 128 the bounds may push the break a sentence off the seam
            assert seam in starts, (threshold, starts, seam)
        capacity = chunker.capacity()
        assert all(c.tokens <= capacity + chunker.specials for c in book.chunks)
        assert len(book.token_ids) == len(book.chunks)
        sizes = [c.tokens - chunker.specials for c in book.chunks]
        for i, size in enumerate(sizes):  # under min only where no neighbour had room for it
            if size < min_tokens:
                left = sizes[i - 1] + size if i > 0 else 10**6
                right = sizes[i + 1] + size if i + 1 < len(sizes) else 10**6
                assert min(left, right) > capacity - 4, (i, sizes)
        for c in book.chunks:
            assert text[c.char_start:c.char_end] == c.text


@pytest.mark.slow
def test_hierarchical_ingest_parents_children_verify_rerun_and_resume(tmp_path: Path, sample_epubs):
    lib = tmp_path / "library"
    lib.mkdir()
    for i, rel in enumerate(("books/idpf-wasteland.epub", "edge/idpf-hefty-water.epub")):
        src = corpus_book(rel, sample_epubs, i)
        shutil.copy2(src, lib / src.name)
    # a line the search must find in its chapter: The Waste Land's, or the sample whaling book's
    line = ("April is the cruellest month" if have_corpus()
            else "Hunters in skin boats followed bowhead whales")
    store = tmp_path / "store"
    args = ingest_args(store, "--directory", lib, "--chunker", "hierarchical")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert not (store / "alexandria_minilm").exists()  # the structural collection is untouched

    def snapshot() -> dict[str, dict]:
        s = open_store("alexandria_minilm_hierarchical", None, store)
        try:
            return dict(s.payloads())
        finally:
            s.close()

    points = snapshot()
    parents = {i: p for i, p in points.items() if p["kind"] == "parent"}
    children = {i: p for i, p in points.items() if p["kind"] == "chunk"}
    assert len(parents) + len(children) == len(points)
    per_book = {}
    for p in children.values():
        assert p["parent_id"] in parents  # every child's chapter is in the store
        assert parents[p["parent_id"]]["chapter_index"] == p["chapter_index"]
        per_book.setdefault(p["book_key"], set()).add(p["chapter_index"])
    assert len(parents) == sum(len(v) for v in per_book.values())  # one parent per chapter
    for p in parents.values():
        assert p["chunk_index"] is None and len(p["text"]) == p["char_end"]  # full chapter text
    s = _status(store)
    assert s["collection"] == "alexandria_minilm_hierarchical"
    assert s["mismatches"] == 0 and s["totals"]["store_points"] == len(points)
    assert s["totals"]["chunks"] == len(points)  # the manifest counts parents as points too

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert "0 done, 2 skipped (2 unchanged)" in again.stdout
    assert snapshot() == points

    # A crash mid-book: the row left in-progress, the book's old points already deleted.
    key = next(iter(per_book))
    m = Manifest(store / "manifest.sqlite")
    m.upsert("alexandria_minilm_hierarchical", key, status="in-progress")
    m.close()
    s = open_store("alexandria_minilm_hierarchical", None, store)
    s.delete_book(key)
    s.flush()
    s.close()
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    after = snapshot()
    assert set(after) == set(points)
    assert {i: p["text"] for i, p in after.items()} == {i: p["text"] for i, p in points.items()}
    assert _status(store)["mismatches"] == 0

    found = run_cli("search", line, "--model", "minilm", "--device",
                    "cpu", "--store", store, "--chunker", "hierarchical", "--with-parent",
                    "--json", "--top-k", "3")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits and all(h["parent_id"] in parents for h in hits)  # chunks ranked, not chapters
    assert line in hits[0]["parent"]["text"]


def _status(store: Path) -> dict:
    proc = run_cli("status", "--json", "--verify", "--model", "minilm", "--store", store,
                   "--chunker", "hierarchical")
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_chunks_compare_shows_every_setting(tmp_path: Path, sample_epubs):
    book = tmp_path / "hefty.epub"
    shutil.copy2(corpus_book("edge/idpf-hefty-water.epub", sample_epubs), book)
    proc = run_cli("chunks", book, "--compare", "--model", "minilm", "--device", "cpu", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    rows = {s["label"]: s for s in report["settings"]}
    assert list(rows) == ["structural 128/16", "structural 256/32", "semantic t=p10",
                          "semantic t=auto (p25)", "hierarchical 512/64"]
    assert rows["structural 128/16"]["chunks"] > rows["structural 256/32"]["chunks"]
    assert rows["structural 128/16"]["tokens"]["max"] <= 130
    assert rows["hierarchical 512/64"]["parents"] == rows["hierarchical 512/64"]["chapters"] >= 1
    p = report["similarity_percentiles"]
    assert rows["semantic t=p10"]["threshold"] == pytest.approx(p["p10"], abs=1e-3)
    assert rows["semantic t=p10"]["threshold"] < rows["semantic t=auto (p25)"]["threshold"]
    assert all(r["samples"] and r["tokens"]["min"] > 0 for r in rows.values())
    text = run_cli("chunks", book, "--model", "minilm", "--chunk-tokens", "128", "--overlap", "0")
    assert text.returncode == 0, text.stderr
    assert "structural 128/0" in text.stdout and "median" in text.stdout
    # the chapters in reading order with their chunks: where the book's text went
    listed = rows["structural 128/16"]["chapter_list"]
    assert listed and sum(c["chunks"] for c in listed) == rows["structural 128/16"]["chunks"]
    assert [c["index"] for c in listed] == list(range(len(listed)))
    assert "chapters (structural 128/0):" in text.stdout
    assert f"{listed[0]['title'] or '-'}" in text.stdout


def test_chunk_option_mistakes_are_one_sentence(tmp_path: Path):
    proc = run_cli("chunks", tmp_path / "missing.epub", "--model", "minilm")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "does not exist" in proc.stderr
    proc = run_cli("chunks", tmp_path / "missing.epub", "--model", "minilm", "--chunker",
                   "semantic", "--threshold", "3")
    assert proc.returncode == 2 and "--threshold" in proc.stderr
    proc = run_cli(*ingest_args(tmp_path / "s", "--file", tmp_path / "x.epub", "--chunker", "fancy"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
