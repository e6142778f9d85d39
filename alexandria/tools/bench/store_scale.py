"""`alexandria bench-store`: an embedded store filled to millions of points, measured at each step.

The points have the pipeline's payload (alexandria.run.points: the book's metadata, the chunk's
text sampled from real books, its chapter, offsets and token count) and vectors with the structure
real embeddings have, because uniform random vectors have no near neighbours and make an
approximate index look either perfect or hopeless:

    v = normalise(0.45 * genre + 0.55 * book + 0.50 * chapter + 0.50 * noise)

each term a unit random direction: one of GENRES per book, one per book, one per chapter, one per
chunk. Chunks of one chapter then have cosine ~0.5 to each other, of one book ~0.3, of one genre
~0.1, and ~0 otherwise, as passages of a book do under bge-m3; a query is a chapter's point with
fresh noise, so its true neighbours are a few dozen near-ties, the hard case for HNSW and for
quantized distances.

Point number i belongs to book i // points_per_book, so a fill is a deterministic prefix: a killed
fill resumes from the points the store holds, and a step already in the --json file is not measured
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.store.base import UPSERT_BATCH, PointBlock
from alexandria.store.config import StoreConfig, read_config
from alexandria.store.edge import EdgeStore

GENRES = 64
TOKENS_PER_CHUNK = 480  # what a 512-token chunk with 64 overlap adds, on average, of a book
CHAPTERS_PER_BOOK = 24
WEIGHTS = (0.45, 0.55, 0.50, 0.50)  # genre, book, chapter, chunk noise (see the module's text)


@dataclass
class ScaleOptions:
    workdir: Path
    steps: list[int]
    dimension: int = 384
    config: StoreConfig = field(default_factory=StoreConfig)
    points_per_book: int = 560  # 5,000,000 points / 8,982 books
    corpus: Path | None = None
    queries: int = 200
    recall_queries: int = 50
    seed: int = 7
    collection: str = "bench_store"
    max_seconds: float | None = None  # stop filling (resumably) after this long
    nightly: bool = True  # measure a nightly run's writes at each step


def parse_steps(text: str) -> list[int]:
    """'100k,500k,1M' -> [100000, 500000, 1000000]."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
        number = part[:-1] if scale != 1 else part
        try:
            out.append(int(float(number) * scale))
        except ValueError:
            from alexandria.errors import UsageError
            raise UsageError(f"--steps takes sizes like 100k,500k,1M, not {text!r}.") from None
    return sorted(set(out))


