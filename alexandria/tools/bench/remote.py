"""`alexandria bench --embed-url A,B,...`: the pipeline fed to embedding servers, against the
servers' own speed on the same texts.

Per repeat and per number of servers n (the first n of the URLs; the order of n alternates between
repeats so that drift on the servers' machines hits every n alike):

* servers alone: every chunk text of the run, already tokenized, chunked and prompted in memory,
  sent through the same client (the same batches, concurrency and least-loaded dispatch), timed
  from the first request to the last vectors back. This is what the servers can do at best.
* end to end: a real `alexandria ingest --embed-url` of the same books in a child process, into a
  fresh store (embedded, or a fresh collection of --qdrant-url): planning, extraction, chunking,
  the requests, the store's writes, the manifest and the index, timed by the run's own report from
  its start to its end. Also reported: its rate over the embedding stage alone (the run's start-up
  left out), and up to its last write (the embedded store's index build at the end left out, with
  its seconds beside it; a server builds its index in the background).

The ratio end to end / servers alone is the share of the servers' speed that the pipeline keeps.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError
from alexandria.store.base import short_error
from alexandria.store.location import LOCAL_MODE
from alexandria.tools.bench.corpus import corpus_books, make_copies

SAMPLE_ALL = 10**15  # sample_texts' budget: every chunk of every book


def run_remote_bench(corpus: Path, model: str, urls: list[str], api: str = "auto",
                     api_key: str | None = None, tokens: int = 2_000_000, repeats: int = 3,
                     workdir: Path | None = None, timeout_s: float = 120.0,
                     progress: Callable[[str], None] = lambda m: None,
                     on_repeat: Callable[[dict[str, Any]], None] | None = None,
                     qdrant_url: str | None = None) -> dict[str, Any]:
    from alexandria.embedding.endpoints import parse_endpoints
    from alexandria.embedding.models import resolve_model
    from alexandria.embedding.remote import connect
    from alexandria.tools.tune_remote import sample_texts

    books = corpus_books(corpus)
    # Each URL keeps its own settings: the servers alone and the run both go at the tuned ones.
    endpoints = [e.with_settings for e in parse_endpoints(urls, api)]
    if not endpoints:
        raise UsageError("--embed-url names no endpoint.")
    if repeats < 1:
        raise UsageError("--repeats must be at least 1.")
    spec = resolve_model(model)
    connect(spec, endpoints, api, api_key, timeout_s).close()  # each one checked before any timing
    if qdrant_url and _local_folder(qdrant_url) is None:
        for n in range(1, len(endpoints) + 1):  # the server checked, a killed bench's leftovers gone
            _drop(qdrant_url, _collection(n))
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="alexandria-bench-remote-")) if own else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    try:
        originals = work / "originals"
        make_copies(books, 1, originals)
        once, per_pass = sample_texts(originals, spec, SAMPLE_ALL)
        if per_pass == 0:
            raise UsageError(f"The books in {corpus} hold no text to embed.")
        copies = max(1, math.ceil(tokens / per_pass))
        library = make_copies(books, copies, work / "library")
        texts, total = once * copies, per_pass * copies
        progress(f"bench --embed-url: {len(books)} books x {copies} copies, {total:,} tokens, "
                 f"{len(texts):,} chunks a run; {len(endpoints)} server(s)")
        counts = list(range(1, len(endpoints) + 1))
        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
        result: dict[str, Any] = {}
        for r in range(repeats):
            for n in (counts if r % 2 == 0 else counts[::-1]):
                alone, alone_stats = _servers_alone(spec, endpoints[:n], api, api_key, timeout_s,
                                                    texts, total)
                report = _ingest(library, work / f"run-{n}", spec.name, endpoints[:n], api, timeout_s,
                                 qdrant_url, _collection(n))
                row = {"servers_alone_tokens_per_s": alone,
                       "end_to_end_tokens_per_s": report["tokens"] / report["elapsed_s"],
                       "while_embedding_tokens_per_s": report["tokens"] / report["stages_s"]["embed"],
                       # the run up to its last write: the embedded store's index build at the
                       # end is the same whoever embeds, so it is shown apart
                       "before_index_tokens_per_s": report["tokens"] / max(
                           1e-9, report["elapsed_s"] - report["stages_s"].get("index", 0.0)),
                       "elapsed_s": report["elapsed_s"], "stages_s": report["stages_s"],
                       "tokens": report["tokens"], "endpoints": report.get("endpoints"),
                       "endpoints_alone": alone_stats}
                runs[n].append(row)
                progress(f"  repeat {r + 1}/{repeats}, {n} server(s): alone {alone:,.0f} tok/s, "
                         f"end to end {row['end_to_end_tokens_per_s']:,.0f} tok/s "
                         f"({row['end_to_end_tokens_per_s'] / alone:.2f})")
            result = _summary(spec.name, endpoints, len(books), copies, total, len(texts), runs,
                              _store_kind(qdrant_url))
            if on_repeat:
                on_repeat(result)
        return result
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _servers_alone(spec, urls: list[str], api: str, api_key: str | None, timeout_s: float,
                   texts: list[str], tokens: int) -> tuple[float, dict[str, Any]]:
    """The servers' tokens/s on the texts, and the client's endpoint stats of that pass alone."""
    from alexandria.embedding.remote import connect

    warm = connect(spec, urls, api, api_key, timeout_s)
    try:
        warm.encode_texts(texts[: max(1, len(texts) // 20)])  # the servers' shapes, their caches
    finally:
        warm.close()
    remote = connect(spec, urls, api, api_key, timeout_s)
    try:
        started = time.perf_counter()
        remote.encode_texts(texts)
        return tokens / (time.perf_counter() - started), remote.stats()
    finally:
        remote.close()


def _ingest(library: Path, work: Path, model: str, urls: list[str], api: str,
            timeout_s: float, qdrant_url: str | None = None, collection: str = "") -> dict[str, Any]:
    """One real run in a child process (its own start-up included), into a fresh store: the
    embedded one, a folder of qdrant-client's local mode, or a collection of a Qdrant server that
    was dropped before and is dropped after."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    report = work / "report.json"
    args = [sys.executable, "-m", "alexandria", "ingest", "--directory", str(library),
            "--model", model, "--store", str(work / "store"), "--log-dir", str(work / "logs"),
            "--report", str(report), "--embed-url", ",".join(urls), "--embed-api", api,
            "--embed-timeout", str(timeout_s)]
    local = _local_folder(qdrant_url) if qdrant_url else None
    server = bool(qdrant_url) and local is None
    if local is not None:  # local:DIR: a fresh folder under DIR for each run
        folder = local / work.name
        shutil.rmtree(folder, ignore_errors=True)
        args += ["--qdrant-url", f"{LOCAL_MODE}{folder}"]
    elif server:
        args += ["--qdrant-url", qdrant_url, "--collection", collection]
    try:
        done = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=os.environ.copy())
    finally:
        if server:
            _drop(qdrant_url, collection)
    if done.returncode != 0 or not report.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise UsageError(f"The benchmark's ingest exited {done.returncode}: {tail}")
    return json.loads(report.read_text())


