"""What a person sees: log lines (plain or JSON), the progress bar, the run's summary line."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from pathlib import Path

import click

from alexandria.cli.common import log
from alexandria.errors import UsageError


class JsonFormatter(logging.Formatter):
    """One JSON object per line (--log-json): time, level, message, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import datetime, timezone

        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                   timespec="milliseconds"),
               "level": record.levelname.lower(), "message": record.getMessage(),
               "pid": record.process}
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(log_dir: Path | None, quiet: bool, to_terminal: bool,
                  json_logs: bool = False) -> Path | None:
    log.setLevel(logging.INFO)
    log.handlers.clear()
    log.propagate = False
    stderr = TqdmHandler() if to_terminal else logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING if quiet else logging.INFO)
    stderr.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(message)s"))
    log.addHandler(stderr)
    if log_dir is None:
        return None
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / "alexandria.log"
        handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=10 * 2**20, backupCount=5, encoding="utf-8"
        )
    except OSError as e:
        raise UsageError(f"The log folder {log_dir} is not writable ({e.strerror}).") from e
    handler.setFormatter(JsonFormatter() if json_logs
                         else logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return path


class TqdmHandler(logging.Handler):
    """Log lines that do not tear the progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


class ProgressBar:
    """tqdm over books to ingest, with chunks/min in the postfix."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm(unit="book", file=sys.stderr, dynamic_ncols=True, desc="ingest")
        self.chunks = 0

    def update(self, result) -> None:
        if result.status == "done":
            self.chunks += result.chunks
        self.tqdm.update(1)
        elapsed = self.tqdm.format_dict.get("elapsed") or 0
        if elapsed:
            self.tqdm.set_postfix(chunks=self.chunks, per_min=int(60 * self.chunks / elapsed))

    def close(self) -> None:
        self.tqdm.close()


def progress_bar(enabled: bool) -> ProgressBar | None:
    return ProgressBar() if enabled else None


def print_summary(report) -> None:
    r = report
    out = click.echo
    if r.dry_run:
        for b in r.books:
            if b["status"] != "done":
                out(f"{b['status']:8} {b['title']}: {b['reason']}")
                continue
            tl = b["token_lengths"]
            out(f"{b['title']}: {b['chunks']} chunks, {b['tokens']} tokens, "
                f"{b['chapters']} chapters, tokens/chunk min {tl['min']} median {tl['median']} "
                f"max {tl['max']}")
            for s in b["samples"]:
                text = " ".join(s["text"].split())[:160]
                out(f"    [{s['chapter'] or '-'} | {s['tokens']} tok] {text}")
    for f in r.failures:
        out(f"failed: {f['book']} ({f['path']}): {f['reason']}", err=True)
    vram = f"{r.vram_peak_mb:.0f} MB" if r.vram_peak_mb is not None else "n/a"
    if r.vram_peak_nvml_mb is not None:
        vram += f" (NVML {r.vram_peak_nvml_mb:.0f} MB)"
    mode = "dry run: " if r.dry_run else ""
    stopped = f", stopped by {r.interrupted}" if r.interrupted else ""
    out(
        f"{mode}{r.books_done} done, {r.books_skipped} skipped ({r.books_unchanged} unchanged), "
        f"{r.books_failed} failed of {r.books_total} books; {r.chunks} chunks, {r.tokens} tokens "
        f"in {r.elapsed_s:.1f}s ({r.chunks_per_min:.0f} chunks/min, {r.tokens_per_s:.0f} "
        f"tokens/s); peak VRAM {vram}; {r.device or '-'} {r.model} {r.dtype or ''}{stopped}"
    )


