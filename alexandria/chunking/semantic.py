"""Semantic chunking: break where neighbouring sentences stop being alike.

Split in two because workers must not import torch: workers split chapters into sentences and
tokenize them (split_sentences, SentencePlan); the main process embeds every sentence of a group
of books in large token-budget batches, decides the breaks (group_sentences) and builds the
chunks and their model inputs (build_chunks).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from alexandria.chunking.chunker import AUTO_PERCENTILE, Chunk, Chunker

if TYPE_CHECKING:
    from alexandria.sources.book import Chapter


class SentenceEncoder(Protocol):
    """What semantic chunking needs of a model (alexandria.embedding's Embedder is one)."""

    def encode_ids(self, ids: list[np.ndarray], token_budget: int, *, max_batch: int,
                   should_stop: Callable[[], bool] | None = None) -> np.ndarray | None: ...

# A sentence ends at . ! ? … (then closing quotes or brackets, then whitespace), at CJK and Arabic
# full stops (no space needed), and always at a line break (paragraphs, verse lines).
_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|[。！？؟।]+[」』”’)]*|\n+")
_ABBREV = {"mr", "mrs", "ms", "dr", "rev", "st", "mt", "vs", "prof", "sr", "jr", "no", "vol", "ch", "fig",
           "e.g", "i.e", "etc", "cf", "p", "pp"}


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of a text, whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _END.finditer(text):
        end = m.end()
        if m.group()[0] in ".!?…":
            following = text[end:end + 8].lstrip(" \t")
            if following[:1].islower():
                continue  # “Was it?” he asked. / etc. and so on: the sentence goes on
        if m.group()[0] == ".":
            word = text[max(start, m.start() - 5):m.start()].split()
            if word and (word[-1].lower().lstrip("(\"'“‘") in _ABBREV or len(word[-1]) == 1
                         and word[-1].isupper()):
                continue  # "Mr. Holmes", "J. Smith": not the end of a sentence
        _add(text, start, end, spans)
        start = end
    _add(text, start, len(text), spans)
    return spans


