"""The embedded engine: Qdrant Edge in-process, one shard per collection under DIR/<collection>."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.errors import RunFailure, UsageError
from alexandria.store.base import (
    CollectionMissing,
    Hit,
    PointBlock,
    PointData,
    StoreBusy,
    StoreError,
    VectorStore,
    plain_vector,
    short_error,
)
from alexandria.store.config import (
    DEFAULT,
    KEYWORD_INDEXES,
    check_same,
    read_config,
    write_config,
)


class EdgeStore(VectorStore):
    """Qdrant Edge: the real engine in-process, one shard per collection under DIR/<collection>."""

    def __init__(self, root: Path, collection: str, dimension: int | None,
                 config: dict[str, Any] | None = None) -> None:
        """config: the StoreConfig fields a user asked for (None or absent: not asked). A new
        shard is created with DEFAULT and them; an existing one keeps its own and refuses others."""
        import qdrant_edge as qe

        self.qe = qe
        self.collection = collection
        self.path = Path(root).expanduser() / collection
        existing = self.path / "edge_config.json"
        _check_free(self.path)
        try:
            if existing.is_file():
                stored = edge_dimension(existing)
                if dimension is not None and stored is not None and stored != dimension:
                    raise UsageError(
                        f"Collection {collection!r} in {self.path.parent} holds {stored}-dimensional "
                        f"vectors but the model makes {dimension}; use another --collection."
                    )
                self.config = read_config(self.path)
                check_same(self.path, self.config, config or {})
                self.shard = _load_shard(qe, self.path)
            elif dimension is None:
                raise CollectionMissing(collection, f"in {self.path.parent}")
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self.config = DEFAULT.with_options(**(config or {}))
                write_config(self.path, self.config)
                self.shard = qe.EdgeShard.create(str(self.path),
                                                 self.config.edge_config(qe, dimension))
                for name in KEYWORD_INDEXES:
                    self.shard.update(
                        qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
                self.shard.flush()
        except UsageError:
            raise
        except PermissionError as e:
            raise UsageError(f"The store folder {self.path} is not writable ({e.strerror}).") from e
        except Exception as e:  # Edge raises plain Exception
            if "WouldBlock" in str(e):
                raise StoreBusy(
                    f"The store {self.path} is open in another process; wait for it to finish."
                ) from e
            raise UsageError(f"The store {self.path} could not be opened ({e}).") from e

    def _book_filter(self, book_key: str):
        qe = self.qe
        return qe.Filter(must=[qe.FieldCondition(key="book_key", match=qe.MatchValue(book_key))])

    def _filter(self, must: dict[str, Any] | None, must_not: dict[str, Any] | None = None):
        if not must and not must_not:
            return None
        qe = self.qe

        def conds(spec: dict[str, Any] | None) -> list | None:
            out = []
            for key, value in (spec or {}).items():
                if isinstance(value, (list, tuple)):
                    out.append(qe.FieldCondition(key=key, match=qe.MatchAny(list(value))))
                else:
                    out.append(qe.FieldCondition(key=key, match=qe.MatchValue(value)))
            return out or None

        return qe.Filter(must=conds(must), must_not=conds(must_not))

    def _do(self, op) -> None:
        try:
            self.shard.update(op)
        except Exception as e:
            raise StoreError(self._why("writing to", e)) from e

    def _why(self, doing: str, e: Exception) -> str:
        text = short_error(e)
        if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text or "os error 28" in text:
            return f"the disk holding {self.path} is full (No space left on device); free some space"
        return f"{doing} {self.path} failed ({text})"

    def _check_space(self, size: int) -> None:
        """Qdrant Edge writes through memory maps: a full disk is a SIGBUS, not an error, so stop
        with a sentence while there is still room for three times what is written (the reserve
        covers a new 32 MB WAL segment)."""
        want = min_free_bytes() + 3 * size
        try:
            free = shutil.disk_usage(self.path).free
        except OSError:
            return
        if free < want:
            raise StoreError(
                f"the disk holding {self.path} is nearly full ({free / 2**20:.0f} MB free, "
                f"{want / 2**20:.0f} MB wanted to write safely); free some space")

    def upsert(self, points: list[PointData]) -> None:
        qe = self.qe
        self._check_space(sum(4 * len(p.vector) + len(json.dumps(p.payload)) for p in points))
        self._do(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, p.vector, p.payload) for p in points]
            )
        )

    def upsert_block(self, block: PointBlock) -> None:
        """upsert() without a Python float per vector element: Edge reads each row through the
        buffer protocol, in half the time of tolist() and the list, and the size check counts the
        shared payload once rather than serialising every point's."""
        qe = self.qe
        vectors = np.ascontiguousarray(block.vectors, dtype=np.float32)
        text = sum(len(f.get("text") or "") for f in block.fields)
        per_point = len(json.dumps(block.base)) + 512  # the chunk's own keys, besides its text
        self._check_space(vectors.nbytes + 4 * text + len(block.fields) * per_point)
        base = block.base
        self._do(qe.UpdateOperation.upsert_points([
            qe.Point(i, memoryview(row), {**base, **f})
            for i, f, row in zip(block.ids(), block.fields, vectors, strict=True)]))

    def delete_book(self, book_key: str) -> None:
        self._do(self.qe.UpdateOperation.delete_points_by_filter(self._book_filter(book_key)))

    def count_book(self, book_key: str) -> int:
        return self.shard.count(self.qe.CountRequest(exact=True, filter=self._book_filter(book_key)))

    def count(self) -> int:
        return self.shard.count(self.qe.CountRequest(exact=True))

    def counts_by_book(self) -> dict[str, int]:
        limit = max(self.count(), 1)
        response = self.shard.facet(self.qe.FacetRequest(key="book_key", limit=limit, exact=True))
        return {str(h.value): int(h.count) for h in response.hits}

    def payloads(self, book_key=None):
        qe = self.qe
        out, offset = [], None
        flt = self._book_filter(book_key) if book_key else None
        while True:
            records, offset = self.shard.scroll(
                qe.ScrollRequest(offset=offset, limit=1000, filter=flt, with_payload=True)
            )
            out.extend((str(r.id), dict(r.payload or {})) for r in records)
            if offset is None:
                return out

    def iter_points(self, fields=None, with_vectors=False, batch=1000):
        qe, offset = self.qe, None
        while True:
            records, offset = self.shard.scroll(qe.ScrollRequest(
                offset=offset, limit=batch, with_payload=list(fields) if fields else True,
                with_vector=with_vectors))
            yield [PointData(str(r.id), plain_vector(r.vector) if with_vectors else [],
                             dict(r.payload or {})) for r in records]
            if offset is None:
                return

    def set_book_payload(self, book_key: str, payload: dict[str, Any]) -> None:
        self._do(
            self.qe.UpdateOperation.set_payload_by_filter(self._book_filter(book_key), payload)
        )

    def search(self, vector, limit, must=None, must_not=None) -> list[Hit]:
        qe = self.qe
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(vector)),
            with_payload=True,
            filter=self._filter(must, must_not),
            params=self.config.search_params(qe),
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in self.shard.query(request)]

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {str(r.id): dict(r.payload or {}) for r in self.shard.retrieve(list(ids), True, False)}

    def store_config(self) -> dict[str, Any]:
        """The configuration this shard was created with (status reports it)."""
        return self.config.to_dict()

    def optimize(self) -> bool:
        """Build the HNSW index and quantized vectors of what was written since the last time
        (Qdrant Edge never does it in the background: unindexed points are searched by brute
        force). Blocking; True when there was something to do."""
        try:
            return bool(self.shard.optimize())
        except Exception as e:
            raise StoreError(self._why("optimising", e)) from e

    def finish(self) -> None:
        """A run completed: index what it wrote, so searches stop scanning it."""
        self.optimize()

    def flush(self) -> None:
        try:
            self.shard.flush()
        except Exception as e:
            raise StoreError(self._why("flushing", e)) from e

    def close(self) -> None:
        shard, self.shard = getattr(self, "shard", None), None
        if shard is not None:
            shard.close()


def _load_shard(qe, path: Path, wait_s: float = 10.0):
    """A killed run's store process may still be finishing its last write: wait for its lock."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return qe.EdgeShard.load(str(path), None)
        except Exception as e:
            if "WouldBlock" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def edge_dimension(config_file: Path) -> int | None:
    try:
        vectors = json.loads(config_file.read_text())["vectors"]
        return int(vectors[""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def min_free_bytes() -> int:
    """Free space an Edge store keeps in reserve (ALEXANDRIA_MIN_FREE_MB, default 64 MB)."""
    try:
        return int(float(os.environ.get("ALEXANDRIA_MIN_FREE_MB", "64")) * 2**20)
    except ValueError:
        return 64 * 2**20


def _check_free(path: Path) -> None:
    """Opening an Edge store writes (a new segment, WAL pages through memory maps): on a full disk
    that is a SIGBUS, so refuse with a sentence first."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if free < min_free_bytes():
        raise RunFailure(
            f"The disk holding {path} has only {free / 2**20:.0f} MB free; the store needs "
            f"{min_free_bytes() / 2**20:.0f} MB (ALEXANDRIA_MIN_FREE_MB) to open safely; free "
            "some space.")


