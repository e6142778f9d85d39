"""status tells an unfinished run by its name and its counts so far, never None; a run's fatal
error is in the log file as well as on the terminal."""

from __future__ import annotations

import json

from alexandria.store.manifest import Manifest
from tests.conftest import ingest_args, run_cli

COLLECTION = "alexandria_minilm"


def test_an_unfinished_run_shows_as_unfinished_with_its_counts_so_far(tmp_path):
    store = tmp_path / "store"
    m = Manifest(store / "manifest.sqlite")
    try:
        run_id = m.start_run(COLLECTION)  # killed before finish_run
        m.upsert(COLLECTION, "a", status="done", chunks=3, tokens=300, stored_points=3, run_id=run_id,
                 title="A")
        m.upsert(COLLECTION, "b", status="in-progress", run_id=run_id, title="B")
    finally:
        m.close()
    proc = run_cli("status", "--json", "--model", "minilm", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout)["last_run"]
    assert last["outcome"] == "unfinished"
    assert (last["books_done"], last["books_in_progress"], last["chunks"], last["tokens"]) == (1, 1, 3, 300)
    text = run_cli("status", "--model", "minilm", "--store", str(store))
    assert text.returncode == 0, text.stderr
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("last run"))
    assert "unfinished" in line and "1 done" in line and "1 in progress" in line, line
    assert "None" not in text.stdout


def test_a_fatal_error_of_a_run_is_written_to_the_log_file_too(tmp_path):
    store = tmp_path / "store"
    proc = run_cli(*ingest_args(store, "--directory", tmp_path / "no-such-library"))
    assert proc.returncode == 2, proc.stderr
    error = next(ln for ln in proc.stderr.splitlines() if ln.startswith("Error:"))
    logged = (tmp_path / "logs" / "alexandria.log").read_text()
    assert error in logged, logged
