"""What the library page reads from the manifest: a running ingest's progress (books done and to
do, chunks/min, ETA) from a real manifest and a real run lock, and the run history."""

from __future__ import annotations

from alexandria.serve.library import Library, live_progress
from alexandria.store.location import Location
from alexandria.store.lock import RunLock
from alexandria.store.manifest import Manifest


def test_progress_of_a_running_ingest_comes_from_its_run_row_and_its_books(tmp_path):
    where = Location.of("minilm", store=tmp_path / "store")
    m = Manifest(where.manifest)
    run_id = m.start_run(where.collection, books_planned=4)
    m.upsert(where.collection, "a", status="done", chunks=30, tokens=9000, run_id=run_id)
    m.upsert(where.collection, "b", status="failed", reason="not-a-zip", run_id=run_id)
    m.upsert(where.collection, "c", status="in-progress", run_id=run_id)
    library = Library(where, searcher=None)
    assert library.progress() is None  # nobody holds the run lock: killed, not running
    with RunLock(where.lock):  # the ingest's lock, held by this (living) process
        p = library.progress()
    assert (p["books_planned"], p["books_done"], p["books_failed"], p["books_in_progress"],
            p["books_to_do"], p["chunks"]) == (4, 1, 1, 1, 2, 30)
    assert p["chunks_per_min"] > 0 and p["eta_s"] is not None
    m.finish_run(run_id, "failed", {"books_done": 1, "books_failed": 1, "chunks_per_min": 600.0})
    m.close()
    assert library.progress() is None  # finished
    runs = library.runs()
    assert [(r["id"], r["outcome"], r["books_done"], r["chunks_per_min"]) for r in runs] == [
        (run_id, "failed", 1, 600.0)]


def test_the_eta_is_the_books_to_do_at_the_pace_so_far():
    run = {"id": 1, "started_at": 1000.0, "report": '{"books_planned": 10}'}
    so_far = {"books_done": 2, "books_failed": 0, "books_skipped": 0, "books_in_progress": 1,
              "chunks": 100, "tokens": 50_000}
    p = live_progress(run, so_far, now=1060.0)
    assert (p["books_to_do"], p["eta_s"], p["chunks_per_min"], p["tokens_per_s"]) == (8, 240.0, 100.0,
                                                                                       833.3)
    unknown = live_progress({**run, "report": None}, so_far, now=1060.0)
    assert unknown["books_to_do"] is None and unknown["eta_s"] is None


def test_a_library_without_a_manifest_shows_nothing_yet(tmp_path):
    library = Library(Location.of("minilm", store=tmp_path / "nothing"), searcher=None)
    assert library.progress() is None and library.runs() == []
    assert library.status()["totals"]["books"] == 0
    assert not (tmp_path / "nothing").exists()  # reading never creates the store or its manifest
