"""`alexandria bench` and the pieces the measurement scripts in benchmarks/ share with it."""

from alexandria.tools.bench.corpus import (
    copy_epub,
    corpus_books,
    corpus_sample,
    corpus_texts,
    dry_pass,
    make_copies,
)
from alexandria.tools.bench.gpu import machine_name, matmul_peak_tflops, sync
from alexandria.tools.bench.synthetic import (
    SYNTHETIC,
    build_synthetic_model,
    parameter_counts,
    synthetic_alias,
    train_tokenizer,
)

__all__ = ["SYNTHETIC", "build_synthetic_model", "copy_epub", "corpus_books", "corpus_sample",
           "corpus_texts", "dry_pass", "machine_name", "make_copies", "matmul_peak_tflops",
           "parameter_counts", "sync", "synthetic_alias", "train_tokenizer"]
