"""Model-only speed of the ways Alexandria could feed the GPU, on real corpus chunks, in one call.

    python benchmarks/gpu_variants.py --corpus DIR --model bge-m3 --synthetic-weights [--json FILE]

Times forward passes only (inputs already on the device, CUDA events, median of --repeats):
sorted batches of 96 as the users' recipe pads them, the pipeline's token-budget batches at
several budgets, lengths rounded up to a multiple of 16, torch.compile(dynamic=True), and full
512-token batches as the upper bound. Used to choose the pipeline's defaults; `alexandria bench`
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


DEVICE = "cuda"


def batches_by_budget(ids: list[np.ndarray], budget: int, max_batch: int, round_to: int, pad: int):
    import torch

    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out, real, padded, pos = [], 0, 0, 0
    while pos < len(order):
        longest = len(ids[order[pos]])
        width = -(-longest // round_to) * round_to
        count = max(1, min(max_batch, budget // width, len(order) - pos))
        rows = order[pos:pos + count]
        x = np.full((count, width), pad, dtype=np.int64)
        m = np.zeros((count, width), dtype=np.int64)
        for r, i in enumerate(rows):
            x[r, :len(ids[i])] = ids[i]
            m[r, :len(ids[i])] = 1
        out.append({"input_ids": torch.from_numpy(x).to(DEVICE),
                    "attention_mask": torch.from_numpy(m).to(DEVICE)})
        real += int(m.sum())
        padded += x.size
        pos += count
    return out, real, padded


def time_batches(model, batches, repeats: int) -> float:
    import torch

    from alexandria.tools import bench

    with torch.inference_mode():
        for b in batches[:2] + batches[-2:]:
            model(dict(b))
        bench.sync(DEVICE)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            for b in batches:
                model(dict(b))
            bench.sync(DEVICE)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


@click.command()
@click.option("--corpus", type=click.Path(path_type=Path), required=True)
@click.option("--model", default="bge-m3")
@click.option("--synthetic-weights", is_flag=True)
@click.option("--chunks", type=int, default=8000)
@click.option("--repeats", type=int, default=3)
@click.option("--device", default="cuda")
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None)
def main(corpus, model, synthetic_weights, chunks, repeats, device, json_file):
    import torch

    global DEVICE
    DEVICE = device

    from alexandria.tools import bench

    spec, emb, ids = bench.corpus_sample(corpus, model, synthetic_weights, device, chunks,
                                         Path(tempfile.mkdtemp(prefix="gpu-variants-")))
    pad = emb.model.tokenizer.pad_token_id or 0
    st = emb.model
    peak = bench.matmul_peak_tflops(device, emb.dtype)
    _, non_emb = bench.parameter_counts(st[0].auto_model)
    cfg = st[0].auto_model.config
    results = []

    def record(name, batches, real, padded, model_fn):
        s = time_batches(model_fn, batches, repeats)
        seq = padded / sum(b["input_ids"].shape[0] for b in batches)
        flops = 2 * non_emb + 4 * cfg.num_hidden_layers * seq * cfg.hidden_size
        tps = real / s
        row = {"variant": name, "tokens_per_s": round(tps), "mfu": round(tps * flops / (peak * 1e12), 3),
               "padding_eff": round(real / padded, 3), "batches": len(batches),
               "vram_mb": round(torch.cuda.max_memory_allocated() / 2**20) if device != "cpu" else None}
        results.append(row)
        print(row, flush=True)

    def fixed96(round_to=1):
        order = sorted(ids, key=len)
        out, real, padded = [], 0, 0
        for i in range(0, len(order), 96):
            b, r, p = batches_by_budget(order[i:i + 96], 10**9, 96, round_to, pad)
            out += b
            real += r
            padded += p
        return out, real, padded

    base = 96 * 512
    record("sorted batches of 96 (eager)", *fixed96(), st)
    for mult in (1, 2, 4):
        record(f"token budget {mult}x96x512 (eager)", *batches_by_budget(ids, base * mult, 1024, 1, pad), st)
    record("token budget 2x, lengths to x16 (eager)", *batches_by_budget(ids, base * 2, 1024, 16, pad), st)
    width = min(512, emb.max_seq_length)  # real ids, repeated to fill every row: no padding at all
    full = [np.resize(x, width) for x in ids[: 96 * 40]]
    record("full 512-token batches of 96 (eager)", *batches_by_budget(full, base, 96, 1, pad), st)
    t = time.perf_counter()
    auto = st[0].auto_model  # sentence-transformers calls .forward itself: compile that
    auto.forward = torch.compile(auto.forward, dynamic=True)
    b2 = batches_by_budget(ids, base * 2, 1024, 16, pad)
    time_batches(st, b2[0][:3], 1)
    print(f"compile warm-up {time.perf_counter() - t:.1f}s", flush=True)
    record("compiled dynamic, budget 2x, x16", *b2, st)
    record("compiled dynamic, budget 1x, x16", *batches_by_budget(ids, base, 1024, 16, pad), st)
    record("compiled dynamic, sorted 96", *fixed96(16), st)
    record("compiled dynamic, full 512 x 96", *batches_by_budget(full, base, 96, 1, pad), st)
    out = {"model": spec.name, "synthetic_weights": synthetic_weights, "dtype": emb.dtype,
           "device": torch.cuda.get_device_name() if device != "cpu" else "cpu",
           "matmul_peak_tflops": round(peak, 1),
           "chunks": len(ids), "repeats": repeats, "variants": results}
    if json_file:
        Path(json_file).write_text(json.dumps(out, indent=2))
    for r in results:
        print(f"{r['variant']:42} {r['tokens_per_s']:>10,} tok/s  MFU {r['mfu']:.3f}  pad {r['padding_eff']}")


if __name__ == "__main__":
    main()
