"""What a run is asked to do (IngestOptions), checked once, and the defaults derived from it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from alexandria.chunking.settings import DEFAULT_MIN_TOKENS, ChunkSettings
from alexandria.errors import UsageError
from alexandria.store.base import UPSERT_BATCH
from alexandria.store.location import DEFAULT_STORE, Location, check_chunker

# On a GPU, batches of 4 x 96 x 512 tokens beat 96 x 512 (the kernels get big enough to fill
# the card); benchmarks/gpu_variants.py measures it.
GPU_BUDGET_FACTOR = 4
COMPILE_MIN_BOOKS = 200  # --compile auto: runs with at least this many books to embed
GROUP_BUDGETS = 4  # token budgets per encode call: length sorting over several batches
# Groups given to the devices whose points are not yet queued for the writer, per device: 3 are
# on the device's side (its inbox of 2, 1 running); the rest let the store fall behind for a while.
MAX_UNWRITTEN_GROUPS = 8
# A book with more text than this (characters; about a second of one core) is chunked by several
# workers at once, in parts of about this much text (at most one per worker).
PART_CHARS = 500_000
# Niceness of the workers that prepare books for a GPU: they keep every core busy, and a device
# thread that loses its core in the middle of a forward leaves the GPU waiting for the next kernel.
PREP_NICE = 10
WAIT_S = 0.02  # the main thread looks for prepared books (and for a failure) this often


@dataclass(frozen=True)
class RunLimits:
    """Sizes inside a run. Every run uses the defaults; tests shrink them so that a small library
    takes the paths a big one takes (big books in parts, several groups, a full points queue)."""

    upsert_batch: int = UPSERT_BATCH
    group_budgets: int = GROUP_BUDGETS
    max_unwritten_groups: int = MAX_UNWRITTEN_GROUPS
    part_chars: int = PART_CHARS


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
    store: Path = DEFAULT_STORE
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
    wait_lock: float = 0.0  # seconds to wait for another run's lock on the store (0: refuse at once)
    workers: int | None = None
    samples: int = 3
    token_budget: int | None = None  # tokens per model batch; default batch_size x chunk_tokens (x4 on GPU)
    compile: str = "auto"  # torch.compile the model: auto (on CUDA), on, off
    packing: str = "auto"  # unpadded batches (alexandria.packed): auto (CUDA), on, off
    # Chunks take their token ids from their chapter's where the tokenizer allows it; False
    # tokenizes every chunk again (bench --no-token-reuse: what the reuse saves).
    reuse_tokens: bool = True
    store_process: bool = True  # Qdrant Edge in a child process (its point building holds the GIL)
    gpus: str | None = None  # "all" or N: one embedding device per GPU (else --device a,b)
    max_vram_gb: float | None = None  # caps the token budget so the card stays under this
    prune: bool = True
    limit: int | None = None
    since: datetime | None = None
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    book_ids: tuple[int, ...] = ()
    chunker: str = "structural"  # structural, semantic or hierarchical (alexandria.chunking)
    threshold: float | None = None  # semantic: similarity below which to break; None = auto
    min_tokens: int = DEFAULT_MIN_TOKENS  # semantic: no topic break in a chunk shorter than this
    # A private folder of extracted books by content hash: runs over the same files (alexandria
    # eval, one per chunker) extract each book once.
    extract_cache: Path | None = None
    # Embedding servers (alexandria.embedding.remote) instead of the model in this process
    embed_urls: tuple[str, ...] = ()
    embed_api: str = "auto"  # tei, openai, or auto (from each URL's route)
    embed_key: str | None = field(default=None, repr=False)  # never printed, logged or reported
    embed_timeout: float = 60.0  # seconds per request
    embed_retry_budget: float = 300.0  # no endpoint answering for this long fails the run
    embed_batch: int | None = None  # texts per request (default 32; per URL: #batch=N)
    embed_concurrency: int | None = None  # requests in flight per endpoint (default 4)
    # A new embedded collection's configuration (alexandria.store.config); None: the default.
    quantization: str | None = None
    on_disk: bool | None = None
    hnsw_m: int | None = None
    sparse: bool | None = None  # a new collection's sparse vectors (None: the default, on)
    # The model's CPU variant (alexandria.embedding.onnx; ModelSpec.with_variant): part of the
    # collection's name and of each row's fingerprint, so variants never share a collection.
    backend: str | None = None
    quantize: str | None = None
    dims: int | None = None

    def chunk_settings(self) -> ChunkSettings:
        return ChunkSettings(chunk_tokens=self.chunk_tokens, overlap=self.overlap,
                             strategy=self.chunker, threshold=self.threshold,
                             min_tokens=self.min_tokens)

    def location(self) -> Location:
        """Where this run's vectors live (built once; every stage of the run uses it)."""
        return Location.of(self.model, store=self.store, url=self.qdrant_url, api_key=self.api_key,
                           collection=self.collection, manifest=self.manifest,
                           settings=self.chunk_settings(),
                           store_config={"quantization": self.quantization,
                                         "on_disk": self.on_disk, "hnsw_m": self.hnsw_m,
                                         "sparse": self.sparse},
                           variant=(self.backend, self.quantize, self.dims))

    def check(self) -> None:
        """One sentence per mistake in the options, before anything is loaded."""
        from alexandria.embedding.devices import check_device_names

        check_device_names(self.device)
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1.")
        if self.overlap >= self.chunk_tokens:
            raise UsageError("--overlap must be smaller than --chunk-tokens.")
        check_chunk_options(self)
        if self.compile not in ("auto", "on", "off"):
            raise UsageError(f"--compile must be auto, on or off, not {self.compile!r}.")
        if self.embed_urls and self.chunker == "semantic":
            raise UsageError("--chunker semantic embeds sentences in this process; with --embed-url "
                             "use structural or hierarchical.")


def default_token_budget(opts: IngestOptions, max_seq_length: int, device: str) -> int:
    if opts.token_budget:
        return opts.token_budget
    budget = opts.batch_size * min(opts.chunk_tokens, max_seq_length)
    return budget * GPU_BUDGET_FACTOR if device.startswith("cuda") else budget


def default_workers(device: str, remote: bool = False) -> int:
    """On a GPU box every spare core prepares books (the GPU eats them faster than one core
    can parse); with embedding servers every core but the coordinator's does; on the CPU the
    model needs the cores itself."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    if remote:
        return max(1, min(32, cores - 1))
    if device.startswith("cuda"):
        return max(1, min(32, cores - 2))
    return max(1, min(4, cores - 1))


def check_chunk_options(opts: IngestOptions) -> None:
    """One sentence per mistake in the chunking options, before anything is loaded."""
    check_chunker(opts.chunker)
    if opts.threshold is not None and not -1.0 <= opts.threshold <= 1.0:
        raise UsageError("--threshold is a cosine similarity: give a number from -1 to 1.")
    if opts.chunker == "semantic" and (opts.min_tokens < 1 or opts.min_tokens >= opts.chunk_tokens):
        raise UsageError("--min-tokens must be at least 1 and smaller than --chunk-tokens.")
