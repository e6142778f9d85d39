"""Stage 5: one small store interface, two engines (embedded Qdrant Edge, a Qdrant server)."""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

POINT_NAMESPACE = uuid.UUID("6f1c3a9e-2b7d-4e55-9a1f-0c8d5e4b7a21")


def point_id(book_key: str, chunk_index: int) -> str:
    """Deterministic: re-ingesting a book overwrites its points instead of adding copies."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{book_key}#{chunk_index}"))


@dataclass
class PointData:
    id: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


class StoreError(Exception):
    """The store failed mid-run (disk full, server gone): the run stops, the manifest stays true."""


class VectorStore(ABC):
    collection: str

    @abstractmethod
    def upsert(self, points: list[PointData]) -> None: ...

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
        self, vector: list[float], limit: int, must: dict[str, Any] | None = None
    ) -> list[Hit]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def payloads(self, book_key: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every point's id and payload (of one book, or all): for checks and repairs."""

    def flush(self) -> None:
        """Make everything written so far durable before the manifest says so."""

    def close(self) -> None:
        pass


class EdgeStore(VectorStore):
    """Qdrant Edge: the real engine in-process, one shard per collection under DIR/<collection>."""

    def __init__(self, root: Path, collection: str, dimension: int | None) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.collection = collection
        self.path = Path(root).expanduser() / collection
        existing = self.path / "edge_config.json"
        try:
            if existing.is_file():
                stored = _edge_dimension(existing)
                if dimension is not None and stored is not None and stored != dimension:
                    raise UsageError(
                        f"Collection {collection!r} in {self.path.parent} holds {stored}-dimensional "
                        f"vectors but the model makes {dimension}; use another --collection."
                    )
                self.shard = qe.EdgeShard.load(str(self.path), None)
            elif dimension is None:
                raise UsageError(f"There is no collection {collection!r} in {self.path.parent}.")
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                config = qe.EdgeConfig(
                    vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)
                )
                self.shard = qe.EdgeShard.create(str(self.path), config)
                self.shard.update(
                    qe.UpdateOperation.create_field_index("book_key", qe.PayloadSchemaType.Keyword)
                )
                self.shard.flush()
        except UsageError:
            raise
        except PermissionError as e:
            raise UsageError(f"The store folder {self.path} is not writable ({e.strerror}).") from e
        except Exception as e:  # Edge raises plain Exception
            if "WouldBlock" in str(e):
                raise UsageError(
                    f"The store {self.path} is open in another process; wait for it to finish."
                ) from e
            raise UsageError(f"The store {self.path} could not be opened ({e}).") from e

    def _book_filter(self, book_key: str):
        qe = self.qe
        return qe.Filter(must=[qe.FieldCondition(key="book_key", match=qe.MatchValue(book_key))])

    def _filter(self, must: dict[str, Any] | None):
        if not must:
            return None
        qe = self.qe
        conds = []
        for key, value in must.items():
            if isinstance(value, (list, tuple)):
                conds.append(qe.FieldCondition(key=key, match=qe.MatchAny(list(value))))
            else:
                conds.append(qe.FieldCondition(key=key, match=qe.MatchValue(value)))
        return qe.Filter(must=conds)

    def _do(self, op) -> None:
        try:
            self.shard.update(op)
        except Exception as e:
            raise StoreError(f"writing to {self.path} failed: {e}") from e

    def upsert(self, points: list[PointData]) -> None:
        qe = self.qe
        self._do(
            qe.UpdateOperation.upsert_points(
                [qe.Point(p.id, p.vector, p.payload) for p in points]
            )
        )

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

    def set_book_payload(self, book_key: str, payload: dict[str, Any]) -> None:
        self._do(
            self.qe.UpdateOperation.set_payload_by_filter(self._book_filter(book_key), payload)
        )

    def search(self, vector, limit, must=None) -> list[Hit]:
        qe = self.qe
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(list(vector)),
            with_payload=True,
            filter=self._filter(must),
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in self.shard.query(request)]

    def flush(self) -> None:
        try:
            self.shard.flush()
        except Exception as e:
            raise StoreError(f"flushing {self.path} failed: {e}") from e

    def close(self) -> None:
        shard, self.shard = getattr(self, "shard", None), None
        if shard is not None:
            shard.close()


