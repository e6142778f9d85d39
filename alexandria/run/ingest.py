"""The run: plan what changed, prepare books in worker processes, embed, write, record.

Data flows one way: library -> plan (run.plan) -> prepare (worker processes, run.workers) ->
groups (this thread, run.grouping) -> embed (one thread per device, run.feed) -> points (a thread
of their own, run.points) -> writer thread (store + manifest, run.writer). Only the writer thread
changes the store or the manifest during a run, in the order the operations were queued, which
is what makes a kill at any instant recoverable. Ingest only wires these together.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alexandria.chunking.chunker import Chunker
from alexandria.embedding.vram import VramMeter
from alexandria.errors import RunFailure
from alexandria.run.control import Failures, StopRequested
from alexandria.run.dry_run import dry_run
from alexandria.run.feed import Feeder
from alexandria.run.gcwatch import GcWatch
from alexandria.run.grouping import Devices, Grouper
from alexandria.run.options import (
    COMPILE_MIN_BOOKS,
    PREP_NICE,
    WAIT_S,
    IngestOptions,
    RunLimits,
    default_token_budget,
    default_workers,
)
from alexandria.run.plan import (
    Planned,
    gather_books,
    library_gone,
    nothing_found,
    plan,
    prune_candidates,
    row_fields,
)
from alexandria.run.points import PointsAssembler, PointsThread
from alexandria.run.prepare import PreparedBook, chunk_texts, complete_semantic
from alexandria.run.report import BookResult, RunReport, path_text, warnings_text
from alexandria.run.workers import Preparing
from alexandria.run.writer import Writer
from alexandria.store.base import CollectionMissing, RetryPolicy, StoreError, VectorStore
from alexandria.store.config import index_every
from alexandria.store.edge import EdgeStore
from alexandria.store.location import Location, check_variant, fingerprint
from alexandria.store.lock import RunLock
from alexandria.store.manifest import Manifest
from alexandria.store.process import StoreProcess

log = logging.getLogger("alexandria")

# Opens the run's store: (where, the model's dimension or None, the server options) -> the store.
StoreOpener = Callable[[Location, "int | None", dict[str, Any]], VectorStore]


class Ingest:
    """One run. Construct, then call run(); `alexandria.ingest()` and the CLI are thin layers
    over this.

    `limits` are the run's internal sizes (tests shrink them); `open_store` replaces how the run
    opens its store (tests wrap a real server client to make it fail on cue).
    """

    def __init__(self, opts: IngestOptions, stop: StopRequested | None = None,
                 progress: Callable[[BookResult], None] | None = None, *,
                 limits: RunLimits | None = None, open_store: StoreOpener | None = None,
                 on_plan: Callable[[int], None] | None = None) -> None:
        self.opts = opts
        self.stop = stop if stop is not None else StopRequested()
        self.progress = progress
        self.on_plan = on_plan  # told how many results `progress` will get, once the plan is made
        self.limits = limits or RunLimits()
        self.where = opts.location()
        self.spec = self.where.spec
        self.collection = self.where.collection
        self.report = RunReport(collection=self.collection, model=self.spec.name)
        self.failures = Failures()  # the first failure of any of the run's threads
        self.stage = {"plan": 0.0, "prepare_wait": 0.0, "embed": 0.0, "device_wait": 0.0,
                      "points_wait": 0.0, "points": 0.0, "write": 0.0}
        self._open_store_with = open_store
        self._report_lock = threading.Lock()  # the writer thread adds results while others read
        self._embedders: list = []  # one per embedding device
        self._semantic_chunker: Chunker | None = None  # semantic chunking's main-process half
        self._semantic_s = 0.0  # semantic chunking's sentence embedding, part of "embed"
        self._started = 0.0
        self._first_group: float | None = None  # a device first had work: the end of start-up
        self._last_vectors: float | None = None  # the last vectors came back: the tail starts
        self._gc = GcWatch()
        self.tokenizer_json = ""
        self.max_seq_length = 0

    def on_result(self, result: BookResult) -> None:
        """Called from the writer thread as each book is recorded."""
        with self._report_lock:
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
        elif result.status == "skipped":
            log.info("skipped  %s: %s", result.title, result.reason)
        if self.progress:
            self.progress(result)

    def run(self) -> RunReport:
        """The whole run, under the store's run lock (a dry run writes nothing and takes none)."""
        self.opts.check()
        if self.opts.dry_run:
            started = self._started = time.perf_counter()
            books, _ = gather_books(self.opts)
            dry_run(self.opts, self.spec, self.report, books)
            self._finish_report(started, VramMeter("cpu"))
            return self.report
        with RunLock(self.where.lock, self.opts.wait_lock):
            try:
                return self._run()
            except StoreError as e:  # the environment failed mid-run: exit 74
                raise RunFailure(
                    f"The store failed during the run: {e}; books already done are kept.") from e

    def _run(self) -> RunReport:
        started = self._started = time.perf_counter()
        opts = self.opts
        books, everything = gather_books(opts)
        devices = self._devices()  # a wrong --device is an error even with nothing to do
        if not books:
            log.warning("%s", nothing_found(opts))

        from alexandria.embedding.tokenizer import load_tokenizer_json

        t = time.perf_counter()
        self.tokenizer_json, self.max_seq_length = load_tokenizer_json(self.spec)
        prints = fingerprint(self.where.settings, self.max_seq_length, self.spec.variant)
        self.report.store = self.where.where
        self.report.manifest = str(self.where.manifest)
        manifest = Manifest(self.where.manifest)
        store: VectorStore | None = None
        preparing: Preparing | None = None
        try:
            rows = manifest.rows(self.collection)
            check_variant(self.where, {r.chunker: 1 for r in rows.values()
                                       if r.status == "done" and r.chunker})
            planned = plan(books, rows, prints, self.spec.source, opts.force)
            removals = prune_candidates(opts, planned, rows, everything) if opts.prune else []
            self.stage["plan"] = time.perf_counter() - t
            self.report.books_total = len(planned)
            if self.on_plan is not None:
                self.on_plan(len(planned) + len(removals))
            to_ingest = [p for p in planned if p.action == "ingest"]
            needs_model = bool(to_ingest) or bool(manifest.in_progress(self.collection))
            embedder = None
            if needs_model and opts.embed_urls:  # servers embed: probed before any book is sent
                if to_ingest:  # the first books are parsed while the servers are probed
                    preparing = self._start_preparing(to_ingest, "cpu")
                self._embedders = [self._connect_remote()]
                embedder = self._embedders[0]
                self.report.device = "remote: " + ",".join(e.name for e in embedder.endpoints)
                self.report.dtype = embedder.dtype
            elif needs_model:  # a nightly run with nothing new never loads the model
                from alexandria.embedding.embedder import get_embedder

                if to_ingest:  # the first books are parsed while the model loads and the store opens
                    preparing = self._start_preparing(to_ingest, devices[0])
                # Several GPUs: one embedder each, fed in turn from the same extraction pool.
                log.info("loading model %s on %s …", self.spec.name, ",".join(devices))
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
                self.report.store = ""  # nothing went anywhere
                for p in planned:
                    self.on_result(BookResult(p.book.key, p.book.title, path_text(p.book.path),
                                              "failed" if p.action == "fail" else "skipped",
                                              p.reason))
                self._finish_report(started, vram)
                return self.report
            self._recover(manifest, store)
            run_id = manifest.start_run(  # every book but the unchanged gets this run's row
                self.collection, sum(p.action in ("ingest", "metadata", "skip", "fail") for p in planned))
            writer = self._writer(store, embedder)
            try:
                for key, why in removals:
                    writer.submit("remove", key, why)
                with self._gc:
                    self._execute(planned, preparing, writer, embedder, prints, run_id, vram)
            finally:
                if writer.is_alive():
                    writer.close()
                self.stage["write"] = writer.seconds
                self.stage["write_wait"] = writer.waited_s
                if writer.index_builds:  # builds of the run's first points while it went on
                    self.stage["index_during"] = writer.index_s
                    self.report.index_builds = writer.index_builds
                self.stage["gc"] = self._gc.total_s
                self.stage["gc_longest"] = self._gc.longest_s
            self.failures.check()  # the writer died after the last submit: still the run's failure
            if isinstance(store, StoreProcess):  # where the store's own time went, to find its bound
                self.stage.update({f"store_{k}": v for k, v in store.seconds().items()})
            if not self.stop:
                # A complete run: the store indexes what it wrote (an embedded shard's HNSW and
                # quantized vectors, a bulk-loaded server collection's HNSW).
                indexing = time.perf_counter()
                store.finish()
                self.stage["index"] = time.perf_counter() - indexing
            self._finish_report(started, vram)
            outcome = "interrupted" if self.stop else ("failed" if self.report.books_failed else "ok")
            manifest.finish_run(run_id, outcome, self._summary_dict())
        except BaseException:
            if preparing is not None:
                preparing.abandon()
            raise
        finally:
            closing = time.perf_counter()
            for e in self._embedders:
                if getattr(e, "reads_text", False):  # a server pool: its threads and connections
                    self.report.endpoints = e.stats()
                    e.close()
            manifest.close()
            if store is not None:
                store.close()
            if self.report.stages_s:  # the store's last flush and the shard's close
                self.report.stages_s["close"] = round(time.perf_counter() - closing, 3)
        return self.report

    def _devices(self) -> list[str]:
        """The embedding devices, and the dtype the model would run in on the first: both in the
        report even when nothing is embedded."""
        from alexandria.embedding.embedder import resolve_devices, resolve_dtype

        # Servers embed: the book workers run on the CPU, and torch is never imported.
        devices = (["cpu"] if self.opts.embed_urls
                   else resolve_devices(self.opts.device, self.opts.gpus))
        self.report.device = ",".join(devices)
        self.report.dtype = resolve_dtype(self.opts.dtype, devices[0], self.spec)
        return devices

    def _connect_remote(self):
        from alexandria.embedding.remote import connect

        o = self.opts
        return connect(self.spec, o.embed_urls, o.embed_api, o.embed_key, o.embed_timeout,
                       o.embed_retry_budget, o.embed_batch, o.embed_concurrency)

    def _writer(self, store: VectorStore, embedder) -> Writer:
        writer = Writer(store, self.where.manifest, self.collection, self.on_result, self.failures,
                        self._index_every(store, embedder))
        writer.start()
        return writer

    def _index_every(self, store: VectorStore, embedder) -> int:
        """Index builds during the run only where they take nothing from the embedding: the shard
        in its owner process (a build holds the GIL of the process it runs in) and the model on
        servers. Not yet on a local GPU, whose feeder and book workers want the same cores, until
        it is measured there; never on a CPU, where the build would take the model's cores."""
        if not isinstance(store, StoreProcess) or not self.opts.embed_urls:
            return 0
        return index_every()

    def _open_store(self, embedder) -> VectorStore | None:
        opts = self.opts
        server: dict[str, Any] = {
            "timeout": int(opts.qdrant_timeout), "prefer_grpc": opts.grpc,
            "retry": RetryPolicy(retries=opts.qdrant_retries),
            "bulk_load": opts.bulk_load} if opts.qdrant_url else {}
        dimension = embedder.dimension if embedder else None
        try:
            if self._open_store_with is not None:
                return self._open_store_with(self.where, dimension, server)
            if not opts.qdrant_url and not opts.store_process:  # in-process: holds the shard alone
                return EdgeStore(self.where.store, self.collection, dimension,
                                 self.where.store_config)
            return self.where.open_store(dimension, **server)
        except CollectionMissing:
            if embedder is None:
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

    def _start_preparing(self, to_ingest: list[Planned], device: str) -> Preparing:
        remote = bool(self.opts.embed_urls)
        workers = self.opts.workers or default_workers(device, remote)
        # Niced where they share the box with a GPU's feeder or, maybe, with the servers.
        nice = PREP_NICE if remote or device.startswith("cuda") else 0
        initargs = (self.tokenizer_json, self.max_seq_length, self.opts.chunk_settings(),
                    self.spec.document_template, nice, self.opts.reuse_tokens,
                    self.opts.sparse is not False)
        cache = str(self.opts.extract_cache) if self.opts.extract_cache else None
        return Preparing(to_ingest, workers, initargs, self.failures, self.limits.part_chars, cache)

    def _execute(self, planned: list[Planned], preparing: Preparing | None, writer: Writer, embedder,
                 prints: str, run_id: int, vram: VramMeter) -> None:
        def fields_of(p: Planned) -> dict[str, Any]:
            return row_fields(p, self.spec.source, prints, run_id)

        for p in planned:
            b = p.book
            fields = fields_of(p)
            if p.action in ("skip", "fail"):
                status = "skipped" if p.action == "skip" else "failed"
                result = BookResult(b.key, b.title, path_text(b.path), status, p.reason)
                fields.update(status=status, reason=p.reason)
                writer.submit("record", b, result, fields)
            elif p.action == "metadata":
                result = BookResult(b.key, b.title, path_text(b.path), "metadata")
                writer.submit("metadata", b, result, {"status": "done", "meta_hash": fields["meta_hash"],
                                                      "title": b.title, "run_id": run_id})
            elif p.action != "ingest":
                result = BookResult(b.key, b.title, path_text(b.path), "unchanged")
                writer.submit("record", b, result, {"status": "done", "size": b.size,
                                                    "mtime_ns": b.mtime_ns,
                                                    "source_path": fields["source_path"]})
        if preparing is None:
            return
        budget = self._token_budget()
        max_batch = max(self.opts.batch_size * 4, budget // 32)
        embedded: queue.Queue = queue.Queue()  # groups whose vectors are back
        should_stop = self._stopped
        feeders = [Feeder(e, budget, max_batch, embedded, should_stop, self.failures)
                   for e in self._embedders or [embedder]]
        texts_of = None
        if self.opts.embed_urls:
            template, longest = self.spec.document_template, self.max_seq_length

            def texts_of(part):
                return chunk_texts(part.book, part.start, part.end, template, longest)
        devices = Devices(feeders, self.failures, should_stop, self.limits.max_unwritten_groups,
                          texts_of)
        grouper = Grouper(budget, self.limits.group_budgets, self.limits.upsert_batch)
        assembler = PointsAssembler(preparing.by_key, fields_of, self.spec.name,
                                    self.opts.chunker == "hierarchical", writer.submit,
                                    lambda: vram.peak_mb, self.limits.upsert_batch)
        points = PointsThread(embedded, assembler, self.failures, devices.written,
                              first_vectors=self._gc.freeze, before_group=vram.sample)
        devices.start()
        points.start()
        try:
            while preparing and not self.stop and not self.failures:
                t = time.perf_counter()
                ready = preparing.wait(WAIT_S)
                self.stage["prepare_wait"] += time.perf_counter() - t
                grouper.tail = preparing.all_started
                self._take(ready, preparing.by_key, grouper, devices, writer, fields_of, embedder)
                if grouper and not self.stop and (not preparing or grouper.hungry(devices.backlogs)):
                    devices.give(grouper.take())
            if grouper:  # stopped (or failed) before it went to a device: the next run does it
                log.info("abandoned %d book(s) before embedding; the next run does them",
                         len({id(part.book) for part in grouper.take()}))
        finally:
            preparing.close()  # the workers exit on their own: the last groups need not wait
            devices.close()
            points.close()
            self.stage["embed"] = self._semantic_s + devices.busy_s
            self.stage["points_wait"] += devices.points_wait_s
            self.stage["device_wait"] += devices.device_wait_s
            self.stage["points"] += points.seconds
            self._first_group, self._last_vectors = devices.first_given, points.last_vectors
        self.failures.check()

    def _take(self, ready: list[PreparedBook], by_key: dict[str, Planned], grouper: Grouper,
              devices: Devices, writer: Writer, fields_of, embedder) -> None:
        """Books back from the workers: failures recorded, the rest into groups for the devices."""
        good = []
        for prepared in ready:
            p = by_key[prepared.book_key]
            b = p.book
            if prepared.reason in ("file-missing", "unreadable") and self.opts.directory and \
                    library_gone(Path(self.opts.directory)):  # not the book: the whole library
                raise RunFailure(
                    f"The library folder {self.opts.directory} disappeared during the run (an "
                    "unmounted share?); the books done so far are kept and the next run resumes.")
            if prepared.reason:
                result = BookResult(b.key, b.title, path_text(b.path), "failed", prepared.reason)
                fields = fields_of(p)
                fields.update(status="failed", reason=prepared.reason,
                              warnings=warnings_text(prepared.warnings, prepared.detail),
                              content_hash=prepared.content_hash or p.content_hash)
                writer.submit("record", b, result, fields)
            else:
                good.append(prepared)
        if good and self.opts.chunker == "semantic" and not self.semantic(good, embedder):
            log.info("abandoned %d book(s) mid-embedding; the next run does them", len(good))
            return
        for prepared in good:
            if self.stop:
                return
            for group in grouper.add(prepared):
                devices.give(group)

    def _stopped(self) -> bool:
        return bool(self.stop)

    def _token_budget(self) -> int:
        budget = default_token_budget(self.opts, self.max_seq_length, self.report.device or "cpu")
        if self.opts.embed_urls and not self.opts.token_budget and self._embedders:
            # a group fills every server slot (tuned servers hold more than a local budget)
            rows = self._embedders[0].rows_in_flight()
            budget = max(budget, rows * min(self.opts.chunk_tokens, self.max_seq_length))
        return budget

    def _tune_embedder(self, embedder, books_to_embed: int) -> None:
        opts = self.opts
        # Compiling takes minutes: worth it for a library, not for a nightly run of a few new
        # books or a one-book test.
        big = books_to_embed >= COMPILE_MIN_BOOKS
        embedder.set_packing(opts.packing)  # before compiling: the graph is traced packed
        if opts.compile == "on" or (opts.compile == "auto" and big and embedder.device.startswith("cuda")):
            embedder.compile()
        if opts.max_vram_gb:
            # hierarchical parents are whole chapters, up to the model's window
            longest = self.max_seq_length if opts.chunker == "hierarchical" else min(
                self.max_seq_length, opts.chunk_tokens + 8)
            embedder.cap_budget_for_vram(opts.max_vram_gb, longest)

    def semantic(self, books: list[PreparedBook], embedder) -> bool:
        """Semantic chunking's main-process half: every sentence of these books in one
        token-budget encode_ids call, then the breaks. False when stopped."""
        if self._semantic_chunker is None:
            self._semantic_chunker = Chunker(self.tokenizer_json, self.max_seq_length,
                                             self.opts.chunk_settings())
        started = time.perf_counter()
        done = complete_semantic(books, self._semantic_chunker, self.spec.document_template,
                                 embedder, self._token_budget(), 4096, should_stop=self._stopped)
        self._semantic_s += time.perf_counter() - started
        return done

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


def ingest(opts: IngestOptions, stop: StopRequested | None = None, *,
           progress: Callable[[BookResult], None] | None = None) -> RunReport:
    """Run one ingest under the store's lock and return its report (the Python API)."""
    return Ingest(opts, stop, progress).run()

