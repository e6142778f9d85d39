"""Stage 3: token-aware chunks that never cross a chapter and never exceed what the model reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from semantic_text_splitter import TextSplitter
from tokenizers import Tokenizer

if TYPE_CHECKING:
    from .extract import Chapter


@dataclass(frozen=True)
class ChunkSettings:
    chunk_tokens: int = 512
    overlap: int = 64
    strategy: str = "structural"

    def fingerprint(self) -> str:
        """Stored per book: a change of settings means the book's chunks are stale."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Chunk:
    index: int  # position in the book
    chapter: str
    chapter_index: int
    char_start: int  # span in the chapter's text
    char_end: int
    tokens: int  # what the model reads, special tokens included
    text: str


def plain_tokenizer(tokenizer_json: str) -> Tokenizer:
    """The model's tokenizer without truncation: with it, every text would look short enough."""
    tk = Tokenizer.from_str(tokenizer_json)
    tk.no_truncation()
    tk.no_padding()
    return tk


class Chunker:
    """Splits at paragraphs, then sentences, then words (semantic-text-splitter), by model tokens."""

    def __init__(self, tokenizer_json: str, max_seq_length: int, settings: ChunkSettings) -> None:
        self.tokenizer = plain_tokenizer(tokenizer_json)
        self.settings = settings
        self.specials = len(self.tokenizer.encode("", add_special_tokens=True).ids)
        self.max_seq_length = max_seq_length
        self._splitters: dict[int, TextSplitter] = {}

    def capacity(self, reserved: int = 0) -> int:
        limit = self.max_seq_length - self.specials - reserved
        return max(8, min(self.settings.chunk_tokens, limit))

    def _splitter(self, capacity: int) -> TextSplitter:
        if capacity not in self._splitters:
            overlap = min(self.settings.overlap, capacity // 2)
            self._splitters[capacity] = TextSplitter.from_huggingface_tokenizer(
                self.tokenizer, capacity=capacity, overlap=overlap, trim=True
            )
        return self._splitters[capacity]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    def chunk(self, chapters: list[Chapter], reserved: int = 0) -> list[Chunk]:
        """reserved: tokens a document prompt (EmbeddingGemma's title) takes from the model's window."""
        splitter = self._splitter(self.capacity(reserved))
        chunks: list[Chunk] = []
        for chapter in chapters:
            pieces = splitter.chunk_indices(chapter.text)
            if not pieces:
                continue
            counts = self.count_tokens([text for _, text in pieces])
            for (start, text), tokens in zip(pieces, counts, strict=True):
                chunks.append(
                    Chunk(
                        index=len(chunks),
                        chapter=chapter.title,
                        chapter_index=chapter.index,
                        char_start=start,
                        char_end=start + len(text),
                        tokens=tokens,
                        text=text,
                    )
                )
        return chunks


def tokenizer_fingerprint(tokenizer_json: str) -> str:
    return hashlib.sha1(tokenizer_json.encode()).hexdigest()[:12]
