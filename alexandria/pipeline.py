"""The run: plan what changed, prepare books in worker processes, embed, write, record.

Data flows one way: library -> plan -> prepare (worker processes) -> groups (this thread) ->
embed (one thread per device, alexandria.feed) -> points (a thread of their own) -> writer thread
(store + manifest). Only the writer thread changes the store or the manifest during a run, in the
order the operations were queued, which is what makes a kill at any instant recoverable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from . import library
from .chunk import DEFAULT_MIN_TOKENS, STRATEGIES, ChunkSettings
from .errors import RunFailure, UsageError
from .feed import Embedded, Feeder, Group, Part, parts_of, put_unless_failed
from .gcwatch import GcWatch
from .library import Book
from .manifest import Manifest
from .models import ModelSpec, resolve_model
from .orphan import child_context
from .pages import page_range
from .paths import resolve_library_path
from .prepare import (
    PartTask,
    PreparedBook,
    PrepareTask,
    init_worker,
    merge_parts,
    prepare,
    prepare_part,
    split_chapters,
)
from .store import PointBlock, StoreError, VectorStore, open_store, parent_point_id
from .store_process import StoreProcess

log = logging.getLogger("alexandria")

UPSERT_BATCH = 512
# On a GPU, batches of 4 x 96 x 512 tokens beat 96 x 512 by 28% for bge-m3 on an H100 (the
# kernels get big enough to fill the card); scripts/gpu_variants.py measures it.
GPU_BUDGET_FACTOR = 4
GROUP_BUDGETS = 4  # token budgets per encode call: length sorting over several batches
WAIT_S = 0.02  # the main thread looks for prepared books this often (and for the points thread's error)
# Groups given to the devices whose points are not yet queued for the writer, per device: 3 are
# on the device's side (its inbox of 2, 1 running); the rest let the store fall behind for a while.
MAX_UNWRITTEN_GROUPS = 8
# Niceness of the workers that prepare books for a GPU. They keep every core busy (14 on a
# 16-core H200 host, each with tokenizer threads), and a device thread that loses its core in the
# middle of a forward leaves the GPU waiting for the next kernel.
PREP_NICE = 10
HASH_THREADS = 8  # files hashed at once by a run's plan (alexandria.pipeline._hash_all)
# A book with more text than this (characters; ~120k tokens, about a second of one core) is
# chunked by several workers at once, in parts of about this much text (at most one per worker).
PART_CHARS = 500_000


@dataclass
class IngestOptions:
    directory: Path | None = None
    files: tuple[Path, ...] = ()
    model: str = "bge-m3"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 96
    chunk_tokens: int = 512
    overlap: int = 64
    store: Path = Path("data/qdrant")
    qdrant_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or reported
    qdrant_timeout: float = 60.0  # seconds per server request
    qdrant_retries: int = 5  # retries of a transient server failure, with exponential backoff
    grpc: bool = True  # gRPC to the server when it offers it (faster uploads)
    bulk_load: bool = True  # a run that creates a server collection defers HNSW to the end
    collection: str | None = None
    manifest: Path | None = None
    formats: tuple[str, ...] = ("epub",)
    dry_run: bool = False
    force: bool = False
    workers: int | None = None
    samples: int = 3
    token_budget: int | None = None  # tokens per model batch; default batch_size x chunk_tokens (x4 on GPU)
    compile: str = "auto"  # torch.compile the model: auto (on CUDA), on, off
    packing: str = "auto"  # unpadded batches (alexandria.packed): auto (CUDA), on, off
    store_process: bool = True  # Qdrant Edge in a child process (its point building holds the GIL)
    gpus: str | None = None  # "all" or N: one embedding device per GPU (else --device a,b)
    max_vram_gb: float | None = None  # caps the token budget so the card stays under this
    prune: bool = True
    limit: int | None = None
    since: datetime | None = None
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    book_ids: tuple[int, ...] = ()
    chunker: str = "structural"  # structural | semantic | hierarchical (alexandria/chunk.py)
    threshold: float | None = None  # semantic: similarity below which to break; None = auto
    min_tokens: int = DEFAULT_MIN_TOKENS  # semantic: no topic break in a chunk shorter than this

    def chunk_settings(self) -> ChunkSettings:
        return ChunkSettings(chunk_tokens=self.chunk_tokens, overlap=self.overlap,
                             strategy=self.chunker, threshold=self.threshold,
                             min_tokens=self.min_tokens)


COMPILE_MIN_BOOKS = 200  # --compile auto: runs with at least this many books to embed


def default_token_budget(opts: IngestOptions, max_seq_length: int, device: str) -> int:
    if opts.token_budget:
        return opts.token_budget
    budget = opts.batch_size * min(opts.chunk_tokens, max_seq_length)
    return budget * GPU_BUDGET_FACTOR if device.startswith("cuda") else budget


def default_workers(device: str) -> int:
    """On a GPU box every spare core prepares books (the GPU eats them faster than one core
    can parse); on the CPU the model needs the cores itself."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    if device.startswith("cuda"):
        return max(1, min(32, cores - 2))
    return max(1, min(4, cores - 1))


def start_order(planned: list[Planned]) -> list[Planned]:
    """Smallest, largest, next smallest, next largest...: a small book reaches the GPU within
    seconds of the start, and the largest books are not the last ones still being parsed
    (one 4 MB diary takes a core 15 s) while the GPU waits at the end."""
    by_size = sorted(planned, key=lambda p: p.book.size or 0)
    out: list[Planned] = []
    lo, hi = 0, len(by_size) - 1
    while lo <= hi:
        out.append(by_size[lo])
        if hi != lo:
            out.append(by_size[hi])
        lo, hi = lo + 1, hi - 1
    return out


def default_collection(spec: ModelSpec, chunker: str = "structural") -> str:
    """One collection per model and chunking strategy: strategies never mix in one collection
    (structural keeps the plain name, so existing stores stay where they are)."""
    check_chunker(chunker)
    suffix = "" if chunker == "structural" else f"_{chunker}"
    return f"alexandria_{spec.slug}{suffix}"


def check_chunker(chunker: str) -> None:
    if chunker not in STRATEGIES:
        raise UsageError(f"--chunker must be one of {', '.join(STRATEGIES)}, not {chunker!r}.")


def manifest_path(store: Path, manifest: Path | None) -> Path:
    return Path(manifest) if manifest else Path(store).expanduser() / "manifest.sqlite"


