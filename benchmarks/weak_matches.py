"""Where a model's scores separate related from unrelated queries, to set its weak-match floor
(ModelSpec.weak_below, shown by `alexandria search` as "(weak match)").

    python benchmarks/weak_matches.py --store STORE --model minilm

STORE: an ingest of the sample library (`alexandria sample-library`). Prints the top score of each
query, related ones (answered by one of its four books) first, then unrelated ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RELATED = [
    "how did a toggling harpoon work?",
    "whale oil and the try-works",
    "why did the New England whaling fleet decline?",
    "growing vegetables on a small balcony",
    "which plants grow in containers in the shade?",
    "how to find the Pole Star",
    "phases of the moon",
    "baking sourdough bread at home",
]
UNRELATED = [
    "quantum chromodynamics",
    "javascript promises and async functions",
    "the rules of cricket",
    "stock market crash of 1929",
    "how to file a tax return",
    "treatment of type 2 diabetes",
]


@click.command()
@click.option("--store", type=click.Path(path_type=Path), required=True)
@click.option("--model", default="minilm")
def main(store: Path, model: str) -> None:
    from alexandria.query.search import SearchOptions, search

    opts = SearchOptions(model=model, device="cpu", store=store, top_k=1)
    for kind, queries in (("related", RELATED), ("unrelated", UNRELATED)):
        for q in queries:
            hits = search(q, opts)
            top = hits[0] if hits else None
            print(f"{kind:9} {top.score if top else float('nan'):.3f}  {q}  ->  "
                  f"{top.title if top else '-'}")


if __name__ == "__main__":
    main()
