"""Book preparation (extract, chunk, model inputs) on this host's cores: chunk tokens reused from
their chapter against every chunk tokenized again, interleaved, the pipeline's own worker code.

    python benchmarks/prepare_speed.py --corpus DIR [--model bge-m3] [--copies 7] [--workers N]
    HF_HUB_OFFLINE=1 python benchmarks/prepare_speed.py --corpus DIR --model embeddinggemma --real-tokenizer

On a GPU box the book workers, not the GPU, can set the pace (`prepare_wait` in a bench's
stages); this shows how much of their time the second tokenization of every chunk was. bge-m3
and embeddinggemma use a tokenizer trained on the corpus as `alexandria bench --synthetic-weights`
does (no hub needed); other models their own. `--real-tokenizer`: the model's own tokenizer (from
the Hugging Face cache, no weights loaded) and its document prompt, as a run has them.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _init(tokenizer_json: str, max_seq_length: int, reuse: bool, template: str | None) -> None:
    from alexandria.chunking.chunker import ChunkSettings
    from alexandria.run import prepare

    prepare.init_worker(tokenizer_json, max_seq_length, ChunkSettings(), template, 10, reuse_tokens=reuse)


def _tokens(task) -> int:
    from alexandria.run import prepare

    return sum(len(ids) for ids in prepare.prepare(task).token_ids)


@click.command()
@click.option("--corpus", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--model", default="bge-m3")
@click.option("--copies", type=int, default=7, help="Copies of the corpus per pass.")
@click.option("--workers", type=int, default=None, help="Default: all cores but one.")
@click.option("--repeats", type=int, default=3)
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None)
@click.option("--real-tokenizer", is_flag=True, default=False,
              help="The model's own tokenizer and document prompt (bge-m3, embeddinggemma).")
def main(corpus: Path, model: str, copies: int, workers: int | None, repeats: int,
         json_file: Path | None, real_tokenizer: bool) -> None:
    from alexandria.embedding.models import resolve_model
    from alexandria.run.prepare import PrepareTask
    from alexandria.tools import bench

    books = bench.corpus_books(corpus)
    spec = resolve_model(model)
    name, template = spec.name, None
    if real_tokenizer:
        from alexandria.embedding.embedder import load_tokenizer_json

        tokenizer_json, max_len = load_tokenizer_json(spec)
        template = spec.document_template
    elif name in bench.SYNTHETIC:
        arch = bench.SYNTHETIC[name]
        tokenizer_json = bench.train_tokenizer(bench.corpus_texts(books), arch).backend_tokenizer.to_str()
        max_len = arch.max_seq_length
    else:
        from alexandria.embedding.embedder import get_embedder

        embedder = get_embedder(resolve_model(model), "cpu", "fp32")
        tokenizer_json, max_len = embedder.tokenizer_json(), embedder.max_seq_length
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = bench.make_copies(books, copies, Path(tmp))
        paths = sorted(folder.rglob("*.epub"), key=lambda p: -p.stat().st_size)  # biggest first
        tasks = [PrepareTask(str(p), str(p), "epub", p.stem, title_is_file_name=True) for p in paths]
        speeds: dict[str, list[float]] = {"reused": [], "again": []}
        for _ in range(repeats):
            for mode in speeds:
                initargs = (tokenizer_json, max_len, mode == "reused", template)
                with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init,
                                         initargs=initargs) as pool:
                    t = time.perf_counter()
                    tokens = sum(pool.map(_tokens, tasks))
                    speeds[mode].append(tokens / (time.perf_counter() - t))
                click.echo(f"{mode:>6}: {speeds[mode][-1]:,.0f} tokens/s ({tokens:,} tokens)")
    result = {"model": name, "real_tokenizer": real_tokenizer, "books": len(tasks), "workers": workers,
              "cpus": os.cpu_count(),
              "tokens_per_s": {k: statistics.median(v) for k, v in speeds.items()},
              "runs": speeds}
    result["ratio"] = result["tokens_per_s"]["reused"] / result["tokens_per_s"]["again"]
    click.echo(f"median of {repeats}: reused {result['tokens_per_s']['reused']:,.0f}, tokenized again "
               f"{result['tokens_per_s']['again']:,.0f} tokens/s: {result['ratio']:.2f}x "
               f"({workers} workers, {os.cpu_count()} CPUs)")
    if json_file:
        json_file.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
