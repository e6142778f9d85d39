"""Stage 3: token-aware chunks that never cross a chapter and never exceed what the model reads."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from alexandria.chunking.settings import (  # noqa: F401 (the chunking settings, re-exported)
    AUTO_PERCENTILE,
    DEFAULT_MIN_TOKENS,
    DEFAULT_THRESHOLD,
    STRATEGIES,
    ChunkSettings,
)
from alexandria.chunking.windows import WHITESPACE, windows

if TYPE_CHECKING:
    from alexandria.sources.book import Chapter

# No chunk is shorter than this (tokens of text) unless its whole chapter is: a heading alone
# ("73 / Live システムプロジェクトへの貢献") wins queries on the few words it shares with them.
MIN_CHUNK_TOKENS = 32
# A text of fewer tokens than this has fewer than MIN_CHUNK_TOKENS * this many characters: only
# chapters that short are counted, so joining costs no second tokenizer pass over a book.
_MAX_CHARS_PER_TOKEN = 24


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
    # Its tokens in the chapter's tokenization (no special tokens), kept only where tokenizing the
    # text alone gives the same tokens (cut after whitespace at both ends, by a tokenizer that
    # splits at whitespace first), so the model inputs need not tokenize it again; None elsewhere.
    ids: Any = field(default=None, repr=False, compare=False)
    # Its sparse term vector, (indices, values), where the run's book workers computed it (so the
    # store's single owner process need not); None elsewhere.
    sparse: Any = field(default=None, repr=False, compare=False)


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
        probe = self.tokenizer.encode("a", add_special_tokens=True)
        text = [i for i, special in enumerate(probe.special_tokens_mask) if not special] or [0]
        ids = np.asarray(probe.ids, dtype=np.int32)
        self._special_ids = (ids[: text[0]], ids[text[-1] + 1:])  # [CLS] ... [SEP], <s> ... </s>
        self.max_seq_length = max_seq_length
        spec = json.loads(tokenizer_json)
        self.reuse = IdReuse(self.tokenizer, spec.get("pre_tokenizer"), spec.get("normalizer"))

    def fit(self, ids: np.ndarray) -> np.ndarray:
        """What the model reads of a tokenized text: over its window, the head and the last
        (special) token."""
        limit = self.max_seq_length
        return ids if len(ids) <= limit else np.concatenate((ids[: limit - 1], ids[-1:]))

    def with_specials(self, ids: np.ndarray) -> np.ndarray:
        """A text's tokens (no special tokens) as the model reads them: what encode() with
        special tokens gives for that text."""
        head, tail = self._special_ids
        return self.fit(np.concatenate((head, ids, tail)))

    def capacity(self, reserved: int = 0) -> int:
        limit = self.max_seq_length - self.specials - reserved
        return max(8, min(self.settings.chunk_tokens, limit))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=True)]

    def join_short(self, chapters: list[Chapter]) -> list[Chapter]:
        """Chapters of fewer than MIN_CHUNK_TOKENS tokens (a part's title page, a heading that a
        TOC entry points at) go before the chapter that follows them, under its title. Paged
        chapters (PDF) are left as they are: their page numbers are offsets into their own text."""
        chapters = [c for c in chapters if c.text.strip()]
        limit = MIN_CHUNK_TOKENS * _MAX_CHARS_PER_TOKEN
        candidates = [i for i, c in enumerate(chapters[:-1]) if len(c.text) < limit]
        if not candidates:
            return chapters
        counts = self.tokenizer.encode_batch([chapters[i].text for i in candidates],
                                             add_special_tokens=False)
        short = {i for i, e in zip(candidates, counts, strict=True) if len(e.ids) < MIN_CHUNK_TOKENS}
        short = {i for i in short if not getattr(chapters[i], "page_starts", None)
                 and not getattr(chapters[i + 1], "page_starts", None)}
        if not short:
            return chapters
        out: list[Chapter] = []
        pending: list[str] = []
        for i, c in enumerate(chapters):
            if i in short:
                pending.append(c.text)
                continue
            text = "\n\n".join([*pending, c.text]) if pending else c.text
            pending = []
            out.append(dataclasses.replace(c, index=len(out), text=text))
        return out

    def prompt_ids(self, prompt: str) -> np.ndarray | None:
        """The tokens a document prompt puts before a reused chunk's own, or None where the
        chunk's tokens cannot follow it as they are.

        Only a marker tokenizer (Gemma's) reads a chunk inside a prompt as in its chapter: the
        prompt ends with a space, which becomes the marker of the chunk's first word, as the space
        before it did in the chapter; the prompt before that space ends in a character no merge
        joins to a marker (checked on the vocabulary), so its tokens do not depend on the chunk.
        """
        if self.reuse.kind != "marker" or not prompt.endswith(" ") or prompt.endswith("  "):
            return None
        head = prompt[:-1]
        if not head or head[-1].isspace() or head[-1] in self.reuse.joins_marker:
            return None
        return np.asarray(self.tokenizer.encode(head, add_special_tokens=False).ids, dtype=np.int32)

    def chunk(self, chapters: list[Chapter], reserved: int = 0, keep_ids: bool = True
              ) -> list[Chunk]:
        """reserved: tokens a document prompt (EmbeddingGemma's title) takes from the model's window.
        keep_ids: set Chunk.ids where they can be reused (with a prompt only where prompt_ids
        says its tokens can go before them).

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
            ids = clean = None
            if self.reuse and keep_ids:
                ids = np.asarray(encoding.ids, dtype=np.int32)
                clean = self.reuse.clean_cuts(chapter.text, ids, offsets)
            for w in windows(chapter.text, offsets, capacity, overlap, MIN_CHUNK_TOKENS):
                chunks.append(
                    Chunk(
                        index=len(chunks),
                        chapter=chapter.title,
                        chapter_index=chapter.index,
                        char_start=w.start,
                        char_end=w.end,
                        tokens=w.tokens + self.specials,
                        text=chapter.text[w.start:w.end],
                        ids=(ids[w.first:w.first + w.tokens]  # type: ignore[index]
                             if clean is not None and clean[w.first] and clean[w.first + w.tokens]
                             else None),
                    )
                )
        return chunks


# Pre-tokenizers that split at whitespace and drop it before the model sees a word.
_WHITESPACE_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}


class IdReuse:
    """Where a chunk's tokens in its chapter are what tokenizing its text alone gives.

    Tokenizing the chunks again cost as much CPU as tokenizing the chapters (each token twice,
    the overlaps three times): on a GPU box the book workers, not the GPU, set the pace. A cut is
    clean when the pre-tokenizer splits there and the word after it reads the same alone:
    - whitespace splitters (BERT's WordPiece, Whitespace): whitespace right before the token;
    - Metaspace (SentencePiece: XLM-R, bge-m3), which splits before each space it turns into
      its marker and puts the marker before a text's first word too: the token after the cut
      starts with the marker and a character, and the token before it holds no whitespace (a
      newline that the normalizer keeps is a token of its own, so a cut after it is not clean).
    - a marker normalizer without a pre-tokenizer that splits (Gemma's: spaces become the
      marker, then BPE runs over the whole text): its merges may in principle cross words, so
      the vocabulary is read: where no token holds a marker after another character (Gemma
      262k: one, ">\u2581</"), a cut before a token that starts with the marker is a word
      boundary, as with Metaspace. Nothing puts a marker before a text's first word, so a chunk
      reads as in its chapter only after a prompt that ends with a space (prompt_ids); the first
      chunk of a chapter is tokenized again.
    Any other pre-tokenizer (ByteLevel keeps the space in the next word's token; none at all
    lets a token span words) tokenizes every chunk again.
    """

    def __init__(self, tokenizer: Tokenizer, spec: dict | None, normalizer: dict | None = None
                 ) -> None:
        self.kind = _reuse_kind(spec)
        marker = "\u2581"
        if self.kind is None and _marker_normalizer(normalizer, spec):
            self.kind = "marker"
        self.starts_word: np.ndarray | None = None
        self.ends_word: np.ndarray | None = None
        self.joins_marker: set[str] = set()  # characters a token joins to a following marker
        if self.kind == "metaspace":
            marker = _metaspace(spec).get("replacement", marker)  # type: ignore[union-attr]
        if self.kind in ("metaspace", "marker"):
            vocab = tokenizer.get_vocab(with_added_tokens=True)
            size = max(vocab.values()) + 1
            self.starts_word = np.zeros(size, dtype=bool)
            self.ends_word = np.zeros(size, dtype=bool)
            for token, i in vocab.items():
                self.starts_word[i] = (len(token) > 1 and token[0] == marker
                                       and token[1] != marker and not token[1].isspace())
                self.ends_word[i] = (bool(token) and token[-1] != marker
                                     and not token[-1].isspace())
            if self.kind == "marker":
                crossing = [t for t in vocab
                            if any(c == marker and t[j - 1] != marker for j, c in enumerate(t) if j)]
                self.joins_marker = {t[t.index(marker) - 1] for t in crossing
                                     if t.index(marker) > 0}
                if len(crossing) > 16:  # merges that span words: no clean cuts at all
                    self.kind = None

    def __bool__(self) -> bool:
        return self.kind is not None

    def clean_cuts(self, text: str, ids: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
        """clean[i]: a cut before token i (0..n) gives chunks that tokenize alone as they do here."""
        n = len(ids)
        clean = np.zeros(n + 1, dtype=bool)
        # the text's own ends: a chunk's text is trimmed, so whitespace there must make no token
        clean[0] = not text[:1].isspace() and self.kind != "marker"  # no marker before it alone
        clean[n] = not text[-1:].isspace()
        if n < 2:
            return clean
        if self.kind in ("metaspace", "marker"):
            clean[1:n] = self.starts_word[ids[1:]] & self.ends_word[ids[:-1]]  # type: ignore[index]
        else:
            starts = np.fromiter((s for s, _ in offsets[1:]), dtype=np.int64, count=n - 1)
            chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
            space = np.isin(chars, WHITESPACE)
            clean[1:n] = (starts > 0) & space[np.maximum(starts - 1, 0)]
        return clean


def _metaspace(spec: dict | None) -> dict | None:
    if not spec:
        return None
    if spec.get("type") == "Metaspace":
        return spec
    if spec.get("type") == "Sequence":  # e.g. T5: WhitespaceSplit, then Metaspace
        parts = spec.get("pretokenizers") or []
        found = [p for p in parts if p.get("type") == "Metaspace"]
        if len(found) == 1 and all(p.get("type") in _WHITESPACE_SPLITTERS or p is found[0]
                                   for p in parts):
            return found[0]
    return None


def _marker_normalizer(normalizer: dict | None, pre_tokenizer: dict | None) -> bool:
    """Gemma's tokenizer: the normalizer turns every space into the marker, and the pre-tokenizer
    (if any) splits at spaces, of which the normalizer left none."""
    if not normalizer or normalizer.get("type") != "Replace":
        return False
    if (normalizer.get("pattern") or {}).get("String") != " " or normalizer.get("content") != "\u2581":
        return False
    return not pre_tokenizer or (pre_tokenizer.get("type") == "Split"
                                 and (pre_tokenizer.get("pattern") or {}).get("String") == " ")


def _reuse_kind(spec: dict | None) -> str | None:
    if not spec:
        return None
    if spec.get("type") in _WHITESPACE_SPLITTERS:
        return "whitespace"
    meta = _metaspace(spec)
    if (meta is not None and meta.get("split", True)
            and meta.get("prepend_scheme", "always") in ("always", "first")
            and meta.get("add_prefix_space", True) is not False):
        return "metaspace"
    return None


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
