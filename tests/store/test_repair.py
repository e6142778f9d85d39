"""A damaged manifest: one sentence and exit 65, then `alexandria repair` rebuilds it from the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import ingest_args, run_cli, status_json

EXIT_MANIFEST_CORRUPT = 65


def _garble(path: Path, offset: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + length] = os.urandom(length)
    path.write_bytes(bytes(data))


def _assert_one_sentence(proc, manifest: Path) -> None:
    assert proc.returncode == EXIT_MANIFEST_CORRUPT, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(manifest) in lines[0] and "alexandria repair" in lines[0], lines[0]


def test_corrupt_manifest_then_repair(small_library, tmp_path):
    store = tmp_path / "store"
    manifest = store / "manifest.sqlite"
    first = tmp_path / "first.json"
    proc = run_cli(*ingest_args(store, "--directory", small_library, "--report", first))
    assert proc.returncode == 0, proc.stderr
    before = status_json(store)
    assert before["mismatches"] == 0
    done = {b["book_key"]: b["store_points"] for b in before["books"] if b["status"] == "done"}
    assert len(done) == 4

    for offset, length in ((0, 100), (4096 + 10, 3000)):  # the header, then a page of rows
        _garble(manifest, offset, length)
        proc = run_cli(*ingest_args(store, "--directory", small_library))
        _assert_one_sentence(proc, manifest)
        proc = run_cli("status", "--model", "minilm", "--store", store)
        _assert_one_sentence(proc, manifest)

        proc = run_cli("repair", "--model", "minilm", "--store", store,
                       "--log-dir", tmp_path / "logs")
        assert proc.returncode == 0, proc.stderr
        assert "Rebuilt" in proc.stdout and "4 books done" in proc.stdout, proc.stdout
        assert list(store.glob("manifest.sqlite.damaged-*")), "the damaged file must be kept"
        for old in store.glob("manifest.sqlite.damaged-*"):
            old.unlink()  # the second round must find its own backup

        after = status_json(store)
        assert after["mismatches"] == 0 and after["orphans"] == []
        assert {b["book_key"]: b["store_points"] for b in after["books"]
                if b["status"] == "done"} == done

    # A healthy manifest is left alone.
    proc = run_cli("repair", "--model", "minilm", "--store", store, "--log-dir", tmp_path / "logs")
    assert proc.returncode == 0 and "nothing to repair" in proc.stdout, proc.stdout

    # The next ingest finds every book unchanged: nothing is re-embedded, the model is not loaded.
    report = tmp_path / "again.json"
    proc = run_cli(*ingest_args(store, "--directory", small_library, "--report", report))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["books_done"] == 0 and r["books_unchanged"] == 4, r
    assert "loading model" not in proc.stderr and r["device"] == "cpu", r  # named, never loaded
    assert status_json(store)["mismatches"] == 0
