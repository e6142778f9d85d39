"""`alexandria distill`: a static model (model2vec) made from a sentence-transformers model.

model2vec embeds every token of the vocabulary once with the model and keeps the (PCA-reduced)
vectors: embedding a text is then a lookup and an average. EmbeddingGemma has 262,144 tokens,
one forward each: about an hour on 2 cores (docs/performance.md). So the vocabulary is capped: the
`vocabulary_size` tokens most frequent in a library's books (`vocabulary_from`), or without one
the first `vocabulary_size` of the model's vocabulary (SentencePiece orders it by frequency in its
training data). The tokenizer is made greedy (longest match) before the cut, so every kept token
stays reachable; text outside the kept tokens falls back to shorter pieces.

The result is a sentence-transformers folder (a StaticEmbedding module): `--model DIR` ingests
and searches with it through the usual pipeline.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alexandria.errors import UsageError

log = logging.getLogger("alexandria")

DEFAULT_VOCABULARY = 16_000


@dataclass
class DistillOptions:
    out: Path
    model: str = "embeddinggemma"
    dims: int = 256  # PCA dimensions of the static vectors
    vocabulary_from: Path | None = None  # a folder of EPUBs whose most frequent tokens are kept
    vocabulary_size: int = DEFAULT_VOCABULARY


@dataclass
class DistillReport:
    out: Path
    model: str
    tokens: int  # kept in the static model's vocabulary
    dims: int
    source: str  # where the vocabulary came from
    seconds: float

    def sentence(self) -> str:
        return (f"Distilled {self.model} into {self.out}: {self.tokens} tokens ({self.source}), "
                f"{self.dims} dimensions, in {self.seconds:.0f}s. Use it with --model {self.out}.")


def kept_ids(tokenizer, size: int, texts: list[str] | None) -> list[int]:
    """The token ids to keep: the special tokens, then the most frequent in `texts` (or the
    vocabulary's first ids), `size` in all."""
    special = set(tokenizer.all_special_ids)
    if texts:
        counts: Counter[int] = Counter()
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            counts.update(ids)
        ranked = [i for i, _ in counts.most_common()]
    else:
        ranked = list(range(len(tokenizer)))
    keep = list(special)
    keep += [i for i in ranked if i not in special][:max(0, size - len(keep))]
    return sorted(keep)


def distill(opts: DistillOptions, progress: Callable[[str], None] | None = None) -> DistillReport:
    try:
        from model2vec.distill import distill_from_model
        from skeletoken import TokenizerModel
        from skeletoken.external.transformers import reshape_embeddings
    except ImportError as e:
        raise UsageError("alexandria distill needs model2vec and skeletoken: pip install "
                         "'alexandria[cpu]'.") from e
    import torch
    from transformers import AutoModel, AutoTokenizer

    from alexandria.embedding.hub import local_folder
    from alexandria.embedding.models import resolve_model
    from alexandria.embedding.tokenizer import load_tokenizer_json, quiet_libraries

    say = progress or (lambda _m: None)
    if opts.vocabulary_size < 100:
        raise UsageError("--vocabulary-size must be at least 100 tokens.")
    if opts.dims < 2:
        raise UsageError("--dims must be at least 2.")
    out = Path(opts.out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty: give a new folder.")
    started = time.perf_counter()
    quiet_libraries()
    spec = resolve_model(opts.model)
    folder = local_folder(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    texts = None
    source = f"the first {opts.vocabulary_size} of the model's {len(tokenizer)} tokens"
    if opts.vocabulary_from is not None:
        from alexandria.tools.bench.corpus import corpus_books, corpus_texts

        books = corpus_books(opts.vocabulary_from)
        say(f"reading {len(books)} books of {opts.vocabulary_from} for the vocabulary …")
        texts = corpus_texts(books)
        source = f"the most frequent in {len(books)} books of {opts.vocabulary_from}"
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32)
    # Tokens past the embedding matrix (Gemma's image placeholder) have no vector to distill.
    rows = model.get_input_embeddings().num_embeddings
    keep = {i for i in kept_ids(tokenizer, opts.vocabulary_size, texts) if i < rows}
    say(f"keeping {len(keep)} of {len(tokenizer)} tokens ({source})")
    greedy = TokenizerModel.from_transformers_tokenizer(tokenizer).make_model_greedy()
    drop = [token for token, i in greedy.vocabulary.items() if i not in keep]
    pruned = greedy.remove_tokens_from_vocabulary(drop)
    model = reshape_embeddings(model, pruned)
    dims = min(opts.dims, len(keep), model.config.hidden_size)
    say(f"embedding {pruned.vocabulary_size} tokens with {spec.name} (the slow part) …")
    static = distill_from_model(model, pruned.to_transformers(), device="cpu", pca_dims=dims,
                                quantize_to="float32")
    _save(static, out, load_tokenizer_json(spec)[1])
    return DistillReport(out, spec.name, pruned.vocabulary_size, dims, source,
                         time.perf_counter() - started)


def _save(static, out: Path, max_seq_length: int) -> None:
    """As a sentence-transformers folder, whole or not at all."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as tmp:
        raw = Path(tmp) / "model2vec"
        static.save_pretrained(str(raw))
        made = Path(tmp) / "model"
        SentenceTransformer(modules=[StaticEmbedding.from_model2vec(str(raw))]).save(str(made))
        # The teacher's window: what the chunker caps chunks at (a static model has none).
        (made / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
        if out.exists():
            out.rmdir()
        shutil.move(str(made), str(out))
