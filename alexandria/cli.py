"""A thin click layer over the Python API: options, environment, exit codes, human output."""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import os
import signal
import sys
from pathlib import Path

import click
from dotenv import load_dotenv

from .errors import RunFailure, UsageError
from .lock import EXIT_LOCKED, LockBusy

EXIT_OK, EXIT_FAILED_BOOKS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}

log = logging.getLogger("alexandria")


def _env(name: str) -> str:
    return f"ALEXANDRIA_{name.upper().replace('-', '_')}"


def opt(*decls, **kw):
    """Every option also reads ALEXANDRIA_<OPTION> (flags beat environment beat .env)."""
    long = next(d for d in decls if d.startswith("--")).split("/")[0]
    kw.setdefault("envvar", _env(long[2:]))
    kw.setdefault("show_envvar", True)
    return click.option(*decls, **kw)


def model_options(f):
    for decorator in reversed([
        opt("--model", default="bge-m3", show_default=True,
            help="bge-m3, embeddinggemma, minilm (offline test model), a Hugging Face id or a "
                 "local folder."),
        opt("--device", default="auto", show_default=True,
            help="auto, cpu, cuda, cuda:N, or several: cuda:0,cuda:1."),
        opt("--dtype", default="auto", show_default=True,
            help="auto (fp16 bge-m3 / bf16 EmbeddingGemma on CUDA; bf16 on CPUs with bf16 "
                 "instructions, else fp32), fp32, fp16 or bf16."),
        opt("--store", type=click.Path(path_type=Path), default=Path("data/qdrant"),
            show_default=True, help="Embedded Qdrant Edge folder; collection C lives in STORE/C."),
        opt("--qdrant-url", default=None, help="Use a Qdrant server instead (API key from "
            "QDRANT_API_KEY)."),
        opt("--collection", default=None, help="Default: alexandria_<model>, so two models "
            "never share one."),
        opt("--manifest", type=click.Path(path_type=Path), default=None,
            help="Manifest SQLite file. Default: STORE/manifest.sqlite."),
    ]):
        f = decorator(f)
    return f


def _api_key() -> str | None:
    return os.environ.get("QDRANT_API_KEY") or None


class JsonFormatter(logging.Formatter):
    """One JSON object per line (--log-json): time, level, message, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                   timespec="milliseconds"),
               "level": record.levelname.lower(), "message": record.getMessage(),
               "pid": record.process}
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(log_dir: Path | None, quiet: bool, to_terminal: bool,
                  json_logs: bool = False) -> Path | None:
    log.setLevel(logging.INFO)
    log.handlers.clear()
    log.propagate = False
    stderr = _TqdmHandler() if to_terminal else logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING if quiet else logging.INFO)
    stderr.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(message)s"))
    log.addHandler(stderr)
    if log_dir is None:
        return None
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "alexandria.log"
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=10 * 2**20, backupCount=5, encoding="utf-8"
        )
    except OSError as e:
        raise UsageError(f"The log folder {log_dir} is not writable ({e.strerror}).") from e
    handler.setFormatter(JsonFormatter() if json_logs
                         else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return path


class _TqdmHandler(logging.Handler):
    """Log lines that do not tear the progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alexandria")
def cli() -> None:
    """Alexandria: turn an e-book library into a searchable Qdrant vector store."""


CHUNKERS = ("structural", "semantic", "hierarchical")  # alexandria.chunk.STRATEGIES
chunker_option = opt(
    "--chunker", type=click.Choice(CHUNKERS, case_sensitive=False), default="structural",
    show_default=True,
    help="structural: paragraphs and sentences by tokens; semantic: break where the topic "
         "shifts; hierarchical: a point per chapter plus structural chunks pointing at it. "
         "Not structural: the default collection is alexandria_<model>_<chunker>.")


