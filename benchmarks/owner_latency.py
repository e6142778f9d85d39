"""Search latency through the shard's owner process against the shard opened in-process, and an
ingest's tokens/s with and without a search every 100 ms (docs/performance.md has the numbers).

    python benchmarks/owner_latency.py fill STORE --points 1000000
    python benchmarks/owner_latency.py latency STORE --queries 300
    python benchmarks/owner_latency.py ingest WORK --runs 5 [--how vector] BOOK.epub BOOK.epub
    python benchmarks/owner_latency.py ingest WORK --how vector --device cuda --synthetic bge-m3 BOOKS...
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

COLLECTION = "bench"
DIM = 384
INGESTED = "owner_bench"  # the ingests' collection, whatever the model


def fill(store: Path, points: int) -> None:
    """Random unit vectors with payloads shaped like a book's chunks (about 2 KB of text each)."""
    from alexandria.store.base import PointBlock
    from alexandria.store.edge import EdgeStore

    rng = np.random.default_rng(24)
    words = "the sea ship whale captain harbour storm night light stone river road".split()
    s = EdgeStore(store, COLLECTION, DIM)
    started, block = time.perf_counter(), 512
    try:
        for first in range(0, points, block):
            n = min(block, points - first)
            vectors = rng.standard_normal((n, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            book = first // 2048
            text = " ".join(rng.choice(words, 330))
            base = {"book_key": f"calibre:{book}", "title": f"Book {book}", "authors": ["A. Author"],
                    "tags": ["fiction"], "language": "eng", "calibre_id": book,
                    "source_path": f"/library/Author/Book {book} ({book})/book.epub"}
            fields = [{"kind": "chunk", "chunk_index": first % 2048 + i, "chapter_index": i // 20,
                       "chapter": f"Chapter {i // 20}", "text": text, "tokens": 480}
                      for i in range(n)]
            s.upsert_block(PointBlock(base, fields, vectors))
            if first and first % 100_000 == 0:
                print(f"{first} points, {time.perf_counter() - started:.0f} s", flush=True)
        s.flush()
        print(json.dumps({"points": s.count(), "fill_s": round(time.perf_counter() - started, 1)}))
    finally:
        s.close()


def timed(search, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        search(q.tolist(), 5)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def latency(store: Path, queries: int, rounds: int) -> None:
    from alexandria.store.edge import EdgeStore
    from alexandria.store.process import StoreProcess

    rng = np.random.default_rng(7)
    qs = rng.standard_normal((queries, DIM)).astype(np.float32)
    results: dict[str, list[float]] = {"direct": [], "owner": []}
    for _ in range(rounds):  # alternate, so both see the same page cache and machine load
        d = EdgeStore(store, COLLECTION, None)
        try:
            timed(d.search, qs[:10])  # warm
            results["direct"] += timed(d.search, qs)
        finally:
            d.close()
        o = StoreProcess(store, COLLECTION, None)
        try:
            timed(o.search, qs[:10])
            results["owner"] += timed(o.search, qs)
            pid = o.owner_pid
        finally:
            o.close()
        while os.path.exists(f"/proc/{pid}"):  # the owner leaves GRACE_S after: the shard is free
            time.sleep(0.05)
        time.sleep(0.1)
    print(json.dumps({k: summary(v) | {"n": len(v)} for k, v in results.items()}))


SEARCHER = r'''
import random, sys, time
from pathlib import Path
from alexandria.query.search import SearchOptions, search
from alexandria.store.process import StoreProcess
store, stop, every, how = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
model, dim, collection = sys.argv[5], int(sys.argv[6]), sys.argv[7]
opts = SearchOptions(model=model, device="cpu", dtype="fp32", store=store, top_k=5,
                     collection=collection)
if how == "model":
    search("warm", SearchOptions(model=model, device="cpu", dtype="fp32", store=store.parent / "w"))
vector = [random.random() for _ in range(dim)]


def by_vector():  # what a search costs the store, without embedding the query
    s = StoreProcess(store, collection, dim)
    try:
        s.search(vector, 5, must_not={"kind": "parent"})
    finally:
        s.close()


open(str(stop) + ".ready", "w").close()
n = failed = 0
while not stop.exists():
    try:
        search("the sea and the ships", opts) if how == "model" else by_vector()
    except Exception as e:
        failed += 1
        print(type(e).__name__, e, file=sys.stderr)
    n += 1
    time.sleep(every)
print(n, failed)
'''


def synthetic_model(alias: str, books: list[Path], work: Path, device: str) -> Path:
    """Random weights of the exact architecture (no hub here): speed only, never quality."""
    from alexandria.tools.bench.corpus import corpus_texts
    from alexandria.tools.bench.synthetic import build_synthetic_model

    return build_synthetic_model(alias, corpus_texts(books), work / f"synthetic-{alias}",
                                 device, print).resolve()


def ingest(work: Path, books: list[Path], runs: int, every: float, how: str, model: str,
           device: str, synthetic: str | None) -> None:
    lib = work / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for b in books:
        shutil.copy2(b, lib / b.name)
    if synthetic:
        model = str(synthetic_model(synthetic, books, work, device))
    dim = {"minilm": 384, "bge-m3": 1024, "embeddinggemma": 768}[synthetic or model]
    script = work / "searcher.py"
    script.write_text(SEARCHER)
    rates: dict[str, list[float]] = {"alone": [], "searched": []}
    counts = []
    for r in range(runs):
        for mode in ("alone", "searched"):
            store = work / f"store-{mode}-{r}"
            shutil.rmtree(store, ignore_errors=True)
            searcher = None
            if mode == "searched":
                stop = work / f"stop-{r}"
                searcher = subprocess.Popen([sys.executable, str(script), str(store), str(stop),
                                             str(every), how, model, str(dim), INGESTED],
                                            stdout=subprocess.PIPE, text=True)
                while not Path(str(stop) + ".ready").exists():
                    time.sleep(0.1)
            report = work / f"report-{mode}-{r}.json"
            proc = subprocess.run([sys.executable, "-m", "alexandria", "ingest", "--model", model,
                                   "--device", device, "--store", str(store), "--directory", str(lib),
                                   "--collection", INGESTED,
                                   "--log-dir", str(work / "logs"), "--report", str(report),
                                   "--quiet"], capture_output=True, text=True)
            if searcher is not None:
                stop.touch()
                counts.append(searcher.communicate(timeout=120)[0].split())
            assert proc.returncode == 0, proc.stderr[-2000:]
            data = json.loads(report.read_text())
            rates[mode].append(data["tokens_per_s"])
            print(mode, r, data["tokens_per_s"], data.get("tokens"), data.get("elapsed_s"),
                  counts[-1] if mode == "searched" else "", flush=True)
    out = {k: {"median_tokens_per_s": statistics.median(v), "runs": v} for k, v in rates.items()}
    out["slowdown_pct"] = round(100 * (1 - out["searched"]["median_tokens_per_s"]
                                       / out["alone"]["median_tokens_per_s"]), 1)
    out["searches_and_failures_per_run"] = counts
    pairs = [s / a for a, s in zip(rates["alone"], rates["searched"], strict=True)]
    out["slowdown_pct_median_of_pairs"] = round(100 * (1 - statistics.median(pairs)), 1)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fill")
    f.add_argument("store", type=Path)
    f.add_argument("--points", type=int, default=1_000_000)
    lat = sub.add_parser("latency")
    lat.add_argument("store", type=Path)
    lat.add_argument("--queries", type=int, default=300)
    lat.add_argument("--rounds", type=int, default=2)
    ing = sub.add_parser("ingest")
    ing.add_argument("work", type=Path)
    ing.add_argument("books", type=Path, nargs="+")
    ing.add_argument("--runs", type=int, default=3)
    ing.add_argument("--every", type=float, default=0.1)
    ing.add_argument("--how", choices=("model", "vector"), default="model",
                     help="model: full searches (the query embedded on this CPU too); vector: only "
                          "the store's part (connect, search, close)")
    ing.add_argument("--model", default="minilm")
    ing.add_argument("--device", default="cpu")
    ing.add_argument("--synthetic", choices=("bge-m3", "embeddinggemma"),
                     help="random weights of this model's architecture (speed only)")
    a = ap.parse_args()
    if a.cmd == "fill":
        fill(a.store, a.points)
    elif a.cmd == "latency":
        latency(a.store, a.queries, a.rounds)
    else:
        ingest(a.work, a.books, a.runs, a.every, a.how, a.model, a.device, a.synthetic)


if __name__ == "__main__":
    main()
