"""How the two searches of hybrid mode are best fused, on an eval's kept store.

    alexandria eval QUESTIONS --corpus BOOKS --model M --chunker structural --store DIR
    python benchmarks/fusion_grid.py QUESTIONS --corpus BOOKS --store DIR/structural [--prompt P]

For every question the dense and the sparse search are each run once (top 100, the user's search
with --mode dense and --mode sparse); every fusion is then scored on those two lists, so a grid of
fusions costs one pass of query embeddings. Fusions: reciprocal-rank fusion (RRF, Qdrant's
Fusion.Rrf) with its constant k and a dense:sparse weight, and Qdrant's distribution-based score
fusion (DBSF: each list's scores scaled by its mean +- 3 standard deviations, then summed).
--prompt replaces the model's query prompt (EmbeddingGemma's task prompts) for this run.
Scores: hit@1, hit@5 and MRR at chapter level, overall and per language (alexandria eval's
rules); --json writes every fusion's numbers.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEPTH = 100


def fuse_rrf(lists, k, weights):
    scores = defaultdict(float)
    for hits, w in zip(lists, weights, strict=True):
        for rank, key in enumerate(hits, 1):
            scores[key] += w / (k + rank)
    return sorted(scores, key=lambda x: -scores[x])


def fuse_dbsf(scored_lists):
    scores = defaultdict(float)
    for hits in scored_lists:
        if not hits:
            continue
        values = [s for _, s in hits]
        mean = statistics.fmean(values)
        sd = statistics.pstdev(values) if len(values) > 1 else 0.0
        lo, hi = mean - 3 * sd, mean + 3 * sd
        for key, s in hits:
            scores[key] += (s - lo) / (hi - lo) if hi > lo else 0.5
    return sorted(scores, key=lambda x: -scores[x])


@click.command()
@click.argument("questions", type=click.Path(path_type=Path))
@click.option("--corpus", type=click.Path(path_type=Path), required=True)
@click.option("--store", type=click.Path(path_type=Path), required=True,
              help="The kept store of one chunker (eval --store DIR: DIR/structural).")
@click.option("--prompt", default=None, help="Query prompt instead of the model's own.")
@click.option("--device", default="auto")
@click.option("--json", "json_file", type=click.Path(path_type=Path), default=None)
def main(questions, corpus, store, prompt, device, json_file):
    from alexandria.embedding import models
    from alexandria.query.search import Searcher, SearchOptions
    from alexandria.store.sparse import PREFETCH_MIN, RRF_K
    from alexandria.tools.evaluate import hit_rates, load_questions, ranks, resolve_books

    if prompt is not None:
        for name, make in list(models.ALIASES.items()):
            models.ALIASES[name] = (lambda make=make: dataclasses.replace(make(), query_prompt=prompt))
    qs = load_questions(questions)
    books = resolve_books(qs, corpus)
    lists = []
    searcher = Searcher(SearchOptions(store=store, device=device, top_k=DEPTH, mode="dense"))
    try:
        for q in qs:
            row = {}
            for mode in ("dense", "sparse"):
                hits = searcher.search(q.question, dataclasses.replace(searcher.opts, mode=mode))
                row[mode] = [((h.book_key, h.chunk_index), h.score, h.payload) for h in hits]
            lists.append(row)
    finally:
        searcher.close()
    payload_of = {}
    for row in lists:
        for hits in row.values():
            for key, _, p in hits:
                payload_of[key] = p

    def judge(q, ranked):  # alexandria eval's verdict on the top 5 of a fused list
        return ranks(q, books[q.book], [payload_of[key] for key in ranked[:5]])[0]

    fusions = {"dense": lambda r: [k for k, _, _ in r["dense"]],
               "sparse": lambda r: [k for k, _, _ in r["sparse"]]}
    n = PREFETCH_MIN  # what each side hands hybrid's fusion (top_k 5)

    def keys(r, depth=n):
        return [[x for x, _, _ in r["dense"][:depth]], [x for x, _, _ in r["sparse"][:depth]]]

    for k in (RRF_K, 20, 10, 2):
        for wd, ws in ((1, 1), (2, 1), (3, 2), (1, 2)):
            fusions[f"rrf k={k} w={wd}:{ws}"] = (
                lambda r, k=k, wd=wd, ws=ws: fuse_rrf(keys(r), k, (wd, ws)))
    fusions[f"rrf k={RRF_K} w=1:1 prefetch {DEPTH}"] = lambda r: fuse_rrf(keys(r, DEPTH), RRF_K, (1, 1))
    fusions["dbsf"] = lambda r: fuse_dbsf([[(x, s) for x, s, _ in r[side][:n]]
                                           for side in ("dense", "sparse")])
    out = {}
    langs = sorted({q.language for q in qs})
    print(f"{'fusion':<30} {'hit@1':>6} {'hit@5':>6} {'MRR':>6}  " + "  ".join(f"{x:>9}" for x in langs))
    for name, fuse in fusions.items():
        found = [judge(q, fuse(r)) for q, r in zip(qs, lists, strict=True)]
        every = hit_rates(found)
        per = {lang: hit_rates([x for x, q in zip(found, qs, strict=True) if q.language == lang])
               for lang in langs}
        out[name] = {"all": every, "by_language": per, "ranks": found}
        print(f"{name:<30} {every[0]:6.3f} {every[1]:6.3f} {every[2]:6.3f}  "
              + "  ".join(f"{per[x][0]:.2f}/{per[x][1]:.2f}" for x in langs))
    if json_file:
        json_file.write_text(json.dumps({"prompt": prompt, "fusions": out}, indent=1))


if __name__ == "__main__":
    main()