def ingest_options(f):
    for decorator in reversed([
        opt("--directory", type=click.Path(path_type=Path), default=None,
            help="A Calibre library (with metadata.db) or any folder of EPUBs."),
        opt("--file", "files", type=click.Path(path_type=Path), multiple=True,
            help="One book; repeat for several (single-book test runs)."),
        model_options,
        opt("--batch-size", type=int, default=96, show_default=True,
            help="Chunks per model batch."),
        opt("--token-budget", type=int, default=None,
            help="Tokens per model batch (default: batch size x chunk tokens, 4x that on a GPU); "
                 "lower it on small GPUs, or use --max-vram-gb."),
        opt("--max-vram-gb", type=float, default=None,
            help="Keep the model's GPU memory under this many GB (caps the token budget)."),
        opt("--gpus", default=None,
            help="all, or N: one embedding worker per GPU (or give --device cuda:0,cuda:1)."),
        opt("--compile", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
            help="torch.compile the model (auto: on CUDA for runs of 200 books or more, since "
                 "compiling takes minutes; falls back to eager if it fails)."),
        opt("--packing", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
            help="Run each batch's chunks end to end with no pad tokens (auto: on a CUDA card of "
                 "compute capability 8.0 or newer, for bge-m3, EmbeddingGemma and other BERT, "
                 "RoBERTa and Gemma 3 models, once a check batch matches the padded vectors)."),
        opt("--store-process/--no-store-process", default=True, show_default=True,
            help="Write to the embedded store from a child process (keeps the GIL for the GPU feed)."),
        opt("--chunk-tokens", type=int, default=512, show_default=True,
            help="Target chunk length in model tokens (capped by the model's maximum)."),
        opt("--overlap", type=int, default=64, show_default=True, help="Tokens shared by "
            "neighbouring chunks."),
        chunker_option,
        opt("--threshold", type=float, default=None,
            help="semantic: break where neighbouring sentences are less similar than this "
                 "(cosine, -1..1). Default: each book's own 25th percentile."),
        opt("--min-tokens", type=int, default=64, show_default=True,
            help="semantic: no topic break in a chunk shorter than this."),
        opt("--formats", default="epub", show_default=True,
            help="Format preference order, comma-separated: epub, azw3, azw, mobi, prc, pdf, txt, "
                 "md, html (the first one a book has wins)."),
        opt("--workers", type=int, default=None, help="Extraction processes (default: cores-1, "
            "at most 4, on the CPU; cores-2, at most 32, on a GPU)."),
        opt("--report", type=click.Path(path_type=Path), default=None,
            help="Write the run report as JSON here."),
        opt("--prune/--no-prune", default=True, show_default=True,
            help="Delete the points of books gone from the library (--directory runs only)."),
        opt("--limit", type=int, default=None, help="Only the first N books (in calibre id order)."),
        opt("--since", type=click.DateTime(), default=None,
            help="Only books added or modified since this date."),
        opt("--author", "authors", multiple=True, help="Only books by this author (repeatable)."),
        opt("--tag", "tags", multiple=True, help="Only books with this tag (repeatable)."),
        opt("--book-id", "book_ids", type=int, multiple=True,
            help="Only these calibre book ids (repeatable)."),
        opt("--dry-run", is_flag=True, default=False,
            help="Extract and chunk only: statistics and samples, no model, nothing written."),
        opt("--force", is_flag=True, default=False, help="Re-ingest books even when unchanged."),
        opt("--quiet", is_flag=True, default=False, help="Only warnings and the summary."),
        opt("--log-dir", type=click.Path(path_type=Path), default=Path("logs"),
            show_default=True, help="Run logs land here."),
        opt("--wait-lock", type=float, default=0.0, show_default=True, metavar="SECONDS",
            help="When another run holds the store, wait this long instead of exiting with 75."),
        opt("--log-json", is_flag=True, default=False,
            help="Log lines as JSON objects (one per line), on stderr and in the log file."),
        opt("--qdrant-timeout", type=float, default=60.0, show_default=True, metavar="SECONDS",
            help="Server mode: timeout of one request."),
        opt("--qdrant-retries", type=int, default=5, show_default=True,
            help="Server mode: retries of a transient failure (exponential backoff, 10 min budget)."),
        opt("--grpc/--no-grpc", default=True, show_default=True,
            help="Server mode: talk gRPC when the server offers it."),
        opt("--bulk-load/--no-bulk-load", default=True, show_default=True,
            help="Server mode: a run that creates the collection builds its HNSW index at the end."),
    ]):
        f = decorator(f)
    return f


