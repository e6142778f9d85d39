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
    given,
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
        report = Ingest(opts, stop, progress=bar.update if bar else None,
                        on_plan=bar.start if bar else None).run()
    finally:
        if bar:
            bar.close()
    print_summary(report, None if opts.dry_run or not report.store else next_search(opts))
    if report_file:
        Path(report_file).parent.mkdir(parents=True, exist_ok=True)
        Path(report_file).write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    if stop.signal_name:
        return SIGNAL_EXIT.get(stop.signal_name, 130)
    return report.exit_code


def next_search(opts) -> str:
    """The command that asks the collection just written something."""
    from alexandria.store.location import DEFAULT_STORE

    where = ""
    if opts.qdrant_url:
        where = f" --qdrant-url {opts.qdrant_url}"
    elif Path(opts.store) != DEFAULT_STORE:
        where = f" --store {opts.store}"
    chunker = f" --chunker {opts.chunker}" if opts.chunker != "structural" else ""
    variant = "".join(f" --{k} {v}" for k, v in (("backend", opts.backend),
                                                 ("quantize", opts.quantize), ("dims", opts.dims)) if v)
    return f'alexandria search "your question" --model {opts.model}{chunker}{variant}{where}'


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
@opt("--add-sparse", is_flag=True, default=False, envvar=None,
     help="Only add sparse (BM25) vectors to a collection's chunks that lack them, from their "
          "stored text; nothing is embedded again.")
@ingest_embed_options
def ingest_cmd(add_sparse, **kw) -> None:
    """Extract, chunk, embed and store every book; resumable and incremental."""
    if add_sparse:
        sys.exit(guard(run_add_sparse, **kw))
    sys.exit(guard(run_ingest, **kw))


def run_add_sparse(**kw) -> int:
    from alexandria.run.options import IngestOptions
    from alexandria.store.sparse_fill import add_sparse

    setup_logging(kw.pop("log_dir"), kw.pop("quiet"), sys.stderr.isatty(), kw.pop("log_json"))
    wait_lock = kw.pop("wait_lock")
    for key in ("report", "dry_run"):
        kw.pop(key, None)
    kw["formats"] = tuple(f.strip().lower() for f in kw["formats"].split(",") if f.strip())
    where = IngestOptions(api_key=api_key(), **kw).location()
    filled = add_sparse(where, wait_lock=wait_lock)
    click.echo(f"{filled} chunks of collection {where.collection} got sparse vectors "
               f"({where.where}).")
    return EXIT_OK


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
        first = stored_choice(kw)
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
        if not out["books"]:
            click.echo(out["nothing"])
        click.echo(f"collection {out['collection']} ({kw['model']}, {kw['chunker']})"
                   + (f"; {first}" if first else ""))
        return EXIT_OK

    sys.exit(guard(run))


def stored_choice(kw: dict) -> str | None:
    """plan without --model/--chunker: the store's collection, with the model and chunker its
    ingest recorded; a store with none yet plans a first ingest (and says so)."""
    from alexandria.store.catalog import stored_collections
    from alexandria.store.location import MANIFEST_NAME, Location

    model, chunker = given("model", kw["model"]), given("chunker", kw["chunker"])
    if model is not None and chunker is not None:
        return None
    mpath = kw["manifest"] or Path(kw["store"]) / MANIFEST_NAME
    if not stored_collections(Path(kw["store"]), Path(mpath), kw["qdrant_url"]):
        where = kw["qdrant_url"] or kw["store"]
        return f"nothing is stored in {where} yet: the first ingest creates it"
    _, found = Location.find(model, chunker=chunker, store=kw["store"], url=kw["qdrant_url"],
                             collection=kw["collection"], manifest=kw["manifest"])
    kw["model"] = found.model or kw["model"]
    kw["chunker"] = found.chunker or kw["chunker"]
    kw["collection"] = found.name
    return None


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