def _add(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        s = start + (len(piece) - len(piece.lstrip()))
        spans.append((s, s + len(stripped)))


@dataclass
class SentencePlan:
    """One book's sentences, made in a worker: what the main process needs to chunk it."""

    chapters: list[tuple[int, str, str]] = field(default_factory=list)  # (index, title, text)
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # (chapter pos, start, end)
    tokens: list[int] = field(default_factory=list)  # per sentence, special tokens excluded
    ids: list[np.ndarray] = field(default_factory=list)  # what the model reads per sentence

    def __len__(self) -> int:
        return len(self.spans)


def plan_sentences(chapters: list[Chapter], chunker: Chunker, capacity: int,
                   inputs: Callable[[list[str]], list[np.ndarray]],
                   prompt: Callable[[str], str]) -> SentencePlan:
    """Sentences of every chapter; a sentence longer than capacity is cut at words first."""
    from semantic_text_splitter import TextSplitter

    plan = SentencePlan()
    cutter = None
    for ch in chapters:
        if not ch.text.strip():
            continue
        pos = len(plan.chapters)
        plan.chapters.append((ch.index, ch.title, ch.text))
        spans = split_sentences(ch.text)
        counts = chunker.count_tokens([ch.text[s:e] for s, e in spans])
        for (s, e), n in zip(spans, counts, strict=True):
            n -= chunker.specials
            if n <= capacity:
                plan.spans.append((pos, s, e))
                plan.tokens.append(n)
                continue
            if cutter is None:
                cutter = TextSplitter.from_huggingface_tokenizer(
                    chunker.tokenizer, capacity=capacity, overlap=0, trim=True)
            pieces = cutter.chunk_indices(ch.text[s:e])
            sub = chunker.count_tokens([t for _, t in pieces])
            for (off, t), m in zip(pieces, sub, strict=True):
                plan.spans.append((pos, s + off, s + off + len(t)))
                plan.tokens.append(m - chunker.specials)
    texts = [plan.chapters[pos][2][s:e] for pos, s, e in plan.spans]
    plan.ids = inputs([prompt(t) for t in texts])
    return plan


def group_sentences(tokens: list[int], similarity: np.ndarray, same_chapter: np.ndarray,
                    threshold: float, min_tokens: int, max_tokens: int) -> list[tuple[int, int]]:
    """[start, end) sentence ranges, joined across gaps from the most similar down.

    First every gap at or above threshold is joined while the result stays within max_tokens
    (so when the maximum forces a break, it falls at the least similar gap); then a gap below
    threshold is joined only to lift a piece under min_tokens. Chapters are never joined.
    similarity[i] and same_chapter[i] describe the gap between sentences i and i+1.
    """
    n = len(tokens)
    if n == 0:
        return []
    left = list(range(n))  # for a segment's last sentence: its first; for its first: its last
    right = list(range(n))
    size = list(tokens)  # valid at a segment's first sentence

    def join(i: int, small_only: bool) -> None:
        a, b = left[i], right[i + 1]  # the segments ending at i and starting at i+1
        if small_only and size[a] >= min_tokens and size[i + 1] >= min_tokens:
            return
        if size[a] + size[i + 1] > max_tokens:
            return
        size[a] += size[i + 1]
        right[a], left[b] = b, a

    order = np.argsort(-np.asarray(similarity, dtype=np.float64), kind="stable")
    usable = [int(i) for i in order if same_chapter[i]]
    for i in usable:
        if similarity[i] >= threshold:
            join(i, small_only=False)
    for i in usable:
        if similarity[i] < threshold:
            join(i, small_only=True)
    groups, start = [], 0
    while start < n:
        groups.append((start, right[start] + 1))
        start = right[start] + 1
    return groups


WINDOW = 3  # sentences on each side of a gap whose mean vectors are compared


def neighbour_similarity(vectors: np.ndarray, chapter_of: np.ndarray | None = None,
                         window: int = WINDOW) -> np.ndarray:
    """Cosine similarity across each gap between neighbouring sentences.

    With window > 1 the mean of up to `window` sentences before the gap is compared with the mean
    of up to `window` after it (never reaching into another chapter): one short sentence ("Yes.",
    a name with an abbreviation) then no longer looks like a change of topic.
    """
    n = len(vectors)
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    if window <= 1:
        return np.einsum("ij,ij->i", vectors[:-1], vectors[1:])
    if chapter_of is None:
        chapter_of = np.zeros(n, dtype=np.int64)
    csum = np.vstack([np.zeros((1, vectors.shape[1]), dtype=np.float64),
                      np.cumsum(vectors, axis=0, dtype=np.float64)])
    # First and last sentence index of each sentence's chapter (chapters are contiguous runs).
    change = np.flatnonzero(chapter_of[1:] != chapter_of[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    run = np.repeat(np.arange(len(starts)), ends - starts)
    gap = np.arange(n - 1)
    lo = np.maximum(gap + 1 - window, starts[run[gap]])
    hi = np.minimum(gap + 1 + window, ends[run[gap]])
    before = csum[gap + 1] - csum[lo]
    after = csum[hi] - csum[gap + 1]
    norms = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
    return (np.einsum("ij,ij->i", before, after) / np.maximum(norms, 1e-12)).astype(np.float32)


def chunks_from_plan(plan: SentencePlan, vectors: np.ndarray, threshold: float | None,
                     min_tokens: int, max_tokens: int) -> list[Chunk]:
    """Chunks (text and spans; token counts estimated) from a plan and its sentence vectors.

    threshold None: the book's own AUTO_PERCENTILE-th percentile of neighbour similarities.
    """
    chapter_of = np.fromiter((p for p, _, _ in plan.spans), dtype=np.int64, count=len(plan))
    same = chapter_of[:-1] == chapter_of[1:]
    similarity = neighbour_similarity(vectors, chapter_of)
    if threshold is None:
        inside = similarity[same]
        threshold = float(np.percentile(inside, AUTO_PERCENTILE)) if len(inside) else 0.0
    groups = group_sentences(plan.tokens, similarity, same, threshold, min_tokens, max_tokens)
    chunks = []
    for a, b in groups:
        pos, start, _ = plan.spans[a]
        end = plan.spans[b - 1][2]
        index, title, text = plan.chapters[pos]
        chunks.append(Chunk(index=len(chunks), chapter=title, chapter_index=index,
                            char_start=start, char_end=end, tokens=sum(plan.tokens[a:b]),
                            text=text[start:end]))
    return chunks


def embed_plans(plans: list[SentencePlan], embedder: SentenceEncoder, token_budget: int, max_batch: int,
                should_stop: Callable[[], bool] | None = None) -> list[np.ndarray] | None:
    """Every sentence of several books in one encode_ids call (full, length-sorted batches)."""
    ids = [x for plan in plans for x in plan.ids]
    vectors = embedder.encode_ids(ids, token_budget, max_batch=max_batch, should_stop=should_stop)
    if vectors is None:
        return None
    out, row = [], 0
    for plan in plans:
        out.append(vectors[row:row + len(plan)])
        row += len(plan)
    return out