def _run_ingest(**kw) -> int:
    from .lock import LOCK_NAME, RunLock
    from .pipeline import Ingest, IngestOptions, StopRequested, manifest_path
    from .store import StoreError

    report_file = kw.pop("report")
    quiet = kw.pop("quiet")
    log_dir = kw.pop("log_dir")
    wait_lock = kw.pop("wait_lock")
    to_terminal = sys.stderr.isatty()
    setup_logging(log_dir, quiet, to_terminal, kw.pop("log_json"))
    kw["formats"] = tuple(f.strip().lower() for f in kw["formats"].split(",") if f.strip())
    opts = IngestOptions(api_key=_api_key(), **kw)
    stop = StopRequested()
    _install_signal_handlers(stop)
    bar = _progress_bar(enabled=to_terminal and not quiet and not opts.dry_run)
    lock = (contextlib.nullcontext() if opts.dry_run
            else RunLock(manifest_path(opts.store, opts.manifest).parent / LOCK_NAME, wait_lock))
    try:
        with lock:
            report = Ingest(opts, stop, progress=bar.update if bar else None).run()
    except StoreError as e:  # exit 74: the environment failed mid-run
        raise RunFailure(f"The store failed during the run: {e}; books already done are kept.") from e
    finally:
        if bar:
            bar.close()
    _print_summary(report)
    if report_file:
        Path(report_file).parent.mkdir(parents=True, exist_ok=True)
        Path(report_file).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    if stop.signal_name:
        return SIGNAL_EXIT.get(stop.signal_name, 130)
    return report.exit_code


