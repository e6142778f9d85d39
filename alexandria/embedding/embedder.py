"""Stage 4: one cached sentence-transformers model per (model, device, dtype) for the whole process."""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.embedding import packed as _packed
from alexandria.embedding.hub import ensure_loadable
from alexandria.embedding.models import ModelSpec
from alexandria.embedding.timeline import Batch
from alexandria.embedding.tokenizer import load_tokenizer_json, quiet_libraries  # noqa: F401 (also imported from here)
from alexandria.embedding.variants import (
    STATIC_MAX_LENGTH,
    cut_dims,
    is_static,
    static_features,
    variant_device_dtype,
)
from alexandria.errors import UsageError

log = logging.getLogger("alexandria")

DTYPES = {"fp32": "float32", "float32": "float32", "fp16": "float16", "float16": "float16",
          "bf16": "bfloat16", "bfloat16": "bfloat16"}


def resolve_device(device: str) -> str:
    device = (device or "auto").strip().lower()
    if device == "cpu":  # without importing torch: a remote-embedding run never needs it
        return "cpu"
    if device != "auto" and device != "cuda" and not device.startswith("cuda:"):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}.")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device} was requested but CUDA is not available here.")
    if ":" in device:
        index = device.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    return device


def resolve_devices(device: str, gpus: str | None = None) -> list[str]:
    """One embedding device per entry: `--device cuda:0,cuda:1`, or `--gpus all` / `--gpus N`."""
    if gpus:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--gpus {gpus} was requested but CUDA is not available here.")
        if gpus.strip().lower() == "all":
            n = count
        elif gpus.strip().isdigit() and 1 <= int(gpus) <= count:
            n = int(gpus)
        else:
            raise UsageError(f"--gpus must be all or a number from 1 to {count}, not {gpus!r}.")
        return [f"cuda:{i}" for i in range(n)]
    parts = [d.strip() for d in (device or "auto").split(",") if d.strip()]
    return [resolve_device(d) for d in parts] or [resolve_device("auto")]


def cpu_has_bf16() -> bool:
    """bf16 halves CPU time only where the CPU has bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str, spec: ModelSpec) -> str:
    """CUDA: the model's own (fp16 bge-m3, bf16 EmbeddingGemma). CPU: never fp16 (4x slower)."""
    dtype = (dtype or "auto").strip().lower()
    if dtype == "auto":
        if device.startswith("cuda"):
            return spec.cuda_dtype
        return "bfloat16" if cpu_has_bf16() else "float32"
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be auto, fp32, fp16 or bf16, not {dtype!r}.")
    resolved = DTYPES[dtype]
    if device == "cpu" and resolved == "float16":
        raise UsageError("--dtype fp16 is not supported on the CPU; use fp32 or bf16.")
    return resolved


def budget_for_vram(max_bytes: int, base_bytes: int, probe_bytes: int, probe_tokens: int,
                    headroom: float = 0.85) -> int:
    """Tokens per batch that fit: activations grow linearly with the tokens of a batch (at a
    given row length), so one probe's bytes per token scale to the memory left."""
    per_token = max(1.0, probe_bytes / max(1, probe_tokens))
    return max(0, int((max_bytes * headroom - base_bytes) / per_token))


MIN_FILL = 0.8  # a batch's rows are at least this share of its width (see submit_ids)...
MIN_SHARE = 8  # ...once the batch holds 1/MIN_SHARE of the token budget
# Batches a device may have queued when the next one is launched: enough to cover the Python time
# of that launch, few enough that it never blocks inside CUDA on a full launch queue, which holds
# the GIL and starves every other thread of the process (docs/performance.md).
AHEAD = 1
# --max-vram-gb: room left outside PyTorch's allocator for kernels loaded after the probe batch,
# which the cap cannot see.
LAZY_MARGIN = 2**30


def pad(rows: list[np.ndarray], width: int, pad_id: int, height: int | None = None):
    """(ids, attention mask) of shape (height, width); rows past len(rows) repeat the first."""
    height = height or len(rows)
    batch = np.full((height, width), pad_id, dtype=np.int64)
    mask = np.zeros((height, width), dtype=np.int64)
    for r, row in enumerate(rows):
        batch[r, :len(row)] = row
        mask[r, :len(row)] = 1
    if height > len(rows):
        batch[len(rows):], mask[len(rows):] = batch[0], mask[0]
    return batch, mask


