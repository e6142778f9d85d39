"""Logs for unattended runs: JSON lines on demand, rotation by size, no bar or colour off a TTY."""

from __future__ import annotations

import json
import logging
import logging.handlers
import shutil

from tests.conftest import corpus_book, ingest_args, run_cli


def test_log_json_and_no_terminal_decoration(tmp_path, sample_epubs):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy2(corpus_book("edge/idpf-hefty-water.epub", sample_epubs), lib)
    store = tmp_path / "store"
    proc = run_cli(*ingest_args(store, "--directory", lib, "--log-json"))
    assert proc.returncode == 0, proc.stderr
    # stderr is a pipe here, as under cron: no progress bar, no colour, no carriage returns.
    assert "\x1b[" not in proc.stderr and "\r" not in proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(r["message"].startswith("done") for r in records), proc.stderr
    logged = (tmp_path / "logs" / "alexandria.log").read_text().splitlines()
    assert logged and all({"time", "level", "message"} <= json.loads(line).keys() for line in logged)
    assert "1 done" in proc.stdout  # the one-line summary for cron mail stays plain text


def test_log_file_rotates_by_size_with_retention(tmp_path):
    from alexandria.cli import log, setup_logging

    try:
        path = setup_logging(tmp_path / "logs", quiet=True, to_terminal=False)
        handler = next(h for h in log.handlers
                       if isinstance(h, logging.handlers.RotatingFileHandler))
        assert handler.maxBytes == 10 * 2**20 and handler.backupCount == 5
        handler.maxBytes = 2000  # exercise the rollover itself
        for i in range(200):
            log.warning("line %d %s", i, "x" * 50)
        names = sorted(p.name for p in path.parent.iterdir())
        assert names == ["alexandria.log", *(f"alexandria.log.{i}" for i in range(1, 6))]
    finally:
        for h in list(log.handlers):
            h.close()
            log.removeHandler(h)