class _Bar:
    """tqdm over books to ingest, with chunks/min in the postfix."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm(unit="book", file=sys.stderr, dynamic_ncols=True, desc="ingest")
        self.chunks = 0

    def update(self, result) -> None:
        if result.status == "done":
            self.chunks += result.chunks
        self.tqdm.update(1)
        elapsed = self.tqdm.format_dict.get("elapsed") or 0
        if elapsed:
            self.tqdm.set_postfix(chunks=self.chunks, per_min=int(60 * self.chunks / elapsed))

    def close(self) -> None:
        self.tqdm.close()


def _progress_bar(enabled: bool) -> _Bar | None:
    return _Bar() if enabled else None


def _install_signal_handlers(stop) -> None:
    """First signal: finish what is queued and stop cleanly. Second Ctrl-C: stop at once."""

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if stop:
            raise KeyboardInterrupt
        log.warning("%s received: finishing the books in flight, then stopping", name)
        stop.set(name)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


def _print_summary(report) -> None:
    r = report
    out = click.echo
    if r.dry_run:
        for b in r.books:
            if b["status"] != "done":
                out(f"{b['status']:8} {b['title']}: {b['reason']}")
                continue
            tl = b["token_lengths"]
            out(f"{b['title']}: {b['chunks']} chunks, {b['tokens']} tokens, "
                f"{b['chapters']} chapters, tokens/chunk min {tl['min']} median {tl['median']} "
                f"max {tl['max']}")
            for s in b["samples"]:
                text = " ".join(s["text"].split())[:160]
                out(f"    [{s['chapter'] or '-'} | {s['tokens']} tok] {text}")
    for f in r.failures:
        out(f"failed: {f['book']} ({f['path']}): {f['reason']}", err=True)
    vram = f"{r.vram_peak_mb:.0f} MB" if r.vram_peak_mb is not None else "n/a"
    if r.vram_peak_nvml_mb is not None:
        vram += f" (NVML {r.vram_peak_nvml_mb:.0f} MB)"
    mode = "dry run: " if r.dry_run else ""
    stopped = f", stopped by {r.interrupted}" if r.interrupted else ""
    out(
        f"{mode}{r.books_done} done, {r.books_skipped} skipped ({r.books_unchanged} unchanged), "
        f"{r.books_failed} failed of {r.books_total} books; {r.chunks} chunks, {r.tokens} tokens "
        f"in {r.elapsed_s:.1f}s ({r.chunks_per_min:.0f} chunks/min, {r.tokens_per_s:.0f} "
        f"tokens/s); peak VRAM {vram}; {r.device or '-'} {r.model} {r.dtype or ''}{stopped}"
    )


@cli.command("ingest")
@ingest_options
def ingest_cmd(**kw) -> None:
    """Extract, chunk, embed and store every book; resumable and incremental."""
    sys.exit(_guard(_run_ingest, **kw))


@cli.command("plan")
@ingest_options
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
def plan_cmd(as_json, **kw) -> None:
    """What the next ingest would do (new / changed / metadata-only / removed / unchanged)."""

    def run() -> int:
        from .pipeline import IngestOptions, plan_run

        for key in ("report", "quiet", "log_dir", "wait_lock", "dry_run", "log_json"):
            kw.pop(key, None)
        kw["formats"] = tuple(f.strip().lower() for f in kw["formats"].split(",") if f.strip())
        out = plan_run(IngestOptions(api_key=_api_key(), **kw))
        if as_json:
            click.echo(json.dumps(out, indent=2, ensure_ascii=False))
            return EXIT_OK
        for b in out["books"]:
            if b["action"] not in ("unchanged",):
                reason = f" ({b['reason']})" if b["reason"] else ""
                click.echo(f"{b['action']:14} {b['title']}{reason}")
        c = out["counts"]
        click.echo(", ".join(f"{v} {k}" for k, v in c.items()))
        return EXIT_OK

    sys.exit(_guard(run))


@cli.command("search")
@click.argument("query")
@opt("--top-k", type=int, default=5, show_default=True)
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--author", default=None, help="Only books by this author (exact name).")
@opt("--tag", default=None, help="Only books with this tag.")
@opt("--language", default=None, help="Only books in this language (calibre code, e.g. eng).")
@opt("--series", default=None, help="Only books of this series.")
@chunker_option
@opt("--with-parent", is_flag=True, default=False,
     help="hierarchical: also show the chapter each hit comes from.")
@model_options
def search_cmd(query, top_k, as_json, author, tag, language, series, manifest, **kw) -> None:
    """Best chunks for QUERY, with book, authors, chapter and score."""

    def run() -> int:
        from .search import SearchOptions, search

        opts = SearchOptions(top_k=top_k, author=author, tag=tag, language=language,
                             series=series, api_key=_api_key(), **kw)
        results = search(query, opts)
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False))
            return EXIT_OK
        if not results:
            click.echo("No results.")
        for i, r in enumerate(results, 1):
            click.echo(f"{i}. {r.score:.3f}  {r.title} — {', '.join(r.authors) or 'unknown'}"
                       f"  [{r.chapter or '-'}]")
            click.echo("   " + " ".join(r.text.split())[:300])
            if r.parent is not None:
                text = " ".join((r.parent.get("text") or "").split())
                click.echo(f"   chapter ({len(text)} characters): {text[:600]}")
        return EXIT_OK

    sys.exit(_guard(run))


@cli.command("eval")
@click.argument("questions", type=click.Path(path_type=Path))
@opt("--corpus", type=click.Path(path_type=Path), default=Path("../shared/corpus/epubs/books"),
     show_default=True, help="Folder the questions' book paths are relative to.")
@opt("--chunker", "chunkers", default="structural,semantic,hierarchical", show_default=True,
     envvar=None, help="Comma-separated chunkers to compare, each in a fresh temporary store.")
@opt("--model", default="minilm", show_default=True, help="Model alias, Hugging Face id or folder.")
@opt("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@opt("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@opt("--top-k", type=int, default=5, show_default=True, help="Results per question.")
@opt("--workers", type=int, default=None,
     help="Extraction processes (default: cores-1, at most 4, on the CPU; cores-2, at most 32, on a GPU).")
@opt("--json", "json_file", type=click.Path(path_type=Path), default=None, envvar=None,
     help="Also write the numbers and every question's result here as JSON.")
def eval_cmd(questions, corpus, chunkers, model, device, dtype, top_k, workers, json_file) -> None:
    """Retrieval check: hit@1, hit@k and MRR per chunker for a JSONL question set."""

    def run() -> int:
        from .evaluate import EvalOptions, evaluate, load_questions, render_table

        setup_logging(None, quiet=True, to_terminal=False)
        qs = load_questions(questions)
        names = tuple(c.strip().lower() for c in chunkers.split(",") if c.strip())
        opts = EvalOptions(corpus=corpus, chunkers=names, model=model, device=device,
                           dtype=dtype, top_k=top_k, workers=workers)
        report = evaluate(qs, opts, progress=lambda msg: click.echo(msg, err=True))
        click.echo(render_table(report))
        if json_file:
            Path(json_file).parent.mkdir(parents=True, exist_ok=True)
            Path(json_file).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False),
                                       encoding="utf-8")
        return EXIT_OK

    sys.exit(_guard(run))


@cli.command("chunks")
@click.argument("book", type=click.Path(path_type=Path))
@opt("--compare", is_flag=True, default=False, envvar=None,
     help="Several settings side by side: structural 256 and 512, semantic at two thresholds, "
          "hierarchical.")
@chunker_option
@opt("--chunk-tokens", type=int, default=512, show_default=True,
     help="Target chunk length in model tokens (capped by the model's maximum).")
@opt("--overlap", type=int, default=64, show_default=True, help="Tokens shared by neighbours.")
@opt("--threshold", type=float, default=None,
     help="semantic: similarity below which to break. Default: the book's 25th percentile.")
@opt("--min-tokens", type=int, default=64, show_default=True,
     help="semantic: no topic break in a chunk shorter than this.")
@opt("--samples", type=int, default=2, show_default=True, envvar=None,
     help="Sample chunks shown per setting.")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--model", default="bge-m3", show_default=True,
     help="bge-m3, embeddinggemma, minilm, a Hugging Face id or a local folder.")
@opt("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (semantic).")
@opt("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16 (semantic).")
def chunks_cmd(book, compare, chunker, chunk_tokens, overlap, threshold, min_tokens, samples,
               as_json, model, device, dtype) -> None:
    """Chunk statistics for one BOOK file, to choose the chunking before a long run."""

    def run() -> int:
        from .chunk import ChunkSettings
        from .chunks_report import compare_variants, current_variant, render, report_book
        from .pipeline import IngestOptions, check_chunk_options

        check_chunk_options(IngestOptions(chunker=chunker.lower(), chunk_tokens=chunk_tokens,
                                          overlap=overlap, threshold=threshold,
                                          min_tokens=min_tokens))
        if overlap >= chunk_tokens:
            raise UsageError("--overlap must be smaller than --chunk-tokens.")
        base = ChunkSettings(chunk_tokens=chunk_tokens, overlap=overlap, strategy=chunker.lower(),
                             threshold=threshold, min_tokens=min_tokens)
        if compare:
            from .embed import load_tokenizer_json
            from .models import resolve_model

            variants = compare_variants(base, load_tokenizer_json(resolve_model(model))[1])
        else:
            variants = [current_variant(base)]
        setup_logging(None, quiet=True, to_terminal=False)
        report = report_book(book, model, variants, device, dtype, max(0, samples))
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        else:
            click.echo(render(report, max(0, samples)))
        return EXIT_OK

    sys.exit(_guard(run))


@cli.command("status")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--verify", is_flag=True, default=False,
     help="Count each book's points in the store and report disagreements.")
@chunker_option
@model_options
def status_cmd(as_json, verify, chunker, model, store, collection, manifest, qdrant_url, **_) -> None:
    """Books done / failed / skipped / pending, from the manifest."""

    def run() -> int:
        from .status import status

        s = status(model, store, collection, manifest, qdrant_url, _api_key(), verify, chunker)
        if as_json:
            click.echo(json.dumps(s, indent=2, ensure_ascii=False))
            return 1 if verify and s["mismatches"] else EXIT_OK
        t = s["totals"]
        click.echo(f"collection {s['collection']} (manifest {s['manifest']})")
        click.echo(f"{t['books']} books: {t['done']} done, {t['failed']} failed, "
                   f"{t['skipped']} skipped, {t['pending'] + t['in-progress']} pending; "
                   f"{t['chunks']} chunks, {t['tokens']} tokens")
        if s["last_run"]:
            lr = s["last_run"]
            click.echo(f"last run #{lr['id']}: {lr['outcome']}, {lr['books_done']} done, "
                       f"{lr['books_failed']} failed in {lr['elapsed_s']}s")
        for b in s["books"]:
            if b["status"] == "failed":
                click.echo(f"  failed  {b['title']}: {b['reason']}  ({b['path']})")
        if verify:
            for b in s["books"]:
                if b.get("mismatch"):
                    click.echo(f"  MISMATCH {b['title']}: manifest {b['stored_points']} points, "
                               f"store {b['store_points']}")
            for o in s["orphans"]:
                click.echo(f"  ORPHAN  {o['book_key']}: {o['store_points']} points in the store "
                           "that the manifest does not know")
            click.echo(f"verify: {s['mismatches']} mismatches, {t['store_points']} points")
            return 1 if s["mismatches"] else EXIT_OK
        return EXIT_OK

    sys.exit(_guard(run))


@cli.command("export")
@opt("--to-url", default=None, help="The Qdrant server to copy into (API key from QDRANT_API_KEY).")
@opt("--to-path", type=click.Path(path_type=Path), default=None,
     help="Or a qdrant-client local-mode folder (for trying it out without a server).")
@opt("--to-collection", default=None, help="Target collection (default: the same name).")
@opt("--batch", type=int, default=256, show_default=True, help="Points per upsert request.")
@opt("--qdrant-timeout", type=float, default=60.0, show_default=True, metavar="SECONDS")
@opt("--qdrant-retries", type=int, default=5, show_default=True)
@opt("--grpc/--no-grpc", default=True, show_default=True)
@model_options
def export_cmd(to_url, to_path, to_collection, batch, qdrant_timeout, qdrant_retries, grpc, model,
               store, collection, qdrant_url, **_) -> None:
    """Copy the embedded store's collection into a Qdrant server (no re-embedding)."""

    def run() -> int:
        from .export import export
        from .lock import LOCK_NAME, RunLock
        from .models import resolve_model
        from .pipeline import default_collection

        if qdrant_url:
            raise UsageError("export copies from the embedded store (--store), not from "
                             "--qdrant-url; give the server as --to-url.")
        setup_logging(None, False, sys.stderr.isatty())
        name = collection or default_collection(resolve_model(model))
        with RunLock(Path(store).expanduser() / LOCK_NAME, 0):  # no ingest writes meanwhile
            report = export(store, name, to_url=to_url,
                            to_path=str(to_path) if to_path else None, api_key=_api_key(),
                            to_collection=to_collection, batch=batch,
                            timeout=int(qdrant_timeout), prefer_grpc=grpc, retries=qdrant_retries)
        click.echo(report.sentence())
        return EXIT_OK

    sys.exit(_guard(run))


