"""`alexandria bench --device cpu --variants ...`: a model's CPU variants on the same chunks.

Variants: torch (fp32: the reference), torch-bf16, onnx, onnx-int8, static:DIR (a model made by
`alexandria distill`), each optionally cut to N dimensions with @N (onnx-int8@256). For each:

- model-only tokens/s: the same chunk texts, spread over the corpus, as each variant's own token
  ids through Embedder.encode_ids; every round runs each variant once (interleaved, so load from
  elsewhere falls on all alike), the speed is the median of the rounds. Tokens are the reference
  model's tokens of those texts, so a static model with its own tokenizer is counted alike.
- cosine to torch fp32 per chunk (minimum and mean); a cut variant against the reference cut the
  same way; a static model's vectors live in another space (no cosine).
- resident memory: the peak RSS of a fresh process that loads the variant and embeds one batch.
- with --questions: hit@1, hit@k and MRR per language from alexandria.tools.evaluate (one
  structural ingest of the questions' books per variant, dense search), and the end-to-end
  tokens/s of that ingest (the reference's token count of those books over each variant's wall
  time, so again alike).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.errors import UsageError

TOKEN_BUDGET = 96 * 512  # the CPU ingest's default (--batch-size 96 x --chunk-tokens 512)


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    dtype: str = "fp32"
    backend: str | None = None
    quantize: str | None = None
    dims: int | None = None

    @property
    def static(self) -> bool:
        return self.label.startswith("static")

    def spec(self):
        from alexandria.embedding.models import resolve_model

        return resolve_model(self.model, self.backend, self.quantize, self.dims)


def parse_variants(text: str, model: str) -> list[Variant]:
    """"torch,torch-bf16,onnx,onnx-int8,static:DIR,onnx-int8@256" -> variants, torch fp32 first."""
    out: list[Variant] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        name, _, cut = item.partition("@")
        dims = None
        if cut:
            if not cut.isdigit() or int(cut) < 1:
                raise UsageError(f"--variants {item}: the part after @ is a number of dimensions.")
            dims = int(cut)
        if name == "torch":
            out.append(Variant(item, model, "fp32", dims=dims))
        elif name == "torch-bf16":
            out.append(Variant(item, model, "bf16", dims=dims))
        elif name == "onnx":
            out.append(Variant(item, model, "auto", "onnx", dims=dims))
        elif name == "onnx-int8":
            out.append(Variant(item, model, "auto", "onnx", "int8", dims=dims))
        elif name.startswith("static:"):
            folder = Path(name[len("static:"):]).expanduser()
            if not folder.is_dir():
                raise UsageError(f"--variants {item}: there is no model folder {folder} (make one "
                                 "with `alexandria distill`).")
            out.append(Variant(f"static:{folder.name}", str(folder.resolve()), "fp32"))
        else:
            raise UsageError(f"--variants: {item!r} is not one of torch, torch-bf16, onnx, "
                             "onnx-int8 or static:DIR (each optionally @N dimensions).")
    if not any(v.label == "torch" for v in out):
        out.insert(0, Variant("torch", model, "fp32"))  # the reference of the cosines
    return sorted(out, key=lambda v: v.label != "torch")


def sample_texts(corpus: Path, model: str, chunks: int) -> tuple[list[str], int]:
    """`chunks` chunk texts spread over the corpus (as an ingest cuts them for the reference model),
    and their token count in the reference model's tokenizer."""
    from alexandria.chunking.settings import ChunkSettings
    from alexandria.embedding.embedder import load_tokenizer_json
    from alexandria.embedding.models import resolve_model
    from alexandria.tools.bench.corpus import corpus_books, dry_pass, spread

    spec = resolve_model(model)
    tokenizer_json, longest = load_tokenizer_json(spec)
    passbooks, _ = dry_pass(corpus_books(corpus), tokenizer_json, longest, ChunkSettings(),
                            spec.document_template, spec)
    texts = spread([t for b in passbooks for t in b.texts], chunks)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokens = sum(min(len(e.ids), longest) for e in tokenizer.encode_batch(texts))
    return texts, tokens


