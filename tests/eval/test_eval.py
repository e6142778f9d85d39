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
    resolve_books,
)
from tests.conftest import EPUBS, need_corpus, run_cli

QUESTIONS = Path(__file__).with_name("questions.jsonl")
BOOKS = EPUBS / "books"

# The small end-to-end run: three short books in three languages, a few questions each.
SMALL = ("idpf-wasteland.epub", "idpf-mymedia_lite.epub", "idpf-sous-le-vent.epub")


def test_question_file_is_well_formed() -> None:
    qs = load_questions(QUESTIONS)
    assert len(qs) >= 40
    langs = Counter(q.language for q in qs)
    assert langs["en"] >= 20 and langs["ja"] >= 3 and langs["he"] >= 3
    assert langs["fr"] + langs["ar"] >= 3
    assert len({q.question for q in qs}) == len(qs), "duplicate questions"
    for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
        assert set(json.loads(line)) == {"question", "book", "chapter", "language"}


def test_every_book_and_chapter_exists_in_the_corpus() -> None:
    """The chapter titles are the extractor's own, so a change in extraction shows up here."""
    need_corpus()
    qs = load_questions(QUESTIONS)
    paths = resolve_books(qs, BOOKS)
    chapters = {}
    for book, path in paths.items():
        chapters[book] = {c.title for c in extract_epub(path.read_bytes(), path.name).chapters}
    for q in qs:
        assert q.chapter in chapters[q.book], f"line {q.line}: {q.chapter!r} not in {q.book}"


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
