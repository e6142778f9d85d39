"""`alexandria bench`: the click command over run_bench (alexandria.tools.bench.run)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from alexandria.errors import UsageError
from alexandria.tools.bench.run import REQUIRED_KEYS, render, run_bench  # noqa: F401 (the bench's API)

DEFAULT_TOKENS = 20_000_000
REMOTE_TOKENS = 2_000_000  # servers are often slower than one local GPU: a shorter default run


@click.command("bench")
@click.option("--corpus", type=click.Path(path_type=Path), default=None, envvar="ALEXANDRIA_CORPUS",
              show_envvar=True, help="A folder of EPUBs (repeated to reach --tokens).")
@click.option("--model", default="bge-m3", show_default=True,
              help="bge-m3, embeddinggemma, minilm, a Hugging Face id or a local folder.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--dtype", default="auto", show_default=True, help="auto, fp32, fp16 or bf16.")
@click.option("--gpus", default=None,
              help="Also run end to end on this many GPUs (N or all) and report the scaling.")
@click.option("--synthetic-weights", is_flag=True, default=False,
              help="Random weights of the exact bge-m3 / EmbeddingGemma architecture and a tokenizer "
                   "trained on the corpus (for machines without hub access).")
@click.option("--tokens", type=int, default=DEFAULT_TOKENS, show_default=True,
              help="Copies of the corpus are added until one run embeds at least this many tokens "
                   f"(with --embed-url, {REMOTE_TOKENS:,} unless given).")
@click.option("--repeats", type=int, default=3, show_default=True,
              help="Runs of each measurement; speeds are their median.")
@click.option("--batch-size", type=int, default=96, show_default=True,
              help="The pipeline's and the model-only batch size (the baseline always uses 96).")
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None,
              help="Also write the results here as JSON.")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Keep copies, stores and synthetic models here (default: a temporary folder).")
@click.option("--workers", type=int, default=None,
              help="The pipeline's extraction processes (default: the pipeline's own choice).")
@click.option("--profile", is_flag=True, default=False,
              help="After the repeats, one more end-to-end pass (one copy of the corpus) and "
                   "model-only pass under torch.profiler: each kernel's time per million tokens in both.")
@click.option("--packing", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="Unpadded batches in the pipeline and the model-only pass (as ingest --packing).")
@click.option("--token-reuse/--no-token-reuse", default=True, show_default=True,
              help="Chunks take their token ids from their chapter's where the tokenizer allows "
                   "it; --no-token-reuse tokenizes every chunk again, to measure what that saves.")
@click.option("--embed-url", "embed_urls", multiple=True,
              help="Bench these embedding servers instead (repeatable or comma-separated): a real "
                   "ingest through them against their own speed on the same texts, over 1..N "
                   "servers. --model names the model they serve.")
@click.option("--embed-api", type=click.Choice(["auto", "tei", "openai"]), default="auto",
              show_default=True, help="The servers' API (as ingest --embed-api).")
@click.option("--qdrant-url", default=None,
              help="With --embed-url: the runs write to this Qdrant server (a fresh collection "
                   "each, dropped after it; the key from QDRANT_API_KEY), or to "
                   "local:DIR (qdrant-client's local mode, DIR/run-N), instead of a fresh "
                   "embedded store.")
@click.option("--variants", default=None,
              help="Instead: compare the model's CPU variants on the same chunks (--device cpu): "
                   "torch (fp32, the reference), torch-bf16, onnx, onnx-int8, static:DIR, each "
                   "optionally @N dimensions, comma-separated.")
@click.option("--chunks", type=int, default=64, show_default=True,
              help="--variants: chunks spread over the corpus for the model-only speed and cosines.")
@click.option("--questions", type=click.Path(path_type=Path), default=None,
              help="--variants: also hit@1/hit@5/MRR per language on this question file (as "
                   "`alexandria eval`), with each variant's end-to-end ingest speed.")
@click.option("--question-books", default=None,
              help="--variants: only the questions about these books (comma-separated file names).")
def bench_command(corpus, model, device, dtype, gpus, synthetic_weights, tokens, repeats,
                  batch_size, json_file, workdir, workers, profile, packing, token_reuse, embed_urls,
                  embed_api, qdrant_url, variants, chunks, questions, question_books) -> None:
    """Tokens/s of the real pipeline against SentenceTransformer.encode, on the same books
    (or, with --embed-url, against the embedding servers alone; with --variants, a model's CPU
    variants against each other)."""
    try:
        if corpus is None:
            raise UsageError("Give --corpus DIR (a folder of EPUBs).")
        if qdrant_url and not embed_urls:
            raise UsageError("--qdrant-url is for the servers' bench: give --embed-url too.")
        if variants:
            _variants(corpus, model, device, variants, chunks, repeats, questions, question_books,
                      json_file)
            return
        if embed_urls:
            from alexandria.tools.bench.remote import render_remote, run_remote_bench

            remote = run_remote_bench(
                corpus, model, list(embed_urls), embed_api, os.environ.get("ALEXANDRIA_EMBED_API_KEY"),
                min(tokens, REMOTE_TOKENS) if tokens == DEFAULT_TOKENS else tokens, repeats, workdir,
                progress=lambda m: click.echo(m, err=True),
                on_repeat=(lambda partial: _write_json(json_file, partial)) if json_file else None,
                qdrant_url=qdrant_url)
            click.echo(render_remote(remote))
            if json_file:
                _write_json(json_file, remote)
                click.echo(f"  wrote {json_file}")
            return
        result = run_bench(corpus, model, device, synthetic_weights, tokens, repeats, batch_size,
                           workdir, dtype=dtype, gpus=gpus, workers=workers, profile=profile,
                           packing=packing, reuse_tokens=token_reuse,
                           progress=lambda m: click.echo(m, err=True),
                           on_repeat=(lambda partial: _write_json(json_file, partial)) if json_file else None)
    except UsageError as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(UsageError.exit_code)
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
        sys.exit(130)
    click.echo(render(result))
    if json_file:
        _write_json(json_file, result)
        click.echo(f"  wrote {json_file}")


def _variants(corpus, model, device, variants, chunks, repeats, questions, question_books,
              json_file) -> None:
    from alexandria.tools.bench.variants import parse_variants, render_variants, run_variants

    if device not in ("cpu", "auto"):
        raise UsageError("--variants compares CPU variants: give --device cpu.")
    books = tuple(b.strip() for b in (question_books or "").split(",") if b.strip())
    result = run_variants(corpus, model, parse_variants(variants, model), chunks, repeats,
                          questions, books, progress=lambda m: click.echo(m, err=True),
                          on_partial=(lambda partial: _write_json(json_file, partial)) if json_file
                          else None)
    click.echo(render_variants(result))
    if json_file:
        _write_json(json_file, result)
        click.echo(f"  wrote {json_file}")


def _write_json(path: Path, result: dict[str, Any]) -> None:
    """Whole or not at all: the partial results of each repeat replace the last ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    os.replace(tmp, path)