def _inputs(embedder, texts: list[str]) -> list[np.ndarray]:
    from alexandria.chunking.chunker import Chunker
    from alexandria.chunking.settings import ChunkSettings
    from alexandria.run.prepare import model_inputs

    chunker = Chunker(embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings())
    return model_inputs(chunker, texts)


def resident_mb(variant: Variant, texts: list[str]) -> float:
    """Peak resident memory (MB) of a fresh process that loads the variant and embeds `texts`."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_resident_child, variant, texts).result()


def _resident_child(variant: Variant, texts: list[str]) -> float:
    from alexandria.embedding.embedder import get_embedder

    embedder = get_embedder(variant.spec(), "cpu", variant.dtype)
    embedder.encode_ids(_inputs(embedder, texts), TOKEN_BUDGET)
    # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def run_variants(corpus: Path, model: str, variants: list[Variant], chunks: int = 64,
                 repeats: int = 3, questions: Path | None = None,
                 question_books: tuple[str, ...] = (), top_k: int = 5,
                 progress: Callable[[str], None] | None = None,
                 on_partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The comparison; `on_partial` gets the results so far after each phase (a run cut off by a
    time limit keeps what it measured)."""
    from alexandria.embedding.embedder import cpu_has_bf16, get_embedder

    say = progress or (lambda _m: None)
    texts, tokens = sample_texts(corpus, model, chunks)
    say(f"{len(texts)} chunks, {tokens} tokens of {model}")
    embedders, inputs = {}, {}
    for v in variants:
        say(f"loading {v.label} …")
        embedders[v.label] = get_embedder(v.spec(), "cpu", v.dtype)
        inputs[v.label] = _inputs(embedders[v.label], texts)
        embedders[v.label].encode_ids(inputs[v.label][:4], TOKEN_BUDGET)  # warm-up
    seconds: dict[str, list[float]] = {v.label: [] for v in variants}
    vectors: dict[str, np.ndarray] = {}
    for r in range(repeats):
        for v in variants:
            t = time.perf_counter()
            out = embedders[v.label].encode_ids(inputs[v.label], TOKEN_BUDGET)
            seconds[v.label].append(time.perf_counter() - t)
            vectors.setdefault(v.label, out)
            say(f"round {r + 1}/{repeats} {v.label}: {tokens / seconds[v.label][-1]:.0f} tokens/s")
    reference = vectors["torch"]
    rows = []
    for v in variants:
        median = statistics.median(seconds[v.label])
        row: dict[str, Any] = {"variant": v.label, "model_tokens_per_s": round(tokens / median, 1),
                               "model_s": [round(s, 6) for s in seconds[v.label]]}
        if not v.static:
            ref = reference
            if v.dims:
                ref = ref[:, :v.dims] / np.linalg.norm(ref[:, :v.dims], axis=1, keepdims=True)
            cosines = (vectors[v.label] * ref).sum(axis=1)
            row["cosine_min"], row["cosine_mean"] = round(float(cosines.min()), 4), round(
                float(cosines.mean()), 4)
        rows.append(row)
    result: dict[str, Any] = {"model": model, "chunks": len(texts), "tokens": tokens,
                              "repeats": repeats, "cpu_bf16": cpu_has_bf16(), "variants": rows}
    _ratios(rows)
    for v, row in zip(variants, rows, strict=True):
        row["resident_mb"] = resident_mb(v, texts[:16])
        say(f"{v.label}: {row['model_tokens_per_s']:.0f} tokens/s ({row['speedup_vs_fp32']}x fp32), "
            f"cosine {row.get('cosine_min', '-')} / {row.get('cosine_mean', '-')}, "
            f"{row['resident_mb']:.0f} MB resident")
    if on_partial is not None:
        on_partial(result)
    if questions is not None:
        result["questions"] = _quality(corpus, model, variants, rows, questions, question_books,
                                       top_k, say, lambda: on_partial(result) if on_partial else None)
        _ratios(rows)
    return result