class Vectors:
    """The deterministic structured vectors of point i (see the module's text)."""

    def __init__(self, dimension: int, points_per_book: int, seed: int) -> None:
        self.dim, self.ppb, self.seed = dimension, points_per_book, seed
        self._dirs: dict[tuple, np.ndarray] = {}

    def _unit(self, *key: Any) -> np.ndarray:
        v = self._dirs.get(key)
        if v is None:
            digest = hashlib.blake2b(repr((self.seed, *key)).encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            v = rng.standard_normal(self.dim).astype(np.float32)
            v /= np.linalg.norm(v)
            if len(self._dirs) > 200_000:
                self._dirs.clear()
            self._dirs[key] = v
        return v

    def book_of(self, i: int) -> int:
        return i // self.ppb

    def chapter_of(self, i: int) -> int:
        return (i % self.ppb) * CHAPTERS_PER_BOOK // self.ppb

    def structure(self, book: int, chapter: int) -> np.ndarray:
        g, b, c, _ = WEIGHTS
        return (g * self._unit("genre", book % GENRES) + b * self._unit("book", book)
                + c * self._unit("chapter", book, chapter))

    def block(self, start: int, end: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, start))
        noise = rng.standard_normal((end - start, self.dim)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        out = WEIGHTS[3] * noise
        for row, i in enumerate(range(start, end)):
            out[row] += self.structure(self.book_of(i), self.chapter_of(i))
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def query(self, rng: random.Random, books: int) -> tuple[np.ndarray, int]:
        """A question about one chapter of one stored book: its structure plus fresh noise."""
        book = rng.randrange(books)
        nrng = np.random.default_rng(rng.randrange(2**32))
        noise = nrng.standard_normal(self.dim).astype(np.float32)
        noise *= WEIGHTS[3] / np.linalg.norm(noise)
        v = self.structure(book, rng.randrange(CHAPTERS_PER_BOOK)) + noise
        return v / np.linalg.norm(v), book


class Texts:
    """Chunk texts of the real size: ~480-token windows of real books (the corpus), else of a
    fixed English paragraph when there is no corpus."""

    def __init__(self, corpus: Path | None, pool: int = 2000, chars: int = 2300) -> None:
        self.pool: list[str] = []
        if corpus is not None:
            self.pool = _corpus_windows(Path(corpus), pool, chars)
        if not self.pool:
            words = ("the whale was seen again at dawn and the crew went to the boats while the "
                     "captain watched from the deck saying nothing ").split()
            rng = random.Random(1)
            self.pool = [" ".join(rng.choice(words) for _ in range(chars // 5)) for _ in range(50)]

    def text(self, i: int) -> str:
        return self.pool[(i * 2654435761) % len(self.pool)]


def _corpus_windows(corpus: Path, pool: int, chars: int) -> list[str]:
    from alexandria.sources.book import ExtractError
    from alexandria.sources.epub import extract_epub

    windows: list[str] = []
    for path in sorted(corpus.rglob("*.epub")):
        try:
            book = extract_epub(path.read_bytes(), path.name)
        except (ExtractError, OSError):
            continue
        text = "\n\n".join(c.text for c in book.chapters)
        for start in range(0, max(0, len(text) - chars), chars):
            windows.append(text[start:start + chars])
        if len(windows) >= pool:
            break
    return windows[:pool]


class Library:
    """The metadata of book b, as Book.metadata() makes it: ~3 books per author."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    @staticmethod
    def key(book: int) -> str:
        return f"calibre:{book + 1}"

    @staticmethod
    def author(book: int) -> str:
        return f"Author {book // 3:05d}"

    def metadata(self, book: int) -> dict[str, Any]:
        return {
            "book_key": self.key(book), "calibre_id": book + 1,
            "title": f"The Collected Works, Volume {book + 1}", "authors": [self.author(book)],
            "series": None if book % 4 else f"Series {book // 40}",
            "series_index": None if book % 4 else float(book % 10),
            "tags": ["Fiction", f"Genre {book % GENRES}"], "language": "eng", "languages": ["eng"],
            "identifiers": {"isbn": f"978{book:010d}"},
            "source_path": f"/library/{self.author(book)}/Volume {book + 1} ({book + 1})/book.epub",
            "model": "bench", "ingested_at": "2026-12-06T00:00:00+00:00",
        }


def point_fields(vectors: Vectors, texts: Texts, i: int) -> dict[str, Any]:
    chunk = i % vectors.ppb
    chapter = vectors.chapter_of(i)
    text = texts.text(i)
    start = chunk * 1900
    return {"text": text, "chapter": f"Chapter {chapter + 1}", "chapter_index": chapter,
            "chunk_index": chunk, "char_start": start, "char_end": start + len(text),
            "tokens": TOKENS_PER_CHUNK, "kind": "chunk"}


def blocks(vectors: Vectors, texts: Texts, library: Library, start: int, end: int):
    """PointBlocks of points [start, end): one book's points at a time, UPSERT_BATCH at most."""
    i = start
    while i < end:
        book = vectors.book_of(i)
        stop = min(end, (book + 1) * vectors.ppb, i + UPSERT_BATCH)
        yield PointBlock(library.metadata(book),
                         [point_fields(vectors, texts, j) for j in range(i, stop)],
                         vectors.block(i, stop))
        i = stop


def rss() -> dict[str, float]:
    """This process's resident memory in MB: anonymous (the engine's heap) and file-backed (memory
    maps the kernel can drop under pressure)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[name] = int(rest.split()[0]) / 1024
    return {"rss_mb": out.get("VmRSS", 0.0), "rss_anon_mb": out.get("RssAnon", 0.0),
            "rss_file_mb": out.get("RssFile", 0.0), "rss_peak_mb": out.get("VmHWM", 0.0)}


def disk_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total / 2**20


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)

    def at(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))]

    return {"p50_ms": round(at(0.50), 2), "p95_ms": round(at(0.95), 2), "p99_ms": round(at(0.99), 2)}


class Bench:
    def __init__(self, opts: ScaleOptions, progress: Callable[[str], None] = lambda m: None) -> None:
        self.opts, self.progress = opts, progress
        self.vectors = Vectors(opts.dimension, opts.points_per_book, opts.seed)
        self.library = Library(opts.seed)
        self.texts = Texts(opts.corpus)
        opts.workdir.mkdir(parents=True, exist_ok=True)
        shard = opts.workdir / opts.collection
        asked = None if (shard / "edge_config.json").is_file() else opts.config.to_dict()
        self.store = EdgeStore(opts.workdir, opts.collection, opts.dimension, asked)
        self.config = read_config(shard)
        self.shard = shard
        self.qe = self.store.qe

    def close(self) -> None:
        self.store.close()

    # -- filling ---------------------------------------------------------------------------
    def fill(self, target: int) -> dict[str, Any]:
        have = self.store.count()
        start = max(0, have - UPSERT_BATCH)  # a killed upsert may have left part of its block
        started, points, upsert_s = time.perf_counter(), 0, 0.0
        deadline = None if self.opts.max_seconds is None else started + self.opts.max_seconds
        last_note = started
        i = start
        for block in blocks(self.vectors, self.texts, self.library, start, target):
            t0 = time.perf_counter()
            self.store.upsert_block(block)
            upsert_s += time.perf_counter() - t0
            points += len(block.fields)
            i += len(block.fields)
            if time.perf_counter() - last_note > 30:
                last_note = time.perf_counter()
                self.progress(f"  {i:,} points ({points / (last_note - started):,.0f}/s)")
            if deadline is not None and time.perf_counter() > deadline:
                break
        t0 = time.perf_counter()
        self.store.flush()
        flush_s = time.perf_counter() - t0
        wall = time.perf_counter() - started
        return {"filled_from": have, "points_written": points, "fill_s": round(wall, 2),
                "upsert_s": round(upsert_s, 2), "flush_s": round(flush_s, 2),
                "reached": i >= target}

    def optimize(self) -> dict[str, Any]:
        """The index build, with a writer upserting one book meanwhile: how long its writes wait."""
        waits: list[float] = []
        done = threading.Event()
        book = 10**7  # a book past any fill: its points come and go
        extra = list(blocks(self.vectors, self.texts, self.library,
                            book * self.opts.points_per_book, (book + 1) * self.opts.points_per_book))
        for b in extra:
            b.base = dict(b.base, book_key="bench:writer")

        searches: list[float] = []
        probe = self.vectors.query(random.Random(1), 1)[0]

        def searcher() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                self._query(probe, None, False)
                searches.append(time.perf_counter() - t0)
                time.sleep(0.05)

        def writer() -> None:
            while not done.is_set():
                for b in extra:
                    t0 = time.perf_counter()
                    self.store.upsert_block(b)
                    waits.append(time.perf_counter() - t0)
                    if done.is_set():
                        break
                time.sleep(0.05)

        threads = [threading.Thread(target=f, daemon=True) for f in (writer, searcher)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        self.store.optimize()
        optimize_s = time.perf_counter() - t0
        done.set()
        for t in threads:
            t.join()
        self.store.delete_book("bench:writer")
        self.store.flush()
        self.store.optimize()  # the writer's points leave no unindexed segment behind
        info = self.store.shard.info()
        return {"optimize_s": round(optimize_s, 2),
                "upsert_during_optimize": {"blocks": len(waits),
                                           "max_ms": round(max(waits) * 1000, 1) if waits else None,
                                           **(percentiles(waits) if waits else {})},
                "search_during_optimize": {"searches": len(searches),
                                           "max_ms": round(max(searches) * 1000, 1) if searches else None},
                "segments": info.segments_count, "indexed_vectors": info.indexed_vectors_count}

    # -- searching -------------------------------------------------------------------------
    def _query(self, vector: np.ndarray, flt: Any, exact: bool) -> list[str]:
        qe = self.qe
        request = qe.QueryRequest(limit=10, query=qe.Query.Nearest(vector.tolist()),
                                  with_payload=False, filter=flt,
                                  params=self.config.search_params(qe, exact=exact))
        return [str(p.id) for p in self.store.shard.query(request)]

    def search(self, points: int) -> dict[str, Any]:
        qe = self.qe
        books = max(1, points // self.opts.points_per_book)
        rng = random.Random(self.opts.seed)
        queries = [self.vectors.query(rng, books) for _ in range(self.opts.queries)]

        def flt(kind: str, book: int):
            if kind == "none":
                return None
            key, value = ("authors", self.library.author(book)) if kind == "author" else (
                "book_key", self.library.key(book))
            return qe.Filter(must=[qe.FieldCondition(key=key, match=qe.MatchValue(value))])

        out: dict[str, Any] = {}
        for kind in ("none", "author", "book"):
            for v, b in queries[:5]:  # warm the caches this kind touches
                self._query(v, flt(kind, b), False)
            times = []
            for v, b in queries:
                t0 = time.perf_counter()
                self._query(v, flt(kind, b), False)
                times.append(time.perf_counter() - t0)
            recalls = []
            for v, b in queries[:self.opts.recall_queries]:
                truth = self._query(v, flt(kind, b), True)
                got = self._query(v, flt(kind, b), False)
                if truth:
                    recalls.append(len(set(truth) & set(got)) / len(truth))
            out[kind] = {**percentiles(times),
                         "recall_at_10": round(statistics.fmean(recalls), 4) if recalls else None}
        return out

    def _book_blocks(self, book: int):
        first = book * self.opts.points_per_book
        return blocks(self.vectors, self.texts, self.library, first,
                      first + self.opts.points_per_book)

    def nightly(self, points: int) -> dict[str, Any]:
        """The store's part of a nightly run: 10 changed books deleted and written again, 5
        removed, 5 added, 20 retitled (their payloads set in place), flushed and indexed. The
        added books are the removed ones written back, so the store stays a prefix of the fill."""
        books = points // self.opts.points_per_book
        rng = random.Random(books)
        chosen = rng.sample(range(books), min(books, 40))
        changed, gone, retitled = chosen[:10], chosen[10:15], chosen[15:35]
        times: dict[str, float] = {}

        def timed(name: str, work: Callable[[], None]) -> None:
            t0 = time.perf_counter()
            work()
            times[name] = round(time.perf_counter() - t0, 3)

        def delete(keys: list[int]) -> None:
            for b in keys:
                self.store.delete_book(self.library.key(b))
            self.store.flush()

        def write(keys: list[int]) -> None:
            for b in keys:
                for block in self._book_blocks(b):
                    self.store.upsert_block(block)
                self.store.flush()
                self.store.count_book(self.library.key(b))  # as the writer checks each book

        def retitle() -> None:
            for b in retitled:
                meta = self.library.metadata(b)
                meta["title"] += " (revised)"
                self.store.set_book_payload(self.library.key(b), meta)
            self.store.flush()

        timed("delete_changed_s", lambda: delete(changed))
        timed("write_changed_s", lambda: write(changed))
        timed("remove_s", lambda: delete(gone))
        timed("add_s", lambda: write(gone))
        timed("retitle_s", retitle)
        timed("optimize_s", lambda: self.store.optimize())
        t0 = time.perf_counter()
        by_book = self.store.counts_by_book()
        times["counts_by_book_s"] = round(time.perf_counter() - t0, 3)
        times["books_counted"] = len(by_book)
        t0 = time.perf_counter()
        self.store.count_book(self.library.key(changed[0]))
        times["count_book_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        times["total_s"] = round(sum(v for k, v in times.items()
                                     if k.endswith("_s") and k != "counts_by_book_s"), 2)
        return times

    def step(self, target: int, pending: dict[str, Any], save: Callable[[], None]) -> bool:
        """Advance one step through its phases (fill, index, search, nightly), saving what is
        measured after each, so that a command killed by a time limit loses one phase at most.
        True once the step is complete."""
        if "points" not in pending:
            self.progress(f"filling to {target:,} points")
            part = self.fill(target)
            parts = pending.setdefault("fill_parts", [])
            parts.append(part)
            save()
            if not part["reached"]:
                return False
            written = sum(p["points_written"] for p in parts)
            upsert_s = sum(p["upsert_s"] for p in parts)
            rate = written / upsert_s if upsert_s and written else None
            pending.update({
                "points": self.store.count(), "points_written": written,
                "upsert_s": round(upsert_s, 2), "fill_s": round(sum(p["fill_s"] for p in parts), 2),
                "upsert_points_per_s": round(rate) if rate else None,
                "keeps_up_with_tokens_per_s": round(rate * TOKENS_PER_CHUNK) if rate else None})
            save()
        points = pending["points"]
        if "optimize_s" not in pending:
            self.progress(f"  {points:,} points; building the index")
            pending.update(self.optimize())
            save()
        if "search" not in pending:
            self.progress("  searching")
            pending["search"] = self.search(points)
            save()
        if "rss_mb" not in pending:
            if self.opts.nightly:
                self.progress("  a nightly run's writes")
                pending["nightly"] = self.nightly(points)
            pending.update(rss())
            pending["disk_mb"] = round(disk_mb(self.shard), 1)
            save()
        return True


def machine() -> dict[str, Any]:
    mem = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "memory_gb": round(mem, 1), "platform": platform.platform(),
            "python": platform.python_version()}


def run_scale(opts: ScaleOptions, json_file: Path | None,
              progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Each step in order; a step already in json_file (same configuration) is kept, not redone."""
    result: dict[str, Any] = {}
    if json_file and json_file.is_file():
        result = json.loads(json_file.read_text())
    bench = Bench(opts, progress)
    try:
        config = bench.config.to_dict()
        if result.get("config") not in (None, config) or result.get("dimension") not in (
                None, opts.dimension):
            from alexandria.errors import UsageError
            raise UsageError(f"{json_file} holds another configuration's results; give another --json.")
        result.update(config=config, dimension=opts.dimension,
                      points_per_book=opts.points_per_book, machine=machine(),
                      vectors=f"genre/book/chapter/noise weights {WEIGHTS}, {GENRES} genres")
        steps = result.setdefault("steps", [])

        def save() -> None:
            if json_file:
                write_json(json_file, result)

        for target in opts.steps:
            if any(s["target"] == target for s in steps):
                continue
            pending = result.setdefault("pending", {"target": target})
            if not bench.step(target, pending, save):
                progress(f"stopped at {bench.store.count():,} points (--max-seconds); run the "
                         "same command again to go on")
                break
            steps.append(result.pop("pending"))
            save()
    finally:
        bench.close()
    return result


def search_grid(opts: ScaleOptions, efs: list[int | None], oversamplings: list[float | None],
                progress: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    """Search latency and recall@10 on the store as it is, for each search-time setting:
    HNSW ef and oversampling are chosen per query, so one fill serves them all."""
    bench = Bench(opts, progress)
    out = []
    try:
        points, stored = bench.store.count(), bench.config
        for ef in efs:
            for over in oversamplings:
                bench.config = replace(stored, hnsw_ef=ef, oversampling=over)
                progress(f"  ef {ef or 'default'}, oversampling {over or 'default'}")
                out.append({"points": points, "hnsw_ef": ef,
                            "oversampling": bench.config.rescore_oversampling,
                            **bench.search(points)})
    finally:
        bench.close()
    return out


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, path)


def render(result: dict[str, Any]) -> str:
    c = result.get("config", {})
    head = (f"{result.get('dimension')} dims, quantization {c.get('quantization')}, "
            f"{'on disk' if c.get('on_disk') else 'in RAM'}, m {c.get('hnsw_m')}, "
            f"ef {c.get('hnsw_ef') or 'default'}")
    lines = [head, f"{'points':>10} {'upsert/s':>9} {'tok/s':>10} {'optim s':>8} {'wait ms':>8} "
             f"{'p50':>6} {'p99':>6} {'R@10':>5} {'auth p99':>8} {'R@10':>5} {'book p99':>8} "
             f"{'RSS MB':>7} {'anon MB':>7} {'disk MB':>8}"]
    for s in result.get("steps", []):
        q = s["search"]
        lines.append(
            f"{s['points']:>10,} {s['upsert_points_per_s'] or 0:>9,} "
            f"{s['keeps_up_with_tokens_per_s'] or 0:>10,} {s['optimize_s']:>8} "
            f"{s['upsert_during_optimize'].get('max_ms') or 0:>8} "
            f"{q['none']['p50_ms']:>6} {q['none']['p99_ms']:>6} {q['none']['recall_at_10']:>5} "
            f"{q['author']['p99_ms']:>8} {q['author']['recall_at_10']:>5} {q['book']['p99_ms']:>8} "
            f"{s['rss_mb']:>7.0f} {s['rss_anon_mb']:>7.0f} {s['disk_mb']:>8.0f}")
    return "\n".join(lines)


def render_grid(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'points':>10} {'ef':>7} {'overs.':>6} {'p50':>6} {'p99':>6} {'R@10':>5} "
             f"{'auth p99':>8} {'R@10':>5} {'book p99':>8} {'R@10':>5}"]
    for r in rows:
        lines.append(
            f"{r['points']:>10,} {r['hnsw_ef'] or 'default':>7} {r['oversampling']:>6} "
            f"{r['none']['p50_ms']:>6} {r['none']['p99_ms']:>6} {r['none']['recall_at_10']:>5} "
            f"{r['author']['p99_ms']:>8} {r['author']['recall_at_10']:>5} "
            f"{r['book']['p99_ms']:>8} {r['book']['recall_at_10']:>5}")
    return "\n".join(lines)

