"""Retrieval check: does a question find the chapter that answers it? Makes chunk quality visible.

A question file is JSON Lines, one object per line: ``question``, ``book``, ``chapter`` and
``language``. ``book`` is the book's file path relative to the corpus folder; when that path is not
there, the file name is looked up anywhere below the corpus (it must be unique), so the same file
works against ``epubs/books`` or ``epubs``. ``chapter`` is the chapter path as the extractor writes
it into payloads (``Part II > Chapter 3``).

For each chunker the books the questions need are ingested into a fresh temporary store, every
question is run as a search, and hit@1, hit@k and MRR are reported, at chapter level and at book
level. A result is a chapter hit when it comes from the right book and the expected chapter path is
a contiguous run of segments of the result's path, compared after Unicode, quote, zero-width and
case normalisation: the same chapter, a section inside it, or the same path written without its
ancestors all count; a broader parent chapter does not (its text is not the answer).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError

log = logging.getLogger("alexandria")

CHUNKERS = ("structural", "semantic", "hierarchical")
FIELDS = ("question", "book", "chapter", "language")

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2013": "-", "\u2014": "-"})


@dataclass
class Question:
    question: str
    book: str
    chapter: str
    language: str
    line: int  # 1-based line in the file, so a mistake can be pointed at


@dataclass
class EvalOptions:
    corpus: Path  # the folder the questions' book paths are relative to
    chunkers: tuple[str, ...] = CHUNKERS
    model: str = "minilm"
    device: str = "auto"
    dtype: str = "auto"
    top_k: int = 5
    workers: int | None = None
    batch_size: int = 96
    modes: tuple[str, ...] = ("dense", "sparse", "hybrid")  # search modes scored per chunker


@dataclass
class ChunkerScore:
    chunker: str
    questions: int = 0
    mode: str = "dense"  # the search mode these numbers are for
    hit_at_1: float = 0.0
    hit_at_k: float = 0.0
    mrr: float = 0.0
    book_hit_at_1: float = 0.0
    book_hit_at_k: float = 0.0
    book_mrr: float = 0.0
    by_language: dict[str, dict[str, float]] = field(default_factory=dict)
    books: int = 0
    books_failed: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    ingest_s: float = 0.0
    search_s: float = 0.0
    error: str | None = None  # the chunker could not run (not available in this build)
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EvalReport:
    model: str
    device: str
    top_k: int
    questions: int
    corpus: str
    scores: list[ChunkerScore]

    def to_dict(self, with_results: bool = True) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        k = self.top_k
        for s in out["scores"]:  # name the k in the keys: hit@5 is what a reader looks for
            s[f"hit@{k}"] = s.pop("hit_at_k")
            s["hit@1"] = s.pop("hit_at_1")
            s[f"book_hit@{k}"] = s.pop("book_hit_at_k")
            s["book_hit@1"] = s.pop("book_hit_at_1")
            if not with_results:
                s.pop("results")
        return out


# -- the question file -----------------------------------------------------------------------------


def load_questions(path: Path) -> list[Question]:
    """Read and check the question file; every mistake is one sentence naming the line."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"The question file {path} does not exist.")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"The question file {path} cannot be read as UTF-8 text ({e}).") from e
    out: list[Question] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise UsageError(f"Line {n} of {path} is not valid JSON ({e.msg}).") from e
        if not isinstance(obj, dict):
            raise UsageError(f"Line {n} of {path} is not a JSON object.")
        missing = [f for f in FIELDS if not isinstance(obj.get(f), str) or not obj[f].strip()]
        if missing:
            raise UsageError(f"Line {n} of {path} lacks {', '.join(missing)} (each a non-empty "
                             "string).")
        out.append(Question(obj["question"].strip(), obj["book"].strip(), obj["chapter"].strip(),
                            obj["language"].strip(), n))
    if not out:
        raise UsageError(f"The question file {path} has no questions.")
    return out


def resolve_books(questions: list[Question], corpus: Path) -> dict[str, Path]:
    """Map each question's ``book`` to a file in the corpus (path first, then unique file name)."""
    corpus = Path(corpus).expanduser()
    if not corpus.is_dir():
        raise UsageError(f"The corpus folder {corpus} does not exist.")
    found: dict[str, Path] = {}
    by_name: dict[str, list[Path]] | None = None
    for q in questions:
        if q.book in found:
            continue
        direct = corpus / q.book
        if direct.is_file():
            found[q.book] = direct.resolve()
            continue
        if by_name is None:
            by_name = {}
            for p in sorted(corpus.rglob("*")):
                if p.is_file():
                    by_name.setdefault(p.name, []).append(p)
        hits = by_name.get(Path(q.book).name, [])
        if len(hits) != 1:
            why = "is not" if not hits else f"matches {len(hits)} files"
            raise UsageError(f"The book {q.book} (line {q.line}) {why} in the corpus {corpus}.")
        found[q.book] = hits[0].resolve()
    return found


