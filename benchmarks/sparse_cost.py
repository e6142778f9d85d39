"""What computing sparse (BM25) vectors costs an ingest: tokens/s of the same books into a new
collection with sparse vectors and into one made with --no-sparse, the two interleaved, the median
of the runs each (docs/performance.md has the numbers).

    python benchmarks/sparse_cost.py WORK --runs 3 --model minilm BOOK.epub BOOK.epub ...
    python benchmarks/sparse_cost.py WORK --runs 2 --device cuda --synthetic bge-m3 BOOKS...
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_run(work: Path, books: list[Path], model: str, sparse: bool, device: str) -> dict:
    store = work / ("sparse" if sparse else "dense")
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    report = store / "report.json"
    args = [sys.executable, "-m", "alexandria", "ingest", "--model", model, "--device", device,
            "--store", str(store), "--collection", "sparse_cost", "--log-dir", str(work / "logs"),
            "--report", str(report), "--quiet", "--sparse" if sparse else "--no-sparse"]
    for b in books:
        args += ["--file", str(b)]
    started = time.perf_counter()
    subprocess.run(args, check=True)
    wall = time.perf_counter() - started
    r = json.loads(report.read_text())
    status = subprocess.run([sys.executable, "-m", "alexandria", "status", "--json", "--store",
                             str(store), "--collection", "sparse_cost"], check=True,
                            capture_output=True, text=True)
    vectors = json.loads(status.stdout)["vectors"]
    assert bool(vectors["sparse"]) == sparse, vectors
    return {"sparse": sparse, "tokens": r["tokens"], "chunks": r["chunks"],
            "elapsed_s": r["elapsed_s"], "tokens_per_s": r["tokens_per_s"], "wall_s": round(wall, 1)}


def synthetic_model(alias: str, books: list[Path], work: Path, device: str) -> str:
    """Random weights of the exact architecture (no hub on the GPU box): speed only."""
    from alexandria.tools.bench.corpus import corpus_texts
    from alexandria.tools.bench.synthetic import build_synthetic_model

    return str(build_synthetic_model(alias, corpus_texts(books), work / f"synthetic-{alias}",
                                     device, print).resolve())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("books", type=Path, nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--synthetic", choices=("bge-m3", "embeddinggemma"),
                    help="random weights of this architecture instead of --model (speed only)")
    a = ap.parse_args()
    model = synthetic_model(a.synthetic, a.books, a.work, a.device) if a.synthetic else a.model
    rows = []
    for i in range(a.runs):
        for sparse in ((False, True) if i % 2 == 0 else (True, False)):  # interleaved, alternating
            rows.append(one_run(a.work, a.books, model, sparse, a.device))
            print(json.dumps(rows[-1]), flush=True)
    out = {}
    for sparse in (False, True):
        speeds = [r["tokens_per_s"] for r in rows if r["sparse"] == sparse]
        out["dense+sparse" if sparse else "dense only"] = statistics.median(speeds)
    out["ratio"] = round(out["dense+sparse"] / out["dense only"], 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
