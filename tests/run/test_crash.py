"""A real ingest process killed with SIGKILL mid-run, then resumed: nothing lost, nothing doubled."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ingest_args, run_cli, some_books, status_json

CRASH_BOOKS = [
    "books/idpf-wasteland.epub",
    "books/idpf-regime-anticancer-arabic.epub",
    "books/idpf-childrens-literature.epub",
    "books/idpf-mymedia_lite.epub",
    "edge/idpf-hefty-water.epub",
    "books/idpf-israelsailing.epub",
]


@pytest.fixture
def crash_library(tmp_path: Path, sample_epubs) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    for src in some_books(CRASH_BOOKS, sample_epubs, tmp_path):
        (lib / src.name).write_bytes(src.read_bytes())
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


def _stat(pid: str | int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def children(pid: int) -> list[int]:
    """Live descendants of pid (the fork server, the book workers, the store process)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _stat(entry.name)
        if stat is not None and stat[0] != "Z":
            parents.setdefault(stat[1], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def kill_when(store: Path, lib: Path, condition, deadline_s: float = 300,
              orphans: list[int] | None = None) -> bool:
    """Start an ingest, SIGKILL it as soon as condition(manifest) holds; True if it was killed.
    `orphans` receives the children that were still alive 10 s after the kill."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexandria", *map(str, ingest_args(store, "--directory", lib))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    manifest = store / "manifest.sqlite"
    start = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - start < deadline_s:
            if condition(manifest):
                kids = children(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                if orphans is not None:
                    assert kids, "the run had no child processes to check"
                    give_up = time.monotonic() + 10
                    while any(alive(k) for k in kids) and time.monotonic() < give_up:
                        time.sleep(0.2)
                    orphans.extend(k for k in kids if alive(k))
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
    orphans: list[int] = []
    killed = kill_when(store, crash_library, lambda m: done_count(m) >= 2, orphans=orphans)
    assert killed, "the run finished before it could be killed"
    assert orphans == [], "book workers or the store process outlived the killed run"
    assert done_count(store / "manifest.sqlite") < len(CRASH_BOOKS)

    report = tmp_path / "resume.json"
    proc = run_cli(*ingest_args(store, "--directory", crash_library, "--report", report))
    assert proc.returncode == 0, proc.stderr
    assert per_book(store) == expected  # same books, same point counts, no duplicate, no orphan

    again = tmp_path / "again.json"
    assert run_cli(*ingest_args(store, "--directory", crash_library, "--report", again)).returncode == 0
    assert json.loads(again.read_text())["books_done"] == 0
    assert per_book(store) == expected


# The torture library: small enough that 20 kills, each paying for a fresh process and model load,
# fit in a few minutes on 2 cores; 128-token chunks give several hundred points and write batches.
TORTURE_BOOKS = [
    "books/idpf-wasteland.epub",
    "books/idpf-mymedia_lite.epub",
    "edge/idpf-hefty-water.epub",
    "edge/epubcheck-epub2-minimal-valid.epub",
]
TORTURE_LONG_BOOKS = TORTURE_BOOKS + [
    "books/idpf-regime-anticancer-arabic.epub",
    "books/idpf-childrens-literature.epub",
    "books/idpf-israelsailing.epub",
    "books/idpf-epub30-spec.epub",
    "books/se-the-devils-dictionary.epub",
]
# Batches of 16 make the embedding and writing interleave book by book.
TORTURE_ARGS = ("--chunk-tokens", "128", "--overlap", "16", "--batch-size", "16", "--token-budget", "512")


def last_run_row(manifest: Path) -> tuple[int, float, float | None] | None:
    """(id, started_at, finished_at) of the newest run, read while another process may write."""
    if not manifest.exists():
        return None
    try:
        con = sqlite3.connect(manifest, timeout=1)
        try:
            return con.execute(
                "SELECT id, started_at, finished_at FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def _scalar(manifest: Path, sql: str) -> int:
    """One number from the manifest, 0 while it does not exist yet (never creates it)."""
    if not manifest.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{manifest}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchone()[0] or 0
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def in_progress_count(manifest: Path) -> int:
    return _scalar(manifest, "SELECT count(*) FROM books WHERE status='in-progress'")


def done_chunks(manifest: Path) -> int:
    return _scalar(manifest, "SELECT sum(chunks) FROM books WHERE status='done'")


def store_points(store: Path) -> dict[str, tuple[str, int, str]]:
    """Every point of the minilm collection: id -> (book_key, chunk_index, text), read in-process."""
    from alexandria.store.edge import EdgeStore

    s = EdgeStore(store, "alexandria_minilm", None)
    try:
        pairs = s.payloads()
        total = s.count()
    finally:
        s.close()
    ids = [pid for pid, _ in pairs]
    assert len(ids) == len(set(ids)) == total, "duplicate point ids in the store"
    return {pid: (p["book_key"], p["chunk_index"], p["text"]) for pid, p in pairs}


def torture(lib: Path, tmp_path: Path, kills_wanted: int, seed: int) -> dict:
    """Clean run, then one run SIGKILLed at `kills_wanted` random moments and resumed each time."""
    rng = random.Random(seed)
    t_all = time.monotonic()
    clean = tmp_path / "clean"
    t0 = time.time()
    proc = run_cli(*ingest_args(clean, "--directory", lib, *TORTURE_ARGS))
    assert proc.returncode == 0, proc.stderr
    run_id, started_at, finished_at = last_run_row(clean / "manifest.sqlite")
    startup_s = max(1.0, started_at - t0)  # process start to "model loaded, writing begins"
    work_s = max(1.0, finished_at - started_at)
    expected = per_book(clean)
    expected_points = store_points(clean)

    store = tmp_path / "crashed"
    manifest = store / "manifest.sqlite"
    # A fifth of the kills land in start-up (imports, planning, recovery, model load), two fifths
    # at a random instant of the remaining writing, two fifths the moment a book is in-progress
    # (its old points deleted, new ones partly upserted) after a random delay.
    n_startup = max(1, kills_wanted // 5)
    n_midbook = (kills_wanted - n_startup) // 2
    modes = (["startup"] * n_startup + ["mid-book"] * n_midbook
             + ["timed"] * (kills_wanted - n_startup - n_midbook))
    rng.shuffle(modes)
    phases = {"startup": 0, "mid-book": 0, "between-books": 0}
    kills = finished = 0
    for mode in modes:
        before = last_run_row(manifest)
        remaining = 1.0 - done_chunks(manifest) / len(expected_points)
        proc = subprocess.Popen(
            [sys.executable, "-m", "alexandria",
             *map(str, ingest_args(store, "--directory", lib, *TORTURE_ARGS))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        start = time.monotonic()
        if mode == "startup":
            deadline, armed = start + rng.uniform(0.2, startup_s), start
        else:
            deadline, armed = None, None
        # within the first third of what is left: the kills spread over the whole run instead of
        # one lucky run finishing the library early and leaving nothing to kill
        delay = rng.uniform(0.0, max(0.5, work_s * remaining * 0.3))
        while proc.poll() is None and time.monotonic() - start < 600:
            now = time.monotonic()
            if armed is None:
                row = last_run_row(manifest)
                if row is not None and (before is None or row[0] != before[0]):
                    armed, deadline = now, now + delay
            if deadline is not None and now >= deadline and (
                    mode != "mid-book" or in_progress_count(manifest)):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002 if mode == "mid-book" and deadline is not None and now >= deadline
                       else 0.02)
        proc.wait()
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            if armed is not None and mode != "startup":
                # Runs faster than the clean one (a machine less busy than while it ran): kill
                # sooner, or the library is done after a few kills and every later run finishes.
                progress = remaining - (1.0 - done_chunks(manifest) / len(expected_points))
                if progress > 0.05:
                    work_s = min(work_s, (time.monotonic() - armed) / progress)
            row = last_run_row(manifest)
            if row is None or (before is not None and row[0] == before[0]):
                phases["startup"] += 1
            elif in_progress_count(manifest):
                phases["mid-book"] += 1
            else:
                phases["between-books"] += 1
        else:
            assert proc.returncode == 0, proc.returncode
            finished += 1
    t_resume = time.monotonic()
    report = tmp_path / "resume.json"
    proc = run_cli(*ingest_args(store, "--directory", lib, "--report", report, *TORTURE_ARGS))
    assert proc.returncode == 0, proc.stderr
    assert per_book(store) == expected  # every book done with the clean run's count, no orphan
    got_points = store_points(store)
    assert got_points == expected_points  # the same ids, books, chunk indexes and texts

    again = tmp_path / "again.json"
    proc = run_cli(*ingest_args(store, "--directory", lib, "--report", again, *TORTURE_ARGS))
    assert proc.returncode == 0, proc.stderr
    second = json.loads(again.read_text())
    assert second["books_done"] == 0 and second["books_unchanged"] == len(expected)
    assert store_points(store) == expected_points
    numbers = {
        "kills": kills, "runs_that_finished": finished, "phases": phases,
        "books": len(expected), "points": len(expected_points),
        "clean_startup_s": round(startup_s, 1), "clean_work_s": round(work_s, 1),
        "resume_s": round(time.monotonic() - t_resume, 1),
        "total_s": round(time.monotonic() - t_all, 1),
    }
    print("torture:", json.dumps(numbers))
    (tmp_path / "torture.json").write_text(json.dumps(numbers))
    return numbers


def _torture_library(tmp_path: Path, books: list[str], sample_epubs: list[Path]) -> Path:
    lib = tmp_path / "torture-lib"
    lib.mkdir()
    for src in some_books(books, sample_epubs, tmp_path):
        (lib / src.name).write_bytes(src.read_bytes())
    return lib


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path, sample_epubs):
    """SIGKILL one run at ALEXANDRIA_TORTURE_KILLS (10) random moments, resuming each time.

    Start-up, recovery, mid-book writes and between-book commits are all hit; the end state must
    equal a clean run point for point, and a further run must change nothing.
    """
    kills_wanted = int(os.environ.get("ALEXANDRIA_TORTURE_KILLS", "10"))
    seed = int(os.environ.get("ALEXANDRIA_TORTURE_SEED", "1234"))
    numbers = torture(_torture_library(tmp_path, TORTURE_BOOKS, sample_epubs), tmp_path, kills_wanted, seed)
    assert numbers["kills"] >= kills_wanted * 3 // 4, numbers
    assert numbers["phases"]["mid-book"] >= 1, numbers


@pytest.mark.long
def test_sigkill_torture_long(tmp_path, sample_epubs):
    """The same with more and bigger books and (by default) 60 kills."""
    kills_wanted = int(os.environ.get("ALEXANDRIA_TORTURE_KILLS", "60"))
    lib = _torture_library(tmp_path, TORTURE_LONG_BOOKS, sample_epubs)
    numbers = torture(lib, tmp_path, kills_wanted, 99)
    assert numbers["kills"] >= kills_wanted * 3 // 4, numbers


@pytest.mark.slow  # a real run each; test_sigkill_halfway_then_resume is the fast one
@pytest.mark.parametrize("signame,code", [  # one handler: the slow suite sends SIGTERM
    ("SIGTERM", 143), pytest.param("SIGHUP", 129, marks=pytest.mark.long),
    pytest.param("SIGINT", 130, marks=pytest.mark.long)])
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
