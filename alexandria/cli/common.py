"""What every command shares: the group, the options (each also read from ALEXANDRIA_<OPTION>),
the exit codes, and the guard that turns any failure into one sentence."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

import click
from dotenv import load_dotenv

from alexandria.errors import UsageError
from alexandria.store.location import DEFAULT_STORE
from alexandria.store.lock import EXIT_LOCKED, LockBusy

EXIT_OK, EXIT_FAILED_BOOKS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_PIPE = 141  # the shell's status for a command whose reader went away (128 + SIGPIPE)
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143, "SIGHUP": 129}

log = logging.getLogger("alexandria")


def env_name(name: str) -> str:
    return f"ALEXANDRIA_{name.upper().replace('-', '_')}"


def opt(*decls, **kw):
    """Every option also reads ALEXANDRIA_<OPTION> (flags beat environment beat .env)."""
    long = next(d for d in decls if d.startswith("--")).split("/")[0]
    kw.setdefault("envvar", env_name(long[2:]))
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
        opt("--store", type=click.Path(path_type=Path), default=DEFAULT_STORE,
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


def variant_options(f):
    """The model's CPU variant (docs/cli.md): at ingest it names the collection; search, serve and
    status take the collection's own, and these only pick among a store's collections."""
    for decorator in reversed([
        opt("--backend", type=click.Choice(["torch", "onnx", "openvino"]), default=None,
            help="torch (default), or onnx: the model exported once to ONNX and run by "
                 "onnxruntime on the CPU (cached; pip install 'alexandria[cpu]')."),
        opt("--quantize", type=click.Choice(["int8"]), default=None,
            help="With --backend onnx: dynamic int8 weights for this CPU (AVX-512 VNNI, AVX2 or "
                 "ARM64), made once and cached."),
        opt("--dims", type=click.IntRange(1), default=None,
            help="Keep the first N dimensions of each vector, normalised again (Matryoshka: "
                 "EmbeddingGemma's 768 cut to 512, 256 or 128)."),
    ]):
        f = decorator(f)
    return f


def given(name: str, value):
    """The option's value if the user gave it (flag, environment or .env), else None: search,
    status and plan then take it from the store's collection instead of the default."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return None if source in (None, ParameterSource.DEFAULT) else value


def api_key() -> str | None:
    return os.environ.get("QDRANT_API_KEY") or None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alexandria")
def cli() -> None:
    """Alexandria: turn an e-book library into a searchable Qdrant vector store."""


CHUNKERS = ("structural", "semantic", "hierarchical")  # alexandria.chunking.chunker.STRATEGIES
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
        variant_options,
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
            help="Write to the embedded store through its owner process (keeps the GIL for the GPU "
                 "feed; searches work meanwhile). --no-store-process: in-process, holding the "
                 "store alone."),
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
            "at most 4, on the CPU; cores-2, at most 32, on a GPU; cores-1, at most 32, with "
            "--embed-url)."),
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
        opt("--quantization", type=click.Choice(["none", "int8", "binary"]), default=None,
            help="Embedded store, new collection: the quantized copy of the vectors searched "
                 "first, rescored with the originals (default int8; an existing collection keeps "
                 "its own)."),
        opt("--on-disk/--no-on-disk", default=None,
            help="Embedded store, new collection: original vectors memory-mapped from disk "
                 "(default) or held in RAM."),
        opt("--hnsw-m", type=int, default=None,
            help="Embedded store, new collection: HNSW edges per node (default 16)."),
        opt("--sparse/--no-sparse", default=None,
            help="Embedded store, new collection: a sparse (BM25) vector beside the dense one for "
                 "hybrid search (default); --no-sparse: dense only, no word weights to compute."),
    ]):
        f = decorator(f)
    return f


def guard(fn, *args, **kwargs) -> int:
    """User mistakes and environment problems end in one sentence, never a traceback."""
    try:
        return fn(*args, **kwargs)
    except UsageError as e:
        click.echo(f"Error: {e}", err=True)
        to_log_file(f"Error: {e}")
        return getattr(e, "exit_code", EXIT_USAGE)  # 65: damaged manifest, see `repair`
    except LockBusy as e:
        click.echo(f"Error: {e}", err=True)
        to_log_file(f"Error: {e}")
        return EXIT_LOCKED
    except BrokenPipeError:  # `alexandria search ... | head`: the reader has all it wanted
        # stdout to /dev/null, so that the interpreter's last flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt:
        click.echo("Stopped at once; the next run cleans up and resumes.", err=True)
        to_log_file("Stopped at once (interrupted); the next run cleans up and resumes.")
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


def to_log_file(message: str) -> None:
    """A fatal error in the log file too (the terminal had it already): cron mail is often lost."""
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(log.makeRecord(log.name, logging.ERROR, "", 0, message, None, None))


def load_env() -> None:
    env_file = os.environ.get("ALEXANDRIA_ENV_FILE", ".env")
    if Path(env_file).is_file():
        load_dotenv(env_file, override=False)


