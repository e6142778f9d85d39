"""`alexandria chunks BOOK [--compare]`: what each chunking setting makes of one book, before a
long run. Structural and hierarchical need only the tokenizer; semantic loads the model, embeds
the book's sentences once and reuses them for every threshold it shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.chunking.chunker import AUTO_PERCENTILE, Chunk, Chunker, ChunkSettings
from alexandria.embedding.models import ModelSpec, resolve_model
from alexandria.errors import BookError, UsageError

SENTENCE_BUDGET = 16384  # tokens per model batch for sentence embeddings (short rows)


@dataclass
class SettingReport:
    label: str
    settings: ChunkSettings
    chunks: int = 0
    parents: int = 0
    chapters: int = 0
    tokens: dict[str, float] = field(default_factory=dict)  # min, median, mean, max
    samples: list[dict[str, Any]] = field(default_factory=list)
    threshold: float | None = None  # semantic: the similarity actually used
    # per chapter in reading order (chapters under 32 tokens joined to the next, as an ingest
    # does): its title, chunk count and tokens
    chapter_list: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "strategy": self.settings.strategy,
                "chunk_tokens": self.settings.chunk_tokens, "overlap": self.settings.overlap,
                "threshold": self.threshold, "min_tokens": self.settings.min_tokens,
                "chunks": self.chunks, "parents": self.parents, "chapters": self.chapters,
                "tokens": self.tokens, "samples": self.samples, "chapter_list": self.chapter_list}


@dataclass
class BookReport:
    path: str
    title: str
    model: str
    max_seq_length: int
    settings: list[SettingReport]
    similarity_percentiles: dict[str, float] | None = None  # semantic: of neighbouring sentences

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "title": self.title, "model": self.model,
                "max_seq_length": self.max_seq_length,
                "similarity_percentiles": self.similarity_percentiles,
                "settings": [s.to_dict() for s in self.settings]}


@dataclass(frozen=True)
class Variant:
    """One setting to try. Semantic without a threshold: the book's own percentile of
    neighbouring-sentence similarities (AUTO_PERCENTILE is what an ingest uses)."""

    label: str
    settings: ChunkSettings
    percentile: int = AUTO_PERCENTILE


def current_variant(base: ChunkSettings) -> Variant:
    if base.strategy == "semantic":
        t = "auto" if base.threshold is None else f"{base.threshold:g}"
        return Variant(f"semantic t={t}", base)
    return Variant(f"{base.strategy} {base.chunk_tokens}/{base.overlap}", base)


def compare_variants(base: ChunkSettings, max_seq_length: int = 512) -> list[Variant]:
    """The side-by-side set: structural at two sizes (256 and 512 tokens, or half and all of a
    smaller model's window), semantic at two thresholds (the book's 10th and 25th percentile
    unless --threshold gives one), hierarchical."""
    sem = replace(base, strategy="semantic")
    sizes = (256, 512) if max_seq_length >= 512 else (max_seq_length // 2, max_seq_length)
    out = [Variant(f"structural {n}/{n // 8}", ChunkSettings(chunk_tokens=n, overlap=n // 8))
           for n in sizes]
    if base.threshold is not None:
        out.append(Variant(f"semantic t={base.threshold:g}", sem))
    else:
        out.append(Variant("semantic t=p10", sem, percentile=10))
    out.append(Variant(f"semantic t=auto (p{AUTO_PERCENTILE})", replace(sem, threshold=None)))
    out.append(Variant(f"hierarchical {base.chunk_tokens}/{base.overlap}",
                       replace(base, strategy="hierarchical")))
    return out


def report_book(path: Path, model: str, variants: list[Variant], device: str = "auto",
                dtype: str = "auto", samples: int = 3) -> BookReport:
    """Chunk one book under each variant; the book is read and extracted once, and its sentences
    embedded at most once per sentence plan."""
    from alexandria.embedding.embedder import load_tokenizer_json
    from alexandria.run.prepare import PreparedBook, chunk_chapters
    from alexandria.sources.readers import extract_book, read_book_file

    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"The file {path} does not exist.")
    spec = resolve_model(model)
    tokenizer_json, max_len = load_tokenizer_json(spec)
    fmt = path.suffix.lower().lstrip(".") or "epub"
    try:
        book = extract_book(read_book_file(path), fmt, str(path))
    except BookError as e:
        raise UsageError(f"{path.name} could not be read ({e.reason}).") from e
    title = book.title or path.stem
    report = BookReport(str(path), title, spec.name, max_len, [])
    cache: dict[tuple[int, int], tuple[Any, np.ndarray]] = {}
    for v in variants:
        chunker = Chunker(tokenizer_json, max_len, v.settings)
        out = PreparedBook(book_key=str(path))
        chapters = chunker.join_short(book.chapters)
        try:
            chunk_chapters(out, chapters, chunker, spec.document_template, title)
        except BookError as e:
            raise UsageError(f"{path.name} has nothing to chunk ({e.reason}).") from e
        entry = SettingReport(v.label, v.settings)
        if out.sentences is not None:
            entry.threshold = _semantic(out, chunker, v, cache, spec, device, dtype, report)
        _fill(entry, out.chunks, samples)
        entry.chapter_list = _chapter_list(chapters, out.chunks)
        report.settings.append(entry)
    return report


def _semantic(out, chunker: Chunker, v: Variant, cache: dict, spec: ModelSpec, device: str,
              dtype: str, report: BookReport) -> float:
    """The semantic chunks of a planned book; returns the threshold used."""
    from alexandria.chunking.semantic import chunks_from_plan, embed_plans, neighbour_similarity
    from alexandria.embedding.embedder import get_embedder
    from alexandria.run.prepare import book_capacity

    s = v.settings
    key = (s.chunk_tokens, s.min_tokens)
    if key not in cache:
        embedder = get_embedder(spec, device, dtype)
        vectors = embed_plans([out.sentences], embedder, SENTENCE_BUDGET, 4096)
        cache[key] = (out.sentences, vectors[0])  # type: ignore[index]
    plan, vectors = cache[key]
    chapter_of = np.fromiter((p for p, _, _ in plan.spans), dtype=np.int64, count=len(plan))
    sims = neighbour_similarity(vectors, chapter_of)[chapter_of[:-1] == chapter_of[1:]]
    if report.similarity_percentiles is None and len(sims):
        report.similarity_percentiles = {
            f"p{q}": round(float(np.percentile(sims, q)), 3) for q in (10, 25, 50, 75, 90)}
    threshold = s.threshold
    if threshold is None:
        threshold = float(np.percentile(sims, v.percentile)) if len(sims) else 0.0
    limit = book_capacity(chunker, spec.document_template, out.prompt_title)
    out.chunks = chunks_from_plan(plan, vectors, threshold, s.min_tokens, limit)
    counts = chunker.count_tokens([c.text for c in out.chunks])
    for c, n in zip(out.chunks, counts, strict=True):
        c.tokens = n
    return round(threshold, 4)


def _fill(entry: SettingReport, chunks: list[Chunk], samples: int) -> None:
    children = [c for c in chunks if c.kind == "chunk"]
    entry.chunks = len(children)
    entry.parents = len(chunks) - len(children)
    entry.chapters = len({c.chapter_index for c in children})
    lengths = sorted(c.tokens for c in children)
    if lengths:
        entry.tokens = {"min": lengths[0], "median": lengths[len(lengths) // 2],
                        "mean": round(sum(lengths) / len(lengths), 1), "max": lengths[-1]}
    step = max(1, len(children) // max(1, samples))
    entry.samples = [{"chapter": c.chapter, "tokens": c.tokens, "text": c.text[:300]}
                     for c in children[::step][:samples]]


def _chapter_list(chapters: list, chunks: list[Chunk]) -> list[dict[str, Any]]:
    counts: dict[int, list[int]] = {}
    for c in chunks:
        if c.kind == "chunk":
            counts.setdefault(c.chapter_index, []).append(c.tokens)
    return [{"index": ch.index, "title": ch.title, "chunks": len(counts.get(ch.index, [])),
             "tokens": sum(counts.get(ch.index, []))} for ch in chapters]


def render_chapters(setting: SettingReport) -> str:
    """One line per chapter, with its chunks and tokens: where the text of a book went."""
    lines = [f"chapters ({setting.label}):", f"{'#':>5}{'chunks':>8}{'tokens':>9}  title"]
    for row in setting.chapter_list:
        lines.append(f"{row['index']:>5}{row['chunks']:>8}{row['tokens']:>9}  {row['title'] or '-'}")
    return "\n".join(lines)


def render(report: BookReport, samples: int) -> str:
    """A table a person reads in a terminal: one row per setting, then samples."""
    lines = [f"{report.title} ({report.path}); model {report.model}, at most "
             f"{report.max_seq_length} tokens per input"]
    if report.similarity_percentiles:
        p = report.similarity_percentiles
        lines.append("neighbouring-sentence similarity: " + ", ".join(f"{k} {v}" for k, v in
                                                                        p.items()))
    width = max(len(s.label) for s in report.settings) + 2
    lines.append(f"{'setting':<{width}}{'threshold':>10}{'chunks':>7}{'parents':>8}{'min':>6}"
                 f"{'median':>8}{'mean':>8}{'max':>6}")
    for s in report.settings:
        t = s.tokens
        th = f"{s.threshold:.3f}" if s.threshold is not None else "-"
        lines.append(f"{s.label:<{width}}{th:>10}{s.chunks:>7}{s.parents:>8}{t.get('min', 0):>6}"
                     f"{t.get('median', 0):>8}{t.get('mean', 0):>8}{t.get('max', 0):>6}")
    if report.settings and report.settings[0].chapter_list:
        lines.append(render_chapters(report.settings[0]))
    if samples:
        for s in report.settings:
            lines.append(f"{s.label}:")
            for x in s.samples[:samples]:
                text = " ".join(x["text"].split())[:160]
                lines.append(f"    [{x['chapter'] or '-'} | {x['tokens']} tok] {text}")
    return "\n".join(lines)
