"""How a book is chunked: the settings every chunker reads and each manifest row fingerprints.

Plain data with no tokenizer or numpy behind it, so that the CLI and the store's Location can
name a chunking without loading either.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

STRATEGIES = ("structural", "semantic", "hierarchical")
# Semantic: break where neighbouring sentences are less similar than this. None ("auto"): the
# book's own 25th percentile of neighbour similarities, since each model has its own scale
# (minilm's neighbours sit near 0.4, bge-m3's far higher), so one number cannot suit them all.
DEFAULT_THRESHOLD: float | None = None
AUTO_PERCENTILE = 25
DEFAULT_MIN_TOKENS = 64  # semantic: no topic break before a chunk has this many tokens


@dataclass(frozen=True)
class ChunkSettings:
    chunk_tokens: int = 512
    overlap: int = 64
    strategy: str = "structural"
    threshold: float | None = DEFAULT_THRESHOLD
    min_tokens: int = DEFAULT_MIN_TOKENS

    def fingerprint(self) -> str:
        """Stored per book: a change of settings means the book's chunks are stale.

        Semantic-only fields count only for the semantic strategy, so structural fingerprints
        written before those fields existed still match (no needless re-ingest).
        """
        d = asdict(self)
        if self.strategy != "semantic":
            d.pop("threshold")
            d.pop("min_tokens")
        return json.dumps(d, sort_keys=True)
