"""What a person sees: log lines (plain or JSON), the progress bar, the run's summary line."""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
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
    """tqdm over the planned books: a total (hence an ETA) once the plan is made, chunks/min."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm(unit="book", file=sys.stderr, dynamic_ncols=True, desc="ingest",
                         total=None, delay=0.5)
        self.chunks = 0

    def start(self, total: int) -> None:
        """The plan is made: `total` results will come (books of this run, and removals)."""
        self.tqdm.total = total
        self.tqdm.refresh()

    def update(self, result) -> None:
        if result.status == "done":
            self.chunks += result.chunks
        self.tqdm.update(1)
        elapsed = self.tqdm.format_dict.get("elapsed") or 0
        if elapsed:
            self.tqdm.set_postfix_str(f"{plural(self.chunks, 'chunk')}, "
                                      f"{60 * self.chunks / elapsed:.0f} chunks/min")

    def close(self) -> None:
        self.tqdm.close()


def progress_bar(enabled: bool) -> ProgressBar | None:
    return ProgressBar() if enabled else None


def plural(n: int | float, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def print_summary(report, next_command: str | None = None) -> None:
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
    vram = ""
    if r.vram_peak_mb is not None:
        vram = f"; peak VRAM {r.vram_peak_mb:.0f} MB"
        if r.vram_peak_nvml_mb is not None:
            vram += f" (NVML {r.vram_peak_nvml_mb:.0f} MB)"
    mode = "dry run: " if r.dry_run else ""
    stopped = f", stopped by {r.interrupted}" if r.interrupted else ""
    speed = (f" ({r.chunks_per_min:.0f} chunks/min, {r.tokens_per_s:.0f} tokens/s)"
             if r.chunks else "")
    out(
        f"{mode}{r.books_done} done, {r.books_skipped} skipped ({r.books_unchanged} unchanged), "
        f"{r.books_failed} failed of {plural(r.books_total, 'book')}; "
        f"{plural(r.chunks, 'chunk')}, {plural(r.tokens, 'token')} in {r.elapsed_s:.1f}s{speed}"
        f"{vram}; {r.model}{'' if r.dry_run else f' on {r.device} in {r.dtype}'}{stopped}"
    )
    if not r.dry_run and r.store:
        named = "" if r.store.endswith(r.collection) else f", collection {r.collection}"
        out(f"stored in {r.store}{named} (manifest {r.manifest})")
    if next_command:
        out(f"next: {next_command}")


# A hit's passage on screen: about this many characters, cut at a sentence end, else a word end.
PASSAGE_CHARS = 600
SENTENCE_END = re.compile(r"[.!?…][\"”’»)\]]*\s")
# A hit scoring under this share of the top hit is marked weak: cosine scores differ by model, but
# within one query the gap to the best hit tells a side remark from an answer.
WEAK_SHARE = 0.75


def passage(text: str, limit: int = PASSAGE_CHARS) -> str:
    """`text` on one line; past `limit`, cut at the last sentence end in its second half, else at
    the last word end, with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    head = flat[: limit + 1]
    ends = [m.end() for m in SENTENCE_END.finditer(head) if m.end() > limit // 2]
    if ends:
        return head[: ends[-1]].rstrip() + " …"
    space = head.rfind(" ")
    return head[: space if space > 0 else limit].rstrip(" ,;:—-") + "…"


def weak(score: float, top: float, floor: float | None) -> bool:
    """A weak match: far below the best hit, or under the model's measured floor for related text."""
    return score < top * WEAK_SHARE or (floor is not None and score < floor)


def print_results(results, full: bool = False, floor: float | None = None) -> None:
    out = click.echo
    if not results:
        out("No results.")
        return
    # Weak matches are judged on cosines (a hybrid hit's from the dense search), never on sparse
    # or fused scores, which are on other scales.
    known = [r.similarity for r in results if r.similarity is not None]
    top = max(known, default=None)
    for i, r in enumerate(results, 1):
        mark = "  (weak match)" if (top is not None and r.similarity is not None
                                    and weak(r.similarity, top, floor)) else ""
        out(f"{i}. {r.score:.3f}{mark}  {r.title} — {', '.join(r.authors) or 'unknown'}"
            f"  [{r.chapter or '-'}]")
        out("   " + (" ".join(r.text.split()) if full else passage(r.text)))
        if r.parent is not None:
            text = " ".join((r.parent.get("text") or "").split())
            shown = text if full else passage(text)
            out(f"   chapter ({len(text)} characters): {shown}")
    if floor is not None and top is not None and top < floor:
        out("No passage is a close match: these are only loosely related to the query.")