@cli.command("repair")
@ingest_options
def repair_cmd(**kw) -> None:
    """Rebuild a damaged manifest from the store's payloads (nothing is re-embedded).

    Give the same --model, --store/--qdrant-url, --collection and chunking options as the ingest;
    --force rebuilds this collection's rows even when the manifest is healthy.
    """

    def run() -> int:
        from .lock import LOCK_NAME, RunLock
        from .pipeline import IngestOptions, manifest_path
        from .repair import repair

        setup_logging(kw.pop("log_dir"), kw.pop("quiet"), sys.stderr.isatty(), kw.pop("log_json"))
        wait_lock, force_rebuild = kw.pop("wait_lock"), kw.pop("force")
        for key in ("report", "dry_run"):
            kw.pop(key, None)
        kw["formats"] = tuple(f.strip().lower() for f in kw["formats"].split(",") if f.strip())
        opts = IngestOptions(api_key=_api_key(), **kw)
        with RunLock(manifest_path(opts.store, opts.manifest).parent / LOCK_NAME, wait_lock):
            report = repair(opts, force=force_rebuild)
        click.echo(report.sentence())
        return EXIT_OK

    sys.exit(_guard(run))


def _guard(fn, *args, **kwargs) -> int:
    """User mistakes and environment problems end in one sentence, never a traceback."""
    try:
        return fn(*args, **kwargs)
    except UsageError as e:
        click.echo(f"Error: {e}", err=True)
        return getattr(e, "exit_code", EXIT_USAGE)  # 65: damaged manifest, see `repair`
    except LockBusy as e:
        click.echo(f"Error: {e}", err=True)
        return EXIT_LOCKED
    except KeyboardInterrupt:
        click.echo("Stopped at once; the next run cleans up and resumes.", err=True)
        return 130
    except Exception as e:  # a bug: one sentence here, the traceback in the log file
        log.debug("unexpected error", exc_info=True)
        for handler in log.handlers:
            if isinstance(handler, logging.FileHandler):
                handler.handle(log.makeRecord(log.name, logging.ERROR, "", 0, "unexpected error",
                                              None, sys.exc_info()))
        click.echo(f"Error: unexpected {type(e).__name__}: {e} (the log has the details).",
                   err=True)
        return EXIT_INTERNAL


