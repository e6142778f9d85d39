"""A real ingest process killed with SIGKILL mid-run, then resumed: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import EPUBS, ingest_args, need_corpus, run_cli, status_json

CRASH_BOOKS = [
    "books/idpf-wasteland.epub",
    "books/idpf-regime-anticancer-arabic.epub",
    "books/idpf-childrens-literature.epub",
    "books/idpf-mymedia_lite.epub",
    "edge/idpf-hefty-water.epub",
    "books/idpf-israelsailing.epub",
]


@pytest.fixture
def crash_library(tmp_path: Path) -> Path:
    need_corpus()
    lib = tmp_path / "lib"
    lib.mkdir()
    for rel in CRASH_BOOKS:
        (lib / Path(rel).name).write_bytes((EPUBS / rel).read_bytes())
    return lib


def done_count(manifest: Path) -> int:
    if not manifest.exists():
        return 0
    try:
        con = sqlite3.connect(manifest, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM books WHERE status='done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def kill_when(store: Path, lib: Path, condition, deadline_s: float = 300) -> bool:
    """Start an ingest, SIGKILL it as soon as condition(manifest) holds; True if it was killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexandria", *map(str, ingest_args(store, "--directory", lib))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    manifest = store / "manifest.sqlite"
    start = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - start < deadline_s:
            if condition(manifest):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.05)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def per_book(store: Path) -> dict[str, int]:
    s = status_json(store)
    assert s["mismatches"] == 0 and s["orphans"] == [], s
    return {b["book_key"]: b["store_points"] for b in s["books"] if b["status"] == "done"}


def test_sigkill_halfway_then_resume(crash_library, tmp_path):
    clean_store = tmp_path / "clean"
    assert run_cli(*ingest_args(clean_store, "--directory", crash_library)).returncode == 0
    expected = per_book(clean_store)
    assert len(expected) == len(CRASH_BOOKS)

    store = tmp_path / "crashed"
    killed = kill_when(store, crash_library, lambda m: done_count(m) >= 2)
    assert killed, "the run finished before it could be killed"
    assert done_count(store / "manifest.sqlite") < len(CRASH_BOOKS)

    report = tmp_path / "resume.json"
    proc = run_cli(*ingest_args(store, "--directory", crash_library, "--report", report))
    assert proc.returncode == 0, proc.stderr
    assert per_book(store) == expected  # same books, same point counts, no duplicate, no orphan

    again = tmp_path / "again.json"
    assert run_cli(*ingest_args(store, "--directory", crash_library, "--report", again)).returncode == 0
    assert json.loads(again.read_text())["books_done"] == 0
    assert per_book(store) == expected


def test_sigkill_at_random_moments(crash_library, tmp_path):
    """Kill at several instants (after model load, mid-write, between books); always converges."""
    clean_store = tmp_path / "clean"
    assert run_cli(*ingest_args(clean_store, "--directory", crash_library)).returncode == 0
    expected = per_book(clean_store)

    store = tmp_path / "crashed"
    rng = __import__("random").Random(1234)
    kills = 0
    for _ in range(int(os.environ.get("ALEXANDRIA_TORTURE_KILLS", "4"))):
        delay = rng.uniform(2.0, 12.0)
        t0 = time.monotonic()
        if kill_when(store, crash_library, lambda m, t0=t0, d=delay: time.monotonic() - t0 > d):
            kills += 1
    assert kills >= 1
    proc = run_cli(*ingest_args(store, "--directory", crash_library))
    assert proc.returncode == 0, proc.stderr
    assert per_book(store) == expected


@pytest.mark.parametrize("signame,code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_signal_stops_cleanly_and_the_next_run_finishes(crash_library, tmp_path, signame, code):
    store = tmp_path / "store"
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexandria",
         *map(str, ingest_args(store, "--directory", crash_library, "--report", report))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    manifest = store / "manifest.sqlite"
    deadline = time.monotonic() + 300
    while done_count(manifest) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before the signal could be sent")
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert f"stopped by {signame}" in out  # the summary is still printed
    assert json.loads(report.read_text())["interrupted"] == signame
    con = sqlite3.connect(manifest)
    stuck = con.execute("SELECT count(*) FROM books WHERE status='in-progress'").fetchone()[0]
    con.close()
    assert stuck == 0  # the books in flight were finished, not abandoned half-written
    assert run_cli(*ingest_args(store, "--directory", crash_library)).returncode == 0
    s = status_json(store)
    assert s["mismatches"] == 0 and s["totals"]["done"] == len(CRASH_BOOKS)
