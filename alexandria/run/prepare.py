"""Extraction and chunking of one book, run in worker processes so the model never waits on parsing.

Nothing here imports torch: workers start fast and stay small.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alexandria.children import exit_with_parent
from alexandria.chunking.chunker import Chunk, Chunker, ChunkSettings, parent_chunks
from alexandria.chunking.semantic import SentencePlan, chunks_from_plan, embed_plans, plan_sentences
from alexandria.errors import BookError
from alexandria.sources.cache import extract_cached
from alexandria.sources.pages import page_map
from alexandria.sources.readers import read_book_file


@dataclass
class PrepareTask:
    book_key: str
    path: str
    fmt: str
    title: str  # the library's title, for a model's document prompt
    # A plain file's "title" is its file name: the book's own title (EPUB dc:title) goes first.
    title_is_file_name: bool = False
    # Into how many parts at most a big book's chunking may be split, and the text per part
    # (characters): 1 never splits (alexandria.run.ingest.Preparing sets both).
    max_parts: int = 1
    part_chars: int = 0
    extract_cache: str | None = None  # a folder of extracted books by content hash (eval)


@dataclass
class PartTask:
    """Some of a big book's chapters, chunked and tokenized by another worker."""

    book_key: str
    part: int
    chapters: list
    title: str  # the document prompt's title


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
    # Semantic chunking only: the book's sentences, turned into chunks by the main process
    # (complete_semantic) once they are embedded; None afterwards.
    sentences: SentencePlan | None = None
    prompt_title: str = "none"
    # Paged books (PDF): chapter index -> (first page, where each page starts in its text)
    pages: dict[int, tuple[int, list[int]]] = field(default_factory=dict)
    # A big book comes back extracted but not chunked: its chapters, in this many groups, go to
    # other workers (PartTask) and merge_parts() joins what they send back. None otherwise.
    chapters: list | None = None
    parts: int = 0
    part: int | None = None  # which part of a big book this is (prepare_part)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.chunks)


TOKENIZER_THREADS = 4  # per book worker; RAYON_NUM_THREADS overrides it

_state: dict[str, object] = {}


def init_worker(
    tokenizer_json: str, max_seq_length: int, settings: ChunkSettings, document_template: str | None,
    nice: int = 0, reuse_tokens: bool = True, sparse_terms: bool = False,
) -> None:
    """Set up a worker process; `reuse_tokens=False` tokenizes every chunk again (to measure
    what reusing a chapter's tokens saves)."""
    exit_with_parent()
    if nice:
        # On a GPU box the workers fill every core, and a device thread preempted in the middle of
        # a forward leaves the GPU waiting for its next kernel: they yield to the main process.
        with contextlib.suppress(OSError):
            os.nice(nice)
    # A book's chapters and chunks are tokenized in batches on a few threads: one huge book
    # would otherwise be the last thing the GPU waits for.
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    os.environ.setdefault("RAYON_NUM_THREADS", str(TOKENIZER_THREADS))
    chunker = Chunker(tokenizer_json, max_seq_length, settings)
    if not reuse_tokens:
        chunker.reuse.kind = None
    _state["chunker"] = chunker
    _state["template"] = document_template
    _state["sparse"] = sparse_terms


@contextlib.contextmanager
def _failures_as_reason(out: PreparedBook, doing: str):
    """A failure inside becomes out.reason (and no chunks), and out.seconds is set either way."""
    started = time.perf_counter()
    try:
        yield
    except BookError as e:
        out.reason, out.detail = e.reason, e.detail
    except MemoryError:
        out.reason, out.detail = "too-large", f"ran out of memory while {doing}"
    except Exception as e:  # a bug or an unforeseen file: still a named reason, never a crash
        out.reason, out.detail = f"unexpected:{type(e).__name__}", str(e)[:300]
    if out.reason:
        out.chunks, out.token_ids, out.sentences = [], [], None
    out.seconds = time.perf_counter() - started


