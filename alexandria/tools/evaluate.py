"""Retrieval check: does a question find the chapter that answers it? Makes chunk quality visible.

A question file is JSON Lines, one object per line: ``question``, ``book``, ``chapter`` and
``language``. ``book`` is the book's file path relative to the corpus folder; when that path is not
there, the file name is looked up anywhere below the corpus (it must be unique), so the same file
works against ``epubs/books`` or ``epubs``. ``chapter`` is the chapter path as the extractor writes
it into payloads (``Part II > Chapter 3``). An optional ``also`` lists other chapters of the same
book whose text answers the question as well (a summary that states the same fact): a hit there
counts as a hit, since a reader who lands there has the answer.

Each book the questions need is read and extracted once (and a question whose expected chapter
holds more than half of its book's text is flagged: a hit there says little). For each chunker the
books are ingested into a fresh temporary store from those extractions, every question is run as a
search in each search mode, and hit@1, hit@k and MRR are reported, overall and per language, at
chapter level and at book level. With a report file, the report is rewritten as soon as each
chunker's scores exist, so a crash later keeps them.

A result is a chapter hit when it comes from the right book and the expected chapter path is a
contiguous run of segments of the result's path, compared after Unicode, quote, zero-width and
case normalisation: the same chapter, a section inside it, or the same path written without its
ancestors all count; a broader parent chapter does not (its text is not the answer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
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
MODES = ("dense", "sparse", "hybrid")  # search modes; only dense needs no sparse vectors
# A question whose expected chapter holds more than this share of its book's text is flagged.
BIG_CHAPTER_SHARE = 0.5
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
    also: tuple[str, ...] = ()  # other chapters of the book that answer it too

    @property
    def chapters(self) -> tuple[str, ...]:
        return (self.chapter, *self.also)


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
    modes: tuple[str, ...] = ("dense",)  # each one scored on the same store, per chunker
    report_file: Path | None = None  # the JSON report, rewritten after each chunker's scores
    # The model's CPU variant (ModelSpec.with_variant): the ingests use it, the searches take the
    # collection's own.
    backend: str | None = None
    quantize: str | None = None
    dims: int | None = None
    # Keep each chunker's store here (DIR/<chunker>) instead of a throwaway one: the ingest is the
    # usual incremental one, so a later eval of the same books and settings only searches.
    store: Path | None = None
    chunk_tokens: int = 512
    overlap: int = 64


@dataclass
class ChunkerScore:
    chunker: str
    mode: str = "dense"
    questions: int = 0
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
    tokens: int = 0  # embedded by the ingest (its model's tokenizer)
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
    warnings: list[str] = field(default_factory=list)
    finished: bool = False  # False in a report written while chunkers were still to run

    def to_dict(self, with_results: bool = True) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        k = self.top_k
        for s in out["scores"]:  # name the k in the keys: hit@5 is what a reader looks for
            s[f"hit@{k}"] = s.pop("hit_at_k")
            s["hit@1"] = s.pop("hit_at_1")
            s[f"book_hit@{k}"] = s.pop("book_hit_at_k")
            s["book_hit@1"] = s.pop("book_hit_at_1")
            for row in s["by_language"].values():
                row[f"hit@{k}"] = row.pop("hit@k")
                row[f"book_hit@{k}"] = row.pop("book_hit@k")
            if not with_results:
                s.pop("results")
        return out

    def write(self, path: Path) -> None:
        """Whole or not at all: a kill while writing leaves the previous report."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)


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
        also = obj.get("also", [])
        if not isinstance(also, list) or not all(isinstance(c, str) and c.strip() for c in also):
            raise UsageError(f"Line {n} of {path}: also must be a list of chapter paths.")
        out.append(Question(obj["question"].strip(), obj["book"].strip(), obj["chapter"].strip(),
                            obj["language"].strip(), n, tuple(c.strip() for c in also)))
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


def _has_option(cls: type, name: str) -> bool:
    """Older builds lack some options (a chunker choice, a search mode): scored where possible."""
    return any(f.name == name for f in dataclasses.fields(cls))


def _has_chunker_option() -> bool:
    from alexandria.run.options import IngestOptions

    return _has_option(IngestOptions, "chunker")