# -- matching --------------------------------------------------------------------------------------


def chapter_path(title: str | None) -> tuple[str, ...]:
    """A chapter title as comparable segments: NFKC, straight quotes, no zero-width, casefolded."""
    text = unicodedata.normalize("NFKC", title or "").translate(_ZERO_WIDTH).translate(_QUOTES)
    text = re.sub(r"\s+", " ", text).casefold()
    return tuple(s.strip() for s in text.split(">") if s.strip())


def chapter_matches(expected: str, got: str | None) -> bool:
    """The expected path is a contiguous run of the result's path (same chapter or a section of it)."""
    want, have = chapter_path(expected), chapter_path(got)
    if not want or len(want) > len(have):
        return False
    return any(have[i:i + len(want)] == want for i in range(len(have) - len(want) + 1))


def _rank(flags: list[bool]) -> int | None:
    return next((i + 1 for i, f in enumerate(flags) if f), None)


# -- the run ---------------------------------------------------------------------------------------


def _has_chunker_option() -> bool:
    """Older builds only chunk one way; they can still be scored as structural."""
    from alexandria.run.options import IngestOptions

    return any(f.name == "chunker" for f in dataclasses.fields(IngestOptions))


def _check_chunkers(chunkers: tuple[str, ...]) -> None:
    if not chunkers:
        raise UsageError("Give at least one chunker (structural, semantic or hierarchical).")
    for name in chunkers:
        if name not in CHUNKERS:
            raise UsageError(f"Unknown chunker {name!r}: use structural, semantic or hierarchical.")


def evaluate(questions: list[Question], opts: EvalOptions,
             progress: Callable[[str], None] | None = None) -> EvalReport:
    """Ingest the needed books once per chunker into a throwaway store and score every question."""
    if opts.top_k < 1:
        raise UsageError("--top-k must be at least 1.")
    _check_chunkers(opts.chunkers)
    books = resolve_books(questions, opts.corpus)
    say = progress or (lambda _msg: None)
    scores: list[ChunkerScore] = []
    device = opts.device
    for name in opts.chunkers:
        if name != "structural" and not _has_chunker_option():
            say(f"{name}: not available in this version, skipped")
            scores.append(ChunkerScore(chunker=name, questions=len(questions),
                                       error="not available in this version"))
            continue
        chunker_scores, device = _run_chunker(name, questions, books, opts, say)
        scores.extend(chunker_scores)
    return EvalReport(model=opts.model, device=device, top_k=opts.top_k, questions=len(questions),
                      corpus=str(Path(opts.corpus).expanduser()), scores=scores)


def _run_chunker(name: str, questions: list[Question], books: dict[str, Path], opts: EvalOptions,
                 say: Callable[[str], None]) -> tuple[list[ChunkerScore], str]:
    """One ingest, then every question in each search mode: one score per mode."""
    from alexandria.query.search import SearchOptions, search
    from alexandria.run.ingest import ingest
    from alexandria.run.options import IngestOptions

    score = ChunkerScore(chunker=name, questions=len(questions), books=len(set(books.values())))
    files = tuple(sorted(set(books.values())))
    extra = {"chunker": name} if _has_chunker_option() else {}
    with tempfile.TemporaryDirectory(prefix=f"alexandria-eval-{name}-") as tmp:
        store_dir = Path(tmp) / "store"
        say(f"{name}: ingesting {len(files)} books into a temporary store")
        t = time.perf_counter()
        report = ingest(IngestOptions(
            files=files, model=opts.model, device=opts.device, dtype=opts.dtype, store=store_dir,
            workers=opts.workers, batch_size=opts.batch_size, prune=False, **extra))
        score.ingest_s = round(time.perf_counter() - t, 1)
        score.chunks = report.chunks
        score.books_failed = list(report.failures)
        path_of = {b["book_key"]: Path(b["path"]).resolve() for b in report.books if b.get("path")}
        say(f"{name}: {report.books_done} books, {report.chunks} chunks in {score.ingest_s:.0f}s; "
            f"searching {len(questions)} questions")
        scores = []
        for mode in opts.modes:
            # The same search a user runs (hierarchical chapter points are not ranked on their own).
            one = dataclasses.replace(score, mode=mode, results=[], by_language={})
            t = time.perf_counter()
            sopts = SearchOptions(model=opts.model, device=opts.device, dtype=opts.dtype,
                                  store=store_dir, collection=report.collection, top_k=opts.top_k,
                                  mode=mode)
            for q in questions:
                hits = search(q.question, sopts)
                one.results.append(_judge(q, books[q.book], hits, path_of))
            one.search_s = round(time.perf_counter() - t, 1)
            _aggregate(one)
            scores.append(one)
    return scores, report.device or opts.device