def prepare(task: PrepareTask) -> PreparedBook:
    """Never raises: a failure comes back as a PreparedBook with a reason, so the run goes on."""
    out = PreparedBook(task.book_key)
    with _failures_as_reason(out, "reading"):
        data = read_book_file(Path(task.path))
        out.content_hash = hashlib.sha256(data).hexdigest()
        book = extract_cached(data, task.fmt, task.path, out.content_hash,
                              Path(task.extract_cache) if task.extract_cache else None)
        del data
        out.title, out.authors, out.language = book.title, book.authors, book.language
        out.warnings = list(book.warnings)
        chunker: Chunker = _state["chunker"]  # type: ignore[assignment]
        book.chapters = chunker.join_short(book.chapters)
        out.pages = page_map(book.chapters)
        template = _state.get("template")
        first, second = (book.title, task.title) if task.title_is_file_name else (task.title, book.title)
        title = first or second or "none"
        parts = _parts(book.chapters, chunker, task)
        if parts > 1:
            out.chapters, out.parts, out.prompt_title = book.chapters, parts, title
        else:
            chunk_chapters(out, book.chapters, chunker, template, title)
    return out


def _parts(chapters: list, chunker: Chunker, task: PrepareTask) -> int:
    """One huge book prepared whole (many seconds of one core) is what the GPU waits for
    while the other workers are done: its chapters are chunked by several workers instead. The
    semantic chunker's breaks need the whole book's sentences, so it is never split."""
    if task.max_parts < 2 or task.part_chars < 1 or chunker.settings.strategy == "semantic":
        return 1
    chars = sum(len(c.text) for c in chapters)
    return max(1, min(task.max_parts, len(chapters), -(-chars // task.part_chars)))


def split_chapters(chapters: list, parts: int) -> list[list]:
    """Consecutive groups of chapters of about equal text (a chapter is never cut)."""
    total = sum(len(c.text) for c in chapters) or 1
    groups: list[list] = [[] for _ in range(parts)]
    done = 0
    for c in chapters:
        groups[min(parts - 1, done * parts // total)].append(c)
        done += len(c.text)
    return [g for g in groups if g]


def prepare_part(task: PartTask) -> PreparedBook:
    """Never raises, as prepare(); a part without text is no failure (the book may have more)."""
    out = PreparedBook(task.book_key, part=task.part)
    with _failures_as_reason(out, "chunking"):
        chunk_chapters(out, task.chapters, _state["chunker"], _state.get("template"),  # type: ignore[arg-type]
                       task.title, allow_empty=True)
    return out


def merge_parts(head: PreparedBook, parts: list[PreparedBook]) -> PreparedBook:
    """The book as one worker would have prepared it: chunks renumbered in reading order, then
    the hierarchical parents; the first failed part fails the book."""
    failed = next((p for p in parts if p.reason), None)
    head.chapters, head.parts = None, 0
    head.seconds += max((p.seconds for p in parts), default=0.0)  # the parts ran side by side
    if failed is not None:
        head.reason, head.detail = failed.reason, failed.detail
        return head
    chunks, ids, parents, parent_ids = [], [], [], []
    for part in parts:
        for c, x in zip(part.chunks, part.token_ids, strict=True):
            if c.kind == "parent":
                parents.append(c)
                parent_ids.append(x)
            else:
                c.index = len(chunks)
                chunks.append(c)
                ids.append(x)
    if not chunks:
        head.reason, head.detail = "no-text", "no chapter has any text to embed"
        return head
    head.chunks, head.token_ids = chunks + parents, ids + parent_ids
    return head


def chunk_chapters(out: PreparedBook, chapters: list, chunker: Chunker, template: object,
                   title: str, allow_empty: bool = False) -> None:
    """Fill out.chunks and out.token_ids (semantic: out.sentences) by the chunker's strategy."""
    reserved = 0
    if template:
        prompt = str(template).format(title=title, text="")
        reserved = len(chunker.tokenizer.encode(prompt, add_special_tokens=False).ids)
    out.prompt_title = title
    strategy = chunker.settings.strategy
    if strategy == "semantic":
        out.sentences = plan_sentences(
            chapters, chunker, chunker.capacity(reserved),
            lambda texts: model_inputs(chunker, texts),
            lambda text: document_text(template, title, text))
        if not out.sentences.spans:
            raise BookError("no-text", "no chapter has any text to embed")
        return
    keep_ids = not template or chunker.prompt_ids(document_text(template, title, "")) is not None
    out.chunks = chunker.chunk(chapters, reserved=reserved, keep_ids=keep_ids)
    if not out.chunks:
        if allow_empty:
            return
        raise BookError("no-text", "no chapter has any text to embed")
    if _state.get("sparse"):
        add_sparse_terms(out.chunks)
    if strategy == "hierarchical":
        out.chunks += parent_chunks(chapters, out.chunks, chunker, reserved)
    out.token_ids = chunk_inputs(chunker, out.chunks, template, title)


def add_sparse_terms(chunks: list[Chunk]) -> None:
    """Each chunk's BM25 terms, here in a book worker: in the store's owner process they would
    be one process's work for every chunk of a GPU-speed run."""
    from alexandria.store.sparse import term_weights

    weights = term_weights()
    for c in chunks:
        v = weights.document(c.text)
        c.sparse = (list(v.indices), list(v.values))


def document_text(template: object, title: str, text: str) -> str:
    return str(template).format(title=title, text=text) if template else text


def chunk_texts(book: PreparedBook, start: int, end: int, template: object, max_seq_length: int
                ) -> list[str]:
    """What an embedding server reads for chunks [start, end): the texts chunk_inputs tokenizes,
    prompt included (a parent cut to the same prefix)."""
    prefix = max_seq_length * 16
    return [document_text(template, book.prompt_title,
                          c.text[:prefix] if c.kind == "parent" else c.text)
            for c in book.chunks[start:end]]


def chunk_inputs(chunker: Chunker, chunks: list[Chunk], template: object, title: str
                 ) -> list[np.ndarray]:
    """Model inputs per chunk; a parent's text is cut to a prefix first (the model is cut anyway).

    A chunk whose tokens in its chapter are what its text gives alone (Chunk.ids) is not
    tokenized again (after a document prompt's own tokens where Chunker.prompt_ids allows it);
    two of them per book are, and compared, so that a tokenizer this reasoning does not fit
    costs speed, never other vectors.
    """
    head = None
    if template:
        head = chunker.prompt_ids(document_text(template, title, ""))
    reused = ([] if template and head is None
              else [i for i, c in enumerate(chunks) if c.ids is not None])
    out: list[np.ndarray | None] = [None] * len(chunks)
    for i in reused:
        ids = chunks[i].ids if head is None else np.concatenate((head, chunks[i].ids))
        out[i] = chunker.with_specials(ids)
    later = [i for i in reused if chunks[i].char_start > 0]
    checked = {later[len(later) // 2], later[-1]} if later else set()
    if any(not np.array_equal(
            out[i], model_inputs(chunker, [document_text(template, title, chunks[i].text)])[0])
           for i in checked):
        out = [None] * len(chunks)
    for c in chunks:
        c.ids = None  # not sent back to the main process: token_ids carry them
    todo = [i for i, ids in enumerate(out) if ids is None]
    prefix = chunker.max_seq_length * 16
    texts = [chunks[i].text[:prefix] if chunks[i].kind == "parent" else chunks[i].text
             for i in todo]
    for i, ids in zip(todo, model_inputs(chunker, [document_text(template, title, t)
                                                   for t in texts]), strict=True):
        out[i] = ids
    return out  # type: ignore[return-value]


def complete_semantic(books: list[PreparedBook], chunker: Chunker, template: str | None, embedder,
                      token_budget: int, max_batch: int, should_stop=None) -> bool:
    """Main process: embed the sentences of these books together, then break them into chunks.

    False when stopped before the embeddings were done (nothing is changed then).
    """
    todo = [b for b in books if b.sentences is not None]
    if not todo:
        return True
    vectors = embed_plans([b.sentences for b in todo], embedder, token_budget, max_batch,
                          should_stop)
    if vectors is None:
        return False
    s = chunker.settings
    for book, v in zip(todo, vectors, strict=True):
        limit = book_capacity(chunker, template, book.prompt_title)
        book.chunks = chunks_from_plan(book.sentences, v, s.threshold, s.min_tokens, limit)
        book.token_ids = chunk_inputs(chunker, book.chunks, template, book.prompt_title)
        counts = (chunker.count_tokens([c.text for c in book.chunks]) if template
                  else [len(ids) for ids in book.token_ids])
        for c, n in zip(book.chunks, counts, strict=True):
            c.tokens = n  # exact, as the structural chunker counts (special tokens included)
        book.sentences = None
    return True


def book_capacity(chunker: Chunker, template: str | None, title: str) -> int:
    """Chunk token limit for one book: the model's window less the document prompt's tokens."""
    reserved = 0
    if template:
        prompt = str(template).format(title=title, text="")
        reserved = len(chunker.tokenizer.encode(prompt, add_special_tokens=False).ids)
    return chunker.capacity(reserved)


def model_inputs(chunker: Chunker, texts: list[str]) -> list[np.ndarray]:
    return [chunker.fit(np.asarray(enc.ids, dtype=np.int32))
            for enc in chunker.tokenizer.encode_batch(texts, add_special_tokens=True)]
