"""What computing sparse (BM25) vectors costs an ingest: tokens/s of the same books into a new
collection (dense + sparse) and into a dense-only one (a collection made before sparse vectors,
which an ingest keeps dense-only), the two interleaved, the median of the runs each
(docs/performance.md has the numbers).

    python benchmarks/sparse_cost.py WORK --runs 3 --model minilm BOOK.epub BOOK.epub ...
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


def dense_only(store: Path, collection: str, dimension: int) -> None:
    """The collection as Alexandria made it before sparse vectors: one unnamed dense vector."""
    import qdrant_edge as qe

    path = store / collection
    path.mkdir(parents=True)
    shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)))
    shard.update(qe.UpdateOperation.create_field_index("book_key", qe.PayloadSchemaType.Keyword))
    shard.flush()
    shard.close()


def one_run(work: Path, books: list[Path], model: str, sparse: bool, dimension: int) -> dict:
    from alexandria.embedding.models import resolve_model
    from alexandria.store.location import default_collection

    store = work / ("sparse" if sparse else "dense")
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    if not sparse:
        dense_only(store, default_collection(resolve_model(model)), dimension)
    report = store / "report.json"
    args = [sys.executable, "-m", "alexandria", "ingest", "--model", model, "--device", "cpu",
            "--store", str(store), "--log-dir", str(work / "logs"), "--report", str(report),
            "--quiet"]
    for b in books:
        args += ["--file", str(b)]
    started = time.perf_counter()
    subprocess.run(args, check=True)
    wall = time.perf_counter() - started
    r = json.loads(report.read_text())
    status = subprocess.run([sys.executable, "-m", "alexandria", "status", "--json", "--model",
                             model, "--store", str(store)], check=True, capture_output=True,
                            text=True)
    vectors = json.loads(status.stdout)["vectors"]
    assert bool(vectors["sparse"]) == sparse, vectors
    return {"sparse": sparse, "tokens": r["tokens"], "chunks": r["chunks"],
            "elapsed_s": r["elapsed_s"], "tokens_per_s": r["tokens_per_s"], "wall_s": round(wall, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("books", type=Path, nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--dimension", type=int, default=384)
    a = ap.parse_args()
    rows = []
    for i in range(a.runs):
        for sparse in ((False, True) if i % 2 == 0 else (True, False)):  # interleaved, alternating
            rows.append(one_run(a.work, a.books, a.model, sparse, a.dimension))
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
