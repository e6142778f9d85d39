"""How an embedded collection stores and indexes its vectors, chosen when it is created.

The choice is written beside the shard (alexandria_store.json) and read back whenever the shard is
opened: an existing store keeps its own configuration, and options that ask for another one are
refused with a sentence rather than applied halfway (Qdrant Edge would rebuild every segment on the
next optimisation). docs/performance.md has the measurements the defaults come from.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError

CONFIG_NAME = "alexandria_store.json"
QUANTIZATIONS = ("none", "int8", "binary")
# Candidates fetched per result before rescoring with the original vectors: binary codes lose far
# more than int8 ones, so they need more of them to keep recall@10 at or above 0.95.
OVERSAMPLING = {"none": 1.0, "int8": 2.0, "binary": 4.0}


@dataclass(frozen=True)
class StoreConfig:
    """quantization: none, int8 (scalar, rescored with the originals) or binary (oversampled and
    rescored); on_disk: the original vectors are memory-mapped from disk instead of held in RAM
    (the quantized copy stays in RAM); hnsw_m / hnsw_ef_construct: the graph's edges per node and
    build-time candidates; hnsw_ef: search-time candidates (None: Qdrant's default, which kept
    recall@10 under 0.95 where 256 did not: docs/performance.md)."""

    quantization: str = "int8"
    on_disk: bool = True
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef: int | None = 256
    oversampling: float | None = None  # None: OVERSAMPLING[quantization]
    # The optimiser's largest merge result (MB; None: Qdrant's default, from the CPU count). A
    # merge rebuilds the HNSW graph of every segment it takes in; whether a cap pays is still to be
    # measured at size (docs/performance.md), so new collections keep Qdrant's default.
    max_segment_mb: int | None = None
    # The segment count the optimiser keeps (None: Qdrant's own, from the CPU count; see
    # segment_target): past it, an optimisation merges segments and re-indexes what they held.
    segments: int | None = None
    # Segments smaller than this (KB of vectors; None: Qdrant's default) are searched by brute force
    # and never indexed.
    index_threshold_kb: int | None = None
    # A sparse (BM25) vector beside the dense one in each chunk's point, for sparse and hybrid
    # search. Computed from the chunk text in the process that owns the shard; --no-sparse leaves
    # that work out where it would bound a fast GPU run (docs/performance.md).
    sparse: bool = True

    def __post_init__(self) -> None:
        if self.quantization not in QUANTIZATIONS:
            raise UsageError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, "
                             f"not {self.quantization!r}.")
        if not 4 <= self.hnsw_m <= 128:
            raise UsageError(f"--hnsw-m must be between 4 and 128, not {self.hnsw_m}.")
        if self.hnsw_ef is not None and self.hnsw_ef < 1:
            raise UsageError(f"--hnsw-ef must be positive, not {self.hnsw_ef}.")

    @property
    def rescore_oversampling(self) -> float:
        return self.oversampling if self.oversampling is not None else OVERSAMPLING[self.quantization]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_options(self, **options: Any) -> StoreConfig:
        """This configuration with the options a user gave (None: not given)."""
        return replace(self, **{k: v for k, v in options.items() if v is not None})

    def edge_config(self, qe: Any, dimension: int, sparse_vectors: dict[str, Any] | None = None,
                    index_threads: int = 0) -> Any:
        """The qdrant_edge.EdgeConfig that creates a shard with this configuration (and these
        sparse vectors beside the dense one); index_threads: the HNSW build's threads (0: Qdrant's
        own choice), a property of the machine rather than of the store."""
        quant = None
        if self.quantization == "int8":
            quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
        elif self.quantization == "binary":
            quant = qe.BinaryQuantizationConfig(always_ram=True)
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine,
                                        on_disk=self.on_disk, quantization_config=quant),
            hnsw_config=qe.HnswIndexConfig(m=self.hnsw_m, ef_construct=self.hnsw_ef_construct,
                                           full_scan_threshold=10_000,
                                           max_indexing_threads=index_threads),
            sparse_vectors=sparse_vectors,
            optimizers=self._optimizers(qe),
        )

    def _optimizers(self, qe: Any) -> Any:
        if self.max_segment_mb is None and self.segments is None and self.index_threshold_kb is None:
            return None  # as shards were made before these could be set
        return qe.EdgeOptimizersConfig(
            max_segment_size=None if self.max_segment_mb is None else self.max_segment_mb * 1024,
            default_segment_number=self.segments, indexing_threshold=self.index_threshold_kb)

    def search_params(self, qe: Any, exact: bool = False) -> Any:
        """exact=True: the brute-force answer over the original vectors (recall's ground truth)."""
        if exact:
            ignore = qe.QuantizationSearchParams(ignore=True)
            return qe.SearchParams(exact=True, quantization=ignore)
        quant = None
        if self.quantization != "none":
            quant = qe.QuantizationSearchParams(rescore=True, oversampling=self.rescore_oversampling)
        return qe.SearchParams(hnsw_ef=self.hnsw_ef, quantization=quant)


DEFAULT = StoreConfig()
# Payload fields searches filter on (alexandria.query.search) and status counts by: without an
# index, a filter reads every point's payload (an author filter took 0.3 s at 3,000 points).
KEYWORD_INDEXES = ("book_key", "authors", "tags", "language")
# A shard made before configurations were recorded: Qdrant Edge's defaults, as it was created.
LEGACY = StoreConfig(quantization="none", on_disk=False, hnsw_ef=None, sparse=False)


def index_threads() -> int:
    """Threads for an HNSW build on this machine: ALEXANDRIA_INDEX_THREADS, else every usable core
    up to 16 (Qdrant's own choice stops at 8, leaving half of a 16-core box idle at the end of a
    run; above 16 its authors warn of disconnected graphs)."""
    value = os.environ.get("ALEXANDRIA_INDEX_THREADS", "").strip()
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            raise UsageError(f"ALEXANDRIA_INDEX_THREADS must be a whole number, not {value!r}.") from None
    return min(usable_cores(), 16)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def segment_target(config: StoreConfig) -> int:
    """The segment count past which Qdrant's optimiser merges: the configured one, else Qdrant's
    own choice (its get_number_segments: the CPU count, at least 2 and at most 8)."""
    return config.segments or min(max(usable_cores(), 2), 8)


def index_every() -> int:
    """Points written between index builds during a run (ALEXANDRIA_INDEX_EVERY; 0: only at the
    end): the build at the end of a run then has only the rest to index."""
    value = os.environ.get("ALEXANDRIA_INDEX_EVERY", "").strip()
    if not value:
        return 10_000
    try:
        return max(0, int(value))
    except ValueError:
        raise UsageError(f"ALEXANDRIA_INDEX_EVERY must be a whole number, not {value!r}.") from None


def read_config(shard: Path) -> StoreConfig:
    """The configuration a shard was created with (LEGACY when it predates the record)."""
    try:
        return StoreConfig.from_dict(json.loads((shard / CONFIG_NAME).read_text()))
    except FileNotFoundError:
        return LEGACY
    except (OSError, ValueError, TypeError) as e:
        raise UsageError(f"The store configuration {shard / CONFIG_NAME} cannot be read ({e}).") from e


def write_config(shard: Path, config: StoreConfig) -> None:
    tmp = shard / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    os.replace(tmp, shard / CONFIG_NAME)


def check_same(shard: Path, stored: StoreConfig, asked: dict[str, Any]) -> None:
    """Options given for an existing store must match it: it is never silently reconfigured."""
    differ = {k: (getattr(stored, k), v) for k, v in asked.items()
              if v is not None and getattr(stored, k) != v}
    if differ:
        what = ", ".join(f"{k}={have!r} (asked {want!r})" for k, (have, want) in differ.items())
        raise UsageError(f"The store {shard} was created with {what}; it keeps its configuration. "
                         "Leave those options out, or use another --collection.")
