"""Searches while an ingest writes the same embedded store: every one answers (from what is
stored so far), and every ingest still ends with exactly the points it should."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, ingest_args, run_cli, status_json

# A reader that searches at random moments until STOP exists; one JSON line per search.
READER = r'''
import json, random, sys, time, traceback
from pathlib import Path
from alexandria.embedding.embedder import get_embedder
from alexandria.embedding.models import resolve_model
from alexandria.errors import UsageError
from alexandria.query.search import SearchOptions, search

store, stop, out, seed = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
opts = SearchOptions(model="minilm", device="cpu", dtype="fp32", store=store, top_k=3)
get_embedder(resolve_model("minilm"), "cpu", "fp32")  # the model loaded before the first ingest
open(out + ".ready", "w").close()
with open(out, "w") as f:
    while not stop.exists():
        started = time.perf_counter()
        try:
            hits = search(rnd.choice(["the sea and the ships", "a poem about water", "death"]), opts)
            line = {"ok": True, "hits": len(hits), "s": time.perf_counter() - started}
        except UsageError as e:  # before the first ingest started: no store yet, and it says so
            line = {"ok": str(e).startswith("There is no store"), "none_yet": True,
                    "error": str(e)}
        except Exception as e:
            line = {"ok": False, "error": f"{type(e).__name__}: {e}",
                    "trace": traceback.format_exc()[-1500:]}
        f.write(json.dumps(line) + "\n")
        f.flush()
        time.sleep(rnd.uniform(0, 0.3))
'''


def start_reader(tmp_path: Path, store: Path, seed: int = 1) -> tuple[subprocess.Popen, Path, Path]:
    script = tmp_path / "reader.py"
    script.write_text(READER)
    stop, out = tmp_path / "stop", tmp_path / "searches.jsonl"
    err = (tmp_path / "reader.err").open("w")
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(stop), str(out), str(seed)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300
    while not Path(str(out) + ".ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "reader.err").read_text()
        time.sleep(0.1)
    return proc, stop, out


def stop_reader(proc: subprocess.Popen, stop: Path, out: Path) -> list[dict]:
    stop.touch()
    proc.wait(timeout=120)
    return [json.loads(line) for line in out.read_text().splitlines()]


def check_ingest(proc, store: Path, books: int) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = status_json(store)
    assert s["mismatches"] == 0, s
    assert s["totals"]["done"] == books, s["totals"]
    assert s["totals"]["store_points"] == sum(b["stored_points"] for b in s["books"]) > 0


@pytest.mark.slow  # three real ingests
def test_a_long_running_reader_searches_through_three_ingests_in_a_row(tmp_path, small_epubs):
    lib, store = tmp_path / "lib", tmp_path / "store"
    lib.mkdir()
    reader, stop, out = start_reader(tmp_path, store)
    try:
        for n, src in enumerate(small_epubs[:3], 1):  # one more book each time
            shutil.copy2(src, lib / src.name)
            proc = run_cli(*ingest_args(store, "--directory", lib))
            check_ingest(proc, store, n)
        time.sleep(0.5)
    finally:
        searches = stop_reader(reader, stop, out)
    failed = [s for s in searches if not s["ok"]]
    assert not failed, failed[:3]
    answered = [i for i, s in enumerate(searches) if not s.get("none_yet")]
    assert not [s for s in searches[answered[0]:] if s.get("none_yet")]  # never after a store
    assert len(searches) >= 10
    assert searches[-1]["hits"] == 3  # the last ones see the stored books


@pytest.mark.slow  # a few real ingests
def test_searches_at_random_moments_of_a_few_ingests_all_answer(tmp_path, small_library):
    """Start-up, mid-book, the last flush: a search fired at any moment of an ingest answers."""
    check_searches_during_ingests(tmp_path, small_library, tries=2)


@pytest.mark.long  # ~20 ingests of four small books; the slow suite runs a few
def test_searches_at_random_moments_of_twenty_ingests_all_answer(tmp_path, small_library):
    check_searches_during_ingests(tmp_path, small_library, tries=20)


def check_searches_during_ingests(tmp_path: Path, lib: Path, tries: int) -> None:
    """Each try: a fresh store, an ingest, and one CLI search fired after a random delay (so over
    the tries they land in start-up, mid-book and the last flush), while a reader keeps searching."""
    rnd = random.Random(24)
    for t in range(tries):
        store = tmp_path / f"store{t}"
        reader = None
        if t == 0:  # the first try also has a reader searching all along
            (tmp_path / "r").mkdir()
            reader, stop, out = start_reader(tmp_path / "r", store, seed=t)
        ingest = subprocess.Popen([sys.executable, "-m", "alexandria", *map(str, ingest_args(
            store, "--directory", lib))], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        time.sleep(rnd.uniform(0, 8))
        fired_while_running = ingest.poll() is None
        search = run_cli("search", "--json", "--model", "minilm", "--device", "cpu", "--store",
                         str(store), "water")
        stdout, stderr = ingest.communicate(timeout=900)
        # Fired before the ingest took the store: there is no store yet, and it says so.
        not_yet = search.returncode == 2 and "There is no store" in search.stderr
        assert search.returncode == 0 or not_yet, (t, fired_while_running, search.stderr[-2000:])
        assert not_yet or isinstance(json.loads(search.stdout), list)
        check_ingest(subprocess.CompletedProcess(ingest.args, ingest.returncode, stdout, stderr),
                     store, 4)
        if reader is not None:
            searches = stop_reader(reader, stop, out)
            assert [s for s in searches if not s["ok"]] == []