def _local_folder(qdrant_url: str) -> Path | None:
    """DIR of a local:DIR URL (qdrant-client's local mode); None for a server's URL."""
    if not qdrant_url.startswith(LOCAL_MODE):
        return None
    return Path(qdrant_url[len(LOCAL_MODE):]).expanduser()


def _store_kind(qdrant_url: str | None) -> str:
    if not qdrant_url:
        return "embedded"
    return "Qdrant server" if _local_folder(qdrant_url) is None else "qdrant-client local mode"


def _collection(n: int) -> str:
    return f"alexandria_bench_{n}_servers"


def _drop(url: str, collection: str) -> None:
    from qdrant_client import QdrantClient

    try:
        client = QdrantClient(url=url, api_key=os.environ.get("QDRANT_API_KEY") or None)
        try:
            client.delete_collection(collection)
        finally:
            client.close()
    except Exception as e:  # qdrant-client raises several kinds; the bench's user needs one sentence
        raise UsageError(f"The Qdrant server {url} cannot be used for the bench "
                         f"({type(e).__name__}: {short_error(e)}).") from e


def _summary(model: str, urls: list[str], books: int, copies: int, tokens: int, chunks: int,
             runs: dict[int, list[dict[str, Any]]], store: str = "embedded") -> dict[str, Any]:
    from alexandria.embedding.endpoints import Endpoint

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(x[key] for x in rows)

    per_n: dict[str, Any] = {}
    for n, rows in runs.items():
        if not rows:
            continue
        alone, e2e = med(rows, "servers_alone_tokens_per_s"), med(rows, "end_to_end_tokens_per_s")
        embedding = med(rows, "while_embedding_tokens_per_s")
        per_n[str(n)] = {
            "servers_alone_tokens_per_s": round(alone), "end_to_end_tokens_per_s": round(e2e),
            # each repeat's own ratio, then their median: drift between repeats cancels
            "ratio": round(statistics.median(x["end_to_end_tokens_per_s"] / x["servers_alone_tokens_per_s"]
                                             for x in rows), 3),
            "while_embedding_tokens_per_s": round(embedding),
            "ratio_while_embedding": round(statistics.median(
                x["while_embedding_tokens_per_s"] / x["servers_alone_tokens_per_s"] for x in rows), 3),
            "before_index_tokens_per_s": round(med(rows, "before_index_tokens_per_s")),
            "ratio_before_index": round(statistics.median(
                x["before_index_tokens_per_s"] / x["servers_alone_tokens_per_s"] for x in rows), 3),
            "index_s": round(statistics.median(x["stages_s"].get("index", 0.0) for x in rows), 2),
            # builds of the run's first points while it went on (ALEXANDRIA_INDEX_EVERY)
            "index_during_s": round(statistics.median(
                x["stages_s"].get("index_during", 0.0) for x in rows), 2),
            "elapsed_s": round(med(rows, "elapsed_s"), 2),
            "startup_s": round(statistics.median(x["stages_s"].get("startup", 0.0) for x in rows), 2),
            # requests the servers had in flight on average, in the run and alone: whether the
            # pipeline kept them as full as the client alone does
            "in_flight": round(statistics.median(_in_flight(x.get("endpoints")) for x in rows), 2),
            "in_flight_alone": round(statistics.median(
                _in_flight(x.get("endpoints_alone")) for x in rows), 2),
            "runs": rows}
    out: dict[str, Any] = {
        "model": model, "servers": [Endpoint(u, "auto").name for u in urls], "store": store,
        "books": books,
        "copies": copies, "tokens_per_run": tokens, "chunks_per_run": chunks,
        "repeats": max(len(r) for r in runs.values()), "by_servers": per_n}
    first, last = per_n.get("1"), per_n.get(str(len(urls)))
    if first and last and len(urls) > 1:
        out["scaling_end_to_end"] = round(last["end_to_end_tokens_per_s"]
                                          / first["end_to_end_tokens_per_s"], 3)
        out["scaling_servers_alone"] = round(last["servers_alone_tokens_per_s"]
                                             / first["servers_alone_tokens_per_s"], 3)
    return out


