"""Rewrite a sentence-transformers model folder saved by sentence-transformers >= 5 (transformers 5)
so that infinity-emb's pinned sentence-transformers 3 / transformers 4 loads it: the same weights,
module class paths and tokenizer class of the older releases. For serving `alexandria bench
--synthetic-weights`'s random-weight folders with infinity on the GPU box (docs/performance.md).

    python benchmarks/st3_folder.py SRC DST
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

MODULES = {"transformer": "Transformer", "pooling": "Pooling", "normalize": "Normalize", "dense": "Dense"}


def convert(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    modules = json.loads((dst / "modules.json").read_text())
    for m in modules:
        leaf = m["type"].rsplit(".", 1)[-1].lower()
        m["type"] = f"sentence_transformers.models.{MODULES.get(leaf, m['type'].rsplit('.', 1)[-1])}"
    (dst / "modules.json").write_text(json.dumps(modules, indent=2))
    tok = dst / "tokenizer_config.json"
    config = json.loads(tok.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("backend", None)
    tok.write_text(json.dumps(config, indent=2))
    sbert = dst / "sentence_bert_config.json"
    if sbert.is_file():
        old = json.loads(sbert.read_text())
        sbert.write_text(json.dumps({"max_seq_length": old.get("max_seq_length", 512),
                                     "do_lower_case": False}, indent=2))
    pooling = next(dst.glob("*_Pooling/config.json"), None)
    if pooling is not None:
        old = json.loads(pooling.read_text())
        mode = old.get("pooling_mode", "mean")
        pooling.write_text(json.dumps({
            "word_embedding_dimension": old.get("embedding_dimension", old.get("word_embedding_dimension")),
            "pooling_mode_cls_token": mode == "cls", "pooling_mode_mean_tokens": mode == "mean",
            "pooling_mode_max_tokens": mode == "max", "pooling_mode_lasttoken": mode == "lasttoken",
            "include_prompt": old.get("include_prompt", True)}, indent=2))
    return dst


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
