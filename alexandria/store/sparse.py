"""Sparse term vectors beside the dense ones: BM25-style weights for every language, computed the
same way for Qdrant Edge and for a server, so a collection copied between them still matches.

The terms come from Qdrant's own BM25 model (qdrant-edge-py's `Bm25`, in Rust) with its
multilingual tokenizer: Unicode word boundaries for alphabetic scripts, dictionary segmentation
for Chinese, Japanese, Korean and Thai (a chunk of Japanese becomes words, not characters or
[UNK]). It is independent of the embedding model on purpose: minilm's WordPiece turns Japanese
into [UNK] and cuts Catalan into meaningless pieces, which would make the lexical side fail where
the dense side already does. No stemmer and no stop words: a library mixes languages, a query's
language is unknown, and the IDF modifier (computed by Qdrant over the collection) already
weighs common words down. Documents get saturated term frequencies (k=1.2, b=0.75), queries one
per distinct term; Qdrant multiplies in the IDF at search time, so adding books never changes
the stored vectors.
"""

from __future__ import annotations

import threading
from typing import Any

SPARSE = "bm25"  # the sparse vector's name in a collection; the dense vector stays unnamed ("")
MODES = ("dense", "sparse", "hybrid")
RRF_K = 60  # the reciprocal-rank constant of the RRF paper (Cormack et al. 2009)
# Candidates each side hands the fusion: a right chunk in either top 50 can still reach the top k.
PREFETCH_MIN = 50


class TermWeights:
    """Text to (indices, values) of a sparse vector: BM25 term frequencies, or a query's terms."""

    def __init__(self) -> None:
        import qdrant_edge as qe

        config = qe.Bm25Config(tokenizer=qe.TokenizerType.Multilingual, lowercase=True,
                               stemmer=qe.DisabledStemmer(), stopwords=qe.StopwordsSet(custom=set()))
        self._bm25 = qe.Bm25(config)

    def document(self, text: str) -> Any:
        """A qdrant_edge.SparseVector (.indices, .values); empty for a text without words."""
        return self._bm25.embed_document(text or "")

    def query(self, text: str) -> Any:
        return self._bm25.embed_query(text or "")


_SHARED: TermWeights | None = None
_LOCK = threading.Lock()


def term_weights() -> TermWeights:
    """One model per process (it holds the segmentation dictionaries)."""
    global _SHARED
    with _LOCK:
        if _SHARED is None:
            _SHARED = TermWeights()
        return _SHARED


def check_mode(mode: str) -> str:
    from alexandria.errors import UsageError

    mode = (mode or "dense").strip().lower()
    if mode not in MODES:
        raise UsageError(f"--mode must be dense, sparse or hybrid, not {mode!r}.")
    return mode


def no_sparse(collection: str, where: str) -> str:
    return (f"Collection {collection!r} {where} has no sparse vectors (it was made before they "
            "existed); run `alexandria ingest --add-sparse` with the same options to add them, "
            "or search with --mode dense.")


def prefetch_limit(limit: int) -> int:
    return max(PREFETCH_MIN, 4 * limit)


def wants_sparse(fields: dict[str, Any]) -> bool:
    """Chunks carry a sparse vector; a hierarchical chapter point (never ranked alone) does not."""
    return fields.get("kind") != "parent"
