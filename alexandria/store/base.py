"""Stage 5's contract: point ids, point blocks and the one small interface both engines implement
(alexandria.store.edge, alexandria.store.server)."""

from __future__ import annotations

import hashlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from alexandria.errors import UsageError

log = logging.getLogger("alexandria")

POINT_NAMESPACE = uuid.UUID("6f1c3a9e-2b7d-4e55-9a1f-0c8d5e4b7a21")
# Points per upsert block. A book's blocks are written in row order from its first row, so what a
# kill leaves of a book is a whole number of blocks: that is how `alexandria repair` tells it
# from a finished one.
UPSERT_BATCH = 512


def point_id(book_key: str, chunk_index: int) -> str:
    """Deterministic: re-ingesting a book overwrites its points instead of adding copies."""
    return _uuid5(f"{book_key}#{chunk_index}")


def parent_point_id(book_key: str, chapter_index: int) -> str:
    """A hierarchical chapter point: deterministic, and never equal to any chunk's id."""
    return _uuid5(f"{book_key}#parent#{chapter_index}")


def _uuid5(name: str) -> str:
    """str(uuid.uuid5(POINT_NAMESPACE, name)) in half the time (the store makes one per point)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACE_BYTES = POINT_NAMESPACE.bytes


@dataclass
class PointData:
    id: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass
class PointBlock:
    """Points in columns: the payload keys the points share once, the vectors in one array.

    What the run hands the writer: building a Python float per vector element and a payload dict
    per chunk would cost the threads that feed the GPU; a block defers that to whoever writes
    the points (with the embedded store: the store process, past the GIL).
    """

    base: dict[str, Any]  # shared payload; must hold "book_key"
    fields: list[dict[str, Any]]  # each point's own payload keys: "kind", "chunk_index", ...
    vectors: Any  # float32 array, one row per point
    # each point's sparse terms (indices, values) where the book workers computed them, else None
    sparse: list[Any] | None = None

    def ids(self) -> list[str]:
        key = self.base["book_key"]
        return [parent_point_id(key, f["chapter_index"]) if f.get("kind") == "parent"
                else point_id(key, f["chunk_index"]) for f in self.fields]

    def points(self) -> list[PointData]:
        return [PointData(i, row, {**self.base, **f})
                for i, f, row in zip(self.ids(), self.fields, self.vectors.tolist(), strict=True)]


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


class StoreError(Exception):
    """The store failed mid-run (disk full, server gone): the run stops, the manifest stays true."""


class CollectionMissing(UsageError):
    """The collection asked for does not exist (and nothing was asked to create it)."""

    def __init__(self, collection: str, where: str) -> None:
        super().__init__(f"There is no collection {collection!r} {where}.")
        self.collection, self.where = collection, where

    def __reduce__(self):  # it crosses from the store process with its fields
        return type(self), (self.collection, self.where)


class StoreBusy(UsageError):
    """Another process holds the embedded store open (Qdrant Edge allows one handle per shard)."""


class VectorStore(ABC):
    collection: str

    @abstractmethod
    def upsert(self, points: list[PointData]) -> None: ...

    def upsert_block(self, block: PointBlock) -> None:
        self.upsert(block.points())

    @abstractmethod
    def delete_book(self, book_key: str) -> None: ...

    @abstractmethod
    def count_book(self, book_key: str) -> int: ...

    @abstractmethod
    def counts_by_book(self) -> dict[str, int]: ...

    @abstractmethod
    def set_book_payload(self, book_key: str, payload: dict[str, Any]) -> None: ...

    @abstractmethod
    def search(
        self, vector: list[float], limit: int, must: dict[str, Any] | None = None,
        must_not: dict[str, Any] | None = None, mode: str = "dense", text: str | None = None,
    ) -> list[Hit]:
        """mode dense: nearest to `vector`; sparse: the BM25 terms of `text`; hybrid: both,
        fused by reciprocal rank (alexandria.store.sparse)."""

    @abstractmethod
    def vectors(self) -> dict[str, Any]:
        """What the collection's points carry: {"dense": size, "sparse": [names]}."""

    @abstractmethod
    def add_sparse(self) -> int:
        """Sparse vectors for the chunks that lack them, from their stored text (no embedding)."""

    @abstractmethod
    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Payloads of these points by id (missing ids are left out): a hit's parent chapter."""

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def payloads(self, book_key: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every point's id and payload (of one book, or all): for checks and repairs."""

    @abstractmethod
    def iter_points(
        self, fields: list[str] | None = None, with_vectors: bool = False, batch: int = 1000
    ) -> Iterator[list[PointData]]:
        """Every point in pages of `batch` (only `fields` of the payload; vectors when asked):
        repair and export stream a whole collection without holding it in memory."""

    def flush(self) -> None:
        """Make everything written so far durable before the manifest says so."""

    def index_part(self) -> bool:
        """Index what was written so far, during a run (an embedded shard: the build at the end
        is left with the rest). False where nothing was added; a server indexes on its own."""
        return False

    def finish(self) -> None:
        """A run completed: undo any bulk-load setting (a server builds its index now)."""

    def close(self) -> None:
        pass


@dataclass
class RetryPolicy:
    """How long a run rides out a server that restarts or a network that drops.

    Transient failures (connection refused or reset, timeouts, HTTP 429 and 5xx, gRPC UNAVAILABLE
    and friends) are retried after base_s, 2*base_s, 4*base_s ... (at most max_s, with jitter), at
    most `retries` times per request and for at most budget_s seconds of waiting in all.
    """

    retries: int = 5
    base_s: float = 0.5
    max_s: float = 30.0
    budget_s: float = 600.0



def short_error(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def plain_vector(vector: Any) -> list[float]:
    """The unnamed dense vector of a record, whichever shape the engine hands back."""
    if isinstance(vector, dict):
        vector = vector.get("", next(iter(vector.values()), []))
    return [float(x) for x in vector] if vector is not None else []
