"""End to end with real parts: the shared calibre library, minilm, Qdrant Edge, SQLite, processes."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from alexandria.store.edge import EdgeStore
from tests.conftest import (
    CALIBRE,
    EPUBS,
    ingest_args,
    need_corpus,
    run_cli,
    status_json,
)
from tests.sources.test_library import tree_digest

MOBY = "ae3241e0-f9b4-4bb4-8651-f93cdc1ca28f"
SHERLOCK = "84dcb994-4a89-4218-9f77-6bb248601b07"


@pytest.mark.slow
def test_calibre_library_ingests_and_store_matches_manifest(calibre_ingest):
    proc, report = calibre_ingest["proc"], calibre_ingest["report"]
    # One EPUB in the library has a malformed OPF: the run finishes and says so with exit 1.
    assert proc.returncode == 1, proc.stderr
    assert report["books_total"] == 12
    assert report["books_done"] == 10
    assert report["books_skipped"] == 1  # the TXT-only book: no-epub
    assert report["books_failed"] == 1
    assert report["failures"][0]["reason"] == "bad-xml"
    assert "epubcheck-opf-malformed-xml" in report["failures"][0]["path"]
    for field in ("chunks", "tokens", "elapsed_s", "chunks_per_min", "tokens_per_s", "vram_peak_mb",
                  "device", "model", "dtype", "collection", "failures"):
        assert field in report
    assert report["device"] == "cpu" and report["model"] == "minilm"
    assert report["chunks"] > 1000 and report["tokens"] > report["chunks"] * 100
    # The summary line is always printed.
    assert "10 done" in proc.stdout and "chunks/min" in proc.stdout

    status = status_json(calibre_ingest["store"])
    assert status["mismatches"] == 0 and status["orphans"] == []
    done = [b for b in status["books"] if b["status"] == "done"]
    assert len(done) == 10
    for b in done:
        assert b["store_points"] == b["chunks"] > 0
    assert status["totals"]["store_points"] == report["chunks"]
    reasons = {b["calibre_id"]: b["reason"] for b in status["books"]}
    assert reasons[12] == "no-epub" and reasons[11] == "bad-xml"
    assert {"book_key", "calibre_id", "title", "path", "status", "chunks", "reason"} <= set(done[0])


@pytest.mark.slow
def test_payloads_carry_calibre_metadata_and_chapters_in_spine_order(calibre_ingest):
    store = EdgeStore(calibre_ingest["store"], "alexandria_minilm", None)
    try:
        points = sorted((p for _, p in store.payloads(SHERLOCK)), key=lambda p: p["chunk_index"])
    finally:
        store.close()
    first = points[0]
    for field in ("text", "book_key", "calibre_id", "title", "authors", "series", "series_index",
                  "tags", "language", "chapter", "chapter_index", "chunk_index", "char_start",
                  "char_end", "tokens", "source_path", "model", "ingested_at"):
        assert field in first, field
    assert first["title"] == "The Adventures of Sherlock Holmes"
    assert first["authors"] == ["Arthur Conan Doyle"]
    assert first["series"] == "Sherlock Holmes" and first["series_index"] == 3.0
    assert first["language"] == "eng" and first["calibre_id"] == 1
    chapter_indexes = [p["chapter_index"] for p in points]
    assert chapter_indexes == sorted(chapter_indexes)
    titles = list(dict.fromkeys(p["chapter"] for p in points))
    # the nav's "Story > I" entries point at #fragments: each part is a chapter of its own
    stories = list(dict.fromkeys(t.split(" > ")[0] for t in titles
                                 if "Bohemia" in t or "Redheaded" in t or "Copper Beeches" in t))
    assert len(stories) == 3 and "Bohemia" in stories[0] and "Copper" in stories[-1], titles
    assert "A Scandal in Bohemia > I" in titles


@pytest.mark.slow
def test_search_finds_moby_dick_for_a_whaling_question(calibre_ingest):
    proc = run_cli("search", "a captain hunting the great white whale with harpoons",
                   "--model", "minilm", "--device", "cpu", "--store", calibre_ingest["store"],
                   "--json", "--top-k", "5")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert len(hits) == 5
    assert hits[0]["title"] == "Moby-Dick" and hits[0]["book_key"] == MOBY
    assert hits[0]["authors"] == ["Herman Melville"] and hits[0]["chapter"]
    assert hits[0]["score"] >= hits[-1]["score"]
    human = run_cli("search", "whale ship", "--model", "minilm", "--device", "cpu",
                    "--store", calibre_ingest["store"], "--top-k", "2")
    assert human.returncode == 0 and "Moby-Dick" in human.stdout


@pytest.mark.slow
def test_search_filters_by_author_and_language(calibre_ingest):
    proc = run_cli("search", "the sea", "--model", "minilm", "--device", "cpu", "--store",
                   calibre_ingest["store"], "--json", "--author", "Walt Whitman")
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)
    assert hits and all(h["authors"] == ["Walt Whitman"] for h in hits)


@pytest.mark.slow
def test_second_run_skips_every_book(calibre_ingest):
    store = calibre_ingest["store"]
    before = status_json(store)["totals"]["store_points"]
    report = calibre_ingest["root"] / "second.json"
    proc = run_cli(*ingest_args(store, "--directory", CALIBRE, "--report", report))
    second = json.loads(report.read_text())
    assert second["books_done"] == 0 and second["chunks"] == 0
    assert second["books_skipped"] == 11 and second["books_unchanged"] == 10
    assert second["books_failed"] == 1  # still broken: said again, never silently forgotten
    assert proc.returncode == 1
    after = status_json(store)
    assert after["totals"]["store_points"] == before and after["mismatches"] == 0


def test_the_library_tree_is_unchanged_by_a_run(tmp_path):
    need_corpus()
    lib = tmp_path / "lib"
    shutil.copytree(CALIBRE, lib)
    for p in lib.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # writable, so only our restraint keeps it intact
    before = tree_digest(lib)
    proc = run_cli(*ingest_args(tmp_path / "store", "--directory", lib, "--dry-run"))
    assert proc.returncode == 1, proc.stderr  # the malformed-OPF book fails in a dry run too
    # (a full ingest of the same library runs in the session fixture; this checks the copy path)
    assert tree_digest(lib) == before


@pytest.mark.slow
def test_force_reingests_to_the_same_count(small_library, tmp_path):
    store = tmp_path / "store"
    assert run_cli(*ingest_args(store, "--directory", small_library)).returncode == 0
    first = status_json(store)
    forced = tmp_path / "forced.json"
    proc = run_cli(*ingest_args(store, "--directory", small_library, "--force", "--report", forced))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(forced.read_text())["books_done"] == len(first["books"])
    again = status_json(store)
    assert again["totals"]["store_points"] == first["totals"]["store_points"] > 0
    assert again["mismatches"] == 0


@pytest.mark.slow
def test_changed_epub_is_reingested_and_old_points_go(small_library, tmp_path):
    need_corpus()  # a particular corpus book replaces one of the library's
    store = tmp_path / "store"
    assert run_cli(*ingest_args(store, "--directory", small_library)).returncode == 0
    before = status_json(store)
    # Replace one book's file with a different book under the same name.
    target = small_library / "idpf-hefty-water.epub"
    shutil.copy(EPUBS / "books/idpf-childrens-literature.epub", target)
    report = tmp_path / "r.json"
    proc = run_cli(*ingest_args(store, "--directory", small_library, "--report", report))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["books_done"] == 1 and r["books_unchanged"] == len(before["books"]) - 1
    after = status_json(store)
    assert after["mismatches"] == 0 and after["orphans"] == []
    live = [b for b in after["books"] if b["status"] == "done"]
    assert len(live) == len(before["books"])
    removed = [b for b in after["books"] if b["status"] == "removed"]
    assert len(removed) == 1 and removed[0]["store_points"] == 0
    assert after["totals"]["store_points"] == sum(b["chunks"] for b in live)


@pytest.mark.slow
def test_every_unreadable_epub_fails_with_a_specific_reason(tmp_path):
    need_corpus()
    lib = tmp_path / "broken"
    shutil.copytree(EPUBS / "broken", lib)
    store = tmp_path / "store"
    report = tmp_path / "r.json"
    proc = run_cli(*ingest_args(store, "--directory", lib, "--report", report))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    r = json.loads(report.read_text())
    assert r["books_failed"] >= 10
    assert r["books_done"] + r["books_failed"] + r["books_skipped"] == r["books_total"]
    for failure in r["failures"]:
        assert failure["reason"] and failure["reason"] != "error"
        assert not failure["reason"].startswith("unexpected"), failure
    status = status_json(store)
    assert status["mismatches"] == 0
    rows = sqlite3.connect(store / "manifest.sqlite").execute(
        "SELECT source_path, status, reason FROM books").fetchall()
    assert len(rows) == r["books_total"]
    assert all(reason for _, status_, reason in rows if status_ == "failed")


def test_dry_run_loads_no_model_and_writes_nothing(small_library, tmp_path):
    store = tmp_path / "store"
    proc = run_cli(*ingest_args(store, "--directory", small_library, "--dry-run"))
    assert proc.returncode == 0, proc.stderr
    assert "chunks" in proc.stdout and "tokens/chunk" in proc.stdout
    assert not store.exists()


def test_a_plain_folder_is_keyed_by_each_files_own_hash(small_library):
    """The plan hashes a first run's files on several threads: each key is still its own file's
    hash, a copy of a file is one book, and a file gone since the scan fails alone."""
    from alexandria.run.plan import HASH_THREADS, plan
    from alexandria.sources import library

    first = sorted(small_library.iterdir())[0]
    shutil.copy2(first, small_library / "a copy.epub")
    books = library.scan(small_library)
    gone = books[-1].path
    gone.unlink()
    assert len(books) >= 2 and HASH_THREADS > 1  # the threaded path
    planned = plan(books, {}, "fingerprint", "model", False)
    by_path = {p.book.path: p for p in planned}
    assert by_path[gone].action == "fail" and by_path[gone].reason == "file-missing"
    ingest = [p for p in planned if p.action == "ingest"]
    assert len(ingest) == len(books) - 2  # the copy is the same book; the gone file failed
    for p in ingest:
        digest = library.file_hash(p.book.path)
        assert p.content_hash == digest and p.book.key == f"sha256:{digest[:32]}"


def test_a_run_that_fails_stops_its_book_workers(tmp_path, monkeypatch):
    """Books are parsed while the model loads and the store opens; when the store then fails
    (here: another model's collection), the workers are stopped, not left parsing a 4 MB diary
    that nothing will use."""
    import signal

    import pytest

    from alexandria import IngestOptions, ingest
    from alexandria.errors import UsageError
    from alexandria.run.workers import Preparing

    need_corpus()
    lib = tmp_path / "library"
    lib.mkdir()
    shutil.copy2(EPUBS / "books/se-the-diary-of-samuel-pepys.epub", lib)
    store = tmp_path / "store"
    EdgeStore(store, "shared", 1024).close()
    workers: list = []
    abandon = Preparing.abandon

    def recording(self):
        self.all_started  # noqa: B018 (waits until the first books are handed out)
        workers.extend(self.worker_processes())
        abandon(self)

    monkeypatch.setattr(Preparing, "abandon", recording)
    opts = IngestOptions(directory=lib, model="minilm", device="cpu", store=store,
                         collection="shared", workers=1)
    with pytest.raises(UsageError, match="1024-dimensional"):
        ingest(opts)
    assert workers
    for w in workers:
        w.join(30)
        # Stopped mid-book (the diary takes a core ~15 s): -SIGTERM, or 255 where the pool's own
        # thread read the fork server's report first. A worker that finished the book exits 0.
        assert w.exitcode in (-signal.SIGTERM, 255)