def _load_env() -> None:
    env_file = os.environ.get("ALEXANDRIA_ENV_FILE", ".env")
    if Path(env_file).is_file():
        load_dotenv(env_file, override=False)


def main() -> None:
    _load_env()
    cli(prog_name="alexandria")


@click.command("ingest_books")
@ingest_options
def ingest_script(**kw) -> None:
    """Extract, chunk, embed and store every book (same options as `alexandria ingest`)."""
    sys.exit(_guard(_run_ingest, **kw))


def script_main() -> None:
    _load_env()
    ingest_script(prog_name="ingest_books.py")


@cli.command("sample-library")
@click.argument("dest", type=click.Path(path_type=Path))
def sample_library_cmd(dest: Path) -> None:
    """Write a small demo Calibre library (4 EPUBs + metadata.db) to DEST, for a first run."""

    def run() -> int:
        from .sample import make_sample_library

        try:
            make_sample_library(dest)
        except FileExistsError as e:
            raise UsageError(str(e)) from e
        click.echo(f"Wrote a sample Calibre library to {dest}.")
        return EXIT_OK

    sys.exit(_guard(run))


@cli.command("tune")
@opt("--directory", type=click.Path(path_type=Path), required=True,
     help="A folder of EPUBs (or a calibre library) whose first books are the sample.")
