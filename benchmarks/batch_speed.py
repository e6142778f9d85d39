"""How fast the GPU runs the pipeline's own batches, by how the chunks are grouped and by what
else the process is doing, through the pipeline's Embedder.submit_ids (synthetic weights).

    python benchmarks/batch_speed.py --corpus DIR --model embeddinggemma --model bge-m3 [--json FILE]

For each case: real tokens per second of GPU busy time (CUDA events around every batch, as in
`alexandria bench`), the batches and their padding, and a straight-line fit of each batch's GPU
time against its padded tokens (the fixed cost per batch). Cases: one length sort over every chunk
(the bench's model-only pass); one group per book, as the pipeline made them when each book went
to the device on its own; groups of about 4 token budgets; each of these without the batch fill
rule (embed.MIN_FILL); and one group per book while two Python threads spin in the same process
(GIL) or every core runs a spinning process (CPU). A contended case stops after --contended-s.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from multiprocessing import get_context
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUDGET = 96 * 512 * 4  # the pipeline's default on CUDA
MAX_BATCH = max(96 * 4, BUDGET // 32)


def _spin(until: float) -> None:
    while time.time() < until:
        pass


def _measure(e, label: str, groups, min_fill: float, contention: str | None, limit_s: float) -> dict:
    from alexandria.embedding import embedder as embed
    from alexandria.embedding.timeline import Timeline, summarize

    min_fill_default, embed.MIN_FILL = embed.MIN_FILL, min_fill
    stop = threading.Event()
    threads, procs = [], []
    if contention == "gil":
        def hog():
            a = list(range(2000))
            while not stop.is_set():
                sum(x * 2 for x in a)
        threads = [threading.Thread(target=hog, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
    elif contention == "cpu":
        ctx = get_context("spawn")
        until = time.time() + limit_s + 30
        procs = [ctx.Process(target=_spin, args=(until,)) for _ in range(os.cpu_count() or 1)]
        for p in procs:
            p.start()
        time.sleep(1)
    deadline = time.perf_counter() + (limit_s if contention else 1e9)
    runs = []
    try:
        for _ in range(1 if contention else 2):
            timeline = Timeline(e.device)
            timeline.start()
            e.timeline = timeline
            pending = []
            for g in groups:
                p = e.submit_ids(g, BUDGET, MAX_BATCH, should_stop=lambda: time.perf_counter() > deadline)
                if p is None:
                    break
                pending.append(p)
            for p in pending:
                p.result()
            e.timeline = None
            batches = timeline.batches
            if not batches:  # not one batch before the deadline
                runs.append({"case": label, "batches": 0, "complete": False, "busy_s": float("inf")})
                continue
            spans = timeline.spans()
            s = summarize(batches, spans)
            gpu_ms = np.array([1e3 * (end - begin) for begin, end in spans])
            padded = np.array([b.rows * b.width for b in batches], dtype=float)
            fixed_ms, ms_per_token = np.linalg.lstsq(np.vstack([np.ones_like(padded), padded]).T, gpu_ms,
                                                     rcond=None)[0]
            runs.append({"case": label, "batches": len(batches), "real_tokens": sum(b.real for b in batches),
                         "padding": round(sum(b.real for b in batches) / padded.sum(), 4),
                         "busy_s": s["busy_s"], "busy_fraction": s["busy_fraction"],
                         "real_tokens_per_busy_s": s["real_tokens_per_busy_s"],
                         "fixed_ms_per_batch": round(float(fixed_ms), 2),
                         "ms_per_1k_padded_tokens": round(1e3 * float(ms_per_token), 3),
                         "launch_ms_median": round(1e3 * statistics.median(b.launch_s for b in batches), 1),
                         "complete": time.perf_counter() <= deadline})
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        embed.MIN_FILL = min_fill_default
    return min(runs, key=lambda r: r["busy_s"])


@click.command()
@click.option("--corpus", type=click.Path(path_type=Path), required=True)
@click.option("--model", "models", multiple=True, default=["embeddinggemma"])
@click.option("--contended-s", type=float, default=30.0, show_default=True)
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None)
def main(corpus: Path, models: tuple[str, ...], contended_s: float, json_file: Path | None) -> None:
    import tempfile

    import torch

    from alexandria.chunking.chunker import Chunker
    from alexandria.embedding.embedder import get_embedder
    from alexandria.embedding.models import ModelSpec, resolve_model
    from alexandria.run.options import IngestOptions
    from alexandria.run.prepare import model_inputs
    from alexandria.tools import bench

    results: list[dict] = []
    books = bench.corpus_books(corpus)
    texts = bench.corpus_texts(books)
    for model in models:
        alias = bench.synthetic_alias(model)
        folder = bench.build_synthetic_model(alias, texts, Path(tempfile.mkdtemp()) / alias, "cuda").resolve()
        dtype = bench.SYNTHETIC[alias].cuda_dtype
        e = get_embedder(ModelSpec(alias, str(folder), cuda_dtype=dtype), "cuda", dtype)
        opts = IngestOptions(model=str(folder), device="cuda", dtype=dtype)
        spec = resolve_model(str(folder))
        passbooks, _ = bench.dry_pass(books, e.tokenizer_json(), e.max_seq_length, opts.chunk_settings(),
                                      spec.document_template, spec)
        chunker = Chunker(e.tokenizer_json(), e.max_seq_length, opts.chunk_settings())
        per_book = [model_inputs(chunker, b.texts) for b in passbooks]
        every = [x for b in per_book for x in b]
        t = time.perf_counter()
        e.compile()
        for _ in range(2):
            e.encode_ids(every[: len(every) // 5], BUDGET, MAX_BATCH)
        for b in per_book[:3]:
            e.encode_ids(b, BUDGET, MAX_BATCH)
        torch.cuda.synchronize()
        print(f"{alias}: compiled and warm in {time.perf_counter() - t:.0f}s", flush=True)
        carried, group, tokens = [], [], 0
        for b in per_book:
            group += b
            tokens += sum(len(x) for x in b)
            if tokens >= 4 * BUDGET:
                carried.append(group)
                group, tokens = [], 0
        if group:
            carried.append(group)
        for label, groups, min_fill, contention in [
                ("one sort", [every], 0.8, None), ("per book", per_book, 0.8, None),
                ("per book, no fill rule", per_book, 0.0, None), ("4 budgets", carried, 0.8, None),
                ("4 budgets, no fill rule", carried, 0.0, None), ("per book, GIL", per_book, 0.8, "gil"),
                ("per book, CPU", per_book, 0.8, "cpu")]:
            row = {"model": alias, **_measure(e, label, groups, min_fill, contention, contended_s)}
            results.append(row)
            print(row, flush=True)
            if json_file:
                json_file.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
