"""Packed (unpadded) against padded batches: the same chunks, the same model, one call.

    python benchmarks/packing_check.py --corpus DIR --model embeddinggemma --synthetic-weights \
        [--compile] [--json FILE]

For each variant it runs the pipeline's own Embedder.encode_ids over real corpus chunks (the
pipeline's token budget), median of --repeats passes, and checks the packed vectors against the
padded ones (cosine, per chunk). Used to decide the pipeline's default; `alexandria bench`
measures the pipeline itself.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@click.command()
@click.option("--corpus", type=click.Path(path_type=Path), required=True)
@click.option("--model", default="embeddinggemma")
@click.option("--synthetic-weights", is_flag=True)
@click.option("--chunks", type=int, default=10_000)
@click.option("--repeats", type=int, default=3)
@click.option("--device", default="cuda")
@click.option("--compile", "compiled", is_flag=True, help="Also time the compiled model, packed and padded.")
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None)
def main(corpus, model, synthetic_weights, chunks, repeats, device, compiled, json_file):
    from alexandria.run.options import IngestOptions, default_token_budget
    from alexandria.tools import bench

    spec, emb, ids = bench.corpus_sample(corpus, model, synthetic_weights, device, chunks,
                                         Path(tempfile.mkdtemp(prefix="packing-")))
    real = int(sum(len(x) for x in ids))
    opts = IngestOptions(model=str(spec.source), device=device)
    budget = default_token_budget(opts, emb.max_seq_length, device)
    max_batch = max(96 * 4, budget // 32)
    peak = bench.matmul_peak_tflops(device, emb.dtype)
    _, non_emb = bench.parameter_counts(emb.model[0].auto_model)
    cfg = emb.model[0].auto_model.config
    flops = 2 * non_emb + 4 * cfg.num_hidden_layers * (real / len(ids)) * cfg.hidden_size
    out: dict = {"model": spec.name, "synthetic_weights": synthetic_weights, "device": device,
                 "machine": bench.machine_name(device), "chunks": len(ids), "real_tokens": real,
                 "token_budget": budget, "dtype": emb.dtype, "matmul_peak_tflops": round(peak, 1),
                 "variants": []}
    print(json.dumps({k: v for k, v in out.items() if k != "variants"}), flush=True)

    def save():
        if json_file:
            Path(json_file).write_text(json.dumps(out, indent=1))

    reference = None

    def variant(name: str, packing: str):
        nonlocal reference
        t = time.perf_counter()
        ok = emb.set_packing(packing)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        first = emb.encode_ids(ids, budget, max_batch)  # warm-up (and compilation)
        warm = time.perf_counter() - t
        times = []
        for _ in range(repeats):
            r0, p0 = emb.real_tokens, emb.padded_tokens
            bench.sync(device)
            t = time.perf_counter()
            emb.encode_ids(ids, budget, max_batch)
            bench.sync(device)
            times.append(time.perf_counter() - t)
        tps = real / statistics.median(times)
        row = {"variant": name, "packed": ok, "compiled": emb.compiled, "setup_s": round(setup, 2),
               "first_pass_s": round(warm, 1), "tokens_per_s": round(tps),
               "runs_tokens_per_s": [round(real / s) for s in times],
               "mfu": round(tps * flops / (peak * 1e12), 3),
               "padding_efficiency": round((emb.real_tokens - r0) / max(1, emb.padded_tokens - p0), 3)}
        if reference is None:
            reference = first
        else:
            cos = (first * reference).sum(1)
            row["cosine_vs_first_variant_min"] = round(float(cos.min()), 6)
            row["cosine_vs_first_variant_mean"] = round(float(cos.mean()), 6)
        out["variants"].append(row)
        print(json.dumps(row), flush=True)
        save()

    variant("padded, eager", "off")
    variant("packed, eager", "on")
    if compiled:
        emb.compile()
        variant("packed, compiled", "on")
        variant("padded, compiled", "off")
    save()


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