def _edge_dimension(config_file: Path) -> int | None:
    try:
        vectors = json.loads(config_file.read_text())["vectors"]
        return int(vectors[""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class ServerStore(VectorStore):
    """A Qdrant server through qdrant-client (or its in-process local mode, for tests)."""

    def __init__(
        self,
        collection: str,
        dimension: int | None,
        url: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        timeout: int = 60,
    ) -> None:
        from qdrant_client import QdrantClient, models

        self.models = models
        self.collection = collection
        where = url or path
        try:
            if path is not None:
                self.client = QdrantClient(path=path)
            else:
                self.client = QdrantClient(
                    url=url, api_key=api_key, prefer_grpc=True, timeout=timeout
                )
            exists = self.client.collection_exists(collection)
        except Exception as e:
            raise UsageError(f"The Qdrant server at {where} is not reachable ({_short(e)}).") from e
        if exists:
            info = self.client.get_collection(collection)
            stored = getattr(info.config.params.vectors, "size", None)
            if dimension is not None and stored is not None and stored != dimension:
                raise UsageError(
                    f"Collection {collection!r} on {where} holds {stored}-dimensional vectors "
                    f"but the model makes {dimension}; use another --collection."
                )
        elif dimension is None:
            raise UsageError(f"There is no collection {collection!r} on {where}.")
        else:
            self.client.create_collection(
                collection,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            )
            self.client.create_payload_index(
                collection, "book_key", models.PayloadSchemaType.KEYWORD
            )

    def _book_filter(self, book_key: str):
        m = self.models
        return m.Filter(must=[m.FieldCondition(key="book_key", match=m.MatchValue(value=book_key))])

    def _filter(self, must):
        if not must:
            return None
        m = self.models
        conds = []
        for key, value in must.items():
            if isinstance(value, (list, tuple)):
                conds.append(m.FieldCondition(key=key, match=m.MatchAny(any=list(value))))
            else:
                conds.append(m.FieldCondition(key=key, match=m.MatchValue(value=value)))
        return m.Filter(must=conds)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise StoreError(f"Qdrant request failed: {_short(e)}") from e

    def upsert(self, points: list[PointData]) -> None:
        m = self.models
        structs = [m.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        self._call(self.client.upsert, self.collection, points=structs, wait=True)

    def delete_book(self, book_key: str) -> None:
        selector = self.models.FilterSelector(filter=self._book_filter(book_key))
        self._call(self.client.delete, self.collection, points_selector=selector, wait=True)

    def count_book(self, book_key: str) -> int:
        return self._call(
            self.client.count, self.collection, count_filter=self._book_filter(book_key), exact=True
        ).count

    def count(self) -> int:
        return self._call(self.client.count, self.collection, exact=True).count

    def counts_by_book(self) -> dict[str, int]:
        try:
            response = self.client.facet(
                self.collection, key="book_key", limit=max(self.count(), 1), exact=True
            )
            return {str(h.value): int(h.count) for h in response.hits}
        except Exception:  # local mode and old servers have no facets: count by scrolling
            counts: dict[str, int] = {}
            offset = None
            while True:
                records, offset = self.client.scroll(
                    self.collection, limit=1000, offset=offset, with_payload=["book_key"]
                )
                for r in records:
                    key = (r.payload or {}).get("book_key")
                    counts[key] = counts.get(key, 0) + 1
                if offset is None:
                    return counts

    def payloads(self, book_key=None):
        out, offset = [], None
        flt = self._book_filter(book_key) if book_key else None
        while True:
            records, offset = self._call(
                self.client.scroll, self.collection, scroll_filter=flt, limit=1000,
                offset=offset, with_payload=True,
            )
            out.extend((str(r.id), dict(r.payload or {})) for r in records)
            if offset is None:
                return out

    def set_book_payload(self, book_key: str, payload: dict[str, Any]) -> None:
        selector = self.models.FilterSelector(filter=self._book_filter(book_key))
        self._call(
            self.client.set_payload, self.collection, payload=payload, points=selector, wait=True
        )

    def search(self, vector, limit, must=None) -> list[Hit]:
        response = self._call(
            self.client.query_points,
            self.collection,
            query=list(vector),
            limit=limit,
            with_payload=True,
            query_filter=self._filter(must),
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def open_store(
    collection: str,
    dimension: int | None,
    store_dir: Path | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
) -> VectorStore:
    """dimension=None opens an existing collection only (search, status)."""
    if qdrant_url:
        if qdrant_url.startswith("local:"):  # qdrant-client's in-process mode, used by tests
            return ServerStore(collection, dimension, path=qdrant_url[len("local:"):])
        return ServerStore(collection, dimension, url=qdrant_url, api_key=api_key)
    return EdgeStore(Path(store_dir or "data/qdrant"), collection, dimension)
