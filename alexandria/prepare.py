"""Extraction and chunking of one book, run in worker processes so the model never waits on parsing.

Nothing here imports torch: workers start fast and stay small.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chunk import Chunk, Chunker, ChunkSettings
from .errors import BookError


@dataclass
class PrepareTask:
    book_key: str
    path: str
    fmt: str
    title: str  # the library's title, for a model's document prompt


@dataclass
class PreparedBook:
    book_key: str
    chunks: list[Chunk] = field(default_factory=list)
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    language: str | None = None
    warnings: list[str] = field(default_factory=list)
    content_hash: str | None = None
    seconds: float = 0.0
    # What the model reads per chunk (prompt and special tokens included), tokenized here so the
    # embedding thread only pads and feeds.
    token_ids: list = field(default_factory=list)
    reason: str | None = None  # set when the book failed
    detail: str = ""

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.chunks)


_state: dict[str, object] = {}


def init_worker(
    tokenizer_json: str, max_seq_length: int, settings: ChunkSettings, document_template: str | None
) -> None:
    _state["chunker"] = Chunker(tokenizer_json, max_seq_length, settings)
    _state["template"] = document_template


def prepare(task: PrepareTask) -> PreparedBook:
    """Never raises: a failure comes back as a PreparedBook with a reason, so the run goes on."""
    started = time.perf_counter()
    out = PreparedBook(task.book_key)
    try:
        data = _read(Path(task.path))
        out.content_hash = hashlib.sha256(data).hexdigest()
        book = _extract(data, task.fmt, task.path)
        del data
        out.title, out.authors, out.language = book.title, book.authors, book.language
        out.warnings = list(book.warnings)
        chunker: Chunker = _state["chunker"]  # type: ignore[assignment]
        template = _state.get("template")
        reserved = 0
        if template:
            prompt = str(template).format(title=task.title or book.title or "none", text="")
            reserved = len(chunker.tokenizer.encode(prompt, add_special_tokens=False).ids)
        out.chunks = chunker.chunk(book.chapters, reserved=reserved)
        if not out.chunks:
            raise BookError("no-text", "no chapter has any text to embed")
        title = task.title or book.title or "none"
        texts = [c.text if not template else str(template).format(title=title, text=c.text)
                 for c in out.chunks]
        out.token_ids = model_inputs(chunker, texts)
    except BookError as e:
        out.reason, out.detail, out.chunks = e.reason, e.detail, []
        out.token_ids = []
    except MemoryError:
        out.reason, out.detail, out.chunks = "too-large", "ran out of memory while reading", []
    except Exception as e:  # a bug or an unforeseen file: still a named reason, never a crash
        out.reason, out.detail, out.chunks = f"unexpected:{type(e).__name__}", str(e)[:300], []
    out.seconds = time.perf_counter() - started
    return out


def model_inputs(chunker: Chunker, texts: list[str]) -> list[np.ndarray]:
    limit = chunker.max_seq_length
    out = []
    for enc in chunker.tokenizer.encode_batch(texts, add_special_tokens=True):
        ids = enc.ids if len(enc.ids) <= limit else enc.ids[: limit - 1] + enc.ids[-1:]
        out.append(np.asarray(ids, dtype=np.int32))
    return out


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise BookError("file-missing", str(path)) from e
    except IsADirectoryError as e:
        raise BookError("not-a-file", str(path)) from e
    except PermissionError as e:
        raise BookError("unreadable", f"permission denied: {path}") from e
    except OSError as e:
        raise BookError("unreadable", f"{path}: {e.strerror}") from e


def _extract(data: bytes, fmt: str, name: str):
    from .extract import ExtractError, extract_epub

    if fmt != "epub":
        raise BookError(f"unsupported-format:{fmt}", name)
    try:
        return extract_epub(data, name)
    except ExtractError as e:
        raise BookError(e.reason, e.detail) from e