def _check_chunkers(chunkers: tuple[str, ...]) -> None:
    if not chunkers:
        raise UsageError("Give at least one chunker (structural, semantic or hierarchical).")
    for name in chunkers:
        if name not in CHUNKERS:
            raise UsageError(f"Unknown chunker {name!r}: use structural, semantic or hierarchical.")


def _check_modes(modes: tuple[str, ...]) -> None:
    if not modes:
        raise UsageError("Give at least one search mode (dense, sparse or hybrid).")
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"Unknown search mode {mode!r}: use dense, sparse or hybrid.")


def evaluate(questions: list[Question], opts: EvalOptions,
             progress: Callable[[str], None] | None = None) -> EvalReport:
    """Extract the needed books once, ingest them once per chunker into a throwaway store and
    score every question in every search mode."""
    if opts.top_k < 1:
        raise UsageError("--top-k must be at least 1.")
    _check_chunkers(opts.chunkers)
    _check_modes(opts.modes)
    books = resolve_books(questions, opts.corpus)
    say = progress or (lambda _msg: None)
    report = EvalReport(model=opts.model, device=opts.device, top_k=opts.top_k,
                        questions=len(questions), corpus=str(Path(opts.corpus).expanduser()),
                        scores=[])
    with tempfile.TemporaryDirectory(prefix="alexandria-eval-") as tmp:
        cache = Path(tmp) / "extracted"
        report.warnings = extract_once(questions, books, cache, say)
        for warning in report.warnings:
            say(f"warning: {warning}")
        for name in opts.chunkers:
            if name != "structural" and not _has_chunker_option():
                say(f"{name}: not available in this version, skipped")
                report.scores.append(ChunkerScore(chunker=name, questions=len(questions),
                                                  error="not available in this version"))
            else:
                scores, device = _run_chunker(name, questions, books, opts, say, cache, Path(tmp))
                report.scores += scores
                report.device = device
            if opts.report_file:
                report.write(opts.report_file)
    report.finished = True
    if opts.report_file:
        report.write(opts.report_file)
    return report


def extract_once(questions: list[Question], books: dict[str, Path], cache: Path,
                 say: Callable[[str], None]) -> list[str]:
    """Extract each book into the cache the ingests read; returns a warning for each question
    whose expected chapter holds more than BIG_CHAPTER_SHARE of its book's text, or no text."""
    from alexandria.errors import BookError
    from alexandria.sources.cache import extract_cached
    from alexandria.sources.readers import read_book_file

    warnings: list[str] = []
    paths = sorted(set(books.values()))
    for i, path in enumerate(paths, 1):
        say(f"extracting {i}/{len(paths)}: {path.name}")
        data = read_book_file(path)
        try:
            book = extract_cached(data, path.suffix.lower().lstrip(".") or "epub", str(path),
                                  hashlib.sha256(data).hexdigest(), cache)
        except BookError:
            continue  # the ingest reports it as a failed book
        total = sum(len(c.text) for c in book.chapters) or 1
        for q in questions:
            if books[q.book] != path:
                continue
            for want in q.chapters:
                if not any(chapter_matches(want, c.title) for c in book.chapters):
                    warnings.append(f"line {q.line}: no chapter of {path.name} matches {want!r}")
            share = sum(len(c.text) for c in book.chapters
                        if any(chapter_matches(want, c.title) for want in q.chapters))
            if share / total > BIG_CHAPTER_SHARE:
                what = f"the chapter {q.chapter!r} holds" if not q.also else \
                    f"the chapters {', '.join(map(repr, q.chapters))} hold"
                warnings.append(f"line {q.line}: {what} {share / total:.0%} of {path.name}'s text, "
                                "so finding it says little")
    return warnings


