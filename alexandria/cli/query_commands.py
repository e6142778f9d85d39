"""search, status and export: reading what is stored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from alexandria.cli.common import (
    EXIT_OK,
    api_key,
    chunker_option,
    cli,
    given,
    guard,
    model_options,
    opt,
    variant_options,
)
from alexandria.cli.embed_options import embed_key, search_embed_options
from alexandria.cli.output import plural, print_results, setup_logging


@cli.command("search")
@click.argument("query")
@opt("--top-k", type=int, default=5, show_default=True)
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--full", is_flag=True, default=False,
     help="Each passage whole (default: cut at a sentence or word end, marked with …).")
@opt("--author", default=None, help="Only books by this author (exact name).")
@opt("--tag", default=None, help="Only books with this tag.")
@opt("--language", default=None, help="Only books in this language (calibre code, e.g. eng).")
@opt("--series", default=None, help="Only books of this series.")
@chunker_option
@opt("--with-parent", is_flag=True, default=False,
     help="hierarchical: also show the chapter each hit comes from.")
@opt("--mode", type=click.Choice(["dense", "sparse", "hybrid"]), default=None,
     help="dense: the model's vectors; sparse: BM25 word weights; hybrid: both, fused by rank "
     "(default: hybrid, or dense on a collection made before sparse vectors).")
@model_options
@variant_options
@search_embed_options
def search_cmd(query, top_k, as_json, full, author, tag, language, series, manifest, **kw) -> None:
    """Best chunks for QUERY, with book, authors, chapter and score.

    Without --model and --chunker: the store's collection (its only one, or the one they pick).
    """

    def run() -> int:
        from alexandria.query.search import SearchOptions, search

        kw["model"], kw["chunker"] = given("model", kw["model"]), given("chunker", kw["chunker"])
        opts = SearchOptions(top_k=top_k, author=author, tag=tag, language=language,
                             series=series, api_key=api_key(), manifest=manifest,
                             embed_key=embed_key(), **kw)
        results = search(query, opts)
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False))
            return EXIT_OK
        print_results(results, full, weak_floor(results))
        return EXIT_OK

    sys.exit(guard(run))


def weak_floor(results) -> float | None:
    """The score under which the collection's model calls a hit weak (its payload names the model)."""
    from alexandria.embedding.models import ALIASES

    name = results[0].payload.get("model") if results else None
    return ALIASES[name]().weak_below if name in ALIASES else None


@cli.command("status")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--verify", is_flag=True, default=False,
     help="Count each book's points in the store and report disagreements.")
@chunker_option
@model_options
@variant_options
def status_cmd(as_json, verify, chunker, model, store, collection, manifest, qdrant_url, backend,
               quantize, dims, **_) -> None:
    """Books done / failed / skipped / pending, from the manifest.

    Without --model and --chunker: the store's collection (its only one, or the one they pick).
    """

    def run() -> int:
        from alexandria.query.status import status
        from alexandria.store.location import Location

        asked = (backend, quantize, dims) if (backend or quantize or dims) else None
        where, found = Location.find(given("model", model), chunker=given("chunker", chunker),
                                     store=store, url=qdrant_url, api_key=api_key(),
                                     collection=collection, manifest=manifest, variant=asked)
        s = status(where, verify)
        s["model"], s["dtype"], s["chunker"] = found.model, found.dtype, found.chunker
        s["dimension"] = found.dimension
        if as_json:
            click.echo(json.dumps(s, indent=2, ensure_ascii=False))
            return 1 if verify and s["mismatches"] else EXIT_OK
        t = s["totals"]
        made = ", ".join(str(x) for x in (found.model, found.variant, found.dtype, found.chunker) if x)
        size = f", {found.dimension} dimensions" if found.dimension else ""
        click.echo(f"collection {s['collection']} ({made}{size}; manifest {s['manifest']})")
        click.echo(f"{plural(t['books'], 'book')}: {t['done']} done, {t['failed']} failed, "
                   f"{t['skipped']} skipped, {t['pending'] + t['in-progress']} pending; "
                   f"{plural(t['chunks'], 'chunk')}, {plural(t['tokens'], 'token')}")
        v = s.get("vectors")
        if v:
            sparse = ", sparse " + ", ".join(v["sparse"]) if v["sparse"] else (
                ", no sparse vectors (ingest --add-sparse adds them)")
            click.echo(f"vectors: dense {v['dense']}{sparse}")
        if s.get("store_config"):
            c = s["store_config"]
            click.echo(f"store: quantization {c['quantization']}, vectors "
                       f"{'on disk' if c['on_disk'] else 'in RAM'}, HNSW m {c['hnsw_m']}")
        if s["last_run"]:
            lr = s["last_run"]
            if lr["outcome"] == "unfinished":  # killed, or running now: no report yet
                click.echo(f"last run #{lr['id']}: unfinished (killed, or still running), so far "
                           f"{lr['books_done'] or 0} done, {lr['books_failed'] or 0} failed, "
                           f"{lr.get('books_in_progress') or 0} in progress")
            else:
                click.echo(f"last run #{lr['id']}: {lr['outcome']}, {lr['books_done']} done, "
                           f"{lr['books_failed']} failed in {lr['elapsed_s']}s")
        for b in s["books"]:
            if b["status"] == "failed":
                click.echo(f"  failed  {b['title']}: {b['reason']}  ({b['path']})")
        if verify:
            for b in s["books"]:
                if b.get("mismatch"):
                    click.echo(f"  MISMATCH {b['title']}: manifest {b['stored_points']} points, "
                               f"store {b['store_points']}")
            for o in s["orphans"]:
                click.echo(f"  ORPHAN  {o['book_key']}: {o['store_points']} points in the store "
                           "that the manifest does not know")
            click.echo(f"verify: {s['mismatches']} mismatches, {t['store_points']} points")
            return 1 if s["mismatches"] else EXIT_OK
        return EXIT_OK

    sys.exit(guard(run))


@cli.command("export")
@opt("--to-url", default=None, help="The Qdrant server to copy into (API key from QDRANT_API_KEY).")
@opt("--to-path", type=click.Path(path_type=Path), default=None,
     help="Or a qdrant-client local-mode folder (for trying it out without a server).")
@opt("--to-collection", default=None, help="Target collection (default: the same name).")
@opt("--batch", type=int, default=256, show_default=True, help="Points per upsert request.")
@opt("--qdrant-timeout", type=float, default=60.0, show_default=True, metavar="SECONDS")
@opt("--qdrant-retries", type=int, default=5, show_default=True)
@opt("--grpc/--no-grpc", default=True, show_default=True)
@model_options
def export_cmd(to_url, to_path, to_collection, batch, qdrant_timeout, qdrant_retries, grpc, model,
               store, collection, qdrant_url, manifest, **_) -> None:
    """Copy the embedded store's collection into a Qdrant server (no re-embedding)."""

    def run() -> int:
        from alexandria.store.export import export
        from alexandria.store.location import Location

        where = Location.of(model, store=store, url=qdrant_url, collection=collection,
                            manifest=manifest)
        setup_logging(None, False, sys.stderr.isatty())
        report = export(where, to_url=to_url, to_path=str(to_path) if to_path else None,
                        api_key=api_key(), to_collection=to_collection, batch=batch,
                        timeout=int(qdrant_timeout), prefer_grpc=grpc, retries=qdrant_retries)
        click.echo(report.sentence())
        return EXIT_OK

    sys.exit(guard(run))


