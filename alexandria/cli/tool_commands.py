"""eval, chunks, sample-library, tune, bench and doctor: tools around the run."""

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
    guard,
    model_options,
    opt,
)
from alexandria.cli.embed_options import embed_key, search_embed_options
from alexandria.cli.output import setup_logging
from alexandria.errors import UsageError


@cli.command("eval")
@click.argument("questions", type=click.Path(path_type=Path))
@opt("--corpus", type=click.Path(path_type=Path), default=None,
     help="Folder the questions' book paths are relative to (required).")
@opt("--chunker", "chunkers", default="structural,semantic,hierarchical", show_default=True,
     envvar=None, help="Comma-separated chunkers to compare, each in a fresh temporary store.")
@opt("--model", default="minilm", show_default=True, help="Model alias, Hugging Face id or folder.")
@opt("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@opt("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@opt("--top-k", type=int, default=5, show_default=True, help="Results per question.")
@opt("--workers", type=int, default=None,
     help="Extraction processes (default: cores-1, at most 4, on the CPU; cores-2, at most 32, on a GPU).")
@opt("--json", "json_file", type=click.Path(path_type=Path), default=None, envvar=None,
     help="Also write the numbers and every question's result here as JSON.")
@opt("--modes", default="dense,sparse,hybrid", show_default=True, envvar=None,
     help="Comma-separated search modes, each scored on the same ingest.")
@opt("--chunk-tokens", type=int, default=512, show_default=True, envvar=None,
     help="Maximum tokens per chunk.")
@opt("--overlap", type=int, default=64, show_default=True, envvar=None,
     help="Tokens shared by neighbours.")
@opt("--store", type=click.Path(path_type=Path), default=None, envvar=None,
     help="Keep each chunker's store in DIR/<chunker> instead of a temporary one: a later eval "
          "of the same books and settings only searches.")
def eval_cmd(questions, corpus, chunkers, model, device, dtype, top_k, workers, json_file,
             modes, chunk_tokens, overlap, store) -> None:
    """Retrieval check: hit@1, hit@k and MRR per chunker for a JSONL question set."""

    def run() -> int:
        from alexandria.tools.evaluate import EvalOptions, evaluate, load_questions, render_table

        if corpus is None:
            raise UsageError("Give --corpus DIR: the folder the questions' book paths are relative to.")
        setup_logging(None, quiet=True, to_terminal=False)
        qs = load_questions(questions)
        from alexandria.store.sparse import check_mode

        names = tuple(c.strip().lower() for c in chunkers.split(",") if c.strip())
        mode_names = tuple(check_mode(m) for m in modes.split(",") if m.strip())
        if not mode_names:
            raise UsageError("Give at least one search mode (dense, sparse or hybrid).")
        # the JSON report is written after each chunker, so a crash keeps the finished ones
        opts = EvalOptions(corpus=corpus, chunkers=names, model=model, device=device,
                           dtype=dtype, top_k=top_k, workers=workers, modes=mode_names,
                           report_file=json_file, chunk_tokens=chunk_tokens, overlap=overlap,
                           store=store)
        report = evaluate(qs, opts, progress=lambda msg: click.echo(msg, err=True))
        click.echo(render_table(report))
        return EXIT_OK

    sys.exit(guard(run))


@cli.command("chunks")
@click.argument("book", type=click.Path(path_type=Path))
@opt("--compare", is_flag=True, default=False, envvar=None,
     help="Several settings side by side: structural 256 and 512, semantic at two thresholds, "
          "hierarchical.")
@chunker_option
@opt("--chunk-tokens", type=int, default=512, show_default=True,
     help="Target chunk length in model tokens (capped by the model's maximum).")
@opt("--overlap", type=int, default=64, show_default=True, help="Tokens shared by neighbours.")
@opt("--threshold", type=float, default=None,
     help="semantic: similarity below which to break. Default: the book's 25th percentile.")
@opt("--min-tokens", type=int, default=64, show_default=True,
     help="semantic: no topic break in a chunk shorter than this.")
@opt("--samples", type=int, default=2, show_default=True, envvar=None,
     help="Sample chunks shown per setting.")
@opt("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--model", default="bge-m3", show_default=True,
     help="bge-m3, embeddinggemma, minilm, a Hugging Face id or a local folder.")
@opt("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N (semantic).")
@opt("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16 (semantic).")
def chunks_cmd(book, compare, chunker, chunk_tokens, overlap, threshold, min_tokens, samples,
               as_json, model, device, dtype) -> None:
    """Chunk statistics for one BOOK file, to choose the chunking before a long run."""

    def run() -> int:
        from alexandria.chunking.settings import ChunkSettings
        from alexandria.run.options import IngestOptions, check_chunk_options
        from alexandria.tools.chunks_report import compare_variants, current_variant, render, report_book

        check_chunk_options(IngestOptions(chunker=chunker.lower(), chunk_tokens=chunk_tokens,
                                          overlap=overlap, threshold=threshold,
                                          min_tokens=min_tokens))
        if overlap >= chunk_tokens:
            raise UsageError("--overlap must be smaller than --chunk-tokens.")
        base = ChunkSettings(chunk_tokens=chunk_tokens, overlap=overlap, strategy=chunker.lower(),
                             threshold=threshold, min_tokens=min_tokens)
        if compare:
            from alexandria.embedding.embedder import load_tokenizer_json
            from alexandria.embedding.models import resolve_model

            variants = compare_variants(base, load_tokenizer_json(resolve_model(model))[1])
        else:
            variants = [current_variant(base)]
        setup_logging(None, quiet=True, to_terminal=False)
        report = report_book(book, model, variants, device, dtype, max(0, samples))
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        else:
            click.echo(render(report, max(0, samples)))
        return EXIT_OK

    sys.exit(guard(run))


@cli.command("sample-library")
@click.argument("dest", type=click.Path(path_type=Path))
def sample_library_cmd(dest: Path) -> None:
    """Write a small demo Calibre library (4 EPUBs + metadata.db) to DEST, for a first run."""

    def run() -> int:
        from alexandria.tools.sample import make_sample_library

        try:
            make_sample_library(dest)
        except FileExistsError as e:
            raise UsageError(str(e)) from e
        click.echo(f"Wrote a sample Calibre library to {dest}.")
        return EXIT_OK

    sys.exit(guard(run))


@cli.command("tune")
@opt("--directory", type=click.Path(path_type=Path), required=True,
     help="A folder of EPUBs (or a calibre library) whose first books are the sample.")
@opt("--max-vram-gb", type=float, default=None, help="Only budgets that stay under this many GB.")
@click.option("--env-file", type=click.Path(path_type=Path), default=Path(".env"), show_default=True,
              help="Where ALEXANDRIA_TOKEN_BUDGET is written.")
@click.option("--sample-tokens", type=int, default=None,
              help="Tokens timed per try (default 400k on CUDA, 40k on the CPU).")
@click.option("--json", "as_json", is_flag=True, default=False, help="Machine-readable output.")
@opt("--model", default="bge-m3", show_default=True, help="Alias, Hugging Face id or local folder.")
@opt("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@opt("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@search_embed_options
def tune_cmd(directory, max_vram_gb, env_file, sample_tokens, as_json, model, device, dtype,
             embed_urls, embed_api, embed_timeout) -> None:
    """Time a few token budgets on this device and write the fastest that fits into .env
    (with --embed-url: each server's batch size and concurrency)."""

    def run() -> int:
        from alexandria.tools.tune import tune

        if embed_urls:
            return tune_servers()

        out = tune(directory, model, device, dtype, max_vram_gb, env_file, sample_tokens=sample_tokens)
        if as_json:
            click.echo(json.dumps(out, indent=2))
            return EXIT_OK
        for t in out["trials"]:
            speed = f"{t['tokens_per_s']:>12,.0f} tokens/s" if t["tokens_per_s"] else f"{'':>21}"
            vram = f"  {t['vram_peak_mb']:,.0f} MB" if t["vram_peak_mb"] else ""
            click.echo(f"budget {t['token_budget']:>8,} {speed}{vram}  {t['why'] or 'ok'}")
        click.echo(f"ALEXANDRIA_TOKEN_BUDGET={out['best_token_budget']} written to {out['env_file']}")
        return EXIT_OK

    def tune_servers() -> int:
        from alexandria.tools.tune_remote import tune_remote

        out = tune_remote(directory, embed_urls, model, embed_api, embed_key(), env_file,
                          sample_tokens or 40_000, embed_timeout)
        if as_json:
            click.echo(json.dumps(out, indent=2))
            return EXIT_OK
        for t in out["trials"]:
            speed = f"{t['tokens_per_s']:>10,.0f} tokens/s" if t["tokens_per_s"] else f"{'':>19}"
            click.echo(f"{t['endpoint']}  batch {t['batch']:>3} concurrency {t['concurrency']:>2} "
                       f"{speed}  {t['why'] or 'ok'}")
        click.echo(f"ALEXANDRIA_EMBED_URL={out['embed_url']} written to {out['env_file']}")
        return EXIT_OK

    sys.exit(guard(run))


def bench_command_lazily():
    from alexandria.tools.bench.command import bench_command

    return bench_command


cli.add_command(bench_command_lazily(), "bench")


@cli.command("distill")
@opt("--model", default="embeddinggemma", show_default=True, envvar=None,
     help="The model to distill: an alias, a Hugging Face id or a local folder.")
@opt("--out", type=click.Path(path_type=Path), required=True, envvar=None,
     help="A new folder for the static model; then ingest and search with --model OUT.")
@opt("--dims", type=click.IntRange(2), default=256, show_default=True, envvar=None,
     help="Dimensions of the static vectors (PCA).")
@opt("--vocabulary-from", type=click.Path(path_type=Path), default=None, envvar=None,
     help="A folder of EPUBs (your library): keep the tokens most frequent in its books.")
@opt("--vocabulary-size", type=int, default=16_000, show_default=True, envvar=None,
     help="Tokens kept. Each costs one forward pass of the model: EmbeddingGemma's full 262,144 "
          "take about an hour on 2 cores, so the vocabulary is capped (without --vocabulary-from: "
          "the model's first, most frequent tokens).")
def distill_cmd(model, out, dims, vocabulary_from, vocabulary_size) -> None:
    """Make a static model (model2vec) from MODEL: far faster on a CPU, somewhat worse results.

    The vocabulary is capped (--vocabulary-size, from --vocabulary-from's books), since every
    token kept costs one forward pass of the model.
    """

    def run() -> int:
        from alexandria.tools.distill import DistillOptions, distill

        setup_logging(None, False, sys.stderr.isatty())
        report = distill(DistillOptions(out=out, model=model, dims=dims,
                                        vocabulary_from=vocabulary_from,
                                        vocabulary_size=vocabulary_size),
                         progress=lambda m: click.echo(m, err=True))
        click.echo(report.sentence())
        return EXIT_OK

    sys.exit(guard(run))


@cli.command("bench-store")
@opt("--workdir", type=click.Path(path_type=Path), required=True, envvar=None,
     help="The store is filled here, and kept: run the command again to resume or to go on.")
@opt("--steps", default="100k,500k,1M", show_default=True, envvar=None,
     help="Sizes to measure at, in order (e.g. 100k,500k,1M,2M,5M).")
@opt("--dim", "dimension", type=int, default=384, show_default=True, envvar=None,
     help="Vector dimension (1024 bge-m3, 768 EmbeddingGemma, 256 its Matryoshka cut, 384 minilm).")
@opt("--quantization", type=click.Choice(["none", "int8", "binary"]), default="int8",
     show_default=True, envvar=None, help="Quantized copy of the vectors searched first.")
@opt("--on-disk/--no-on-disk", default=True, show_default=True, envvar=None,
     help="Original vectors memory-mapped from disk (else held in RAM).")
@opt("--hnsw-m", type=int, default=16, show_default=True, envvar=None, help="HNSW edges per node.")
@opt("--hnsw-ef-construct", type=int, default=100, show_default=True, envvar=None,
     help="HNSW build-time candidates.")
@opt("--hnsw-ef", type=int, default=256, show_default=True, envvar=None,
     help="HNSW search-time candidates.")
@opt("--oversampling", type=float, default=None, envvar=None,
     help="Candidates per result before rescoring (default: 2 for int8, 4 for binary).")
@opt("--max-segment-mb", type=int, default=None, envvar=None,
     help="The optimiser's largest merge result in MB (default: Qdrant's, from the CPU count).")
@opt("--points-per-book", type=int, default=560, show_default=True, envvar=None,
     help="Points per book (5M points / 8,982 books is 560).")
@opt("--corpus", type=click.Path(path_type=Path), default=None, envvar="ALEXANDRIA_CORPUS",
     help="A folder of EPUBs whose text the chunks are sampled from.")
@opt("--queries", type=int, default=200, show_default=True, envvar=None,
     help="Searches per latency measurement (recall uses the first 50).")
@opt("--max-seconds", type=float, default=None, envvar=None,
     help="Stop filling after this long (run again to resume): for machines with a time limit.")
@opt("--nightly/--no-nightly", default=True, show_default=True, envvar=None,
     help="At each step, also a nightly run's writes (10 changed, 5 removed, 5 added, 20 retitled "
          "books) and the index build after them.")
@opt("--grid-ef", default=None, envvar=None,
     help="Instead of filling: search the store in --workdir with each of these HNSW ef values "
          "(e.g. default,128,256).")
@opt("--grid-oversampling", default=None, envvar=None,
     help="Instead of filling: ... and each of these oversampling factors (e.g. 1,2,4).")
@opt("--json", "json_file", type=click.Path(path_type=Path), default=None, envvar=None,
     help="Each step's results are written here as soon as measured; steps in it are not redone.")
def bench_store_cmd(grid_ef, grid_oversampling, workdir, steps, dimension, quantization, on_disk,
                    hnsw_m, hnsw_ef_construct, hnsw_ef, oversampling, max_segment_mb,
                    points_per_book, corpus,
                    queries, max_seconds, nightly, json_file) -> None:
    """Fill an embedded store to millions of points in steps; measure writes, index builds,
    search latency and recall, memory and disk at each."""

    def run() -> int:
        from alexandria.store.config import StoreConfig
        from alexandria.tools.bench.store_scale import ScaleOptions, parse_steps, render, run_scale

        config = StoreConfig(quantization=quantization, on_disk=on_disk, hnsw_m=hnsw_m,
                             hnsw_ef_construct=hnsw_ef_construct, hnsw_ef=hnsw_ef,
                             oversampling=oversampling, max_segment_mb=max_segment_mb or None)
        opts = ScaleOptions(workdir=workdir, steps=parse_steps(steps), dimension=dimension,
                            config=config, points_per_book=points_per_book, corpus=corpus,
                            queries=queries, recall_queries=min(50, queries),
                            max_seconds=max_seconds, nightly=nightly)
        if grid_ef or grid_oversampling:
            from alexandria.tools.bench.store_scale import render_grid, search_grid, write_json

            def values(text, kind):
                return [None if v.strip() in ("", "default") else kind(v) for v in
                        (text or "default").split(",")]

            rows = search_grid(opts, values(grid_ef, int), values(grid_oversampling, float),
                               progress=lambda m: click.echo(m, err=True))
            if json_file:
                write_json(json_file, {"grid": rows})
            click.echo(render_grid(rows))
            return EXIT_OK
        result = run_scale(opts, json_file, progress=lambda m: click.echo(m, err=True))
        click.echo(render(result))
        return EXIT_OK

    sys.exit(guard(run))


@cli.command("doctor")
@opt("--directory", type=click.Path(path_type=Path), default=None,
     help="Also check this library.")
@opt("--no-load-model", is_flag=True, default=False,
     help="Skip loading the model (faster; dimension read from its config).")
@model_options
def doctor_cmd(directory, no_load_model, model, device, dtype, store, qdrant_url, collection,
               manifest) -> None:
    """Check Python, packages, CUDA, the model, the store, the library, disk and the lock."""

    def run() -> int:
        from alexandria.tools.doctor import exit_code, location_for, render_table, run_checks

        where = location_for(model, store=store, url=qdrant_url, api_key=api_key(),
                             collection=collection, manifest=manifest)
        checks = run_checks(where, device, directory, load_model=not no_load_model)
        click.echo(render_table(checks))
        return exit_code(checks)

    sys.exit(guard(run))