@dataclass
class BookResult:
    book_key: str
    title: str
    path: str | None
    status: str  # done | skipped | failed | unchanged | metadata
    reason: str | None = None
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class RunReport:
    books_total: int = 0
    books_done: int = 0
    books_skipped: int = 0
    books_failed: int = 0
    books_unchanged: int = 0
    books_metadata_updated: int = 0
    books_removed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    chunks: int = 0
    tokens: int = 0
    elapsed_s: float = 0.0
    chunks_per_min: float = 0.0
    tokens_per_s: float = 0.0
    vram_peak_mb: float | None = None
    vram_peak_nvml_mb: float | None = None
    device: str = ""
    model: str = ""
    dtype: str = ""
    packed: bool = False  # batches without pad tokens (--packing)
    collection: str = ""
    store: str = ""
    manifest: str = ""
    dry_run: bool = False
    interrupted: str | None = None
    stages_s: dict[str, float] = field(default_factory=dict)
    books: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.books_failed else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, result: BookResult) -> None:
        self.books.append(asdict(result))
        if result.status == "done":
            self.books_done += 1
            self.chunks += result.chunks
            self.tokens += result.tokens
        elif result.status == "failed":
            self.books_failed += 1
            self.failures.append(
                {"book": result.title, "path": result.path, "reason": result.reason}
            )
        elif result.status == "metadata":
            self.books_metadata_updated += 1
            self.books_skipped += 1
        elif result.status == "removed":
            self.books_removed += 1
        else:  # skipped by the library (no-epub) or unchanged since the last run
            self.books_skipped += 1
            if result.status == "unchanged":
                self.books_unchanged += 1


class StopRequested:
    """Set by signal handlers: finish what is queued, start nothing new."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: str | None = None

    def set(self, name: str) -> None:
        self.signal_name = name
        self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()


# -- gathering and planning ------------------------------------------------------------------------


def gather_books(opts: IngestOptions) -> tuple[list[Book], list[Book]]:
    """(the books this run works on, every book the library has): pruning needs the latter."""
    everything: list[Book] = []
    if opts.directory is not None:
        opts.directory = resolve_library_path(opts.directory)  # //server/share -> its mount
        everything.extend(library.scan(opts.directory, opts.formats))
    selected = select(everything, opts)
    for f in opts.files:
        path = Path(f).expanduser()
        if not path.exists():
            raise UsageError(f"The file {path} does not exist.")
        selected.append(library.book_from_file(path))
    if opts.directory is None and not opts.files:
        raise UsageError("Nothing to ingest: give --directory PATH or --file PATH.")
    return selected, everything


def select(books: list[Book], opts: IngestOptions) -> list[Book]:
    """--book-id, --author, --tag, --since, --limit: try a slice of a big library first."""
    out = list(books)
    if opts.book_ids:
        wanted = set(opts.book_ids)
        out = [b for b in out if b.calibre_id in wanted]
    if opts.authors:
        names = {a.casefold() for a in opts.authors}
        out = [b for b in out if names & {a.casefold() for a in b.authors}]
    if opts.tags:
        tags = {t.casefold() for t in opts.tags}
        out = [b for b in out if tags & {t.casefold() for t in b.tags}]
    if opts.since is not None:
        since = opts.since if opts.since.tzinfo else opts.since.replace(tzinfo=timezone.utc)
        out = [b for b in out if (b.changed_at() or since) >= since]
    if opts.limit is not None:
        out = out[: opts.limit]
    return out


def prune_candidates(opts: IngestOptions, planned: list[Planned], rows: dict,
                     everything: list[Book]) -> list[tuple[str, str]]:
    """Books the store has but the library no longer does: (key, why) to delete."""
    if opts.directory is None:
        return []  # --file runs never prune
    root = Path(opts.directory).expanduser().resolve()
    in_library = {b.key for b in everything if b.calibre_id is not None}
    missing = {b.key for b in everything if b.fail_reason == "file-missing" and b.calibre_id}
    superseded = {k for p in planned for k in p.replaces}
    out = []
    for row in rows.values():
        if row.status == "removed" or row.book_key in superseded:
            continue
        if row.calibre_id is not None:
            if row.book_key in missing and row.stored_points:
                out.append((row.book_key, "file-missing"))
            elif in_library and row.book_key not in in_library:
                out.append((row.book_key, "removed-from-library"))
        elif row.source_path and _under(Path(row.source_path), root):
            if not Path(row.source_path).exists():
                out.append((row.book_key, "file-gone"))
    if out and not everything and library_gone(root):
        # An unmounted share leaves an empty mount point: that is not "every book was deleted".
        raise RunFailure(
            f"The library folder {root} is empty or gone, but the manifest lists {len(out)} books "
            "from it (is the share mounted?); nothing was removed (use --no-prune to go on).")
    return out


def library_gone(root: Path) -> bool:
    """The library folder vanished or is an empty mount point (a share that was unmounted)."""
    try:
        return not root.is_dir() or not any(root.iterdir())
    except OSError:
        return True


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except ValueError:
        return False


@dataclass
class Planned:
    book: Book
    action: str  # ingest | unchanged | metadata | skip | fail
    reason: str | None = None
    content_hash: str | None = None
    replaces: list[str] = field(default_factory=list)  # keys of older versions at the same path


def plan(
    books: list[Book], rows: dict, chunker: str, model: str, force: bool
) -> list[Planned]:
    """Decide per book from one stat each; hash only files whose size or mtime moved."""
    by_path = {r.source_path: r for r in rows.values() if r.source_path and r.calibre_id is None}
    hashes = _hash_all([b for b in books if not (b.fail_reason or b.skip_reason or b.key)
                        and _known_hash(b, by_path) is None])
    planned: list[Planned] = []
    seen: set[str] = set()
    for book in books:
        if book.fail_reason:
            book.key = book.key or f"path:{book.path}"
            planned.append(Planned(book, "fail", book.fail_reason))
            continue
        if book.skip_reason:
            book.key = book.key or f"path:{book.path}"
            planned.append(Planned(book, "skip", book.skip_reason))
            continue
        content_hash = None
        if not book.key:  # a plain file: its key is its content hash, cached by path+size+mtime
            content_hash = _known_hash(book, by_path) or hashes[id(book)]
            if content_hash is None:
                book.key = f"path:{book.path}"
                planned.append(Planned(book, "fail", "file-missing"))
                continue
            book.key = f"sha256:{content_hash[:32]}"
        if book.key in seen:  # the same file twice (two --file flags, or a copy in the folder)
            continue
        seen.add(book.key)
        row = rows.get(book.key)
        replaces = []
        if book.calibre_id is None:
            old = by_path.get(str(book.path))
            if old is not None and old.book_key != book.key and old.status != "removed":
                replaces.append(old.book_key)
        if force or row is None or row.status != "done":
            planned.append(Planned(book, "ingest", content_hash=content_hash, replaces=replaces))
            continue
        if row.chunker != chunker or row.model != model:
            planned.append(Planned(book, "ingest", content_hash=content_hash, replaces=replaces))
            continue
        if (row.size, row.mtime_ns) != (book.size, book.mtime_ns):
            content_hash = content_hash or _hash_or_none(book)
            if content_hash != row.content_hash:
                planned.append(Planned(book, "ingest", content_hash=content_hash))
                continue
        # Plain files carry no library metadata: their title and authors come from the EPUB,
        # which is unchanged here, so only calibre books can have metadata-only edits.
        edited = book.calibre_id is not None and row.meta_hash != book.metadata_hash()
        action = "metadata" if edited else "unchanged"
        planned.append(Planned(book, action, content_hash=content_hash or row.content_hash))
    return planned


def _known_hash(book: Book, by_path: dict) -> str | None:
    """The manifest's hash of a plain file whose size and mtime have not moved."""
    old = by_path.get(str(book.path))
    if old and (old.size, old.mtime_ns) == (book.size, book.mtime_ns) and old.content_hash:
        return old.content_hash
    return None


