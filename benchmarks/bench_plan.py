#!/usr/bin/env python3
"""Planning benchmark: how long reading a 10,000-book Calibre library and deciding what changed takes.

Builds a library of N book rows (calibre schema, files copied from the sample EPUBs so every
book has a real file to stat), then times, median of --repeats:
  scan        reading metadata.db (a snapshot copy) and one stat per file
  plan-new    planning against an empty manifest (everything new)
  plan-same   planning against a manifest where every book is done (the nightly case)
  plan-touch  the same with 1% of the files touched (their content is hashed, nothing else)

    python benchmarks/bench_plan.py --books 10000 --json logs/bench-plan.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alexandria.run.plan import plan  # noqa: E402
from alexandria.sources import library  # noqa: E402
from alexandria.store.manifest import Manifest  # noqa: E402
from alexandria.tools.sample import make_sample_library  # noqa: E402

FINGERPRINT = "bench"
MODEL = "bench-model"


def build_library(root: Path, n: int) -> Path:
    lib = make_sample_library(root / "library")
    db = sqlite3.connect(lib / "metadata.db")
    sources = [(lib / path / f"{name}.epub") for path, name in db.execute(
        "SELECT b.path, d.name FROM books b JOIN data d ON d.book = b.id")]
    start = db.execute("SELECT max(id) FROM books").fetchone()[0] + 1
    tag_ids = [t for (t,) in db.execute("SELECT id FROM tags")]
    with db:
        for i in range(start, start + n - len(sources)):
            author = f"Author {i % 997}"
            db.execute("INSERT OR IGNORE INTO authors (name, sort) VALUES (?, ?)", (author, author))
            (author_id,) = db.execute("SELECT id FROM authors WHERE name = ?", (author,)).fetchone()
            path = f"{author}/Book {i} ({i})"
            db.execute(
                "INSERT INTO books (id, title, sort, timestamp, pubdate, series_index, author_sort, "
                "path, uuid, has_cover, last_modified) VALUES (?, ?, ?, '2026-11-01 10:00:00+00:00',"
                " '2026-11-01 10:00:00+00:00', 1.0, ?, ?, ?, 0, '2026-11-01 10:00:00+00:00')",
                (i, f"Book {i}", f"Book {i}", author, path, f"bench-{i:08d}"))
            db.execute("INSERT INTO books_authors_link (book, author) VALUES (?, ?)", (i, author_id))
            db.execute("INSERT INTO books_tags_link (book, tag) VALUES (?, ?)",
                       (i, tag_ids[i % len(tag_ids)]))
            db.execute("INSERT INTO data (book, format, uncompressed_size, name) VALUES (?, 'EPUB', 1, ?)",
                       (i, f"Book {i} - {author}"))
            folder = lib / path
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sources[i % len(sources)], folder / f"Book {i} - {author}.epub")
    db.close()
    return lib


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--books", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="alexandria-bench-plan-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        lib = build_library(root, args.books)
        build_s = time.perf_counter() - t

        scan_s, books = timed(lambda: library.scan(lib), args.repeats)
        new_s, planned = timed(lambda: plan(library.scan(lib), {}, FINGERPRINT, MODEL, False),
                               args.repeats)
        assert all(p.action == "ingest" for p in planned)

        manifest = Manifest(root / "manifest.sqlite")
        hashes = {}
        with manifest.con:
            manifest.con.execute("BEGIN")
            for b in books:
                key = (b.size, b.path.resolve())
                if key not in hashes:
                    hashes[key] = library.file_hash(b.path)
                manifest.upsert("c", b.key, calibre_id=b.calibre_id, title=b.title,
                                source_path=str(b.path), size=b.size, mtime_ns=b.mtime_ns,
                                content_hash=hashes[key], meta_hash=b.metadata_hash(),
                                status="done", model=MODEL, chunker=FINGERPRINT)
        rows = manifest.rows("c")
        same_s, planned = timed(lambda: plan(library.scan(lib), rows, FINGERPRINT, MODEL, False),
                                args.repeats)
        assert all(p.action == "unchanged" for p in planned), {p.action for p in planned}

        touched = books[:: 100]
        for b in touched:  # a new mtime, same bytes: the planner must hash them, and only them
            os.utime(b.path, ns=(b.mtime_ns + 10**9, b.mtime_ns + 10**9))
        touch_s, planned = timed(lambda: plan(library.scan(lib), rows, FINGERPRINT, MODEL, False),
                                 args.repeats)
        assert all(p.action == "unchanged" for p in planned)
        manifest.close()

    out = {
        "books": len(books), "repeats": args.repeats, "build_library_s": round(build_s, 2),
        "scan_s": round(scan_s, 3), "plan_new_s": round(new_s, 3), "plan_same_s": round(same_s, 3),
        "plan_touched_s": round(touch_s, 3), "touched_files": len(touched),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
