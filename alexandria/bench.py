"""`alexandria bench`: the real pipeline against the users' recipe, on the same books, in one run.

What is measured, per repeat (speeds are the median over --repeats; ratios such as the speedup
over the baseline are the median of each repeat's own ratio):

* end to end: `alexandria.pipeline.Ingest` over K rewritten copies of every book of the corpus (enough
  copies to reach --tokens), into a fresh Qdrant Edge store: planning, extraction and chunking in
  worker processes, embedding, store writes and the manifest. The model is loaded (and warmed)
  before the clock starts.
* baseline: per book, `SentenceTransformer.encode(chunks, batch_size=96)` on the same chunks of
  every book of the corpus (one pass: the copies would repeat the same work), with the model
  uncompiled: tokenization plus model, no extraction, no store.
* model only: the same chunks pre-tokenized and fed to the model exactly as the pipeline feeds
  it (Embedder.encode_ids: the same token budget, the same compiled or eager model, packed or
  padded batches as the pipeline's `--packing`), without
  extraction, chunking or store (capped on the CPU so that a test stays short).

MFU counts useful FLOPs (real tokens, not padding) against a matmul peak measured on the spot in
the model's dtype: FLOPs per token = 2 x non-embedding parameters + 4 x layers x seq x hidden, with
seq the mean chunk length in tokens (padding is waste, not useful work).

`--synthetic-weights` builds bge-m3 or EmbeddingGemma with random weights of the exact
architecture and a tokenizer trained on the corpus (no hub needed); the output says so.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .errors import UsageError
from .orphan import child_context

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "epubs" / "books"
BASELINE_BATCH = 96  # the users' recipe: SentenceTransformer.encode(chunks, batch_size=96)
PROJECT_BOOKS = (5_000, 50_000)
COPY_MARKER = "META-INF/alexandria-copy.txt"
SYNTHETIC_TOKENIZER = "trained on the corpus (synthetic)"
TOKENIZER_VOCAB = 30_000
TOKENIZER_SAMPLE_CHARS = 2_000_000  # Unigram training: about 4 s on 2 cores for this much text
CPU_MODEL_ONLY_CHUNKS = 2_000
CPU_MODEL_ONLY_TOKENS = 100_000
GPU_MODEL_ONLY_CHUNKS = 10_000

REQUIRED_KEYS = (
    "e2e_tokens_per_s", "e2e_chunks_per_min", "baseline_tokens_per_s", "speedup_vs_baseline",
    "model_only_tokens_per_s", "e2e_vs_model_only", "mfu", "padding_efficiency", "gpu_util",
    "vram_peak_mb", "stages", "device", "model", "dtype", "synthetic_weights",
)

Progress = Callable[[str], None]


# -- synthetic models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticArch:
    alias: str
    cuda_dtype: str
    max_seq_length: int
    pooling: str  # what the real model's sentence-transformers config uses
    specials: tuple[str, ...]  # in id order: the trained tokenizer's first ids
    bos: str
    eos: str
    pad: str
    unk: str
    dense: tuple[int, ...] = ()  # EmbeddingGemma's two projection layers after pooling
    # SentencePiece's nmt_nfkc (XLM-R, so bge-m3): NFKC, then these become spaces, and the
    # converted tokenizer folds runs of spaces into one
    nmt_spaces: bool = False
    # Gemma 3's own tokenizer pre-splits no words (BPE over the whole text, spaces as the marker),
    # so a chunk's tokens in its chapter are never reused there (alexandria.chunk.IdReuse): its
    # stand-in is trained on words, then runs unsplit (the same tokens, no piece spans a marker).
    presplit: bool = True


NMT_SPACES = "[\t\n\f\r\u1680\u200b\u200c\u200e\u200f\u2028\u2029\u2581\ufeff\ufffd]"


SYNTHETIC = {
    # BAAI/bge-m3: XLM-RoBERTa large, CLS pooling, 8192 positions.
    "bge-m3": SyntheticArch("bge-m3", "float16", 8192, "cls",
                            ("<s>", "<pad>", "</s>", "<unk>", "<mask>"), "<s>", "</s>", "<pad>", "<unk>",
                            nmt_spaces=True),
    # google/embeddinggemma-300m: Gemma 3 text, bidirectional, mean pooling, 768 -> 3072 -> 768.
    "embeddinggemma": SyntheticArch("embeddinggemma", "bfloat16", 2048, "mean",
                                    ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"), "<bos>", "<eos>",
                                    "<pad>", "<unk>", dense=(3072,), presplit=False),
}


def synthetic_alias(model: str) -> str:
    from .models import resolve_model

    name = resolve_model(model).name
    if name not in SYNTHETIC:
        raise UsageError(
            f"--synthetic-weights builds bge-m3 or embeddinggemma only, not {model!r}."
        )
    return name


def synthetic_config(alias: str):
    """The exact architecture of the real model, as a transformers config (no weights)."""
    if alias == "bge-m3":
        from transformers import XLMRobertaConfig

        return XLMRobertaConfig(
            vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
            intermediate_size=4096, hidden_act="gelu", max_position_embeddings=8194,
            type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        )
    if alias == "embeddinggemma":
        import inspect

        from transformers import Gemma3TextConfig

        kw: dict[str, Any] = dict(
            vocab_size=262144, hidden_size=768, num_hidden_layers=24, num_attention_heads=3,
            num_key_value_heads=1, head_dim=256, intermediate_size=1152, sliding_window=512,
            max_position_embeddings=2048, query_pre_attn_scalar=256, rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh", pad_token_id=0, eos_token_id=1, bos_token_id=2,
            use_cache=False,
        )
        if "use_bidirectional_attention" in inspect.signature(Gemma3TextConfig.__init__).parameters:
            kw["use_bidirectional_attention"] = True
        return Gemma3TextConfig(**kw)
    raise UsageError(f"No synthetic architecture for {alias!r}.")


def parameter_counts(model) -> tuple[int, int]:
    """(all parameters, non-embedding parameters): embeddings and BERT-style poolers excluded."""
    import torch

    skip: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Embedding) or name.split(".")[-1] == "pooler":
            skip.update(id(p) for p in module.parameters())
    total = sum(p.numel() for p in model.parameters())
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    return total, non_embedding


def config_parameter_counts(config) -> tuple[int, int]:
    """Parameter counts of an architecture, built on the meta device: no memory, no weights."""
    import torch
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(config)
    return parameter_counts(model)


def train_tokenizer(texts: list[str], arch: SyntheticArch, vocab_size: int = TOKENIZER_VOCAB):
    """A SentencePiece-like Unigram tokenizer trained on (a sample of) the corpus text."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    total = sum(len(t) for t in texts) or 1
    share = min(1.0, TOKENIZER_SAMPLE_CHARS / total)
    sample = [t[: max(200, int(len(t) * share))] for t in texts if t.strip()]
    tk = Tokenizer(models.Unigram())
    tk.normalizer = normalizers.NFKC()
    if arch.nmt_spaces:
        tk.normalizer = normalizers.Sequence([
            normalizers.NFKC(), normalizers.Replace(Regex(NMT_SPACES), " "),
            normalizers.Replace(Regex(" {2,}"), " "),
        ])
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=list(arch.specials), unk_token=arch.unk,
        show_progress=False,
    )
    tk.train_from_iterator(sample, trainer)
    if not arch.presplit:
        tk.pre_tokenizer = pre_tokenizers.Metaspace(split=False)
    bos, eos = tk.token_to_id(arch.bos), tk.token_to_id(arch.eos)
    tk.post_processor = processors.TemplateProcessing(
        single=f"{arch.bos} $A {arch.eos}", pair=f"{arch.bos} $A {arch.eos} $B {arch.eos}",
        special_tokens=[(arch.bos, bos), (arch.eos, eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=arch.bos, eos_token=arch.eos, pad_token=arch.pad,
        unk_token=arch.unk, mask_token="<mask>", cls_token=arch.bos, sep_token=arch.eos,
        model_max_length=arch.max_seq_length,
    )


def build_synthetic_model(alias: str, texts: list[str], folder: Path, device: str,
                          progress: Progress | None = None) -> Path:
    """Random weights of the exact architecture + a corpus-trained tokenizer, saved as a
    sentence-transformers folder that `alexandria.embed` loads like any local model."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    from .embed import quiet_libraries

    quiet_libraries()
    _quiet_transformers()
    arch = SYNTHETIC[alias]
    say = progress or (lambda _m: None)
    folder = Path(folder)
    raw = folder.parent / (folder.name + ".raw")
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    tokenizer = train_tokenizer(texts, arch)
    say(f"trained a {tokenizer.vocab_size}-token Unigram tokenizer on the corpus "
        f"({time.perf_counter() - t:.1f}s)")
    config = synthetic_config(alias)
    if tokenizer.vocab_size > config.vocab_size:
        raise UsageError("The trained tokenizer is larger than the model's vocabulary.")
    t = time.perf_counter()
    torch.manual_seed(0)
    dtype = getattr(torch, arch.cuda_dtype)
    init_device = device if device.startswith("cuda") else "cpu"
    with torch.device(init_device):
        model = AutoModel.from_config(config, dtype=dtype)
    model.save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    del model
    say(f"random {alias} weights built and saved ({time.perf_counter() - t:.1f}s)")
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    modules: list[Any] = [Transformer(str(raw), max_seq_length=arch.max_seq_length,
                                      model_kwargs={"dtype": dtype})]
    hidden = config.hidden_size
    modules.append(Pooling(hidden, arch.pooling))
    width = hidden
    for size in arch.dense:
        modules.append(Dense(width, size, bias=False, activation_function=torch.nn.Identity()))
        width = size
    if arch.dense:
        modules.append(Dense(width, hidden, bias=False, activation_function=torch.nn.Identity()))
    modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu")
    st.save(str(folder))
    del st, modules
    shutil.rmtree(raw, ignore_errors=True)
    return folder


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    except Exception:  # only cosmetics
        pass


# -- the corpus and its copies ---------------------------------------------------------------------


def corpus_books(corpus: Path) -> list[Path]:
    corpus = Path(corpus).expanduser()
    if not corpus.is_dir():
        raise UsageError(f"The corpus folder {corpus} does not exist.")
    books = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() == ".epub")
    if not books:
        raise UsageError(f"The corpus folder {corpus} holds no .epub files.")
    return books


def corpus_texts(books: list[Path]) -> list[str]:
    """Every chapter's text, for the synthetic models' tokenizer; a book that fails to extract is
    left out here (the dry pass reports it)."""
    from .extract import extract_epub

    texts: list[str] = []
    for path in books:
        try:
            texts.extend(c.text for c in extract_epub(path.read_bytes(), str(path)).chapters)
        except Exception:
            continue
    return texts


def copy_epub(src: Path, dst: Path, copy_no: int) -> None:
    """A readable copy with its own content hash: the same entries (mimetype first and stored)
    plus one small marker entry, so that plain-folder book keys (content hashes) differ."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        infos = zin.infolist()
        infos.sort(key=lambda i: i.filename != "mimetype")  # stable: mimetype first
        for info in infos:
            if info.is_dir():
                continue
            data = zin.read(info)
            out = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            out.external_attr = info.external_attr
            if info.filename == "mimetype":
                out.compress_type = zipfile.ZIP_STORED
            elif info.compress_type in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                out.compress_type = info.compress_type
            else:
                out.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(out, data)
        marker = zipfile.ZipInfo(COPY_MARKER, date_time=(2020, 1, 1, 0, 0, 0))
        marker.compress_type = zipfile.ZIP_STORED
        zout.writestr(marker, f"alexandria bench copy {copy_no} of {src.name}\n")


def make_copies(books: list[Path], copies: int, dest: Path) -> Path:
    """dest/copy_000/<book>.epub ... dest/copy_<K-1>/<book>.epub."""
    shutil.rmtree(dest, ignore_errors=True)
    for i in range(copies):
        for book in books:
            copy_epub(book, dest / f"copy_{i:03d}" / book.name, i)
    return dest


@dataclass
class PassBook:
    path: Path
    title: str  # what the pipeline uses as the title for a plain file: the file's stem
    texts: list[str]  # what the model reads (document prompt applied, as in the pipeline)
    tokens: list[int]  # per chunk, counted as the pipeline counts them


def dry_pass(books: list[Path], tokenizer_json: str, max_seq_length: int, settings,
             document_template: str | None, spec) -> tuple[list[PassBook], list[dict]]:
    """Every book prepared once with the pipeline's own code: chunks and token counts."""

    from .prepare import PrepareTask, init_worker, prepare

    tasks = [PrepareTask(str(i), str(p), "epub", p.stem) for i, p in enumerate(books)]
    initargs = (tokenizer_json, max_seq_length, settings, document_template)
    workers = max(1, min(len(tasks), (os.cpu_count() or 2) - 1, 8))
    if workers == 1:
        init_worker(*initargs)
        prepared = [prepare(t) for t in tasks]
    else:
        with ProcessPoolExecutor(workers, mp_context=child_context(), initializer=init_worker,
                                 initargs=initargs) as pool:
            prepared = list(pool.map(prepare, tasks))
    good: list[PassBook] = []
    excluded: list[dict] = []
    for path, p in zip(books, prepared, strict=True):
        if p.reason or not p.chunks:
            excluded.append({"book": path.name, "reason": p.reason or "no-chunks"})
            continue
        title = path.stem
        good.append(PassBook(path, title, [spec.document_text(c.text, title) for c in p.chunks],
                             [c.tokens for c in p.chunks]))
    return good, excluded


# -- measurements ----------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: str, dtype: str) -> float:
    """Dense matmul throughput on the spot, in the model's dtype (the MFU denominator)."""
    import torch

    tdtype = getattr(torch, dtype)
    if device.startswith("cuda"):
        n, warm, reps = 8192, 3, 10
        a = torch.randn(n, n, device=device, dtype=tdtype)
        b = torch.randn(n, n, device=device, dtype=tdtype)
        for _ in range(warm):
            a @ b
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        del a, b
        torch.cuda.empty_cache()
    else:
        n, warm, reps = 2048, 1, 5
        a = torch.randn(n, n, dtype=tdtype)
        b = torch.randn(n, n, dtype=tdtype)
        for _ in range(warm):
            a @ b
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e12


class GpuSampler:
    """NVML utilisation and SM clock every 100 ms in a background thread; does nothing without a
    GPU. The clock tells whether a long run is slower because the card clocks down under sustained
    load (the model-only pass lasts seconds, the end-to-end run a minute)."""

    def __init__(self, device: str, interval: float = 0.1) -> None:
        self.samples: list[int] = []
        self.clocks: list[int] = []  # SM MHz, where utilisation > 0
        self.mem_peak_mb: float | None = None
        self.interval = interval
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not device.startswith("cuda"):
            return
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # no NVML library or no permission: no utilisation, not an error
            self._handle = None

    def __enter__(self) -> GpuSampler:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, name="bench-nvml", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        import pynvml

        while not self._stop.is_set():
            try:
                util = int(pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
                self.samples.append(util)
                if util > 0:
                    with contextlib.suppress(Exception):  # not every card reports it
                        self.clocks.append(int(pynvml.nvmlDeviceGetClockInfo(self._handle,
                                                                             pynvml.NVML_CLOCK_SM)))
                used = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
                self.mem_peak_mb = max(self.mem_peak_mb or 0.0, used)
            except Exception:
                return
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any] | None:
        if self._handle is None or not self.samples:
            return None
        busy = [i for i, s in enumerate(self.samples) if s > 0]
        span = self.samples[busy[0]: busy[-1] + 1] if busy else []
        return {
            "mean_pct": round(statistics.fmean(self.samples), 1),
            "busy_fraction": round(sum(1 for s in span if s > 0) / len(span), 3) if span else 0.0,
            "samples": len(self.samples),
            "nvml_mem_peak_mb": round(self.mem_peak_mb, 1) if self.mem_peak_mb else None,
            "sm_clock_mhz": round(statistics.fmean(self.clocks)) if self.clocks else None,
        }


def _reset_vram(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def _vram_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def corpus_sample(corpus: Path, model: str, synthetic_weights: bool, device: str, chunks: int,
                  work: Path):
    """(spec, embedder, token ids of `chunks` chunks spread over the corpus): what the GPU
    scripts time the model on, outside the bench."""
    from .chunk import Chunker, ChunkSettings
    from .embed import get_embedder
    from .models import ModelSpec, resolve_model
    from .prepare import model_inputs

    books = corpus_books(corpus)
    if synthetic_weights:
        alias = synthetic_alias(model)
        folder = build_synthetic_model(alias, corpus_texts(books), Path(work) / alias, device)
        spec = ModelSpec(alias, str(folder), cuda_dtype=SYNTHETIC[alias].cuda_dtype)
    else:
        spec = resolve_model(model)
    embedder = get_embedder(spec, device, "auto")
    passbooks, _ = dry_pass(books, embedder.tokenizer_json(), embedder.max_seq_length,
                            ChunkSettings(), spec.document_template, spec)
    texts = [t for b in passbooks for t in b.texts]
    texts = _spread(texts, min(chunks, len(texts)))
    chunker = Chunker(embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings())
    return spec, embedder, model_inputs(chunker, texts)


def _spread(items: list, keep: int) -> list:
    """`keep` items evenly spread over the list (all of them when there are fewer)."""
    if keep >= len(items):
        return list(items)
    step = len(items) / keep
    return [items[int(i * step)] for i in range(keep)]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def _paired(runs: list[dict[str, Any]], top: str, bottom: str, digits: int = 4) -> float | None:
    """Median of the per-repeat ratios: each repeat measures both sides back to back, so a slow
    moment of the machine moves both (the ratio of two medians can pair a fast one with a slow one)."""
    ratios = [r[top] / r[bottom] for r in runs if r.get(top) and r.get(bottom)]
    return round(_median(ratios), digits) if ratios else None


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(_median(known), 4) if known else None


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)} ({os.cpu_count()} CPUs)"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} CPUs)"


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "transformers", "sentence_transformers", "tokenizers", "qdrant_edge"):
        try:
            out[mod] = str(getattr(__import__(mod), "__version__", "?"))
        except Exception:
            out[mod] = "missing"
    return out