@opt("--max-vram-gb", type=float, default=None, help="Only budgets that stay under this many GB.")
@click.option("--env-file", type=click.Path(path_type=Path), default=Path(".env"), show_default=True,
              help="Where ALEXANDRIA_TOKEN_BUDGET is written.")
@click.option("--sample-tokens", type=int, default=None,
              help="Tokens timed per try (default 400k on CUDA, 40k on the CPU).")
@click.option("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--model", default="bge-m3", show_default=True, help="Alias, Hugging Face id or local folder.")
@opt("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@opt("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
def tune_cmd(directory, max_vram_gb, env_file, sample_tokens, as_json, model, device, dtype) -> None:
    """Time a few token budgets on this device and write the fastest that fits into .env."""

    def run() -> int:
        from .tune import tune

        out = tune(directory, model, device, dtype, max_vram_gb, env_file, sample_tokens=sample_tokens)
        if as_json:
            click.echo(json.dumps(out, indent=2))
            return EXIT_OK
        for t in out["trials"]:
            speed = f"{t['tokens_per_s']:>12,.0f} tokens/s" if t["tokens_per_s"] else f"{'':>21}"
            vram = f"  {t['vram_peak_mb']:,.0f} MB" if t["vram_peak_mb"] else ""
            click.echo(f"budget {t['token_budget']:>8,} {speed}{vram}  {t['why'] or 'ok'}")
        click.echo(f"ALEXANDRIA_TOKEN_BUDGET={out['best_token_budget']} written to {out['env_file']}")
        return EXIT_OK

    sys.exit(_guard(run))


def _bench_command():
    from .bench import bench_command

    return bench_command


cli.add_command(_bench_command(), "bench")


@cli.command("doctor")
@opt("--directory", type=click.Path(path_type=Path), default=None,
     help="Also check this library.")
@opt("--no-load-model", is_flag=True, default=False,
     help="Skip loading the model (faster; dimension read from its config).")
@model_options
def doctor_cmd(directory, no_load_model, model, device, dtype, store, qdrant_url, collection,
               manifest) -> None:
    """Check Python, packages, CUDA, the model, the store, the library, disk and the lock."""

    def run() -> int:
        from .doctor import exit_code, render_table, run_checks

        checks = run_checks(model, device, store, qdrant_url, _api_key(), collection, directory,
                            manifest, load_model=not no_load_model)
        click.echo(render_table(checks))
        return exit_code(checks)

    sys.exit(_guard(run))
