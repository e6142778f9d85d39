"""Stage 5: one small store interface, two engines (embedded Qdrant Edge, a Qdrant server)."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import shutil
import time
import uuid
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError

log = logging.getLogger("alexandria")

POINT_NAMESPACE = uuid.UUID("6f1c3a9e-2b7d-4e55-9a1f-0c8d5e4b7a21")


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

    What the run hands the writer: building 1024 Python floats and a 21-key dict per chunk took
    the main thread (which feeds the GPU) ~50 us a chunk; a block defers that to whoever
    writes the points (with the embedded store: the store process, past the GIL).
    """

    base: dict[str, Any]  # shared payload; must hold "book_key"
    fields: list[dict[str, Any]]  # each point's own payload keys: "kind", "chunk_index", ...
    vectors: Any  # float32 array, one row per point

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
        must_not: dict[str, Any] | None = None,
    ) -> list[Hit]: ...

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

    def finish(self) -> None:
        """A run completed: undo any bulk-load setting (a server builds its index now)."""

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
        _check_free(self.path)
        try:
            if existing.is_file():
                stored = _edge_dimension(existing)
                if dimension is not None and stored is not None and stored != dimension:
                    raise UsageError(
                        f"Collection {collection!r} in {self.path.parent} holds {stored}-dimensional "
                        f"vectors but the model makes {dimension}; use another --collection."
                    )
                self.shard = _load_shard(qe, self.path)
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
            if write_hook is not None:
                write_hook(self.path)
            self.shard.update(op)
        except Exception as e:
            raise StoreError(self._why("writing to", e)) from e

    def _why(self, doing: str, e: Exception) -> str:
        text = _short(e)
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
        buffer protocol (~35 us for 1024 dimensions, against ~70 us for tolist() and the list),
        and the size check counts the shared payload once (json.dumps per point took ~11 us)."""
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
            yield [PointData(str(r.id), _plain_vector(r.vector) if with_vectors else [],
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
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in self.shard.query(request)]

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {str(r.id): dict(r.payload or {}) for r in self.shard.retrieve(list(ids), True, False)}

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


def _plain_vector(vector: Any) -> list[float]:
    """The unnamed dense vector of a record, whichever shape the engine hands back."""
    if isinstance(vector, dict):
        vector = vector.get("", next(iter(vector.values()), []))
    return [float(x) for x in vector] if vector is not None else []


def _edge_dimension(config_file: Path) -> int | None:
    try:
        vectors = json.loads(config_file.read_text())["vectors"]
        return int(vectors[""]["size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
        from .errors import RunFailure

        raise RunFailure(
            f"The disk holding {path} has only {free / 2**20:.0f} MB free; the store needs "
            f"{min_free_bytes() / 2**20:.0f} MB (ALEXANDRIA_MIN_FREE_MB) to open safely; free "
            "some space.")


# Fault injection for tests: called with the store path before every Edge write, it may raise
# (OSError(ENOSPC) where no small file system can be mounted to fill for real).
write_hook: Callable[[Path], None] | None = None

# Fault injection for tests: when set, every client a ServerStore makes is passed through it
# (a test wraps a real local-mode client so that its first calls fail the way a server does).
client_hook: Callable[[Any], Any] | None = None

DEFAULT_HNSW_M = 16  # Qdrant's default graph degree, restored after a bulk load


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
        prefer_grpc: bool = True,
        retry: RetryPolicy | None = None,
        bulk_load: bool = False,
        client: Any = None,
    ) -> None:
        from qdrant_client import models

        self.models = models
        self.collection = collection
        self.retry = retry or RetryPolicy()
        self._secret = api_key or None
        self._waited = 0.0
        self.retries_used = 0
        self.bulk = False
        self.where = where = _redact_url(url) if url else (path or "local mode")
        self._owns_client = client is None  # an injected client is its owner's to close
        try:
            if client is None:
                client = self._make_client(url, api_key, path, timeout, prefer_grpc)
            self.client = client_hook(client) if client_hook else client
            exists = self._call(self.client.collection_exists, collection)
        except UsageError:
            raise
        except StoreError as e:
            raise UsageError(f"The Qdrant server at {where} is not reachable: {e}.") from None
        except Exception as e:
            raise UsageError(
                f"The Qdrant server at {where} is not reachable ({self._short(e)})."
            ) from None
        if exists:
            info = self._call(self.client.get_collection, collection)
            stored = getattr(info.config.params.vectors, "size", None)
            if dimension is not None and stored is not None and stored != dimension:
                raise UsageError(
                    f"Collection {collection!r} on {where} holds {stored}-dimensional vectors "
                    f"but the model makes {dimension}; use another --collection."
                )
            hnsw = getattr(info.config, "hnsw_config", None)
            self.bulk = getattr(hnsw, "m", None) == 0  # an earlier bulk load never finished
        elif dimension is None:
            raise UsageError(f"There is no collection {collection!r} on {where}.")
        else:
            # Bulk load: a first full ingest builds no HNSW graph while it writes (m=0); finish()
            # restores the graph once, at the end, instead of rebuilding it segment by segment.
            self._call(
                self.client.create_collection,
                collection,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                hnsw_config=models.HnswConfigDiff(m=0) if bulk_load else None,
            )
            self.bulk = bulk_load
            with warnings.catch_warnings():  # local mode says payload indexes do nothing there
                warnings.filterwarnings("ignore", message="Payload indexes have no effect")
                self._call(
                    self.client.create_payload_index, collection, "book_key",
                    models.PayloadSchemaType.KEYWORD,
                )

    @staticmethod
    def _make_client(url, api_key, path, timeout, prefer_grpc):
        from qdrant_client import QdrantClient

        if path is not None:
            return QdrantClient(path=path)
        return QdrantClient(url=url, api_key=api_key, prefer_grpc=prefer_grpc, timeout=timeout)

    def _short(self, e: BaseException) -> str:
        """One line of an error, with the API key blanked wherever it might have been echoed."""
        text = _short(e)
        return text.replace(self._secret, "***") if self._secret else text

    def finish(self) -> None:
        """End of a complete run: a bulk-loaded collection gets its HNSW graph built now."""
        if self.bulk:
            self._call(self.client.update_collection, self.collection,
                       hnsw_config=self.models.HnswConfigDiff(m=DEFAULT_HNSW_M))
            self.bulk = False

    def _book_filter(self, book_key: str):
        m = self.models
        return m.Filter(must=[m.FieldCondition(key="book_key", match=m.MatchValue(value=book_key))])

    def _filter(self, must, must_not=None):
        if not must and not must_not:
            return None
        m = self.models

        def conds(spec):
            out = []
            for key, value in (spec or {}).items():
                if isinstance(value, (list, tuple)):
                    out.append(m.FieldCondition(key=key, match=m.MatchAny(any=list(value))))
                else:
                    out.append(m.FieldCondition(key=key, match=m.MatchValue(value=value)))
            return out or None

        return m.Filter(must=conds(must), must_not=conds(must_not))

    def _call(self, fn, *args, **kwargs):
        """fn(*args) with retries on transient failures; then one sentence, the key never in it."""
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                policy = self.retry
                delay = min(policy.max_s, policy.base_s * 2 ** attempt)
                delay *= random.uniform(0.8, 1.2)
                if (not is_transient(e) or attempt >= policy.retries
                        or self._waited + delay > policy.budget_s):
                    why = "" if not is_transient(e) else (
                        f" after {attempt + 1} attempts and {self._waited:.0f}s of retrying")
                    raise StoreError(
                        f"Qdrant request {getattr(fn, '__name__', 'call')} on {self.where} failed"
                        f"{why} ({self._short(e)})") from None
                attempt += 1
                self.retries_used += 1
                self._waited += delay
                log.warning("Qdrant %s failed (%s); retry %d of %d in %.1fs",
                            getattr(fn, "__name__", "call"), self._short(e), attempt,
                            policy.retries, delay)
                time.sleep(delay)

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

    def iter_points(self, fields=None, with_vectors=False, batch=1000):
        offset = None
        while True:
            records, offset = self._call(
                self.client.scroll, self.collection, limit=batch, offset=offset,
                with_payload=list(fields) if fields else True, with_vectors=with_vectors,
            )
            yield [PointData(str(r.id), _plain_vector(r.vector) if with_vectors else [],
                             dict(r.payload or {})) for r in records]
            if offset is None:
                return

    def set_book_payload(self, book_key: str, payload: dict[str, Any]) -> None:
        selector = self.models.FilterSelector(filter=self._book_filter(book_key))
        self._call(
            self.client.set_payload, self.collection, payload=payload, points=selector, wait=True
        )

    def search(self, vector, limit, must=None, must_not=None) -> list[Hit]:
        response = self._call(
            self.client.query_points,
            self.collection,
            query=list(vector),
            limit=limit,
            with_payload=True,
            query_filter=self._filter(must, must_not),
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        records = self._call(self.client.retrieve, self.collection, ids=list(ids), with_payload=True)
        return {str(r.id): dict(r.payload or {}) for r in records}

    def close(self) -> None:
        if not getattr(self, "_owns_client", True):
            return
        try:
            self.client.close()
        except Exception:
            pass


_TRANSIENT_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL"}


def is_transient(e: BaseException) -> bool:
    """Worth retrying: the server or the network hiccuped, the request itself was fine."""
    status = getattr(e, "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    try:
        import httpx

        if isinstance(e, (httpx.TransportError,)):
            return True
    except ImportError:  # pragma: no cover - qdrant-client depends on httpx
        pass
    code = getattr(e, "code", None)
    if callable(code):  # grpc.RpcError
        try:
            return getattr(code(), "name", "") in _TRANSIENT_GRPC
        except Exception:
            return False
    source = getattr(e, "source", None)  # qdrant_client's ResponseHandlingException wraps the cause
    if isinstance(source, BaseException) and source is not e:
        return is_transient(source)
    return False


def _redact_url(url: str) -> str:
    """A URL fit for messages and logs: user:password@ removed."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def open_store(
    collection: str,
    dimension: int | None,
    store_dir: Path | None = None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    **server: Any,
) -> VectorStore:
    """dimension=None opens an existing collection only (search, status).

    `server` goes to ServerStore: timeout, prefer_grpc, retry (RetryPolicy), bulk_load.
    """
    if qdrant_url:
        if qdrant_url.startswith("local:"):  # qdrant-client's in-process mode, used by tests
            return ServerStore(collection, dimension, path=qdrant_url[len("local:"):], **server)
        return ServerStore(collection, dimension, url=qdrant_url, api_key=api_key, **server)
    return EdgeStore(Path(store_dir or "data/qdrant"), collection, dimension)
