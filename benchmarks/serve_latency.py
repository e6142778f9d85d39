"""Search latency through `alexandria serve`'s JSON API over the project's question set, split by
serve's own Server-Timing header into the query's embedding, the store and the rest (HTTP, JSON,
routing), with the same model embedding the same questions in this process as the baseline
(docs/performance.md has the numbers).

    python benchmarks/serve_latency.py STORE [--questions tests/eval/questions.jsonl] [--rounds 5]

STORE is an embedded store an ingest wrote with --model minilm (for the numbers in the docs, the
question set's nine books). Each round asks every question once through the API and embeds it once
in this process, alternating, never two at a time, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(ms, 50), 2), "p99_ms": round(pct(ms, 99), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "n": len(ms)}


def start_server(store: Path, model: str, dtype: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "alexandria", "serve", "--model", model,
                             "--device", "cpu", "--dtype", dtype, "--store", str(store),
                             "--port", str(port)], cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url + "/api/health", timeout=5).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("alexandria serve did not start") from None
            time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--questions", type=Path, default=REPO / "tests" / "eval" / "questions.jsonl")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    questions = [json.loads(line)["question"] for line in args.questions.read_text().splitlines()
                 if line.strip()]

    from alexandria.query.search import Searcher, SearchOptions

    opts = SearchOptions(model=args.model, device="cpu", dtype=args.dtype, store=args.store,
                         top_k=args.top_k)
    server, url = start_server(args.store, args.model, args.dtype)
    searcher = Searcher(opts)  # the same model in this process: the embedding alone, as baseline
    try:
        def api(q: str) -> dict[str, float]:
            """One request: the client's time and serve's own breakdown (Server-Timing)."""
            query = urllib.parse.urlencode({"q": q, "top_k": args.top_k})
            t = time.perf_counter()
            with urllib.request.urlopen(f"{url}/api/search?{query}", timeout=60) as r:
                hits = json.loads(r.read())
                timing = r.headers["Server-Timing"]
            client = (time.perf_counter() - t) * 1000
            assert r.status == 200 and len(hits) == args.top_k
            parts = {k: float(v) for k, v in (p.strip().split(";dur=") for p in timing.split(","))}
            return {"client": client, **parts}

        def embed(q: str) -> float:
            t = time.perf_counter()
            searcher.embed(q)
            return (time.perf_counter() - t) * 1000

        for q in questions[:5]:  # warm-up: first calls pay for lazy loading
            api(q)
            embed(q)
        rows: list[dict[str, float]] = []
        alone: list[float] = []
        for _ in range(args.rounds):  # the two sides alternate, question by question
            for q in questions:
                rows.append(api(q))
                alone.append(embed(q))
        col = {k: [r[k] for r in rows] for k in rows[0]}
        out = {
            "api_request": summary(col["client"]),
            "in_serve": {"embed": summary(col["embed"]), "store": summary(col["store"]),
                         "total": summary(col["total"])},
            "beyond_the_model": summary([r["client"] - r["embed"] for r in rows]),
            "beyond_the_model_and_store": summary([r["client"] - r["embed"] - r["store"]
                                                   for r in rows]),
            "embedding_alone_in_process": summary(alone),
            "api_over_embedding_alone_p50": round(pct(col["client"], 50) / pct(alone, 50), 2),
            "rounds": args.rounds, "questions": len(questions), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        }
        print(json.dumps(out, indent=2))
    finally:
        searcher.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