def _run_chunker(name: str, questions: list[Question], books: dict[str, Path], opts: EvalOptions,
                 say: Callable[[str], None], cache: Path, tmp: Path
                 ) -> tuple[list[ChunkerScore], str]:
    from alexandria.run.ingest import ingest
    from alexandria.run.options import IngestOptions

    files = tuple(sorted(set(books.values())))
    extra: dict[str, Any] = {"chunker": name} if _has_chunker_option() else {}
    if _has_option(IngestOptions, "extract_cache"):
        extra["extract_cache"] = cache
    store_dir = Path(opts.store).expanduser() / name if opts.store else tmp / f"store-{name}"
    say(f"{name}: ingesting {len(files)} books into "
        + (f"{store_dir} (books already there are kept)" if opts.store else "a temporary store"))
    done = 0

    def book_done(result) -> None:
        nonlocal done
        done += 1
        what = f"{result.chunks} chunks" if result.status == "done" else result.status
        if result.reason:
            what += f" ({result.reason})"
        say(f"{name}: {done}/{len(files)} {Path(result.path or result.title).name}: {what}, "
            f"{result.seconds:.0f}s")

    t = time.perf_counter()
    report = ingest(IngestOptions(
        files=files, model=opts.model, device=opts.device, dtype=opts.dtype, store=store_dir,
        workers=opts.workers, batch_size=opts.batch_size, prune=False, backend=opts.backend,
        chunk_tokens=opts.chunk_tokens, overlap=opts.overlap,
        quantize=opts.quantize, dims=opts.dims, **extra), progress=book_done)
    ingest_s = round(time.perf_counter() - t, 1)
    path_of = {b["book_key"]: Path(b["path"]).resolve() for b in report.books if b.get("path")}
    chunks, tokens = report.chunks, report.tokens
    if opts.store:  # books kept from an earlier eval count too
        from alexandria.query.status import status
        from alexandria.store.location import Location

        totals = status(Location.of(opts.model, store=store_dir, collection=report.collection))["totals"]
        chunks, tokens = totals["chunks"], totals["tokens"]
    say(f"{name}: {len(files) - len(report.failures)} books, {chunks} chunks in {ingest_s:.0f}s; "
        f"searching {len(questions)} questions")
    scores = []
    for mode in opts.modes:
        score = ChunkerScore(chunker=name, mode=mode, questions=len(questions),
                             books=len(files), chunks=chunks, tokens=tokens,
                             ingest_s=ingest_s,
                             books_failed=list(report.failures))
        _search_all(score, questions, books, opts, store_dir, report.collection, path_of)
        _aggregate(score)
        say(f"{_label(score)}: hit@1 {score.hit_at_1:.3f}, hit@{opts.top_k} {score.hit_at_k:.3f}, "
            f"MRR {score.mrr:.3f}")
        scores.append(score)
    if not opts.store:
        shutil.rmtree(store_dir, ignore_errors=True)
    return scores, report.device or opts.device


def _search_all(score: ChunkerScore, questions: list[Question], books: dict[str, Path],
                opts: EvalOptions, store_dir: Path, collection: str | None,
                path_of: dict[str, Path]) -> None:
    """The same search a user runs (hierarchical chapter points are not ranked on their own)."""
    from alexandria.query.search import SearchOptions, search

    extra: dict[str, Any] = {}
    if _has_option(SearchOptions, "mode"):  # always named: the search's own default is hybrid
        extra["mode"] = score.mode
    elif score.mode != "dense":
        raise UsageError(f"Search mode {score.mode!r} is not available in this version.")
    sopts = SearchOptions(model=opts.model, device=opts.device, dtype=opts.dtype, store=store_dir,
                          collection=collection, top_k=opts.top_k, **extra)
    t = time.perf_counter()
    for q in questions:
        score.results.append(_judge(q, books[q.book], search(q.question, sopts), path_of))
    score.search_s = round(time.perf_counter() - t, 1)


def _label(score: ChunkerScore) -> str:
    return score.chunker if score.mode == "dense" else f"{score.chunker}/{score.mode}"


def _source(p: dict[str, Any], path_of: dict[str, Path]) -> Path | None:
    """The book file a hit's payload came from."""
    source = path_of.get(p.get("book_key") or "")
    if source is None and p.get("source_path"):
        source = Path(p["source_path"]).resolve()
    return source


