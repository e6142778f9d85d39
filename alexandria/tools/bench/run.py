"""`alexandria bench`: the real pipeline against the users' recipe, on the same books, in one run.

What is measured, per repeat (speeds are the median over --repeats; ratios such as the speedup
over the baseline are the median of each repeat's own ratio):

* end to end: `alexandria.run.ingest.Ingest` over K rewritten copies of every book of the corpus (enough
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
import math
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError
from alexandria.tools.bench.corpus import corpus_books, corpus_texts, dry_pass, make_copies, spread
from alexandria.tools.bench.gpu import (
    GpuSampler,
    machine_name,
    matmul_peak_tflops,
    reset_vram,
    sync,
    versions,
    vram_mb,
)
from alexandria.tools.bench.synthetic import (
    SYNTHETIC,
    SYNTHETIC_TOKENIZER,
    build_synthetic_model,
    parameter_counts,
    quiet_transformers,
    synthetic_alias,
)

BASELINE_BATCH = 96  # the users' recipe: SentenceTransformer.encode(chunks, batch_size=96)
PROJECT_BOOKS = (5_000, 50_000)
CPU_MODEL_ONLY_CHUNKS = 2_000
CPU_MODEL_ONLY_TOKENS = 100_000
GPU_MODEL_ONLY_CHUNKS = 10_000
REQUIRED_KEYS = (
    "e2e_tokens_per_s", "e2e_chunks_per_min", "baseline_tokens_per_s", "speedup_vs_baseline",
    "model_only_tokens_per_s", "e2e_vs_model_only", "mfu", "padding_efficiency", "gpu_util",
    "vram_peak_mb", "stages", "device", "model", "dtype", "synthetic_weights",
)
Progress = Callable[[str], None]


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
    reuse_tokens: bool = True,
    progress: Progress | None = None,
    on_repeat: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the whole benchmark and return its results (see the module docstring).

    on_repeat gets the results of the repeats so far after each one: a run cut off (a time
    limit on a lent GPU) still leaves its measurements. With `profile`, one more end-to-end pass
    and one more model-only pass run under torch.profiler (outside the medians) and the results
    get their kernel times per million tokens (alexandria.tools.bench.kernels)."""
    from alexandria.embedding.embedder import (
        Embedder,
        get_embedder,
        is_loaded,
        quiet_libraries,
        resolve_device,
        resolve_devices,
        resolve_dtype,
    )
    from alexandria.embedding.models import ModelSpec, resolve_model
    from alexandria.run.ingest import Ingest
    from alexandria.run.options import IngestOptions
    from alexandria.tools.bench.kernels import compare, profiled

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
    quiet_transformers()
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
        if not is_loaded(pipe_spec, device, resolved_dtype):
            raise RuntimeError("the pipeline would not find the benchmark's model in the cache")
        st_model = embedder.model
        base_opts = IngestOptions(model=pipeline_model, device=device, dtype=resolved_dtype,
                                  batch_size=batch_size, force=True, workers=workers,
                                  packing=packing, reuse_tokens=reuse_tokens)

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
                                 store=store, workers=workers, packing=packing,
                                 reuse_tokens=reuse_tokens)

        # 3. model-only batches (the same chunks, length-sorted; packed or padded as the pipeline)
        all_texts = [t for b in passbooks for t in b.texts]
        if device.startswith("cuda"):
            mo_texts = spread(all_texts, min(len(all_texts), GPU_MODEL_ONLY_CHUNKS))
        else:
            all_tokens = [n for b in passbooks for n in b.tokens]
            mean = max(1.0, statistics.fmean(all_tokens))
            keep = min(len(all_texts), CPU_MODEL_ONLY_CHUNKS,
                       max(1, int(min(tokens, CPU_MODEL_ONLY_TOKENS) / mean)))
            mo_texts = spread(all_texts, keep)
        from alexandria.chunking.chunker import Chunker
        from alexandria.run.options import default_token_budget, default_workers
        from alexandria.run.prepare import model_inputs

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
            sync(e.device)

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
                "machine": machine_name(device),
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
                "token_reuse": reuse_tokens,
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
                "versions": versions(),
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
            sync(device)
            reset_vram(device)
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
                stages=dict(report.stages_s), gpu=sampler.summary(), vram_peak_mb=vram_mb(device),
                vram_peak_nvml_mb=report.vram_peak_nvml_mb,
                e2e_padding_efficiency=(embedder.real_tokens - real0) / e2e_padded if e2e_padded else None,
                timeline=timelines[0],
            )
            shutil.rmtree(store, ignore_errors=True)
            if len(devices) > 1:  # the same run on every GPU, fed from the same extraction pool
                multi = IngestOptions(directory=copy_dir, model=pipeline_model, device=device,
                                      gpus=str(len(devices)), dtype=resolved_dtype,
                                      batch_size=batch_size, force=True, store=store,
                                      workers=workers, packing=packing, reuse_tokens=reuse_tokens)
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
            reset_vram(device)
            with embedder.eager(), GpuSampler(device) as sampler:
                t = time.perf_counter()
                for b in passbooks:
                    st_model.encode(b.texts, batch_size=BASELINE_BATCH, show_progress_bar=False)
                sync(device)
                base_s = time.perf_counter() - t
            base_tokens = tokens_per_pass
            run.update(
                baseline_s=round(base_s, 3), baseline_tokens=base_tokens,
                baseline_tokens_per_s=base_tokens / base_s,
                baseline_chunks_per_min=60 * chunks_per_pass / base_s,
                baseline_gpu=sampler.summary(), baseline_vram_peak_mb=vram_mb(device),
            )
            # model only: forwards on pre-tokenized, length-sorted batches, as the pipeline's
            real0, padded0 = embedder.real_tokens, embedder.padded_tokens
            sync(device)
            with GpuSampler(device) as mo_sampler, _timelines([embedder]) as mo_timelines:
                t = time.perf_counter()
                embedder.encode_ids(mo_ids, budget, max_batch=max(batch_size * 4, budget // 32))
                sync(device)
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
                sync(device)
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
    from alexandria.embedding.timeline import Timeline

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


