"""The retrieval check: the committed question set is sound, and a real small eval scores sanely."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from alexandria.errors import UsageError
from alexandria.sources.epub import extract_epub
from alexandria.tools.evaluate import (
    EvalOptions,
    chapter_matches,
    evaluate,
    load_questions,
    ranks,
    resolve_books,
)
from tests.conftest import EPUBS, need_corpus, run_cli

QUESTIONS = Path(__file__).with_name("questions.jsonl")
BOOKS = EPUBS / "books"

# The small end-to-end run: three short books in three languages, a few questions each.
SMALL = ("idpf-wasteland.epub", "idpf-mymedia_lite.epub", "idpf-sous-le-vent.epub")


def test_question_file_is_well_formed() -> None:
    qs = load_questions(QUESTIONS)
    assert len(qs) >= 80
    langs = Counter(q.language for q in qs)
    assert len(qs) - langs["en"] >= 30
    assert langs["en"] >= 20 and langs["ja"] >= 3 and langs["he"] >= 3
    assert langs["fr"] + langs["ar"] >= 3
    assert len({q.question for q in qs}) == len(qs), "duplicate questions"
    for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
        keys = set(json.loads(line))
        assert {"question", "book", "chapter", "language"} <= keys <= {
            "question", "book", "chapter", "language", "also"}


def test_every_book_and_chapter_exists_in_the_corpus() -> None:
    """The chapter titles are the extractor's own, so a change in extraction shows up here."""
    need_corpus()
    qs = load_questions(QUESTIONS)
    paths = resolve_books(qs, BOOKS)
    chapters = {}
    for book, path in paths.items():
        chapters[book] = {c.title for c in extract_epub(path.read_bytes(), path.name).chapters}
    for q in qs:
        for chapter in q.chapters:
            assert chapter in chapters[q.book], f"line {q.line}: {chapter!r} not in {q.book}"
        assert q.chapter not in q.also


def test_chapter_matching() -> None:
    assert chapter_matches("A Scandal in Bohemia", "A Scandal in Bohemia")
    assert chapter_matches("The Adventure of the Engineer’s Thumb",
                           "the adventure of the engineer's  thumb")
    # a section inside the expected chapter, and the path written without its ancestors
    assert chapter_matches("Part II > Chapter 3", "Part II > Chapter 3 > Notes")
    assert chapter_matches("Chapter 3", "Part II > Chapter 3")
    assert chapter_matches("D > 行の調整処理で\u200b詰める", "附属書 > D > 行の調整処理で詰める")
    # a broader parent chapter, a sibling, or nothing is not the answer
    assert not chapter_matches("Part II > Chapter 3", "Part II")
    assert not chapter_matches("Part II > Chapter 3", "Part II > Chapter 4")
    assert not chapter_matches("Chapter 3", "")
    assert not chapter_matches("Chapter 3", "Chapter 30")


def test_mistakes_are_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_questions(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "book": "b.epub", "chapter": "c"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="Line 1 .* lacks language"):
        load_questions(bad)
    need_corpus()
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps({"question": "q", "book": "no-such-book.epub", "chapter": "c",
                                   "language": "en"}) + "\n", encoding="utf-8")
    proc = run_cli("eval", unknown, "--corpus", BOOKS, "--chunker", "structural")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"Error: The book no-such-book.epub (line 1) is not in the corpus "
                                   f"{BOOKS}.")
    assert "Traceback" not in proc.stderr
    proc = run_cli("eval", tmp_path / "missing.jsonl")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    with pytest.raises(UsageError, match="Unknown chunker"):
        evaluate(load_questions(unknown), EvalOptions(corpus=BOOKS, chunkers=("fancy",)))


