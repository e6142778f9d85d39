"""How long the embedded store's index build (Qdrant Edge `optimize()`) takes at N points of a
given dimension, per HNSW `max_indexing_threads` (0: Edge's own choice), in a fresh shard of the
default configuration each time, and the recall@10 of the graph it built (50 noisy copies of stored
points searched as the store searches, against exact search), since Qdrant's authors warn that
many threads can disconnect the graph. Random unit vectors: the graph is the hardest case, the
comparison between settings is what counts. --every N also builds after each N points written (an
index built during the fill), --max-segment-mb caps the optimiser's merges, --segments sets the
segment count past which it merges.

    python benchmarks/index_threads.py --points 40000 --dim 1024 --threads 0,4,16 --repeats 2
    python benchmarks/index_threads.py --points 40000 --every 10240 [--max-segment-mb 48]
    python benchmarks/index_threads.py --points 40000 --dim 256 --every 10000 --segments 8
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from alexandria.store.config import DEFAULT, KEYWORD_INDEXES
from alexandria.store.sparse import SPARSE


def build(points: int, dim: int, threads: int, where: Path, every: int = 0,
          max_segment_mb: int | None = None, segments: int | None = None) -> dict:
    store = replace(DEFAULT, max_segment_mb=max_segment_mb, segments=segments)
    config = store.edge_config(qe, dim, sparse_vectors={
        SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}, index_threads=threads)
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    shard = qe.EdgeShard.create(str(where), config)
    for name in KEYWORD_INDEXES:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
    rng = np.random.default_rng(0)
    during = []
    kept = []
    for start in range(0, points, 512):
        v = rng.standard_normal((min(512, points - start), dim)).astype(np.float32)
        kept.append(v[0])
        shard.update(qe.UpdateOperation.upsert_points([
            qe.Point(str(uuid.uuid4()), {"": row.tolist(), SPARSE: qe.SparseVector(
                indices=[start % 997, 1000 + i], values=[1.0, 0.5])},
                {"book_key": f"b{start // 5000}", "text": "x" * 2000})
            for i, row in enumerate(v)]))
        written = start + len(v)
        if every and written % every < 512 and written < points:
            t = time.perf_counter()
            shard.optimize()
            during.append(round(time.perf_counter() - t, 2))
    shard.flush()
    t = time.perf_counter()
    shard.optimize()
    seconds = time.perf_counter() - t
    found = []
    for v in kept[:50]:
        query = (v / np.linalg.norm(v) + 0.5 * rng.standard_normal(dim) / np.sqrt(dim)).tolist()
        hnsw, exact = ({str(p.id) for p in shard.query(qe.QueryRequest(
            limit=10, query=qe.Query.Nearest(query), with_payload=False,
            params=store.search_params(qe, exact=e)))} for e in (False, True))
        found.append(len(hnsw & exact) / 10)
    shard.close()
    return {"threads": threads, "optimize_s": round(seconds, 2), "during_s": during,
            "recall_at_10": round(statistics.mean(found), 3),
            "segments": len(list((where / "segments").iterdir()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=40_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--threads", default="0")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--every", type=int, default=0)
    ap.add_argument("--max-segment-mb", type=int)
    ap.add_argument("--segments", type=int, help="the optimiser's segment target (default: Qdrant's)")
    a = ap.parse_args()
    counts = [int(t) for t in a.threads.split(",")]
    runs: dict[int, list[float]] = {t: [] for t in counts}
    with tempfile.TemporaryDirectory(prefix="alexandria-index-") as tmp:
        for r in range(a.repeats):
            for t in counts if r % 2 == 0 else counts[::-1]:
                row = build(a.points, a.dim, t, Path(tmp) / "shard", a.every, a.max_segment_mb,
                            a.segments)
                runs[t].append(row["optimize_s"])
                print(json.dumps({"repeat": r, **row}), flush=True)
    print(json.dumps({"points": a.points, "dim": a.dim, "median_optimize_s":
                      {t: statistics.median(v) for t, v in runs.items()}}))


if __name__ == "__main__":
    main()
