"""Stage 3: token-aware chunks that never cross a chapter and never exceed what the model reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from tokenizers import Tokenizer

from .split import windows

if TYPE_CHECKING:
    from .extract import Chapter


STRATEGIES = ("structural", "semantic", "hierarchical")
# Semantic: break where neighbouring sentences are less similar than this. None ("auto"): the
# book's own 25th percentile of neighbour similarities, since each model has its own scale
# (minilm's neighbours sit near 0.4, bge-m3's far higher), so one number cannot suit them all.
DEFAULT_THRESHOLD: float | None = None
AUTO_PERCENTILE = 25
DEFAULT_MIN_TOKENS = 64  # semantic: no topic break before a chunk has this many tokens


@dataclass(frozen=True)
class ChunkSettings:
    chunk_tokens: int = 512
    overlap: int = 64
    strategy: str = "structural"
    threshold: float | None = DEFAULT_THRESHOLD
    min_tokens: int = DEFAULT_MIN_TOKENS

    def fingerprint(self) -> str:
        """Stored per book: a change of settings means the book's chunks are stale.

        Semantic-only fields count only for the semantic strategy, so structural fingerprints
        written before those fields existed still match (no needless re-ingest).
        """
        d = asdict(self)
        if self.strategy != "semantic":
            d.pop("threshold")
            d.pop("min_tokens")
        return json.dumps(d, sort_keys=True)


@dataclass
class Chunk:
    index: int  # position in the book (a parent: its chapter index)
    chapter: str
    chapter_index: int
    char_start: int  # span in the chapter's text
    char_end: int
    tokens: int  # what the model reads, special tokens included
    text: str
    kind: str = "chunk"  # "chunk", or "parent" (hierarchical: one per chapter)


def plain_tokenizer(tokenizer_json: str) -> Tokenizer:
    """The model's tokenizer without truncation: with it, every text would look short enough."""
    tk = Tokenizer.from_str(tokenizer_json)
    tk.no_truncation()
    tk.no_padding()
    return tk


class Chunker:
    """Token windows cut at paragraphs, then lines, sentences, clauses, words (alexandria.split)."""

    def __init__(self, tokenizer_json: str, max_seq_length: int, settings: ChunkSettings) -> None:
        self.tokenizer = plain_tokenizer(tokenizer_json)
        self.settings = settings
        self.specials = len(self.tokenizer.encode("", add_special_tokens=True).ids)
        self.max_seq_length = max_seq_length

    def capacity(self, reserved: int = 0) -> int:
        limit = self.max_seq_length - self.specials - reserved
        return max(8, min(self.settings.chunk_tokens, limit))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    def chunk(self, chapters: list[Chapter], reserved: int = 0) -> list[Chunk]:
        """reserved: tokens a document prompt (EmbeddingGemma's title) takes from the model's window.

        One tokenizer pass per chapter (alexandria.split); a chunk's token count is its tokens in
        the chapter plus the special tokens, which is what the model reads when the cut fell on
        a word boundary (the exact count comes with the model inputs)."""
        capacity = self.capacity(reserved)
        overlap = min(self.settings.overlap, capacity // 2)
        chunks: list[Chunk] = []
        chapters = [c for c in chapters if c.text.strip()]
        # one batch: where tokenizer threads are allowed (book workers), a big book's chapters
        # are tokenized on several cores at once
        encodings = self.tokenizer.encode_batch([c.text for c in chapters], add_special_tokens=False)
        for chapter, encoding in zip(chapters, encodings, strict=True):
            offsets = encoding.offsets
            for w in windows(chapter.text, offsets, capacity, overlap):
                chunks.append(
                    Chunk(
                        index=len(chunks),
                        chapter=chapter.title,
                        chapter_index=chapter.index,
                        char_start=w.start,
                        char_end=w.end,
                        tokens=w.tokens + self.specials,
                        text=chapter.text[w.start:w.end],
                    )
                )
        return chunks


def tokenizer_fingerprint(tokenizer_json: str) -> str:
    return hashlib.sha1(tokenizer_json.encode()).hexdigest()[:12]


def parent_chunks(chapters: list[Chapter], children: list[Chunk], chunker: Chunker,
                  reserved: int = 0) -> list[Chunk]:
    """Hierarchical: one parent per chapter that has children; full text, embedded truncated.

    Only a prefix of a long chapter is tokenized (the model reads at most max_seq_length tokens
    of it anyway): a 1 MB chapter costs no more than a short one.
    """
    with_children = {c.chapter_index for c in children}
    prefix_chars = chunker.max_seq_length * 16
    parents = [ch for ch in chapters if ch.index in with_children]
    counts = chunker.count_tokens([ch.text[:prefix_chars] for ch in parents])
    limit = chunker.max_seq_length - reserved
    return [
        Chunk(index=ch.index, chapter=ch.title, chapter_index=ch.index, char_start=0,
              char_end=len(ch.text), tokens=min(n, limit), text=ch.text, kind="parent")
        for ch, n in zip(parents, counts, strict=True)
    ]