def _hash_all(books: list[Book]) -> dict[int, str | None]:
    """A first run over a plain folder hashes every file before anything else can start:
    hashlib lets go of the GIL, so threads read and hash several at once (and hide a NAS's
    latency)."""
    if len(books) < 2:
        return {id(b): _hash_or_none(b) for b in books}
    with ThreadPoolExecutor(min(HASH_THREADS, len(books))) as pool:
        return dict(zip(map(id, books), pool.map(_hash_or_none, books), strict=True))


def _hash_or_none(book: Book) -> str | None:
    try:
        return library.file_hash(book.path)  # type: ignore[arg-type]
    except OSError:
        return None


@dataclass
class _Writing:
    """A book whose parts are coming back from the devices."""

    planned: Planned
    prepared: PreparedBook
    base: dict[str, Any]  # the payload its points share: one ingested_at for all its parts
    fields: dict[str, Any]  # its manifest row
    next_row: int = 0  # rows before this one are queued for the writer
    embed_s: float = 0.0  # its share of the device time of the groups it was in
    waiting: dict[int, tuple[Part, Any]] = field(default_factory=dict)  # back early, by first row


class Preparing:
    """Books in the worker processes, a window of them at a time, smallest and largest first
    (start_order). It starts as soon as the plan is known, and its workers start on a thread of
    their own (each one a fork server request; the first starts the fork server), so the first
    books are parsed while the model loads and the store opens.
    """

    def __init__(self, to_ingest: list[Planned], workers: int, initargs: tuple) -> None:
        self.by_key = {p.book.key: p for p in to_ingest}
        self._queue = deque(p for p in start_order(to_ingest))
        self._max_parts = workers = max(1, workers)
        self._window = 2 * min(workers, len(to_ingest))
        self._inflight: dict[Future, str] = {}
        # big books whose parts are out: key -> (the extracted book, its parts so far)
        self._split: dict[str, tuple[PreparedBook, list[PreparedBook | None]]] = {}
        # A fork server's pool starts a worker only when no idle one can take a task: a nightly
        # run of 3 books starts 3, more only for a big book's parts (a one-book test run too).
        self._pool = ProcessPoolExecutor(workers, mp_context=child_context(),
                                         initializer=init_worker, initargs=initargs)
        self._start_error: BaseException | None = None
        self._starting = threading.Thread(target=self._start, name="alexandria-prepare-start",
                                          daemon=True)
        self._starting.start()

    def _start(self) -> None:
        try:
            self._fill()
        except BaseException as e:  # raised by wait(), on the main thread
            self._start_error = e

    def _fill(self) -> None:
        while self._queue and len(self._inflight) < self._window:
            p = self._queue.popleft()
            b = p.book
            task = PrepareTask(b.key, str(b.path), b.fmt or "epub", b.title,
                               max_parts=self._max_parts, part_chars=PART_CHARS)
            self._inflight[self._pool.submit(prepare, task)] = b.key

    def _started(self) -> None:
        """Wait for the first window to be handed out: until then a book is in neither the queue
        nor the futures (a run of one book once ended here as if it had none left)."""
        self._starting.join()
        if self._start_error is not None:
            raise self._start_error

    def wait(self, timeout: float) -> list[PreparedBook]:
        """The books finished within `timeout` seconds (maybe none); more are started in their place."""
        self._started()
        self._fill()
        done, _ = wait(list(self._inflight), timeout=timeout, return_when=FIRST_COMPLETED)
        ready = []
        for f in done:
            self._inflight.pop(f)
            result = f.result()
            if result.part is not None:
                head, parts = self._split[result.book_key]
                parts[result.part] = result
                if all(part is not None for part in parts):
                    del self._split[result.book_key]
                    ready.append(merge_parts(head, parts))  # type: ignore[arg-type]
            elif result.parts:
                self._start_parts(result)
            else:
                ready.append(result)
        self._fill()
        return ready

    def _start_parts(self, head: PreparedBook) -> None:
        """A big book's chapter groups go to the pool at once. They count in the window, so no
        more books are started until they are taken: only the books already handed out run
        before them."""
        groups = split_chapters(head.chapters or [], head.parts)
        self._split[head.book_key] = (head, [None] * len(groups))
        for number, chapters in enumerate(groups):
            task = PartTask(head.book_key, number, chapters, head.prompt_title)
            future = self._pool.submit(prepare_part, task)
            self._inflight[future] = head.book_key
        head.chapters = None

    @property
    def all_started(self) -> bool:
        """Every book is in a worker or done: what is left of the run is its last few books."""
        self._started()
        return not self._queue

    def __bool__(self) -> bool:
        self._started()
        return bool(self._queue or self._inflight)

    def close(self) -> None:
        """Idempotent; the workers finish their current book and exit on their own."""
        self._starting.join()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def abandon(self) -> None:
        """A failed run: the books in the workers are of no use now, so the workers go at once
        (a wrong --collection found after they started must not wait for a diary to be parsed)."""
        self._starting.join()
        terminate = getattr(self._pool, "terminate_workers", None)  # Python 3.14
        if terminate is not None:
            terminate()
            return
        workers = list((getattr(self._pool, "_processes", None) or {}).values())  # before close()
        self.close()
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.terminate()


