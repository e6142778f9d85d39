#!/usr/bin/env python3
"""The nightly run at size: a generated N-book calibre library already ingested (its manifest, and
a store holding --points-per-book points of each book, written as the pipeline writes them), then
10 books changed, 5 removed, 5 added and 20 retitled, and the real `ingest` run over it (minilm on
the CPU), with the embedding timed apart. Then `status --verify` on the result.

    python benchmarks/nightly_run.py --books 9000 --points-per-book 56 --workdir /tmp/nightly \
        --json logs/nightly.json

The ingested state is kept in --workdir: a second command with the same arguments restores it
(only the nightly changes and the run are done again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_plan import build_library  # noqa: E402

from alexandria import IngestOptions, Location, status  # noqa: E402
from alexandria.embedding.embedder import load_tokenizer_json  # noqa: E402
from alexandria.run.ingest import Ingest  # noqa: E402
from alexandria.sources import library  # noqa: E402
from alexandria.store.base import UPSERT_BATCH, PointBlock  # noqa: E402
from alexandria.store.edge import EdgeStore  # noqa: E402
from alexandria.store.location import fingerprint  # noqa: E402
from alexandria.store.manifest import Manifest  # noqa: E402
from alexandria.tools.bench.store_scale import TOKENS_PER_CHUNK, Texts, Vectors  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "epubs" / "books"


def ingested(root: Path, books: int, per_book: int, corpus: Path | None,
             deadline: float | None) -> dict | None:
    """The library, its manifest with every book done, and the store with every book's points.
    Resumable: books the manifest has are not written again; None when the deadline came first."""
    lib, store = root / "library", root / "store"
    progress = root / "building.json"
    if progress.is_file():
        built = json.loads(progress.read_text())
    else:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        t = time.perf_counter()
        build_library(root, books)
        built = {"build_library_s": round(time.perf_counter() - t, 1), "fill_s": 0.0}
        progress.write_text(json.dumps(built))
    where = Location.of("minilm", store=store)
    prints = fingerprint(where.settings, load_tokenizer_json(where.spec)[1])
    scanned = library.scan(lib)
    vectors, texts = Vectors(384, per_book, seed=11), Texts(corpus)
    manifest = Manifest(where.manifest)
    have = set(manifest.rows(where.collection))
    edge = EdgeStore(store, where.collection, 384)
    t = time.perf_counter()
    hashes: dict = {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for n, b in enumerate(scanned):
        if b.key in have:  # written by an earlier command
            continue
        if deadline is not None and time.time() > deadline:
            edge.flush()
            edge.close()
            manifest.close()
            built["fill_s"] += round(time.perf_counter() - t, 1)
            progress.write_text(json.dumps(built))
            return None
        base = {**b.metadata(), "model": where.spec.name, "ingested_at": now}
        first = n * per_book
        fields = [{"text": texts.text(first + c), "chapter": f"Chapter {c * 24 // per_book + 1}",
                   "chapter_index": c * 24 // per_book, "chunk_index": c, "char_start": c * 1900,
                   "char_end": c * 1900 + 2300, "tokens": TOKENS_PER_CHUNK, "kind": "chunk"}
                  for c in range(per_book)]
        rows = vectors.block(first, first + per_book)
        for s in range(0, per_book, UPSERT_BATCH):
            edge.upsert_block(PointBlock(base, fields[s:s + UPSERT_BATCH], rows[s:s + UPSERT_BATCH]))
        key = (b.size, b.path.resolve())
        if key not in hashes:
            hashes[key] = library.file_hash(b.path)
        manifest.upsert(where.collection, b.key, calibre_id=b.calibre_id, title=b.title,
                        source_path=str(b.path), size=b.size, mtime_ns=b.mtime_ns,
                        content_hash=hashes[key], meta_hash=b.metadata_hash(), status="done",
                        chunks=per_book, tokens=per_book * TOKENS_PER_CHUNK,
                        stored_points=per_book, model=where.spec.source, chunker=prints)
    edge.flush()
    built["fill_s"] += round(time.perf_counter() - t, 1)
    progress.write_text(json.dumps(built))
    t = time.perf_counter()
    edge.optimize()
    built["index_s"] = round(time.perf_counter() - t, 1)
    built["points"] = edge.count()
    built["books"] = len(scanned)
    edge.close()
    manifest.close()
    (root / "built.json").write_text(json.dumps(built))
    return built


def night(lib: Path, added_from: Path) -> dict:
    """10 changed files, 5 books removed, 5 added, 20 retitled, as calibre would leave them."""
    db = sqlite3.connect(lib / "metadata.db")
    db.create_function("title_sort", 1, lambda t: t)
    db.create_function("uuid4", 0, lambda: os.urandom(16).hex())
    ids = [i for (i,) in db.execute("SELECT id FROM books ORDER BY id")]
    pick = ids[len(ids) // 7::max(1, len(ids) // 41)][:35]
    changed, removed, retitled = pick[:10], pick[10:15], pick[15:35]
    other = sorted(lib.rglob("*.epub"))[:4]
    with db:
        for n, book_id in enumerate(changed):
            path, name = db.execute("SELECT b.path, d.name FROM books b JOIN data d ON d.book = b.id "
                                    "WHERE b.id = ?", (book_id,)).fetchone()
            target = lib / path / f"{name}.epub"
            data = other[n % len(other)].read_bytes()
            target.write_bytes(data + b"\0" * (n + 1))  # new bytes: a changed book, hashed again
        for book_id in removed:
            db.execute("DELETE FROM books WHERE id = ?", (book_id,))
            db.execute("DELETE FROM data WHERE book = ?", (book_id,))
        for book_id in retitled:
            db.execute("UPDATE books SET title = title || ' (revised)' WHERE id = ?", (book_id,))
        start = db.execute("SELECT max(id) FROM books").fetchone()[0] + 1
        for i in range(start, start + 5):
            path = f"New Author/New Book {i} ({i})"
            db.execute(
                "INSERT INTO books (id, title, sort, timestamp, pubdate, series_index, author_sort, "
                "path, uuid, has_cover, last_modified) VALUES (?, ?, ?, '2026-12-01 10:00:00+00:00',"
                " '2026-12-01 10:00:00+00:00', 1.0, 'New Author', ?, ?, 0, "
                "'2026-12-01 10:00:00+00:00')", (i, f"New Book {i}", f"New Book {i}", path,
                                                 f"new-{i:08d}"))
            db.execute("INSERT INTO data (book, format, uncompressed_size, name) "
                       "VALUES (?, 'EPUB', 1, ?)", (i, f"New Book {i}"))
            (lib / path).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(added_from, lib / path / f"New Book {i}.epub")
    db.close()
    return {"changed": len(changed), "removed": len(removed), "added": 5, "retitled": len(retitled)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--books", type=int, default=9000)
    ap.add_argument("--points-per-book", type=int, default=56)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, default=CORPUS if CORPUS.is_dir() else None)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="Stop building the ingested library after this long (run again to go on).")
    args = ap.parse_args()
    deadline = time.time() + args.max_seconds if args.max_seconds else None
    # Built where the run reads it (a book's path is in its payload: a moved library is a
    # metadata change for every book), and kept as a copy that each command restores.
    run_dir = args.workdir / "night"
    pristine = args.workdir / f"built-{args.books}x{args.points_per_book}"
    t = time.perf_counter()
    if (pristine / "built.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(pristine, run_dir, symlinks=True)
        built = json.loads((pristine / "built.json").read_text())
    else:
        built = ingested(run_dir, args.books, args.points_per_book, args.corpus, deadline)
        if built is None:
            print("stopped building (--max-seconds); run the same command again to go on")
            return
        shutil.rmtree(pristine, ignore_errors=True)
        shutil.copytree(run_dir, pristine, symlinks=True)
    copy_s = time.perf_counter() - t
    lib, store = run_dir / "library", run_dir / "store"
    changes = night(lib, sorted(lib.rglob("*.epub"))[1])
    t = time.perf_counter()
    report = Ingest(IngestOptions(directory=lib, model="minilm", device="cpu", store=store)).run()
    run_s = time.perf_counter() - t
    stages = report.stages_s or {}
    t = time.perf_counter()
    verified = status(Location.of("minilm", store=store), verify=True)
    verify_s = time.perf_counter() - t
    out = {
        **built, "copy_s": round(copy_s, 1), "changes": changes,
        "run": {"elapsed_s": round(run_s, 2), "books_done": report.books_done,
                "books_removed": report.books_removed,
                "books_metadata_updated": report.books_metadata_updated,
                "books_failed": report.books_failed, "stages_s": stages,
                "without_embedding_s": round(run_s - stages.get("embed", 0.0), 2)},
        "verify": {"seconds": round(verify_s, 2), "mismatches": verified["mismatches"],
                   "store_points": verified["totals"]["store_points"]},
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