def _in_flight(stats: dict[str, dict[str, float]] | None) -> float:
    """Requests in flight on average, over all the endpoints of one pass (0: not recorded)."""
    return sum(e.get("mean_in_flight", 0.0) for e in (stats or {}).values())


def render_remote(r: dict[str, Any]) -> str:
    lines = [f"alexandria bench --embed-url: {r['model']} on {', '.join(r['servers'])}, "
             f"into the {r.get('store', 'embedded')} store",
             f"  {r['books']} books x {r['copies']} copies = {r['tokens_per_run']:,} tokens, "
             f"{r['chunks_per_run']:,} chunks a run; median of {r['repeats']}",
             f"  {'servers':>7} {'alone tok/s':>12} {'end to end':>12} {'ratio':>6} "
             f"{'embedding stage':>16} {'ratio':>6} {'before index':>13} {'ratio':>6} "
             f"{'start-up s':>10} {'index s':>8} {'during s':>8} {'in flight':>9} {'alone':>6}"]
    for n, x in r["by_servers"].items():
        lines.append(f"  {n:>7} {x['servers_alone_tokens_per_s']:>12,} {x['end_to_end_tokens_per_s']:>12,} "
                     f"{x['ratio']:>6.3f} {x['while_embedding_tokens_per_s']:>16,} "
                     f"{x['ratio_while_embedding']:>6.3f} {x['before_index_tokens_per_s']:>13,} "
                     f"{x['ratio_before_index']:>6.3f} {x['startup_s']:>10.2f} {x['index_s']:>8.2f} "
                     f"{x['index_during_s']:>8.2f} {x.get('in_flight', 0.0):>9.2f} "
                     f"{x.get('in_flight_alone', 0.0):>6.2f}")
    if "scaling_end_to_end" in r:
        lines.append(f"  scaling over {len(r['servers'])} servers: end to end "
                     f"{r['scaling_end_to_end']:.2f}x, servers alone {r['scaling_servers_alone']:.2f}x")
    return "\n".join(lines)
