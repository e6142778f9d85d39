"""fp32 against bf16 for a model on this CPU: speed and cosine on real chunks, interleaved runs.

    python benchmarks/cpu_dtype.py [--model minilm] [--book PATH]

`--dtype auto` picks bf16 on the CPU only where the CPU has bf16 instructions; this shows why.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_BOOK = Path(__file__).resolve().parents[2] / "shared/corpus/epubs/books/idpf-moby-dick.epub"


@click.command()
@click.option("--model", default="minilm")
@click.option("--book", type=click.Path(path_type=Path), default=DEFAULT_BOOK)
@click.option("--chunks", type=int, default=120)
@click.option("--repeats", type=int, default=3)
def main(model: str, book: Path, chunks: int, repeats: int) -> None:
    from alexandria.chunking.chunker import Chunker, ChunkSettings
    from alexandria.embedding.embedder import get_embedder
    from alexandria.embedding.models import resolve_model
    from alexandria.run.prepare import model_inputs
    from alexandria.sources.epub import extract_epub

    spec = resolve_model(model)
    f32, b16 = get_embedder(spec, "cpu", "fp32"), get_embedder(spec, "cpu", "bf16")
    chunker = Chunker(f32.tokenizer_json(), f32.max_seq_length, ChunkSettings())
    parts = chunker.chunk(extract_epub(book.read_bytes(), str(book)).chapters)[:chunks]
    ids = model_inputs(chunker, [c.text for c in parts])
    tokens = sum(len(x) for x in ids)
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    out = {}
    for _ in range(repeats):
        for name, embedder in (("fp32", f32), ("bf16", b16)):
            start = time.perf_counter()
            out[name] = embedder.encode_ids(ids, 96 * f32.max_seq_length)
            times[name].append(time.perf_counter() - start)
    cosine = (out["fp32"] * out["bf16"]).sum(1)
    click.echo(f"{len(ids)} chunks, {tokens} tokens; fp32 {tokens / statistics.median(times['fp32']):,.0f} "
               f"tokens/s, bf16 {tokens / statistics.median(times['bf16']):,.0f} tokens/s; cosine "
               f"min {cosine.min():.5f}, mean {cosine.mean():.5f}")


if __name__ == "__main__":
    main()