# -- the writer thread ---------------------------------------------------------------------------


class Writer(threading.Thread):
    """Owns the store and the manifest for the run; applies operations strictly in queue order."""

    def __init__(
        self, store: VectorStore, manifest_file: Path, collection: str, on_result
    ) -> None:
        super().__init__(name="alexandria-writer", daemon=True)
        self.store = store
        self.manifest_file = manifest_file
        self.collection = collection
        self.on_result = on_result
        self.queue: queue.Queue = queue.Queue(maxsize=32)
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.waited_s = 0.0

    def submit(self, *op: Any) -> None:
        started = time.perf_counter()
        put_unless_failed(self.queue, op, lambda: self.error)
        self.waited_s += time.perf_counter() - started  # the queue was full: the writer is behind

    def close(self) -> None:
        self.submit("stop")
        self.join()
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        manifest = Manifest(self.manifest_file, check=False)  # the run checked it already
        try:
            while True:
                op = self.queue.get()
                if op[0] == "stop":
                    return
                started = time.perf_counter()
                getattr(self, f"_{op[0]}")(manifest, *op[1:])
                self.seconds += time.perf_counter() - started
        except BaseException as e:  # surfaced to the main thread at its next submit()
            self.error = e
            # Drain so the producer never blocks on a dead consumer.
            while True:
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
        finally:
            manifest.close()

    def _begin(self, m: Manifest, book: Book, fields: dict) -> None:
        # in-progress is committed before the first point is touched: a kill from here on
        # makes the next run delete this book's points and redo it.
        m.upsert(self.collection, book.key, **{**fields, "status": "in-progress", "reason": None,
                                               "stored_points": 0})
        self.store.delete_book(book.key)

    def _points(self, m: Manifest, block: PointBlock) -> None:
        self.store.upsert_block(block)

    def _finish(self, m: Manifest, book: Book, result: BookResult, fields: dict, replaces) -> None:
        self.store.flush()
        stored = self.store.count_book(book.key)
        if stored != result.chunks:
            self.store.delete_book(book.key)
            self.store.flush()
            result.status, result.reason = "failed", "store-mismatch"
            m.upsert(self.collection, book.key, status="failed", reason="store-mismatch",
                     stored_points=0)
        else:
            m.upsert(self.collection, book.key, **{**fields, "status": "done",
                                                   "stored_points": stored})
            for old in replaces:  # an older version of this file, now superseded
                self.store.delete_book(old)
                self.store.flush()
                m.upsert(self.collection, old, status="removed", stored_points=0,
                         reason="replaced")
        self.on_result(result)

    def _remove(self, m: Manifest, book_key: str, why: str) -> None:
        """The library no longer has this book (or its file): the store must not either."""
        self.store.delete_book(book_key)
        self.store.flush()
        row = m.get(self.collection, book_key)
        if why == "file-missing":  # the book is still in calibre: it stays a visible failure
            m.upsert(self.collection, book_key, status="failed", reason=why, stored_points=0)
        else:
            m.upsert(self.collection, book_key, status="removed", reason=why, stored_points=0)
            title = row.title if row else book_key
            self.on_result(BookResult(book_key, title or book_key, row.source_path if row else None,
                                      "removed", why))

    def _record(self, m: Manifest, book: Book, result: BookResult, fields: dict) -> None:
        m.upsert(self.collection, book.key, **fields)
        self.on_result(result)

    def _metadata(self, m: Manifest, book: Book, result: BookResult, fields: dict) -> None:
        self.store.set_book_payload(book.key, book.metadata())
        self.store.flush()
        m.upsert(self.collection, book.key, **fields)
        self.on_result(result)


# -- the run -------------------------------------------------------------------------------------