def ranks(q: Question, book: Path, payloads: list[dict[str, Any]],
          path_of: dict[str, Path] | None = None) -> tuple[int | None, int | None]:
    """The 1-based rank of the first hit from the expected chapter and of the first from the
    right book (None: not among them), for hits' payloads in ranked order."""
    book_flags, chapter_flags = [], []
    for p in payloads:
        right_book = _source(p, path_of or {}) == book
        book_flags.append(right_book)
        chapter_flags.append(right_book and any(chapter_matches(c, p.get("chapter"))
                                                for c in q.chapters))
    return _rank(chapter_flags), _rank(book_flags)


def hit_rates(found: list[int | None]) -> tuple[float, float, float]:
    """hit@1, hit@k and MRR of questions' ranks (None: not found in the top k)."""
    m = len(found) or 1
    return (round(sum(1 for x in found if x == 1) / m, 4),
            round(sum(1 for x in found if x) / m, 4),
            round(sum(1 / x for x in found if x) / m, 4))


def _judge(q: Question, book: Path, hits: list, path_of: dict[str, Path]) -> dict[str, Any]:
    """One question's verdict: the rank of the first right chapter and of the first right book."""
    chapter_rank, book_rank = ranks(q, book, [h.payload for h in hits], path_of)
    got = []
    for h in hits:
        source = _source(h.payload, path_of)
        got.append({"book": source.name if source else h.payload.get("title"),
                    "chapter": h.payload.get("chapter"), "score": round(float(h.score), 4)})
    return {"line": q.line, "question": q.question, "book": q.book, "chapter": q.chapter,
            "also": list(q.also),
            "language": q.language, "rank": chapter_rank, "book_rank": book_rank, "top": got}


def _aggregate(score: ChunkerScore) -> None:
    rows = score.results

    def rates(subset: list[dict[str, Any]], key: str) -> tuple[float, float, float]:
        return hit_rates([r[key] for r in subset])

    score.hit_at_1, score.hit_at_k, score.mrr = rates(rows, "rank")
    score.book_hit_at_1, score.book_hit_at_k, score.book_mrr = rates(rows, "book_rank")
    for lang in sorted({r["language"] for r in rows}):
        subset = [r for r in rows if r["language"] == lang]
        h1, hk, mrr = rates(subset, "rank")
        score.by_language[lang] = {"questions": len(subset), "hit@1": h1, "hit@k": hk, "mrr": mrr,
                                   "book_hit@k": rates(subset, "book_rank")[1]}


def render_table(report: EvalReport) -> str:
    """The numbers a person compares: one row per chunker (and search mode), then the same per
    language, then the warnings."""
    k = report.top_k
    head = (f"{'chunker':<24}{'hit@1':>7}{f'hit@{k}':>7}{'MRR':>7}{'book@1':>8}{f'book@{k}':>8}"
            f"{'chunks':>8}{'ingest s':>10}")
    lines = [f"{report.questions} questions, model {report.model} on {report.device}, top {k}",
             head, "-" * len(head)]
    for s in report.scores:
        if s.error:
            lines.append(f"{_label(s):<24}{s.error}")
            continue
        lines.append(f"{_label(s):<24}{s.hit_at_1:>7.3f}{s.hit_at_k:>7.3f}{s.mrr:>7.3f}"
                     f"{s.book_hit_at_1:>8.3f}{s.book_hit_at_k:>8.3f}{s.chunks:>8}{s.ingest_s:>10.0f}")
    scored = [s for s in report.scores if not s.error]
    langs = sorted({lang for s in scored for lang in s.by_language})
    if len(langs) > 1:
        lines += ["", f"{'by language':<24}{'hit@1':>7}{f'hit@{k}':>7}{'MRR':>7}{'book@' + str(k):>8}"]
        for s in scored:
            lines.append(_label(s))  # on its own line: "structural/hybrid" fills a column
            for lang in langs:
                row = s.by_language.get(lang)
                if row is None:
                    continue
                name = f"  {lang} ({row['questions']})"
                lines.append(f"{name:<24}{row['hit@1']:>7.3f}{row['hit@k']:>7.3f}{row['mrr']:>7.3f}"
                             f"{row['book_hit@k']:>8.3f}")
    for s in report.scores:
        if s.mode != report.scores[0].mode:  # one ingest per chunker: its failures once
            continue
        for f in s.books_failed:
            lines.append(f"{_label(s)}: failed {f['book']}: {f['reason']}")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)
