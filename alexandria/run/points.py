"""Vectors to points: each embedded group's rows become point blocks, a book's in row order.

A big book comes back in parts, from several devices, in any order; its points are written in
row order and in blocks of the upsert batch from its first row (see grouping.parts_of), and the
book is finished (flushed, counted, marked done) once its last row is queued for the writer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from alexandria.run.control import Failures
from alexandria.run.feed import Embedded
from alexandria.run.grouping import Part
from alexandria.run.plan import Planned
from alexandria.run.prepare import PreparedBook
from alexandria.run.report import BookResult, path_text, warnings_text
from alexandria.sources.pages import page_range
from alexandria.store.base import UPSERT_BATCH, PointBlock, parent_point_id

log = logging.getLogger("alexandria")


@dataclass
class BookInWriting:
    """A book whose parts are coming back from the devices."""

    planned: Planned
    prepared: PreparedBook
    base: dict[str, Any]  # the payload its points share: one ingested_at for all its parts
    fields: dict[str, Any]  # its manifest row
    next_row: int = 0  # rows before this one are queued for the writer
    embed_s: float = 0.0  # its share of the device time of the groups it was in
    waiting: dict[int, tuple[Part, Any]] = field(default_factory=dict)  # back early, by first row


class PointsAssembler:
    """Turns embedded groups into the writer's operations: "begin" a book, its "points" blocks in
    row order, "finish" it. `submit(op, *args)` receives them (the writer's queue in a run)."""

    def __init__(self, by_key: dict[str, Planned], row_fields: Callable[[Planned], dict[str, Any]],
                 model_name: str, hierarchical: bool, submit: Callable[..., None],
                 vram_peak_mb: Callable[[], float | None] = lambda: None,
                 upsert_batch: int = UPSERT_BATCH) -> None:
        self.by_key = by_key
        self.row_fields = row_fields
        self.model_name = model_name
        self.hierarchical = hierarchical
        self.submit = submit
        self.vram_peak_mb = vram_peak_mb
        self.upsert_batch = upsert_batch
        self.writing: dict[str, BookInWriting] = {}  # books with parts back, not yet finished

    def add(self, embedded: Embedded) -> None:
        """Queue the points of each part of an embedded group; finish the books it completes."""
        vectors = embedded.vectors
        assert vectors is not None
        total_tokens = embedded.group.tokens or 1
        row = 0
        for part in embedded.group.parts:
            prepared: PreparedBook = part.book
            n = part.end - part.start
            book = self.writing.get(prepared.book_key)
            if book is None:
                book = self.writing[prepared.book_key] = self._begin(prepared)
            book.embed_s += embedded.seconds * part.tokens / total_tokens
            book.waiting[part.start] = (part, vectors[row:row + n])
            row += n
            while book.next_row in book.waiting:  # this part, and any that came back before it
                ready, rows = book.waiting.pop(book.next_row)
                self._points(book, ready, rows)
                book.next_row = ready.end
            if book.next_row == len(prepared.chunks):
                del self.writing[prepared.book_key]
                self._finish(book)

    def _begin(self, prepared: PreparedBook) -> BookInWriting:
        p = self.by_key[prepared.book_key]
        b = p.book
        if b.calibre_id is None:  # a plain file: the EPUB's own metadata is all there is
            b.title = prepared.title or b.title
            b.authors = prepared.authors or b.authors
            b.languages = [prepared.language] if prepared.language else b.languages
        fields = self.row_fields(p)
        fields["content_hash"] = prepared.content_hash
        fields["meta_hash"] = b.metadata_hash()
        self.submit("begin", b, fields)
        base = b.metadata()
        base.update(model=self.model_name,
                    ingested_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return BookInWriting(p, prepared, base, fields)

    def _points(self, book: BookInWriting, part: Part, vectors: Any) -> None:
        prepared, key = book.prepared, book.planned.book.key
        fields_of: list[dict[str, Any]] = []
        chunks = prepared.chunks[part.start:part.end]
        sparse = [c.sparse for c in chunks] if any(c.sparse is not None for c in chunks) else None
        for chunk in chunks:
            parent = chunk.kind == "parent"
            own = {"text": chunk.text, "chapter": chunk.chapter,
                   "chapter_index": chunk.chapter_index,
                   "chunk_index": None if parent else chunk.index,
                   "char_start": chunk.char_start, "char_end": chunk.char_end,
                   "tokens": chunk.tokens, "kind": chunk.kind}
            if self.hierarchical and not parent:
                own["parent_id"] = parent_point_id(key, chunk.chapter_index)
            if prepared.pages:  # PDF: the pages this chunk's text is on
                span = page_range(prepared.pages, chunk.chapter_index, chunk.char_start,
                                  chunk.char_end)
                if span:
                    own.update(page_start=span[0], page_end=span[1])
            fields_of.append(own)
        batch = self.upsert_batch
        for start in range(0, len(fields_of), batch):
            end = start + batch
            self.submit("points", PointBlock(book.base, fields_of[start:end], vectors[start:end],
                                             sparse[start:end] if sparse else None))

    def _finish(self, book: BookInWriting) -> None:
        p, prepared, fields = book.planned, book.prepared, book.fields
        b = p.book
        seconds = prepared.seconds + book.embed_s
        result = BookResult(b.key, b.title, path_text(b.path), "done", None,
                            len(prepared.chunks), prepared.tokens, seconds)
        fields.update(
            chunks=len(prepared.chunks), tokens=prepared.tokens, seconds=seconds,
            chunks_per_min=60 * len(prepared.chunks) / seconds if seconds else None,
            tokens_per_s=prepared.tokens / seconds if seconds else None,
            vram_peak_mb=self.vram_peak_mb(), reason=None,
            warnings=warnings_text(prepared.warnings, ""),
        )
        self.submit("finish", b, result, fields, list(p.replaces))


class PointsThread(threading.Thread):
    """Writes each group's points as soon as its vectors are back, off the main thread, which
    keeps feeding the devices meanwhile (when the main thread queued points for a busy writer,
    the GPU stood idle)."""

    def __init__(self, done: queue.Queue, assembler: PointsAssembler, failures: Failures,
                 written: Callable[[], None], first_vectors: Callable[[], None],
                 before_group: Callable[[], None] = lambda: None) -> None:
        super().__init__(name="alexandria-points", daemon=True)
        self.done, self.assembler, self.failures = done, assembler, failures
        self.written = written  # frees the group's slot (Devices.written)
        self.first_vectors = first_vectors  # once: a compiled model's graphs exist now
        self.before_group = before_group  # samples the device's memory
        self.seconds = 0.0
        self.last_vectors: float | None = None  # when the last vectors came back: the run's tail

    def close(self) -> None:
        """Write what is back, then stop (after the devices have stopped)."""
        self.done.put(None)
        self.join()

    def run(self) -> None:
        while (embedded := self.done.get()) is not None:
            try:
                if not self.failures:  # after a failure: only drained, the run is failing
                    self._write(embedded)
            except BaseException as e:  # the main thread raises it
                self.failures.put(e)
            self.written()  # a device's error comes without a group, and frees a slot too

    def _write(self, embedded: Embedded) -> None:
        if self.last_vectors is None:
            self.first_vectors()
        self.last_vectors = time.perf_counter()
        if embedded.error is not None:
            raise embedded.error
        if embedded.vectors is None:  # stopped: nothing of it was written, the next run does it
            log.info("abandoned %d book(s) mid-embedding; the next run does them",
                     len({id(part.book) for part in embedded.group.parts}))
            return
        started = time.perf_counter()
        self.before_group()
        self.assembler.add(embedded)
        self.seconds += time.perf_counter() - started
