"""ingest, plan and repair: the commands that take the store's run lock."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from alexandria.cli.common import (
    EXIT_OK,
    SIGNAL_EXIT,
    api_key,
    cli,
    guard,
    ingest_options,
    load_env,
    log,
    opt,
)
from alexandria.cli.embed_options import embed_key, ingest_embed_options
from alexandria.cli.output import print_summary, progress_bar, setup_logging


def run_ingest(**kw) -> int:
    from alexandria.run.control import StopRequested
    from alexandria.run.ingest import Ingest
    from alexandria.run.options import IngestOptions

    report_file = kw.pop("report")
    quiet = kw.pop("quiet")
    log_dir = kw.pop("log_dir")
    to_terminal = sys.stderr.isatty()
    setup_logging(log_dir, quiet, to_terminal, kw.pop("log_json"))
    kw["formats"] = tuple(f.strip().lower() for f in kw["formats"].split(",") if f.strip())
    opts = IngestOptions(api_key=api_key(), embed_key=embed_key(), **kw)
    stop = StopRequested()
    install_signal_handlers(stop)
    bar = progress_bar(enabled=to_terminal and not quiet and not opts.dry_run)
    try:  # the run takes the store's lock itself; a store failure mid-run is exit 74
        report = Ingest(opts, stop, progress=bar.update if bar else None).run()
    finally:
        if bar:
            bar.close()
    print_summary(report)
    if report_file:
        Path(report_file).parent.mkdir(parents=True, exist_ok=True)
        Path(report_file).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    if stop.signal_name:
        return SIGNAL_EXIT.get(stop.signal_name, 130)
    return report.exit_code


def install_signal_handlers(stop) -> None:
    """First signal: finish what is queued and stop cleanly. Second Ctrl-C: stop at once."""

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if stop:
            raise KeyboardInterrupt
        log.warning("%s received: finishing the books in flight, then stopping", name)
        stop.set(name)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), handler)


@cli.command("ingest")
@ingest_options
@ingest_embed_options
def ingest_cmd(**kw) -> None:
    """Extract, chunk, embed and store every book; resumable and incremental."""
    sys.exit(guard(run_ingest, **kw))


@cli.command("plan")
@ingest_options
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
def plan_cmd(as_json, **kw) -> None:
    """What the next ingest would do (new / changed / metadata-only / removed / unchanged)."""

    def run() -> int:
        from alexandria.run.options import IngestOptions
        from alexandria.run.plan import plan_run

        for key in ("report", "quiet", "log_dir", "wait_lock", "dry_run", "log_json"):
            kw.pop(key, None)
        kw["formats"] = tuple(f.strip().lower() for f in kw["formats"].split(",") if f.strip())
        out = plan_run(IngestOptions(api_key=api_key(), **kw))
        if as_json:
            click.echo(json.dumps(out, indent=2, ensure_ascii=False))
            return EXIT_OK
        for b in out["books"]:
            if b["action"] not in ("unchanged",):
                reason = f" ({b['reason']})" if b["reason"] else ""
                click.echo(f"{b['action']:14} {b['title']}{reason}")
        c = out["counts"]
        click.echo(", ".join(f"{v} {k}" for k, v in c.items()))
        return EXIT_OK

    sys.exit(guard(run))


@cli.command("repair")
@ingest_options
def repair_cmd(**kw) -> None:
    """Rebuild a damaged manifest from the store's payloads (nothing is re-embedded).

    Give the same --model, --store/--qdrant-url, --collection and chunking options as the ingest;
    --force rebuilds this collection's rows even when the manifest is healthy.
    """

    def run() -> int:
        from alexandria.run.options import IngestOptions
        from alexandria.store.repair import repair

        setup_logging(kw.pop("log_dir"), kw.pop("quiet"), sys.stderr.isatty(), kw.pop("log_json"))
        wait_lock, force_rebuild = kw.pop("wait_lock"), kw.pop("force")
        for key in ("report", "dry_run"):
            kw.pop(key, None)
        kw["formats"] = tuple(f.strip().lower() for f in kw["formats"].split(",") if f.strip())
        opts = IngestOptions(api_key=api_key(), **kw)
        report = repair(opts.location(), force=force_rebuild, wait_lock=wait_lock)
        click.echo(report.sentence())
        return EXIT_OK

    sys.exit(guard(run))


@click.command("ingest_books")
@ingest_options
@ingest_embed_options
def ingest_script(**kw) -> None:
    """Extract, chunk, embed and store every book (same options as `alexandria ingest`)."""
    sys.exit(guard(run_ingest, **kw))


def script_main() -> None:
    load_env()
    ingest_script(prog_name="ingest_books.py")