class Ingest:
    """One run. Construct, then call run(); the CLI is a thin layer over this."""

    def __init__(self, opts: IngestOptions, stop: StopRequested | None = None, progress=None):
        self.opts = opts
        self.stop = stop if stop is not None else StopRequested()
        self.progress = progress  # callable(BookResult) or None
        self.spec = resolve_model(opts.model)
        self.collection = opts.collection or default_collection(self.spec, opts.chunker)
        self.report = RunReport(collection=self.collection, model=self.spec.name)
        self._lock = threading.Lock()
        self.stage = {"plan": 0.0, "prepare_wait": 0.0, "embed": 0.0, "device_wait": 0.0,
                      "points_wait": 0.0, "points": 0.0, "write": 0.0}
        self._embedders: list = []  # one per embedding device
        self._feeders: list[Feeder] = []  # one thread per device (alexandria.feed)
        self._embedded: queue.Queue = queue.Queue()  # groups whose vectors are back
        # a slot per group given to a device whose points are not yet queued for the writer
        # (sized to MAX_UNWRITTEN_GROUPS per device once the devices are known)
        self._unwritten: queue.Queue = queue.Queue()
        self._points_error: BaseException | None = None
        self._semantic_s = 0.0  # semantic chunking's sentence embedding, part of "embed"
        self._started = 0.0
        self._group: list[Part] = []  # parts waiting to fill the next group (see _embed_and_write)
        self._preparing: Preparing | None = None  # the books in the worker processes
        self._first_group: float | None = None  # the start-up and the tail of the run are stages too
        self._last_vectors: float | None = None
        self._writing: dict[str, _Writing] = {}  # books with parts back, not yet finished
        self._gc = GcWatch()

    # The writer calls this from its thread.
    def _on_result(self, result: BookResult) -> None:
        with self._lock:
            self.report.add(result)
        if result.status == "done":
            log.info(
                "done     %s (%d chunks, %d tokens, %.1fs)",
                result.title, result.chunks, result.tokens, result.seconds,
            )
        elif result.status == "failed":
            log.warning("failed   %s: %s", result.title, result.reason)
        elif result.status == "metadata":
            log.info("metadata %s: payloads updated in place", result.title)
        if self.progress:
            self.progress(result)

    def run(self) -> RunReport:
        started = self._started = time.perf_counter()
        opts = self.opts
        if opts.batch_size < 1:
            raise UsageError("--batch-size must be at least 1.")
        if opts.overlap >= opts.chunk_tokens:
            raise UsageError("--overlap must be smaller than --chunk-tokens.")
        check_chunk_options(opts)
        books, everything = gather_books(opts)
        if opts.dry_run:
            return self._dry_run(books, started)

        from .embed import load_tokenizer_json

        t = time.perf_counter()
        self.tokenizer_json, self.max_seq_length = load_tokenizer_json(self.spec)
        fingerprint = f"{opts.chunk_settings().fingerprint()}|max={self.max_seq_length}"
        mpath = manifest_path(opts.store, opts.manifest)
        self.report.store = opts.qdrant_url or str(Path(opts.store).expanduser() / self.collection)
        self.report.manifest = str(mpath)
        manifest = Manifest(mpath)
        store: VectorStore | None = None
        preparing: Preparing | None = None
        try:
            rows = manifest.rows(self.collection)
            planned = plan(books, rows, fingerprint, self.spec.source, opts.force)
            removals = prune_candidates(opts, planned, rows, everything) if opts.prune else []
            self.stage["plan"] = time.perf_counter() - t
            self.report.books_total = len(planned)
            to_ingest = [p for p in planned if p.action == "ingest"]
            needs_model = bool(to_ingest) or bool(manifest.in_progress(self.collection))
            embedder = None
            if needs_model:  # a nightly run with nothing new never loads the model
                from .embed import get_embedder, resolve_devices

                devices = resolve_devices(opts.device, opts.gpus)
                if to_ingest:  # the first books are parsed while the model loads and the store opens
                    preparing = self._start_preparing(to_ingest, devices[0])
                # Several GPUs: one embedder each, fed in turn from the same extraction pool.
                self._embedders = [get_embedder(self.spec, d, opts.dtype) for d in devices]
                embedder = self._embedders[0]
                self.report.device = ",".join(e.device for e in self._embedders)
                self.report.dtype = embedder.dtype
                for e in {id(e): e for e in self._embedders}.values():
                    self._tune_embedder(e, len(to_ingest))
                self.report.packed = embedder.packed
            store = self._open_store(embedder)
            vram = VramMeter(embedder.device if embedder else "cpu")
            if store is None:  # no collection yet and nothing to write into one
                for p in planned:
                    self._on_result(BookResult(p.book.key, p.book.title, _str(p.book.path),
                                               "failed" if p.action == "fail" else "skipped",
                                               p.reason))
                self._finish_report(started, vram)
                return self.report
            self._recover(manifest, store)
            run_id = manifest.start_run(self.collection)
            writer = Writer(store, mpath, self.collection, self._on_result)
            writer.start()
            try:
                for key, why in removals:
                    writer.submit("remove", key, why)
                with self._gc:
                    self._execute(planned, preparing, writer, embedder, fingerprint, run_id, vram)
            finally:
                if writer.is_alive():
                    writer.close()
                self.stage["write"] = writer.seconds
                self.stage["write_wait"] = writer.waited_s
                self.stage["gc"] = self._gc.total_s
                self.stage["gc_longest"] = self._gc.longest_s
            if writer.error is not None:  # it died after the last submit: still the run's failure
                raise writer.error
            if isinstance(store, StoreProcess):  # where the store's own time went, to find its bound
                self.stage.update({f"store_{k}": v for k, v in store.seconds().items()})
            if not self.stop:  # a complete run: a bulk-loaded server collection is indexed now
                store.finish()
            self._finish_report(started, vram)
            outcome = "interrupted" if self.stop else ("failed" if self.report.books_failed else "ok")
            manifest.finish_run(run_id, outcome, self._summary_dict())
        except BaseException:
            if preparing is not None:
                preparing.abandon()
            raise
        finally:
            closing = time.perf_counter()
            manifest.close()
            if store is not None:
                store.close()
            if self.report.stages_s:  # the store's last flush and the shard's close
                self.report.stages_s["close"] = round(time.perf_counter() - closing, 3)
        return self.report

    def _open_store(self, embedder) -> VectorStore | None:
        opts = self.opts
        try:
            from .store import RetryPolicy

            server = {"timeout": int(opts.qdrant_timeout), "prefer_grpc": opts.grpc,
                      "retry": RetryPolicy(retries=opts.qdrant_retries),
                      "bulk_load": opts.bulk_load} if opts.qdrant_url else {}
            dimension = embedder.dimension if embedder else None
            if not opts.qdrant_url and opts.store_process:
                return cast(VectorStore, StoreProcess(Path(opts.store),
                                                      self.collection, dimension))
            return open_store(self.collection, dimension, opts.store, opts.qdrant_url, opts.api_key,
                              **server)
        except UsageError as e:
            if embedder is None and "There is no collection" in str(e):
                return None
            raise

    def _recover(self, manifest: Manifest, store: VectorStore) -> None:
        """A row left in-progress means a killed run: its points may be partial, so drop them."""
        for key in manifest.in_progress(self.collection):
            store.delete_book(key)
            store.flush()
            manifest.upsert(self.collection, key, status="pending", stored_points=0,
                            reason="interrupted")
            log.info("recovered %s from an interrupted run: its points were removed", key)

    def _row_fields(self, p: Planned, fingerprint: str, run_id: int) -> dict[str, Any]:
        b = p.book
        return {
            "calibre_id": b.calibre_id,
            "title": b.title,
            "source_path": str(b.path) if b.path else None,
            "size": b.size,
            "mtime_ns": b.mtime_ns,
            "content_hash": p.content_hash,
            "meta_hash": b.metadata_hash(),
            "model": self.spec.source,
            "chunker": fingerprint,
            "run_id": run_id,
        }

    def _start_preparing(self, to_ingest: list[Planned], device: str) -> Preparing:
        workers = self.opts.workers or default_workers(device)
        gpu = device.startswith("cuda")
        initargs = (self.tokenizer_json, self.max_seq_length, self.opts.chunk_settings(),
                    self.spec.document_template, PREP_NICE if gpu else 0)
        return Preparing(to_ingest, workers, initargs)

    def _execute(self, planned, preparing: Preparing | None, writer: Writer, embedder, fingerprint,
                 run_id, vram) -> None:
        for p in planned:
            b = p.book
            fields = self._row_fields(p, fingerprint, run_id)
            if p.action in ("skip", "fail"):
                status = "skipped" if p.action == "skip" else "failed"
                result = BookResult(b.key, b.title, _str(b.path), status, p.reason)
                fields.update(status=status, reason=p.reason)
                writer.submit("record", b, result, fields)
            elif p.action == "metadata":
                result = BookResult(b.key, b.title, _str(b.path), "metadata")
                writer.submit("metadata", b, result, {"status": "done", "meta_hash": fields["meta_hash"],
                                                      "title": b.title, "run_id": run_id})
            elif p.action != "ingest":
                result = BookResult(b.key, b.title, _str(b.path), "unchanged")
                writer.submit("record", b, result, {"status": "done", "size": b.size,
                                                    "mtime_ns": b.mtime_ns,
                                                    "source_path": fields["source_path"]})
        if preparing is None:
            return
        self._preparing = preparing
        self._start_feeders(embedder)
        self._unwritten = queue.Queue(maxsize=MAX_UNWRITTEN_GROUPS * len(self._feeders))
        points = threading.Thread(target=self._write_points, name="alexandria-points", daemon=True,
                                  args=(writer, vram, preparing.by_key, fingerprint, run_id))
        points.start()
        try:
            while preparing and not self.stop:
                if self._points_error is not None:
                    break  # raised below, once the devices are stopped
                t = time.perf_counter()
                ready = preparing.wait(WAIT_S)
                self.stage["prepare_wait"] += time.perf_counter() - t
                self._embed_and_write(ready, preparing.by_key, writer, embedder, fingerprint, run_id)
                if self._group and not self.stop and (not preparing or self._devices_hungry()):
                    self._flush_group()
            if self._group:  # stopped (or failed) before it went to a device: the next run does it
                log.info("abandoned %d book(s) before embedding; the next run does them",
                         len({id(part.book) for part in self._group}))
                self._group = []
        finally:
            # the workers exit on their own: the last groups need not wait for them
            preparing.close()
            for feeder in self._feeders:  # the last groups (their vectors come back even after a stop)
                feeder.close()
            self._embedded.put(None)
            points.join()
            self.stage["embed"] = self._semantic_s + sum(f.busy_s for f in self._feeders)
        if self._points_error is not None:
            raise self._points_error

    def _embed_and_write(self, ready: list[PreparedBook], by_key, writer, embedder, fingerprint,
                         run_id) -> None:
        good = []
        for prepared in ready:
            p: Planned = by_key[prepared.book_key]
            b = p.book
            if prepared.reason in ("file-missing", "unreadable") and self.opts.directory and \
                    library_gone(Path(self.opts.directory)):  # not the book: the whole library
                raise RunFailure(
                    f"The library folder {self.opts.directory} disappeared during the run (an "
                    "unmounted share?); the books done so far are kept and the next run resumes.")
            if prepared.reason:
                result = BookResult(b.key, b.title, _str(b.path), "failed", prepared.reason)
                fields = self._row_fields(p, fingerprint, run_id)
                fields.update(status="failed", reason=prepared.reason,
                              warnings=_warn(prepared.warnings, prepared.detail),
                              content_hash=prepared.content_hash or p.content_hash)
                writer.submit("record", b, result, fields)
            else:
                good.append(prepared)
        if good and self.opts.chunker == "semantic" and not self._semantic(good, embedder):
            log.info("abandoned %d book(s) mid-embedding; the next run does them", len(good))
            return
        # Several books share one encode call so the model sees full batches, sorted by length
        # over more chunks; a big book is cut into parts of about one group each. The group
        # fills across the books as they come, and goes to a device once full, or sooner when a
        # device is running out of work (_execute).
        limit = self._group_limit()
        tokens = sum(p.tokens for p in self._group)
        for prepared in good:
            for part in parts_of(prepared, limit, UPSERT_BATCH):
                if self.stop:
                    return
                if self._group and tokens + part.tokens > limit:
                    self._flush_group()
                    tokens = 0
                self._group.append(part)
                tokens += part.tokens

    def _group_limit(self) -> int:
        """One budget per group once every book is in a worker: the last groups then end
        together on several GPUs (a last group of four budgets kept one of two H200s busy a
        second after the other), and the run's last vectors, written after the GPU is done,
        are one budget's worth."""
        tail = self._preparing is not None and self._preparing.all_started
        return self._token_budget() * (1 if tail else GROUP_BUDGETS)

    def _devices_hungry(self) -> bool:
        """A device has less than a group's worth of work queued: better a part-filled group now
        than an idle GPU while the next books are still being prepared."""
        return min(f.queued_tokens for f in self._feeders) < self._group_limit()

    def _flush_group(self) -> None:
        group, self._group = self._group, []
        self._embed_group(group, sum(p.tokens for p in group))

    def _token_budget(self) -> int:
        return default_token_budget(self.opts, self.max_seq_length, self.report.device or "cpu")

    def _tune_embedder(self, embedder, books_to_embed: int) -> None:
        opts = self.opts
        if opts.compile not in ("auto", "on", "off"):
            raise UsageError(f"--compile must be auto, on or off, not {opts.compile!r}.")
        # Compiling takes minutes (EmbeddingGemma: ~3 on an H100): worth it for a library, not
        # for a nightly run of a few new books or a one-book test.
        big = books_to_embed >= COMPILE_MIN_BOOKS
        embedder.set_packing(opts.packing)  # before compiling: the graph is traced packed
        if opts.compile == "on" or (opts.compile == "auto" and big and embedder.device.startswith("cuda")):
            embedder.compile()
        if opts.max_vram_gb:
            # hierarchical parents are whole chapters, up to the model's window
            longest = self.max_seq_length if opts.chunker == "hierarchical" else min(
                self.max_seq_length, opts.chunk_tokens + 8)
            embedder.cap_budget_for_vram(opts.max_vram_gb, longest)

    def _semantic(self, books: list[PreparedBook], embedder) -> bool:
        """Semantic chunking's main-process half: every sentence of these books in one
        token-budget encode_ids call, then the breaks. False when stopped."""
        from .chunk import Chunker
        from .prepare import complete_semantic

        if getattr(self, "_main_chunker", None) is None:
            self._main_chunker = Chunker(self.tokenizer_json, self.max_seq_length,
                                         self.opts.chunk_settings())
        started = time.perf_counter()
        done = complete_semantic(books, self._main_chunker, self.spec.document_template, embedder,
                                 self._token_budget(), 4096, should_stop=lambda: bool(self.stop))
        self._semantic_s += time.perf_counter() - started
        return done

    def _start_feeders(self, embedder) -> None:
        budget = self._token_budget()
        max_batch = max(self.opts.batch_size * 4, budget // 32)
        self._feeders = [Feeder(e, budget, max_batch, self._embedded, lambda: bool(self.stop))
                         for e in self._embedders or [embedder]]
        for feeder in self._feeders:
            feeder.start()

    def _embed_group(self, parts: list[Part], tokens: int) -> None:
        """Hand a group to the device with the least work queued; waits only while all are full,
        or while the points of too many groups are still to be written (their vectors wait in
        memory)."""
        started = time.perf_counter()
        put_unless_failed(self._unwritten, None, self._failure)
        self.stage["points_wait"] += time.perf_counter() - started
        if self.stop:
            with contextlib.suppress(queue.Empty):
                self._unwritten.get_nowait()
            return
        feeder = min(self._feeders, key=lambda f: f.queued_tokens)
        ids = [x for part in parts for x in part.book.token_ids[part.start:part.end]]
        started = time.perf_counter()
        if self._first_group is None:
            self._first_group = started
        feeder.put(Group(parts, ids, tokens))
        self.stage["device_wait"] += time.perf_counter() - started

    def _write_points(self, writer, vram, by_key, fingerprint, run_id) -> None:
        """The points thread: writes each group as soon as its vectors are back. On the main
        thread, that waited for the devices' queues and the devices waited for it: on an H200 the
        GPU stood idle for seconds while it queued points for a busy writer, and at the end the
        points of the last few groups were written only after the GPU had finished them all."""
        while (embedded := self._embedded.get()) is not None:
            try:
                if self._points_error is None:  # after an error: only drained, the run is failing
                    self._write_embedded(embedded, writer, vram, by_key, fingerprint, run_id)
            except BaseException as e:  # the main thread raises it
                self._points_error = e
            with contextlib.suppress(queue.Empty):  # a device's error comes without a group
                self._unwritten.get_nowait()

    def _failure(self) -> BaseException | None:
        """What stops the main thread's waits: the points thread's error, or a device's."""
        return self._points_error or next((f.error for f in self._feeders if f.error), None)

    def _write_embedded(self, embedded: Embedded, writer, vram, by_key, fingerprint, run_id) -> None:
        if self._last_vectors is None:  # the first vectors: a compiled model's graphs exist now
            self._gc.freeze()
        self._last_vectors = time.perf_counter()
        if embedded.error is not None:
            raise embedded.error
        if embedded.vectors is None:  # stopped: nothing of it was written, the next run does it
            log.info("abandoned %d book(s) mid-embedding; the next run does them",
                     len({id(part.book) for part in embedded.group.parts}))
            return
        started = time.perf_counter()
        self._write_group(embedded, writer, vram, by_key, fingerprint, run_id)
        self.stage["points"] += time.perf_counter() - started

    def _write_group(self, embedded: Embedded, writer, vram, by_key, fingerprint, run_id) -> None:
        """Queue the points of each part; a book's parts are written in row order (see parts_of),
        and the book is finished once its last row is written."""
        vectors = embedded.vectors
        assert vectors is not None
        vram.sample()
        total_tokens = embedded.group.tokens or 1
        row = 0
        for part in embedded.group.parts:
            prepared: PreparedBook = part.book
            n = part.end - part.start
            book = self._writing.get(prepared.book_key)
            if book is None:
                book = self._writing[prepared.book_key] = self._begin_book(
                    prepared, writer, by_key, fingerprint, run_id)
            book.embed_s += embedded.seconds * part.tokens / total_tokens
            book.waiting[part.start] = (part, vectors[row:row + n])
            row += n
            while book.next_row in book.waiting:  # this part, and any that came back before it
                ready, rows = book.waiting.pop(book.next_row)
                self._write_part(book, ready, rows, writer)
                book.next_row = ready.end
            if book.next_row == len(prepared.chunks):
                del self._writing[prepared.book_key]
                self._finish_book(book, writer, vram)

    def _begin_book(self, prepared: PreparedBook, writer, by_key, fingerprint, run_id) -> _Writing:
        p: Planned = by_key[prepared.book_key]
        b = p.book
        if b.calibre_id is None:  # a plain file: the EPUB's own metadata is all there is
            b.title = prepared.title or b.title
            b.authors = prepared.authors or b.authors
            b.languages = [prepared.language] if prepared.language else b.languages
        fields = self._row_fields(p, fingerprint, run_id)
        fields["content_hash"] = prepared.content_hash
        fields["meta_hash"] = b.metadata_hash()
        writer.submit("begin", b, fields)
        base = b.metadata()
        base.update(model=self.spec.name,
                    ingested_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return _Writing(p, prepared, base, fields)

    def _write_part(self, book: _Writing, part: Part, vectors, writer) -> None:
        prepared, key = book.prepared, book.planned.book.key
        hierarchical = self.opts.chunker == "hierarchical"
        fields_of: list[dict[str, Any]] = []
        for chunk in prepared.chunks[part.start:part.end]:
            parent = chunk.kind == "parent"
            own = {"text": chunk.text, "chapter": chunk.chapter,
                   "chapter_index": chunk.chapter_index,
                   "chunk_index": None if parent else chunk.index,
                   "char_start": chunk.char_start, "char_end": chunk.char_end,
                   "tokens": chunk.tokens, "kind": chunk.kind}
            if hierarchical and not parent:
                own["parent_id"] = parent_point_id(key, chunk.chapter_index)
            if prepared.pages:  # PDF: the pages this chunk's text is on
                span = page_range(prepared.pages, chunk.chapter_index, chunk.char_start,
                                  chunk.char_end)
                if span:
                    own.update(page_start=span[0], page_end=span[1])
            fields_of.append(own)
        for start in range(0, len(fields_of), UPSERT_BATCH):
            end = start + UPSERT_BATCH
            writer.submit("points", PointBlock(book.base, fields_of[start:end], vectors[start:end]))

    def _finish_book(self, book: _Writing, writer, vram) -> None:
        p, prepared, fields = book.planned, book.prepared, book.fields
        b = p.book
        seconds = prepared.seconds + book.embed_s
        result = BookResult(b.key, b.title, _str(b.path), "done", None,
                            len(prepared.chunks), prepared.tokens, seconds)
        fields.update(
            chunks=len(prepared.chunks), tokens=prepared.tokens, seconds=seconds,
            chunks_per_min=60 * len(prepared.chunks) / seconds if seconds else None,
            tokens_per_s=prepared.tokens / seconds if seconds else None,
            vram_peak_mb=vram.peak_mb, reason=None,
            warnings=_warn(prepared.warnings, ""),
        )
        writer.submit("finish", b, result, fields, list(p.replaces))

    def _finish_report(self, started: float, vram: VramMeter) -> None:
        r = self.report
        r.elapsed_s = round(time.perf_counter() - started, 3)
        if r.elapsed_s > 0:
            r.chunks_per_min = round(60 * r.chunks / r.elapsed_s, 1)
            r.tokens_per_s = round(r.tokens / r.elapsed_s, 1)
        r.vram_peak_mb, r.vram_peak_nvml_mb = vram.peak_mb, vram.nvml_peak_mb
        if self._first_group is not None and self._last_vectors is not None:
            self.stage["startup"] = self._first_group - self._started  # until a device has work
            self.stage["tail"] = time.perf_counter() - self._last_vectors  # after the last vectors
        r.stages_s = {k: round(v, 3) for k, v in self.stage.items()}
        r.interrupted = self.stop.signal_name

    def _summary_dict(self) -> dict[str, Any]:
        d = self.report.to_dict()
        d.pop("books", None)
        return d

    def _dry_run(self, books: list[Book], started: float) -> RunReport:
        """Extract and chunk only: no model weights, no store, no manifest."""
        from .embed import load_tokenizer_json

        tokenizer_json, max_len = load_tokenizer_json(self.spec)
        init_worker(tokenizer_json, max_len, self.opts.chunk_settings(), self.spec.document_template)
        r = self.report
        r.dry_run = True
        r.books_total = len(books)
        for b in books:
            if b.fail_reason or b.skip_reason:
                status = "failed" if b.fail_reason else "skipped"
                r.add(BookResult(b.key, b.title, _str(b.path), status,
                                 b.fail_reason or b.skip_reason))
                continue
            prepared = prepare(PrepareTask(b.key, str(b.path), b.fmt or "epub", b.title))
            if prepared.reason:
                r.add(BookResult(b.key, b.title, _str(b.path), "failed", prepared.reason))
                continue
            if prepared.sentences is not None:  # semantic: its breaks need the model after all
                from .embed import get_embedder

                self.tokenizer_json, self.max_seq_length = tokenizer_json, max_len
                self._semantic([prepared], get_embedder(self.spec, self.opts.device,
                                                        self.opts.dtype))
            result = BookResult(b.key, prepared.title if b.calibre_id is None else b.title,
                                _str(b.path), "done", None, len(prepared.chunks),
                                prepared.tokens, prepared.seconds)
            r.add(result)
            lengths = sorted(c.tokens for c in prepared.chunks if c.kind == "chunk")
            r.books[-1]["parents"] = sum(c.kind == "parent" for c in prepared.chunks)
            r.books[-1]["token_lengths"] = {
                "min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1],
                "mean": round(sum(lengths) / len(lengths), 1),
            }
            r.books[-1]["chapters"] = len({c.chapter_index for c in prepared.chunks})
            step = max(1, len(prepared.chunks) // max(1, self.opts.samples))
            r.books[-1]["samples"] = [
                {"chapter": c.chapter, "tokens": c.tokens, "text": c.text[:300]}
                for c in prepared.chunks[::step][: self.opts.samples]
            ]
        self._finish_report(started, VramMeter("cpu"))
        return r


class VramMeter:
    """Peak device memory, from torch and, where the driver is there, from NVML."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak_mb: float | None = None
        self.nvml_peak_mb: float | None = None
        self._handle = None
        if not device.startswith("cuda"):
            return
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # no NVML library or no permission: torch's number still stands
            self._handle = None

    def sample(self) -> None:
        if not self.device.startswith("cuda"):
            return
        import torch

        self.peak_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        if self._handle is not None:
            import pynvml

            used = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            self.nvml_peak_mb = round(max(self.nvml_peak_mb or 0.0, used), 1)


def check_chunk_options(opts: IngestOptions) -> None:
    """One sentence per mistake in the chunking options, before anything is loaded."""
    check_chunker(opts.chunker)
    if opts.threshold is not None and not -1.0 <= opts.threshold <= 1.0:
        raise UsageError("--threshold is a cosine similarity: give a number from -1 to 1.")
    if opts.chunker == "semantic" and (opts.min_tokens < 1 or opts.min_tokens >= opts.chunk_tokens):
        raise UsageError("--min-tokens must be at least 1 and smaller than --chunk-tokens.")


def _str(path: Path | None) -> str | None:
    return str(path) if path else None


def _warn(warnings: list[str], detail: str) -> str | None:
    parts = list(warnings) + ([detail] if detail else [])
    return "; ".join(parts) if parts else None


def plan_run(opts: IngestOptions) -> dict[str, Any]:
    """What the next run would do, without doing it: no model weights, nothing written."""
    from .embed import load_tokenizer_json

    spec = resolve_model(opts.model)
    collection = opts.collection or default_collection(spec, opts.chunker)
    books, everything = gather_books(opts)
    _, max_len = load_tokenizer_json(spec)
    fingerprint = f"{opts.chunk_settings().fingerprint()}|max={max_len}"
    mpath = manifest_path(opts.store, opts.manifest)
    rows = {}
    if mpath.exists():
        m = Manifest(mpath)
        try:
            rows = m.rows(collection)
        finally:
            m.close()
    planned = plan(books, rows, fingerprint, spec.source, opts.force)
    removals = prune_candidates(opts, planned, rows, everything) if opts.prune else []
    counts = dict.fromkeys(("new", "changed", "metadata-only", "removed", "unchanged", "skipped",
                            "failed"), 0)
    books_out = []
    for p in planned:
        if p.action == "ingest":
            kind = "new" if p.book.key not in rows else "changed"
        else:
            kind = {"metadata": "metadata-only", "skip": "skipped", "fail": "failed"}.get(
                p.action, p.action)
        counts[kind] += 1
        books_out.append({"book_key": p.book.key, "calibre_id": p.book.calibre_id,
                          "title": p.book.title, "path": _str(p.book.path), "action": kind,
                          "reason": p.reason})
    for key, why in removals:
        counts["removed"] += why != "file-missing"
        row = rows[key]
        books_out.append({"book_key": key, "calibre_id": row.calibre_id, "title": row.title,
                          "path": row.source_path, "action": "removed", "reason": why})
    return {"collection": collection, "manifest": str(mpath), "counts": counts, "books": books_out}


def ingest(opts: IngestOptions, stop: StopRequested | None = None) -> RunReport:
    """The Python API: run one ingest and return its report."""
    try:
        return Ingest(opts, stop).run()
    except StoreError as e:
        raise RunFailure(f"The store failed during the run: {e}; books already done are kept.") from e