def _judge(q: Question, book: Path, hits: list, path_of: dict[str, Path]) -> dict[str, Any]:
    """One question's verdict: the rank of the first right chapter and of the first right book."""
    book_flags, chapter_flags, got = [], [], []
    for h in hits:
        p = h.payload
        source = path_of.get(p.get("book_key") or "")
        if source is None and p.get("source_path"):
            source = Path(p["source_path"]).resolve()
        right_book = source == book
        book_flags.append(right_book)
        chapter_flags.append(right_book and chapter_matches(q.chapter, p.get("chapter")))
        got.append({"book": source.name if source else p.get("title"), "chapter": p.get("chapter"),
                    "score": round(float(h.score), 4)})
    return {"line": q.line, "question": q.question, "book": q.book, "chapter": q.chapter,
            "language": q.language, "rank": _rank(chapter_flags), "book_rank": _rank(book_flags),
            "top": got}


def _aggregate(score: ChunkerScore) -> None:
    rows = score.results

    def rates(subset: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
        m = len(subset) or 1
        ranks = [r[key] for r in subset]
        return (round(sum(1 for x in ranks if x == 1) / m, 4),
                round(sum(1 for x in ranks if x) / m, 4),
                round(sum(1 / x for x in ranks if x) / m, 4))

    score.hit_at_1, score.hit_at_k, score.mrr = rates(rows, "rank")
    score.book_hit_at_1, score.book_hit_at_k, score.book_mrr = rates(rows, "book_rank")
    for lang in sorted({r["language"] for r in rows}):
        subset = [r for r in rows if r["language"] == lang]
        h1, hk, mrr = rates(subset, "rank")
        score.by_language[lang] = {"questions": len(subset), "hit@1": h1, "hit@k": hk, "mrr": mrr,
                                   "book_hit@k": rates(subset, "book_rank")[1]}


def render_table(report: EvalReport) -> str:
    """The numbers a person compares: one row per chunker, then per language."""
    k = report.top_k
    head = (f"{'chunker':<13}{'mode':<8}{'hit@1':>7}{f'hit@{k}':>7}{'MRR':>7}{'book@1':>8}"
            f"{f'book@{k}':>8}{'chunks':>8}{'ingest s':>10}")
    lines = [f"{report.questions} questions, model {report.model} on {report.device}, top {k}",
             head, "-" * len(head)]
    for s in report.scores:
        if s.error:
            lines.append(f"{s.chunker:<13}{s.error}")
            continue
        lines.append(f"{s.chunker:<13}{s.mode:<8}{s.hit_at_1:>7.3f}{s.hit_at_k:>7.3f}{s.mrr:>7.3f}"
                     f"{s.book_hit_at_1:>8.3f}{s.book_hit_at_k:>8.3f}{s.chunks:>8}{s.ingest_s:>10.0f}")
    langs = sorted({lang for s in report.scores for lang in s.by_language})
    if len(langs) > 1:
        lines.append("")
        lines.append(f"hit@1 / hit@{k} by language: " + "  ".join(
            f"{lang} ({report.scores[0].by_language.get(lang, {}).get('questions', 0)})"
            for lang in langs))
        for s in report.scores:
            if s.error:
                continue
            cells = "  ".join(f"{lang} {s.by_language[lang]['hit@1']:.2f}/"
                              f"{s.by_language[lang]['hit@k']:.2f}" for lang in langs
                              if lang in s.by_language)
            lines.append(f"  {s.chunker:<13}{s.mode:<8}{cells}")
    for s in report.scores:
        if s.mode != report.scores[0].mode:  # one ingest per chunker: its failures once
            continue
        for f in s.books_failed:
            lines.append(f"{s.chunker}: failed {f['book']}: {f['reason']}")
    return "\n".join(lines)