def test_a_hit_in_another_chapter_that_answers_too_counts(tmp_path: Path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({
        "question": "How do I pause a video without scripts?", "book": "spec.epub",
        "chapter": "Content Documents > The trigger element", "language": "en",
        "also": ["Changes from EPUB 2 > Triggers"]}) + "\n", encoding="utf-8")
    q, = load_questions(questions)
    assert q.chapters == ("Content Documents > The trigger element", "Changes from EPUB 2 > Triggers")
    book, other = tmp_path / "spec.epub", tmp_path / "other.epub"
    path_of = {"s": book, "o": other}
    hits = [{"book_key": "s", "chapter": "Overview"},
            {"book_key": "o", "chapter": "Changes from EPUB 2 > Triggers"},  # the wrong book
            {"book_key": "s", "chapter": "Changes from EPUB 2 > Triggers"},
            {"book_key": "s", "chapter": "Content Documents > The trigger element"}]
    assert ranks(q, book, hits, path_of) == (3, 1)
    without = load_questions(questions)[0]
    without.also = ()
    assert ranks(without, book, hits, path_of) == (4, 1)


def test_also_must_list_chapter_paths(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "book": "b.epub", "chapter": "c", "language": "en",
                               "also": "not a list"}) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match="Line 1 .*also must be a list of chapter paths"):
        load_questions(bad)


@pytest.mark.slow
def test_small_real_eval_scores_sanely(tmp_path: Path) -> None:
    """Real minilm, real Qdrant Edge, real books: the English question must be found."""
    need_corpus()
    small = [q for q in load_questions(QUESTIONS) if q.book in SMALL]
    assert {q.book for q in small} == set(SMALL)
    out = tmp_path / "small.jsonl"
    out.write_text("".join(json.dumps({"question": q.question, "book": q.book, "chapter": q.chapter,
                                       "language": q.language}, ensure_ascii=False) + "\n"
                           for q in small), encoding="utf-8")
    report_file = tmp_path / "eval.json"
    proc = run_cli("eval", out, "--corpus", BOOKS, "--chunker", "structural", "--model", "minilm",
                   "--device", "cpu", "--json", report_file)
    assert proc.returncode == 0, proc.stderr
    assert "hit@5" in proc.stdout and "structural" in proc.stdout
    report = json.loads(report_file.read_text(encoding="utf-8"))
    # one ingest, scored in each search mode
    assert [s["mode"] for s in report["scores"]] == ["dense", "sparse", "hybrid"]
    assert "hybrid" in proc.stdout
    for score in report["scores"]:
        assert score["chunker"] == "structural" and score["questions"] == len(small)
        assert score["chunks"] > 0 and not score["books_failed"]
        assert 0 < score["hit@5"] <= score["book_hit@5"] <= 1
        assert score["hit@1"] <= score["hit@5"] and 0 < score["mrr"] <= 1
        english = [r for r in score["results"] if r["language"] == "en"]
        assert english and any(r["rank"] for r in english)
    # each mode is searched as named: dense scores are cosines, hybrid ones reciprocal-rank sums
    # (at most 2/60), so the rows differ even where they rank alike
    by_mode = {s["mode"]: s for s in report["scores"]}
    dense_top = [r["top"][0]["score"] for r in by_mode["dense"]["results"] if r["top"]]
    hybrid_top = [r["top"][0]["score"] for r in by_mode["hybrid"]["results"] if r["top"]]
    assert dense_top and max(dense_top) > 0.2
    assert hybrid_top and max(hybrid_top) <= 2 / 60 + 1e-6



def test_a_question_whose_chapter_holds_most_of_its_book_is_flagged(tmp_path: Path) -> None:
    from ebooklib import epub

    from alexandria.tools.evaluate import extract_once

    book = epub.EpubBook()
    book.set_identifier("alexandria-test-lopsided")
    book.set_title("Lopsided")
    book.set_language("en")
    docs = []
    for name, label, paragraphs in (("a.xhtml", "Preface", 2), ("b.xhtml", "The Story", 40)):
        doc = epub.EpubHtml(uid=name[0], title=label, file_name=name)
        doc.content = "".join(f"<p>{label} paragraph {i} with some words in it.</p>"
                              for i in range(paragraphs))
        book.add_item(doc)
        docs.append(doc)
    book.toc, book.spine = docs, docs
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    path = tmp_path / "lopsided.epub"
    epub.write_epub(str(path), book)
    qs = tmp_path / "q.jsonl"
    qs.write_text("".join(json.dumps({"question": f"q{i}", "book": path.name, "chapter": chapter,
                                      "language": "en"}) + "\n"
                          for i, chapter in enumerate(("The Story", "Preface", "Epilogue"))),
                  encoding="utf-8")
    questions = load_questions(qs)
    said: list[str] = []
    warnings = extract_once(questions, resolve_books(questions, tmp_path), tmp_path / "cache", said.append)
    assert len(warnings) == 2
    assert warnings[0].startswith("line 1: the chapter 'The Story' holds 9") and "says little" in warnings[0]
    assert warnings[1] == "line 3: no chapter of lopsided.epub matches 'Epilogue'"
    assert said == ["extracting 1/1: lopsided.epub"]
    assert len(list((tmp_path / "cache").glob("*.pickle"))) == 1  # what the ingests read