def _ratios(rows: list[dict[str, Any]]) -> None:
    base = next(r for r in rows if r["variant"] == "torch")
    for row in rows:
        row["speedup_vs_fp32"] = round(row["model_tokens_per_s"] / base["model_tokens_per_s"], 2)
        # The same ratio within each round, then the median: the rounds' load cancels out.
        row["paired_speedup_vs_fp32"] = round(statistics.median(
            b / max(v, 1e-9) for b, v in zip(base["model_s"], row["model_s"], strict=True)), 2)
        if row.get("e2e_tokens_per_s") and base.get("e2e_tokens_per_s"):
            row["e2e_speedup_vs_fp32"] = round(row["e2e_tokens_per_s"] / base["e2e_tokens_per_s"], 2)


def _quality(corpus: Path, model: str, variants: list[Variant], rows: list[dict[str, Any]],
             questions: Path, books: tuple[str, ...], top_k: int, say,
             saved: Callable[[], None]) -> dict[str, Any]:
    from alexandria.tools.evaluate import EvalOptions, evaluate, load_questions

    asked = load_questions(questions)
    if books:
        asked = [q for q in asked if Path(q.book).name in books]
        if not asked:
            raise UsageError(f"No question in {questions} is about {', '.join(books)}.")
    reference_tokens = None
    for v, row in zip(variants, rows, strict=True):
        say(f"{v.label}: ingesting and searching {len(asked)} questions …")
        report = evaluate(asked, EvalOptions(
            corpus=corpus, chunkers=("structural",), model=v.model, device="cpu", dtype=v.dtype,
            top_k=top_k, backend=v.backend, quantize=v.quantize, dims=v.dims), say)
        score = report.scores[0]
        if v.label == "torch":
            reference_tokens = score.tokens
        row.update({"hit@1": score.hit_at_1, f"hit@{top_k}": score.hit_at_k, "mrr": score.mrr,
                    "by_language": score.by_language, "ingest_s": score.ingest_s,
                    "e2e_tokens_per_s": round((reference_tokens or score.tokens) / score.ingest_s, 1)})
        saved()
    return {"file": str(questions), "count": len(asked), "books": sorted({q.book for q in asked}),
            "languages": sorted({q.language for q in asked})}


def render_variants(result: dict[str, Any], top_k: int = 5) -> str:
    """The table docs/performance.md shows."""
    head = ("| variant | model-only tokens/s | x fp32 (paired) | end-to-end tokens/s | x fp32 | "
            "cosine to fp32 "
            f"min / mean | hit@1 | hit@{top_k} | MRR | resident MB |")
    lines = [head, "|" + "---|" * 10]
    for r in result["variants"]:
        cos = f"{r['cosine_min']:.4f} / {r['cosine_mean']:.4f}" if "cosine_min" in r else "n/a"
        e2e = f"{r['e2e_tokens_per_s']:.0f}" if r.get("e2e_tokens_per_s") else "-"
        lines.append(
            f"| {r['variant']} | {r['model_tokens_per_s']:.0f} | {r['speedup_vs_fp32']:.2f} "
            f"({r['paired_speedup_vs_fp32']:.2f}) | {e2e} | "
            f"{r.get('e2e_speedup_vs_fp32', '-')} | {cos} | {r.get('hit@1', '-')} | "
            f"{r.get(f'hit@{top_k}', '-')} | {r.get('mrr', '-')} | {r['resident_mb']:.0f} |")
    langs = sorted({lang for r in result["variants"] for lang in r.get("by_language", {})})
    if langs:
        counts = result["variants"][0].get("by_language", {})
        heads = [f"{lang} ({counts.get(lang, {}).get('questions', '?')})" for lang in langs]
        lines += ["", f"hit@{top_k} per language (questions):", "",
                  "| variant | " + " | ".join(heads) + " |", "|" + "---|" * (len(langs) + 1)]
        for r in result["variants"]:
            by = r.get("by_language", {})
            lines.append(f"| {r['variant']} | " + " | ".join(
                str(by.get(lang, {}).get("hit@k", by.get(lang, {}).get(f"hit@{top_k}", "-")))
                for lang in langs) + " |")
    return "\n".join(lines)