class PendingVectors:
    """Embeddings still on their way from the device; result() waits for them once, in input order.

    Each batch's vectors are copied into pinned host memory as soon as the batch is done (an
    event marks it), so waiting for this group never waits for a group queued after it.
    """

    def __init__(self, n: int, dimension: int, outputs: list) -> None:
        self.n, self.dimension, self.outputs = n, dimension, outputs

    def done(self) -> bool:
        ready = self.outputs[-1][2] if self.outputs else None  # batches finish in order
        return ready is None or ready.query()

    def result(self) -> np.ndarray:
        result = np.empty((self.n, self.dimension), dtype=np.float32)
        for rows, vectors, ready in self.outputs:
            if ready is not None:
                ready.synchronize()  # releases the GIL while it waits
            result[rows] = vectors.numpy()
        self.outputs = []
        return result


@dataclass
class Embedder:
    spec: ModelSpec
    device: str
    dtype: str
    model: object
    # Called with each batch's size (rows, or padded tokens for token batches) before its forward
    # pass: a caller watches the batches; what it raises fails that batch (an out-of-memory error
    # halves it and retries).
    before_forward: Callable[[int], None] | None = None
    oom_backoffs: int = 0
    real_tokens: int = 0  # for padding efficiency: real / padded tokens fed to the model
    padded_tokens: int = 0
    budget_cap: int | None = None
    compiled: bool = False
    packed: bool = False  # unpadded batches (alexandria.packed); set_packing decides
    _packing: str | None = None  # the mode set_packing last decided for
    _position_start: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queued: collections.deque = field(default_factory=collections.deque)  # events of batches on the device
    timeline: Any = None  # alexandria.embedding.timeline.Timeline while the benchmark records one

    @property
    def full_dimension(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    @property
    def dimension(self) -> int:
        """The vectors' length: the model's, or its Matryoshka cut (--dims)."""
        return min(self.spec.dims or self.full_dimension, self.full_dimension)

    @property
    def max_seq_length(self) -> int:
        longest = self.model.max_seq_length
        if longest is None or longest == float("inf"):  # a static model reads any length
            return STATIC_MAX_LENGTH
        return int(longest)

    @property
    def static(self) -> bool:
        """A static (model2vec) model: token vectors averaged, no transformer."""
        return is_static(self.model)

    def tokenizer_json(self) -> str:
        tokenizer = self.model.tokenizer
        # A static model holds a bare tokenizers.Tokenizer, not a transformers one.
        return getattr(tokenizer, "backend_tokenizer", tokenizer).to_str()

    def encode_documents(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Normalised float32 rows in input order; a CUDA OOM halves the batch instead of failing."""
        import torch

        while True:
            try:
                if self.before_forward is not None:
                    self.before_forward(batch_size)
                with self._lock:
                    vectors = self.model.encode(
                        texts,
                        batch_size=batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
                return cut_dims(np.asarray(vectors, dtype=np.float32), self.spec.dims)
            except torch.OutOfMemoryError:
                if batch_size <= 1:
                    raise
                batch_size //= 2
                self.oom_backoffs += 1
                log.warning("out of GPU memory: retrying with batch size %d", batch_size)
                if self.device.startswith("cuda"):
                    torch.cuda.empty_cache()

    def encode_ids(
        self,
        ids: list[np.ndarray],
        token_budget: int,
        max_batch: int = 1024,
        should_stop: Callable[[], bool] | None = None,
    ) -> np.ndarray | None:
        """Pre-tokenized chunks -> normalised float32 rows in input order (None if stopped)."""
        pending = self.submit_ids(ids, token_budget, max_batch, should_stop)
        return None if pending is None else pending.result()

    def submit_ids(
        self,
        ids: list[np.ndarray],
        token_budget: int,
        max_batch: int = 1024,
        should_stop: Callable[[], bool] | None = None,
    ) -> PendingVectors | None:
        """Queue the batches on the device; return once the last few are queued (None if stopped).

        Length-sorted batches filled up to a token budget (not a fixed count padded to the
        longest), built on the CPU while the GPU runs the previous batch: inputs go through
        pinned memory without blocking and results come back the same way, so the caller can
        queue the next group, or write the last one, while this one finishes.
        """
        import torch

        if self.budget_cap is not None:
            token_budget = min(token_budget, self.budget_cap)
        n = len(ids)
        if n == 0:
            return PendingVectors(n, self.dimension, [])
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
        order = np.argsort(-lengths, kind="stable")
        pad_id = getattr(self.model.tokenizer, "pad_token_id", None) or 0
        cuda = self.device.startswith("cuda")
        round_to = 16 if cuda else 1  # fewer distinct shapes (compiled kernels), tensor-core sizes
        timeline = self.timeline if cuda else None
        outputs: list = []
        pos = 0
        while pos < n:
            if should_stop is not None and should_stop():
                return None
            if timeline is not None:
                build_at = timeline.now()
            if self.packed:  # no padding: rows until their real tokens fill the budget
                count, real = self._packed_rows(lengths, order, pos, token_budget, max_batch)
                rows = order[pos:pos + count]
                width = int(lengths[rows[0]])
                inputs: Any = _packed.pack([ids[i] for i in rows], self._position_start)
                padded = real
            else:
                count, rows, width, inputs = self._padded_batch(
                    ids, lengths, order, pos, token_budget, max_batch, pad_id, round_to)
                real = int(lengths[rows].sum())
                padded = count * width
            if cuda:  # counted per device, across calls: the next group's first batches too
                while len(self._queued) > AHEAD:
                    with contextlib.suppress(IndexError):  # another thread of this device took it
                        self._queued.popleft().synchronize()  # waits with the GIL released
            if timeline is not None:
                launch_at = timeline.now()
                begin = torch.cuda.Event(enable_timing=True)
                begin.record(torch.cuda.current_stream(self.device))
            try:
                if self.before_forward is not None:
                    self.before_forward(padded)
                vectors = self._forward(inputs, cuda)[:count]
            except torch.OutOfMemoryError:
                if count == 1:
                    raise
                token_budget = max(width, padded // 2)
                self.budget_cap = token_budget  # later calls start below the size that failed
                self.oom_backoffs += 1
                log.warning("out of GPU memory: token budget halved to %d", token_budget)
                if cuda:
                    torch.cuda.empty_cache()
                continue
            if cuda:
                host = torch.empty(vectors.shape, dtype=vectors.dtype, pin_memory=True)
                host.copy_(vectors, non_blocking=True)
                ready = torch.cuda.Event(enable_timing=timeline is not None)
                ready.record(torch.cuda.current_stream(self.device))
                outputs.append((rows, host, ready))
                self._queued.append(ready)
                if timeline is not None:
                    timeline.batches.append(Batch(pos == 0, build_at, launch_at,
                                                  timeline.now() - launch_at, begin, ready,
                                                  count, width, real))
            else:
                outputs.append((rows, vectors, None))
            self.real_tokens += real
            self.padded_tokens += padded
            pos += count
        return PendingVectors(n, self.dimension, outputs)

    @staticmethod
    def _packed_rows(lengths, order, pos: int, token_budget: int, max_batch: int) -> tuple[int, int]:
        """(rows, real tokens) of the next packed batch: at least one row, at most max_batch."""
        sizes = np.cumsum(lengths[order[pos:pos + max_batch]])
        count = max(1, int(np.searchsorted(sizes, token_budget, side="right")))
        return count, int(sizes[count - 1])

    def _padded_batch(self, ids, lengths, order, pos: int, token_budget: int, max_batch: int,
                      pad_id: int, round_to: int):
        """The next padded batch: (rows, their indices, width, (ids, mask))."""
        longest = int(lengths[order[pos]])
        width = min(-(-longest // round_to) * round_to, max(longest, self.max_seq_length))
        count = max(1, min(max_batch, token_budget // max(width, 1), len(ids) - pos))
        # The short rows at the end of a group would be padded to the first row's width (the
        # end-to-end padding efficiency was 0.86, against 0.94 for one sort over the corpus):
        # a batch ends at a row under MIN_FILL of its width, once it holds 1/MIN_SHARE of the
        # budget.
        full = int(np.count_nonzero(lengths[order[pos:pos + count]] >= MIN_FILL * width))
        count = max(1, full, min(count, -(-token_budget // (MIN_SHARE * width))))
        rows = order[pos:pos + count]
        # A compiled graph is specialised for size 1: a lone row would recompile (minutes for
        # EmbeddingGemma), so it goes with a copy of itself.
        height = 2 if count == 1 and self.compiled else count
        return count, rows, width, pad([ids[i] for i in rows], width, pad_id, height)

    def _forward(self, inputs, cuda: bool):
        import torch

        def transfer(t):
            return t.pin_memory().to(self.device, non_blocking=True) if cuda else t

        def run():
            if isinstance(inputs, _packed.Packed):
                return _packed.forward(self.model, inputs, transfer)
            input_ids, attention = (transfer(torch.from_numpy(a)) for a in inputs)
            if self.static:
                return self.model(static_features(input_ids, attention))["sentence_embedding"]
            return self.model({"input_ids": input_ids, "attention_mask": attention})["sentence_embedding"]

        with self._lock, torch.inference_mode():
            try:
                out = run()
            except torch.OutOfMemoryError:
                raise
            except Exception as e:
                if not self.compiled:
                    raise
                # A compiler problem on this machine must not fail books: eager from here on.
                log.warning("torch.compile failed (%s); running the model uncompiled", str(e)[:200])
                self._uncompile()
                out = run()
            if self.spec.dims and self.spec.dims < out.shape[-1]:
                out = out[..., :self.spec.dims]
            return torch.nn.functional.normalize(out.float(), dim=-1)

    def compile(self, backend: Any = "inductor") -> bool:
        """torch.compile(dynamic=True) of the transformer's forward, CUDA only (unless a test
        passes its own backend). One dynamic graph serves every batch shape; EmbeddingGemma
        gains most (its many small normalisations fuse).

        The forward is replaced on the instance: sentence-transformers 6 calls
        `auto_model.forward(...)` itself, which skips the hook that `nn.Module.compile` sets.
        """
        import torch

        if self.compiled:
            return True
        if backend == "inductor" and not self.device.startswith("cuda"):
            return False
        if self.spec.backend != "torch" or self.static:
            return False
        module = self.model[0].auto_model
        try:
            module.forward = torch.compile(module.forward, dynamic=True, backend=backend)
        except Exception as e:  # no compiler backend here: stay eager
            log.warning("torch.compile is not available (%s); running the model uncompiled", e)
            return False
        self.compiled = True
        return True

    def set_packing(self, mode: str = "auto") -> bool:
        """Unpadded batches (alexandria.packed) where they hold: auto turns them on for a CUDA
        card with the flash kernel (compute capability 8.0 or newer) and an architecture that
        packing knows, once a check batch gives the padded forward's vectors; on forces them
        (the CPU runs the same per-chunk attention, slowly); off keeps padded batches."""
        import torch

        mode = (mode or "auto").strip().lower()
        if mode not in ("auto", "on", "off"):
            raise UsageError(f"--packing must be auto, on or off, not {mode!r}.")
        if mode == self._packing:  # every run of a process asks again
            return self.packed
        self._packing = mode
        cuda = self.device.startswith("cuda")
        why = None
        if mode == "off":
            why = "--packing off"
        elif mode == "auto" and not cuda:
            why = "not a CUDA device"
        elif self.spec.backend != "torch" or self.static:
            why = f"the {self.spec.backend} backend runs padded batches" if not self.static else (
                "a static model has no attention to pack")
        elif cuda and torch.cuda.get_device_capability(self.device) < (8, 0):
            why = "the flash attention kernel needs compute capability 8.0"
        else:
            why = _packed.supported(self.model)
        if why is None:
            try:
                with self._lock:
                    _packed.enable(self.model)
            except Exception as e:  # a transformers without the attention interface
                why = f"transformers took no attention function ({str(e).strip()[:160]})"
        if why is None:
            self._position_start = _packed.position_start(self.model[0].auto_model.config) or 0
            why = self._check_packing()
        if why is not None:
            if self.packed or mode == "on":
                log.warning("padded batches for %s: %s", self.spec.name, why)
            self.packed = False
            return False
        if not self.packed:
            log.info("packed batches for %s (no pad tokens)", self.spec.name)
        self.packed = True
        return True

    def _check_packing(self) -> str | None:
        """Why packed vectors differ from padded ones on a few rows of varied length, or None."""
        rng = np.random.default_rng(0)
        vocab = int(getattr(self.model[0].auto_model.config, "vocab_size", 1000))
        longest = min(self.max_seq_length, 96)
        ids = [rng.integers(5, vocab, size=n) for n in (longest, 7, longest // 2, 2, 33)]
        cuda = self.device.startswith("cuda")
        try:
            with self.eager():
                padded = self._forward(pad(ids, longest, self.model.tokenizer.pad_token_id or 0), cuda)
                packed = self._forward(_packed.pack(ids, self._position_start), cuda)
        except Exception as e:  # a kernel this torch or card lacks
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            return f"the packed forward failed ({first})"
        worst = float((padded * packed).sum(-1).min())
        if worst < 0.999:
            return f"packed vectors differ from padded ones (cosine {worst:.4f})"
        return None

    def _uncompile(self) -> None:
        self.model[0].auto_model.__dict__.pop("forward", None)  # back to the class's forward
        self.compiled = False

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """The uncompiled model for a while (the benchmark's baseline is the users' recipe)."""
        module = self.model[0].auto_model
        compiled = module.__dict__.pop("forward", None)
        try:
            yield
        finally:
            if compiled is not None:
                module.forward = compiled

    def cap_budget_for_vram(self, max_vram_gb: float, seq_len: int) -> int | None:
        """Largest token budget whose activations keep the card under max_vram_gb, from one
        probe batch of seq_len-token rows (attention memory grows with the row length)."""
        import torch

        if not self.device.startswith("cuda"):
            return None
        seq_len = max(16, min(seq_len, self.max_seq_length))
        rows = max(1, 8192 // seq_len)
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        ids = np.full((rows, seq_len), 5, dtype=np.int64)
        probe_inputs: Any = (ids, np.ones_like(ids))
        if self.packed:
            probe_inputs = _packed.pack(list(ids), self._position_start)
        self._forward(probe_inputs, True)
        torch.cuda.synchronize(self.device)
        probe = torch.cuda.max_memory_allocated(self.device) - base
        reserved_other = torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        cap = budget_for_vram(int(max_vram_gb * 2**30), base + max(0, reserved_other) // 4, probe,
                              rows * seq_len)
        if cap < seq_len:
            raise UsageError(
                f"--max-vram-gb {max_vram_gb:g} is too small for {self.spec.name}: the weights take "
                f"{base / 2**30:.1f} GB and one {seq_len}-token chunk needs more than is left."
            )
        self.budget_cap = cap if self.budget_cap is None else min(self.budget_cap, cap)
        # The budget bounds what the model allocates; PyTorch's cache of freed blocks can still
        # grow past the cap when batch shapes vary (packed batches all differ). The allocator's
        # own limit makes it hand cached blocks back first, and raise an out-of-memory error
        # (which halves the budget) only when the live tensors would not fit.
        # Outside it: the CUDA context and whatever else holds this card now, plus a margin for
        # kernels loaded later (CUDA loads modules lazily, as new batch shapes pick new kernels).
        free, total = torch.cuda.mem_get_info(self.device)
        outside = max(0, total - free - torch.cuda.memory_reserved(self.device)) + LAZY_MARGIN
        fraction = (max_vram_gb * 2**30 - outside) / total
        index = torch.device(self.device).index
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, max(0.01, fraction)), torch.cuda.current_device() if index is None else index)
        log.info("--max-vram-gb %g: token budget capped at %d, PyTorch's memory at %.1f GB",
                 max_vram_gb, self.budget_cap, fraction * total / 2**30)
        return self.budget_cap

    def encode_query(self, query: str) -> list[float]:
        vector = self.encode_documents([self.spec.query_text(query)], batch_size=1)[0]
        return vector.tolist()


_CACHE: dict[tuple[str, str, str], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def cache_key(source: str, device: str, dtype: str, variant: str = "") -> tuple[str, str, str]:
    """"cuda" and "cuda:0" are one card: one model on it, not two."""
    if device == "cuda":
        import torch

        device = f"cuda:{torch.cuda.current_device()}"
    return f"{source}#{variant}" if variant else source, device, dtype


def is_loaded(spec: ModelSpec, device: str, dtype: str) -> bool:
    """Whether this process already holds the model on that device in that dtype."""
    with _CACHE_LOCK:
        return cache_key(spec.source, device, dtype, spec.variant) in _CACHE


def get_embedder(spec: ModelSpec, device: str = "auto", dtype: str = "auto") -> Embedder:
    """Loading bge-m3 takes seconds and GBs: never more than once per process."""
    if spec.backend != "torch":
        device, dtype = variant_device_dtype(spec, device, dtype)
    else:
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device, spec)
    key = cache_key(spec.source, device, dtype, spec.variant)
    with _CACHE_LOCK:
        if key not in _CACHE:
            embedder = Embedder(spec, device, dtype, _load(spec, device, dtype))
            if spec.dims and spec.dims > embedder.full_dimension:
                raise UsageError(f"--dims {spec.dims} is more than the {embedder.full_dimension} "
                                 f"dimensions {spec.name} makes.")
            _CACHE[key] = embedder
        return _CACHE[key]


def _load(spec: ModelSpec, device: str, dtype: str):
    quiet_libraries()
    if spec.backend == "onnx":
        from alexandria.embedding.onnx import load_onnx

        return load_onnx(spec, load_tokenizer_json(spec)[1])
    import torch
    from sentence_transformers import SentenceTransformer

    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    ensure_loadable(spec)  # seconds, not a minute of hub retries
    try:
        model = SentenceTransformer(
            spec.source, device=device, model_kwargs={"dtype": getattr(torch, dtype)}
        )
    except Exception as e:  # hub errors, missing folders, bad configs: all one sentence
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"Model {spec.name!r} ({spec.source}) could not be loaded ({first[:200]}).") from e
    model.eval()
    return model