@pytest.mark.slow
def test_each_chunkers_scores_are_on_disk_before_the_next_chunker_starts(tmp_path: Path) -> None:
    """A crash in a later chunker keeps the earlier ones: the report file is rewritten after
    each, and every book is extracted once for all of them."""
    need_corpus()
    small = [q for q in load_questions(QUESTIONS) if q.book == "idpf-wasteland.epub"]
    report_file = tmp_path / "eval.json"
    seen: dict[str, dict] = {}
    said: list[str] = []

    def progress(msg: str) -> None:
        said.append(msg)
        if msg.startswith("hierarchical: ingesting"):
            seen["before"] = json.loads(report_file.read_text(encoding="utf-8"))

    report = evaluate(small, EvalOptions(corpus=BOOKS, chunkers=("structural", "hierarchical"),
                                         model="minilm", device="cpu", report_file=report_file),
                      progress=progress)
    before = seen["before"]
    assert before["finished"] is False and [s["chunker"] for s in before["scores"]] == ["structural"]
    assert before["scores"][0]["hit@5"] == report.scores[0].hit_at_k
    after = json.loads(report_file.read_text(encoding="utf-8"))
    assert after["finished"] is True and [s["chunker"] for s in after["scores"]] == ["structural",
                                                                                     "hierarchical"]
    assert sum(m.startswith("extracting ") for m in said) == 1
    assert any(m.startswith("structural: 1/1 idpf-wasteland.epub: ") and "chunks" in m for m in said)
    en = after["scores"][0]["by_language"]["en"]
    assert set(en) == {"questions", "hit@1", "hit@5", "mrr", "book_hit@5"}


def test_an_unknown_search_mode_is_one_sentence() -> None:
    need_corpus()
    qs = load_questions(QUESTIONS)[:1]
    with pytest.raises(UsageError, match="Unknown search mode 'fuzzy'"):
        evaluate(qs, EvalOptions(corpus=BOOKS, modes=("fuzzy",)))


@pytest.mark.slow
def test_a_kept_store_is_scored_again_without_embedding_anything(tmp_path: Path) -> None:
    """eval --store: the first eval ingests into it, a second one only searches and scores alike;
    other chunk settings are ingested again (their fingerprint differs)."""
    need_corpus()
    small = [q for q in load_questions(QUESTIONS) if q.book == "idpf-wasteland.epub"]
    opts = EvalOptions(corpus=BOOKS, chunkers=("structural",), model="minilm", device="cpu",
                       modes=("dense",), store=tmp_path / "kept")
    said: list[str] = []
    first = evaluate(small, opts, progress=said.append).scores[0]
    assert (tmp_path / "kept" / "structural" / "manifest.sqlite").is_file()
    again: list[str] = []
    second = evaluate(small, opts, progress=again.append).scores[0]
    assert second.chunks == first.chunks > 0
    assert [r["rank"] for r in second.results] == [r["rank"] for r in first.results]
    assert any(": 1/1 idpf-wasteland.epub: unchanged" in m for m in again), again
    smaller = evaluate(small, EvalOptions(**{**opts.__dict__, "chunk_tokens": 128, "overlap": 16}),
                       progress=lambda _m: None).scores[0]
    assert smaller.chunks > first.chunks