# -- the benchmark ---------------------------------------------------------------------------------


def run_bench(
    corpus: Path,
    model: str = "bge-m3",
    device: str = "auto",
    synthetic_weights: bool = False,
    tokens: int = 20_000_000,
    repeats: int = 3,
    batch_size: int = 96,
    workdir: Path | None = None,
    *,
    dtype: str = "auto",
    gpus: str | None = None,
    workers: int | None = None,
    profile: bool = False,
    packing: str = "auto",
    progress: Progress | None = None,
    on_repeat: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark and return its results (see the module docstring).

    on_repeat gets the results of the repeats so far after each one: a run cut off (a time
    limit on a lent GPU) still leaves its measurements. With `profile`, one more end-to-end pass
    and one more model-only pass run under torch.profiler (outside the medians) and the results
    get their kernel times per million tokens (alexandria.kernels)."""
    from .embed import (
        Embedder,
        cache_key,
        get_embedder,
        quiet_libraries,
        resolve_device,
        resolve_devices,
        resolve_dtype,
    )
    from .kernels import compare, profiled
    from .models import ModelSpec, resolve_model
    from .pipeline import Ingest, IngestOptions

    if tokens < 1:
        raise UsageError("--tokens must be at least 1.")
    if repeats < 1:
        raise UsageError("--repeats must be at least 1.")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1.")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1.")
    say = progress or (lambda _m: None)
    quiet_libraries()
    _quiet_transformers()
    books = corpus_books(corpus)
    device = resolve_device(device)
    # --gpus: the end-to-end run once more on that many GPUs, in every repeat (scaling vs one)
    devices = resolve_devices(device, gpus) if gpus else [device]
    if gpus and not device.startswith("cuda"):
        raise UsageError("--gpus needs --device cuda.")
    own_workdir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="alexandria-bench-")) if own_workdir else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    import torch

    try:
        # 1. the model, loaded once into the embedder cache that the pipeline reads
        tokenizer_note = "the model's own"
        if synthetic_weights:
            alias = synthetic_alias(model)
            arch = SYNTHETIC[alias]
            texts = corpus_texts(books)
            if not texts:
                raise UsageError(f"No book in {corpus} has text to train a tokenizer on.")
            say(f"building {alias} with random weights (synthetic, no hub)")
            folder = build_synthetic_model(alias, texts, work / f"synthetic-{alias}", device, say)
            del texts
            folder = folder.resolve()
            spec = ModelSpec(name=f"{alias} (synthetic weights)", source=str(folder),
                             cuda_dtype=arch.cuda_dtype)
            pipeline_model = str(folder)
            tokenizer_note = SYNTHETIC_TOKENIZER
            model_label = alias
        else:
            spec = resolve_model(model)
            pipeline_model = model
            model_label = spec.name
        resolved_dtype = resolve_dtype(dtype, device, spec)
        t = time.perf_counter()
        embedder: Embedder = get_embedder(spec, device, resolved_dtype)
        say(f"model {model_label} loaded on {device} in {resolved_dtype} "
            f"({time.perf_counter() - t:.1f}s)")
        pipe_spec = resolve_model(pipeline_model)
        if cache_key(pipe_spec.source, device, resolved_dtype) not in _embedder_cache():
            raise RuntimeError("the pipeline would not find the benchmark's model in the cache")
        st_model = embedder.model
        base_opts = IngestOptions(model=pipeline_model, device=device, dtype=resolved_dtype,
                                  batch_size=batch_size, force=True, workers=workers,
                                  packing=packing)

        # 2. one dry pass: chunks and tokens per pass, the number of copies
        t = time.perf_counter()
        passbooks, excluded = dry_pass(books, embedder.tokenizer_json(), embedder.max_seq_length,
                                       base_opts.chunk_settings(), pipe_spec.document_template,
                                       pipe_spec)
        if not passbooks:
            raise UsageError(f"No book in {corpus} could be extracted and chunked.")
        tokens_per_pass = sum(sum(b.tokens) for b in passbooks)
        chunks_per_pass = sum(len(b.texts) for b in passbooks)
        copies = max(1, math.ceil(tokens / tokens_per_pass))
        say(f"dry pass: {len(passbooks)} books, {chunks_per_pass} chunks, {tokens_per_pass} tokens "
            f"({time.perf_counter() - t:.1f}s); {copies} copies for {tokens} tokens"
            + (f"; {len(excluded)} excluded" if excluded else ""))
        copy_dir = make_copies([b.path for b in passbooks], copies, work / "corpus-copy")

        def e2e_options(store: Path, directory: Path = copy_dir) -> IngestOptions:
            return IngestOptions(directory=directory, model=pipeline_model, device=device,
                                 dtype=resolved_dtype, batch_size=batch_size, force=True,
                                 store=store, workers=workers, packing=packing)

        # 3. model-only batches (the same chunks, length-sorted; packed or padded as the pipeline)
        all_texts = [t for b in passbooks for t in b.texts]
        if device.startswith("cuda"):
            mo_texts = _spread(all_texts, min(len(all_texts), GPU_MODEL_ONLY_CHUNKS))
        else:
            all_tokens = [n for b in passbooks for n in b.tokens]
            mean = max(1.0, statistics.fmean(all_tokens))
            keep = min(len(all_texts), CPU_MODEL_ONLY_CHUNKS,
                       max(1, int(min(tokens, CPU_MODEL_ONLY_TOKENS) / mean)))
            mo_texts = _spread(all_texts, keep)
        from .chunk import Chunker
        from .pipeline import default_token_budget, default_workers
        from .prepare import model_inputs

        mo_ids = model_inputs(Chunker(embedder.tokenizer_json(), embedder.max_seq_length,
                                      base_opts.chunk_settings()), mo_texts)
        budget = default_token_budget(base_opts, embedder.max_seq_length, device)
        mo_real = int(sum(len(x) for x in mo_ids))
        mean_padded_len = mo_real / max(1, len(mo_ids))  # useful attention FLOPs: real lengths

        # 4. peak and model facts
        peak = matmul_peak_tflops(device, resolved_dtype)
        auto_model = st_model[0].auto_model
        _, non_embedding = parameter_counts(auto_model)
        cfg = auto_model.config
        layers = int(getattr(cfg, "num_hidden_layers", 0) or 0)
        hidden = int(getattr(cfg, "hidden_size", 0) or 0)
        flops_per_token = 2 * non_embedding + 4 * layers * mean_padded_len * hidden
        say(f"matmul peak {peak:.1f} TFLOP/s ({resolved_dtype}); {flops_per_token / 1e9:.2f} "
            "GFLOP per token")

        # warm-up: kernels, allocator, compilation (as --compile auto does for a library), before
        # any clock starts; two passes so that a dynamic-shape recompile happens here too. Packing
        # is decided first, as the pipeline does: the compiled graph is traced packed or padded.
        embedder.set_packing(packing)
        if device.startswith("cuda"):
            embedder.compile()
        with embedder.eager():  # the baseline's kernels; its inputs would compile a second graph
            embedder.encode_documents(all_texts[: batch_size * 2], batch_size)
        others = {id(e): e for e in (get_embedder(spec, d, resolved_dtype) for d in devices)
                  if e is not embedder}
        for e in [embedder, *others.values()]:  # every GPU of a --gpus run compiles before the clock
            if e is not embedder:
                e.set_packing(packing)
                e.compile()
            for _ in range(2):
                e.encode_ids(mo_ids[: max(8, len(mo_ids) // 10)], budget,
                             max_batch=max(batch_size * 4, budget // 32))
            _sync(e.device)

        def summarize() -> dict[str, Any]:
            e2e_tps = _median([r["e2e_tokens_per_s"] for r in runs])
            base_tps = _median([r["baseline_tokens_per_s"] for r in runs])
            mo_tps = _median([r["model_only_tokens_per_s"] for r in runs])
            stage_names = sorted({k for r in runs for k in r["stages"]})
            stages = {k: round(_median([r["stages"].get(k, 0.0) for r in runs]), 3) for k in stage_names}
            stages["total"] = round(_median([r["e2e_s"] for r in runs]), 3)
            gpu = [r["gpu"] for r in runs if r["gpu"]]
            vram = [r["vram_peak_mb"] for r in runs if r["vram_peak_mb"] is not None]
            mean_tokens_per_book = tokens_per_pass / len(passbooks)

            def mfu(tps: float) -> float:
                return round(tps * flops_per_token / (peak * 1e12), 4) if peak else 0.0

            def hours(tps: float) -> dict[str, float]:
                return {str(n): round(n * mean_tokens_per_book / tps / 3600, 2) if tps else None
                        for n in PROJECT_BOOKS}

            failed = sum(r["books_failed"] + r.get("multi_gpu_books_failed", 0) for r in runs)
            multi_gpu = None
            if len(devices) > 1:
                multi_tps = _median([r["multi_gpu_tokens_per_s"] for r in runs])
                multi_gpu = {"gpus": len(devices), "devices": devices,
                             "e2e_tokens_per_s": round(multi_tps, 1),
                             "one_gpu_e2e_tokens_per_s": round(e2e_tps, 1),
                             "scaling": _paired(runs, "multi_gpu_tokens_per_s", "e2e_tokens_per_s", 3)}
            notes = []
            if failed:
                notes.append(f"{failed} book runs failed in the pipeline; see runs[].books_failed")
            if synthetic_weights:
                notes.append("random weights of the exact architecture: speeds are real, vectors are not")
            result: dict[str, Any] = {
                "e2e_tokens_per_s": round(e2e_tps, 1),
                "e2e_chunks_per_min": round(_median([r["e2e_chunks_per_min"] for r in runs]), 1),
                "baseline_tokens_per_s": round(base_tps, 1),
                "baseline_chunks_per_min": round(_median([r["baseline_chunks_per_min"] for r in runs]), 1),
                "speedup_vs_baseline": _paired(runs, "e2e_tokens_per_s", "baseline_tokens_per_s"),
                "model_only_tokens_per_s": round(mo_tps, 1),
                "e2e_vs_model_only": _paired(runs, "e2e_tokens_per_s", "model_only_tokens_per_s"),
                "mfu": mfu(e2e_tps),
                "mfu_baseline": mfu(base_tps),
                "mfu_model_only": mfu(mo_tps),
                "padding_efficiency": round(_median([r["padding_efficiency"] for r in runs]), 4),
                "e2e_padding_efficiency": _median_or_none([r["e2e_padding_efficiency"] for r in runs]),
                "token_budget": budget,
                "compiled": bool(embedder.compiled),
                "packed": bool(embedder.packed),
                "gpu_util": round(_median([g["mean_pct"] for g in gpu]), 1) if gpu else None,
                "gpu_busy_fraction": round(_median([g["busy_fraction"] for g in gpu]), 3) if gpu else None,
                # CUDA events around every batch: busy between the first batch's start and the last's end
                "gpu_busy_between_batches": _median_or_none(
                    [(r["timeline"] or {}).get("busy_fraction") for r in runs]),
                "model_only_busy_between_batches": _median_or_none(
                    [(r["model_only_timeline"] or {}).get("busy_fraction") for r in runs]),
                # real tokens per second of GPU busy time: the batches' speed, gaps left out
                "gpu_busy_tokens_per_s": _median_or_none(
                    [(r["timeline"] or {}).get("real_tokens_per_busy_s") for r in runs]),
                "model_only_busy_tokens_per_s": _median_or_none(
                    [(r["model_only_timeline"] or {}).get("real_tokens_per_busy_s") for r in runs]),
                # NVML's SM clock while busy: a card that clocks down over a long run shows here
                "sm_clock_mhz": _median_or_none([(r["gpu"] or {}).get("sm_clock_mhz") for r in runs]),
                "model_only_sm_clock_mhz": _median_or_none(
                    [(r["model_only_gpu"] or {}).get("sm_clock_mhz") for r in runs]),
                "vram_peak_mb": max(vram) if vram else None,
                "stages": stages,
                "multi_gpu": multi_gpu,
                "device": device,
                "machine": _machine(device),
                "model": model_label,
                "model_source": spec.source,
                "dtype": resolved_dtype,
                "synthetic_weights": bool(synthetic_weights),
                "tokenizer": tokenizer_note,
                "matmul_peak_tflops": round(peak, 2),
                "flops_per_token": round(flops_per_token),
                "non_embedding_params": non_embedding,
                "mean_chunk_tokens": round(mean_padded_len, 1),
                "batch_size": batch_size,
                "workers": workers or default_workers(device),  # before the cap at the books of a run
                "baseline_batch_size": BASELINE_BATCH,
                "repeats": len(runs),
                "books": len(passbooks),
                "excluded": excluded,
                "tokens_per_pass": tokens_per_pass,
                "chunks_per_pass": chunks_per_pass,
                "copies": copies,
                "tokens_target": tokens,
                "model_only_chunks": len(mo_texts),
                "projection": {
                    "mean_tokens_per_book": round(mean_tokens_per_book, 1),
                    "hours": hours(e2e_tps),
                    "baseline_hours": hours(base_tps),
                },
                "runs": [_rounded(r) for r in runs],
                "versions": _versions(),
                "notes": notes,
            }
            return result

        runs: list[dict[str, Any]] = []
        for i in range(repeats):
            run: dict[str, Any] = {"repeat": i + 1}
            # end to end: the real pipeline into a fresh Qdrant Edge store
            store = work / f"store-{i}"
            shutil.rmtree(store, ignore_errors=True)
            opts = e2e_options(store)
            _sync(device)
            _reset_vram(device)
            real0, padded0 = embedder.real_tokens, embedder.padded_tokens  # the run's own embedder
            with GpuSampler(device) as sampler, _timelines([embedder]) as timelines:
                t = time.perf_counter()
                report = Ingest(opts).run()
                e2e_s = time.perf_counter() - t
            e2e_padded = embedder.padded_tokens - padded0
            run.update(
                e2e_s=round(e2e_s, 3), e2e_tokens=report.tokens, e2e_chunks=report.chunks,
                e2e_tokens_per_s=report.tokens / e2e_s, e2e_chunks_per_min=60 * report.chunks / e2e_s,
                books_done=report.books_done, books_failed=report.books_failed,
                stages=dict(report.stages_s), gpu=sampler.summary(), vram_peak_mb=_vram_mb(device),
                vram_peak_nvml_mb=report.vram_peak_nvml_mb,
                e2e_padding_efficiency=(embedder.real_tokens - real0) / e2e_padded if e2e_padded else None,
                timeline=timelines[0],
            )
            shutil.rmtree(store, ignore_errors=True)
            if len(devices) > 1:  # the same run on every GPU, fed from the same extraction pool
                multi = IngestOptions(directory=copy_dir, model=pipeline_model, device=device,
                                      gpus=str(len(devices)), dtype=resolved_dtype,
                                      batch_size=batch_size, force=True, store=store,
                                      workers=workers, packing=packing)
                with contextlib.ExitStack() as sampling:
                    samplers = [sampling.enter_context(GpuSampler(d)) for d in devices]
                    multi_timelines = sampling.enter_context(
                        _timelines([embedder, *others.values()]))
                    t = time.perf_counter()
                    multi_report = Ingest(multi).run()
                    multi_s = time.perf_counter() - t
                run.update(multi_gpu_s=round(multi_s, 3),
                           multi_gpu_tokens_per_s=multi_report.tokens / multi_s,
                           multi_gpu_books_failed=multi_report.books_failed,
                           multi_gpu_stages=dict(multi_report.stages_s),
                           multi_gpu_busy=[sm.summary() for sm in samplers],
                           multi_gpu_timelines=multi_timelines)
                say(f"repeat {i + 1}/{repeats}: e2e on {len(devices)} GPUs "
                    f"{run['multi_gpu_tokens_per_s']:,.0f} tok/s")
                shutil.rmtree(store, ignore_errors=True)
            # baseline: the users' recipe on the same chunks, per book, uncompiled
            _reset_vram(device)
            with embedder.eager(), GpuSampler(device) as sampler:
                t = time.perf_counter()
                for b in passbooks:
                    st_model.encode(b.texts, batch_size=BASELINE_BATCH, show_progress_bar=False)
                _sync(device)
                base_s = time.perf_counter() - t
            base_tokens = tokens_per_pass
            run.update(
                baseline_s=round(base_s, 3), baseline_tokens=base_tokens,
                baseline_tokens_per_s=base_tokens / base_s,
                baseline_chunks_per_min=60 * chunks_per_pass / base_s,
                baseline_gpu=sampler.summary(), baseline_vram_peak_mb=_vram_mb(device),
            )
            # model only: forwards on pre-tokenized, length-sorted batches, as the pipeline's
            real0, padded0 = embedder.real_tokens, embedder.padded_tokens
            _sync(device)
            with GpuSampler(device) as mo_sampler, _timelines([embedder]) as mo_timelines:
                t = time.perf_counter()
                embedder.encode_ids(mo_ids, budget, max_batch=max(batch_size * 4, budget // 32))
                _sync(device)
                mo_s = time.perf_counter() - t
            mo_padded = embedder.padded_tokens - padded0
            run.update(model_only_s=round(mo_s, 3), model_only_tokens=mo_real,
                       model_only_tokens_per_s=mo_real / mo_s,
                       padding_efficiency=(embedder.real_tokens - real0) / max(1, mo_padded),
                       model_only_timeline=mo_timelines[0], model_only_gpu=mo_sampler.summary())
            say(f"repeat {i + 1}/{repeats}: e2e {run['e2e_tokens_per_s']:,.0f} tok/s, baseline "
                f"{run['baseline_tokens_per_s']:,.0f} tok/s, model only "
                f"{run['model_only_tokens_per_s']:,.0f} tok/s")
            runs.append(run)
            if on_repeat is not None and i + 1 < repeats:
                on_repeat(summarize())

        result = summarize()
        if profile:
            if on_repeat is not None:  # a profile cut off by a time limit leaves the medians
                on_repeat(dict(result))
            say("profiling one more end-to-end pass (one copy of the corpus) and one more model-only "
                "pass (not in the medians)")
            store = work / "store-profile"
            shutil.rmtree(store, ignore_errors=True)
            with profiled(device) as e2e_rows:  # one copy of the corpus: kernel time per token
                report = Ingest(e2e_options(store, copy_dir / "copy_000")).run()
            shutil.rmtree(store, ignore_errors=True)
            with profiled(device) as mo_rows:
                embedder.encode_ids(mo_ids, budget, max_batch=max(batch_size * 4, budget // 32))
                _sync(device)
            result["profile"] = compare(e2e_rows, report.tokens, mo_rows, mo_real)
        return result
    finally:
        if own_workdir:
            shutil.rmtree(work, ignore_errors=True)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


@contextlib.contextmanager
def _timelines(embedders: list) -> Iterator[list]:
    """Each GPU embedder's batches on its own clock while the block runs; the list holds their
    summaries afterwards (empty on the CPU)."""
    from .timeline import Timeline

    summaries: list = []
    timelines = [Timeline(e.device) if e.device.startswith("cuda") else None for e in embedders]
    for e, timeline in zip(embedders, timelines, strict=True):
        if timeline is not None:
            timeline.start()
        e.timeline = timeline
    try:
        yield summaries
    finally:
        for e in embedders:
            e.timeline = None
        summaries.extend(t.summary() if t is not None else None for t in timelines)


def _embedder_cache() -> dict:
    from . import embed

    return embed._CACHE


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def render(result: dict[str, Any]) -> str:
    """A compact human table."""
    r = result

    def num(v: Any, fmt: str = ",.0f") -> str:
        return "n/a" if v is None else format(v, fmt)

    synth = " [SYNTHETIC WEIGHTS, tokenizer trained on the corpus]" if r["synthetic_weights"] else ""
    proj = r["projection"]
    lines = [
        f"alexandria bench: {r['model']} {r['dtype']} on {r['device']} ({r['machine']}){synth}",
        f"  corpus: {r['books']} books x {r['copies']} copies = {r['tokens_per_pass'] * r['copies']:,} "
        f"tokens per run; median of {r['repeats']}",
        f"  {'end to end (pipeline + store)':32} {num(r['e2e_tokens_per_s']):>12} tok/s  "
        f"{num(r['e2e_chunks_per_min']):>10} chunks/min  MFU {num(r['mfu'], '.3f')}",
        f"  {'baseline (encode, batch 96)':32} {num(r['baseline_tokens_per_s']):>12} tok/s  "
        f"{num(r['baseline_chunks_per_min']):>10} chunks/min  MFU {num(r['mfu_baseline'], '.3f')}",
        f"  {'model only (same batches)':32} {num(r['model_only_tokens_per_s']):>12} tok/s  "
        f"{'':>10}             MFU {num(r['mfu_model_only'], '.3f')}",
        f"  speedup vs baseline {num(r['speedup_vs_baseline'], '.2f')}x; e2e / model only "
        f"{num(r['e2e_vs_model_only'], '.2f')}; {'packed, ' if r.get('packed') else ''}padding efficiency "
        f"{num(r['padding_efficiency'], '.3f')} "
        f"(e2e {num(r.get('e2e_padding_efficiency'), '.3f')}); "
        f"matmul peak {num(r['matmul_peak_tflops'], '.1f')} TFLOP/s",
        f"  GPU util {num(r['gpu_util'], '.1f')}% (busy {num(r['gpu_busy_fraction'], '.2f')}; between "
        f"batches {num(r.get('gpu_busy_between_batches'), '.3f')}, model only "
        f"{num(r.get('model_only_busy_between_batches'), '.3f')}); peak VRAM {num(r['vram_peak_mb'])} MB",
        *([f"  tokens per second of GPU busy time {num(r['gpu_busy_tokens_per_s'])} (model only "
           f"{num(r.get('model_only_busy_tokens_per_s'))})"] if r.get("gpu_busy_tokens_per_s") else []),
        "  stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items()),
        *([f"  {r['multi_gpu']['gpus']} GPUs end to end {num(r['multi_gpu']['e2e_tokens_per_s'])} tok/s: "
           f"{num(r['multi_gpu']['scaling'], '.2f')}x one GPU"] if r.get("multi_gpu") else []),
        f"  projection ({proj['mean_tokens_per_book']:,.0f} tokens/book): "
        + ", ".join(f"{int(n):,} books {h} h" for n, h in proj["hours"].items()),
    ]
    prof = r.get("profile")
    if prof:
        lines.append(f"  profile (us per million real tokens): e2e {num(prof['e2e_us_per_m'])}, model only "
                     f"{num(prof['model_only_us_per_m'])}, ratio {num(prof['ratio'], '.3f')}")
        lines += [f"    {num(k['e2e_us_per_m']):>12} {num(k['model_only_us_per_m']):>12}  "
                  f"{num(k['ratio'], '.2f'):>5}  {k['name'][:70]}" for k in prof["kernels"][:12]]
    lines += [f"  note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)


@click.command("bench")
@click.option("--corpus", type=click.Path(path_type=Path),
              default=DEFAULT_CORPUS if DEFAULT_CORPUS.is_dir() else None,
              show_default=True, help="A folder of EPUBs (repeated to reach --tokens).")
@click.option("--model", default="bge-m3", show_default=True,
              help="bge-m3, embeddinggemma, minilm, a Hugging Face id or a local folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@click.option("--gpus", default=None,
              help="Also run end to end on this many GPUs (N or all) and report the scaling.")
@click.option("--synthetic-weights", is_flag=True, default=False,
              help="Random weights of the exact bge-m3 / EmbeddingGemma architecture and a tokenizer "
                   "trained on the corpus (for machines without hub access).")
@click.option("--tokens", type=int, default=20_000_000, show_default=True,
              help="Copies of the corpus are added until one run embeds at least this many tokens.")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Runs of each measurement; speeds are their median.")
@click.option("--batch-size", type=int, default=96, show_default=True,
              help="The pipeline's and the model-only batch size (the baseline always uses 96).")
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None,
              help="Also write the results here as JSON.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep copies, stores and synthetic models here (default: a temporary folder).")
@click.option("--workers", type=int, default=None,
              help="The pipeline's extraction processes (default: the pipeline's own choice).")
@click.option("--profile", is_flag=True, default=False,
              help="After the repeats, one more end-to-end pass (one copy of the corpus) and "
                   "model-only pass under torch.profiler: each kernel's time per million tokens in both.")
@click.option("--packing", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Unpadded batches in the pipeline and the model-only pass (as ingest --packing).")
def bench_command(corpus, model, device, dtype, gpus, synthetic_weights, tokens, repeats,
                  batch_size, json_file, workdir, workers, profile, packing) -> None:
    """Tokens/s of the real pipeline against SentenceTransformer.encode, on the same books."""
    try:
        if corpus is None:
            raise UsageError("Give --corpus DIR (a folder of EPUBs).")
        result = run_bench(corpus, model, device, synthetic_weights, tokens, repeats, batch_size,
                           workdir, dtype=dtype, gpus=gpus, workers=workers, profile=profile,
                           packing=packing, progress=lambda m: click.echo(m, err=True),
                           on_repeat=(lambda partial: _write_json(json_file, partial)) if json_file else None)
    except UsageError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(UsageError.exit_code)
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
        sys.exit(130)
    click.echo(render(result))
    if json_file:
        _write_json(json_file, result)
        click.echo(f"  wrote {json_file}")


def _write_json(path: Path, result: dict[str, Any]) -> None:
    """Whole or not at all: the partial results of each repeat replace the last ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    os.replace(tmp, path)
