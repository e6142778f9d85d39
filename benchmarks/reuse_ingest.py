"""End-to-end effect of chunk-token reuse (chunks take their token ids from their chapter's
instead of being tokenized again): real ingests of the same copies of a corpus into fresh stores,
reuse on and off alternating, in one process so that the model loads once.

    python benchmarks/reuse_ingest.py --corpus BOOKS --model embeddinggemma --device cuda \\
        --copies 2 --repeats 2 [--compile off] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from alexandria.run.ingest import ingest
from alexandria.run.options import IngestOptions
from alexandria.tools.bench.corpus import corpus_books, make_copies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--model", default="embeddinggemma")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--copies", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--compile", default="off")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="alexandria-reuse-") as tmp:
        library = make_copies(corpus_books(a.corpus), a.copies, Path(tmp) / "library")

        def run(reuse: bool):
            store = Path(tmp) / "store"
            shutil.rmtree(store, ignore_errors=True)
            return ingest(IngestOptions(directory=library, model=a.model, device=a.device,
                                        store=store, compile=a.compile, reuse_tokens=reuse))

        run(True)  # warm-up, not counted: the model loads (and compiles) once per process
        for r in range(a.repeats):
            for reuse in (True, False) if r % 2 == 0 else (False, True):
                report = run(reuse)
                row = {"reuse": reuse, "tokens": report.tokens, "elapsed_s": report.elapsed_s,
                       "tokens_per_s": report.tokens / report.elapsed_s,
                       "stages_s": report.stages_s}
                runs[reuse].append(row)
                print(json.dumps({"repeat": r, **row}), flush=True)
    on = statistics.median(x["tokens_per_s"] for x in runs[True])
    off = statistics.median(x["tokens_per_s"] for x in runs[False])
    summary = {"tokens_per_s_reuse": round(on), "tokens_per_s_no_reuse": round(off),
               "ratio": round(on / off, 3), "runs": runs}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    if a.json:
        a.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
