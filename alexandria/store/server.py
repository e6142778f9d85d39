"""A Qdrant server through qdrant-client (or its in-process local mode, for tests)."""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

from alexandria.errors import UsageError
from alexandria.store.base import (
    CollectionMissing,
    Hit,
    PointData,
    RetryPolicy,
    StoreError,
    VectorStore,
    plain_vector,
    short_error,
)
from alexandria.store.sparse import (
    RRF_K,
    SPARSE,
    check_mode,
    no_sparse,
    prefetch_limit,
    term_weights,
    wants_sparse,
)

log = logging.getLogger("alexandria")

BUILD = "-sparse-build"  # the collection add_sparse copies through
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
        wrap_client: Callable[[Any], Any] | None = None,
    ) -> None:
        """`client`: an open client to use (its owner closes it); `wrap_client`: called with the
        client this store makes, returns the one to use (tests wrap a real client to fail on cue)."""
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
            self.client = wrap_client(client) if wrap_client else client
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
            self.sparse = SPARSE in (info.config.params.sparse_vectors or {})
            self.dimension = stored
        elif dimension is None:
            raise CollectionMissing(collection, f"on {where}")
        else:
            self._create(collection, dimension, bulk_load)
            self.bulk = bulk_load
            self.sparse = True
            self.dimension = dimension

    def _create(self, collection: str, dimension: int, bulk_load: bool) -> None:
        """The dense vector unnamed (as before sparse vectors), the sparse one with Qdrant's IDF."""
        models = self.models
        # Bulk load: a first full ingest builds no HNSW graph while it writes (m=0); finish()
        # restores the graph once, at the end, instead of rebuilding it segment by segment.
        self._call(
            self.client.create_collection,
            collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(m=0) if bulk_load else None,
        )
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
        text = short_error(e)
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

    def _vector(self, dense: Any, payload: dict[str, Any]) -> Any:
        if not self.sparse or not wants_sparse(payload):
            return dense
        terms = term_weights().document(payload.get("text") or "")
        return {"": dense, SPARSE: self.models.SparseVector(indices=list(terms.indices),
                                                            values=list(terms.values))}

    def upsert(self, points: list[PointData], collection: str | None = None) -> None:
        m = self.models
        structs = [m.PointStruct(id=p.id, vector=self._vector(p.vector, p.payload), payload=p.payload)
                   for p in points]
        self._call(self.client.upsert, collection or self.collection, points=structs, wait=True)

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
            yield [PointData(str(r.id), plain_vector(r.vector) if with_vectors else [],
                             dict(r.payload or {})) for r in records]
            if offset is None:
                return

    def set_book_payload(self, book_key: str, payload: dict[str, Any]) -> None:
        selector = self.models.FilterSelector(filter=self._book_filter(book_key))
        self._call(
            self.client.set_payload, self.collection, payload=payload, points=selector, wait=True
        )

    def search(self, vector, limit, must=None, must_not=None, mode="dense", text=None) -> list[Hit]:
        """dense: nearest vectors; sparse: BM25 terms of `text` (IDF from the collection);
        hybrid: both, fused by reciprocal rank in one query."""
        m = self.models
        mode = check_mode(mode)
        if mode != "dense" and not self.sparse:
            raise UsageError(no_sparse(self.collection, f"on {self.where}"))
        flt = self._filter(must, must_not)
        terms = term_weights().query(text or "") if mode != "dense" else None
        sparse = (m.SparseVector(indices=list(terms.indices), values=list(terms.values))
                  if terms is not None else None)
        if mode == "hybrid":
            n = prefetch_limit(limit)
            kw: dict[str, Any] = dict(
                prefetch=[m.Prefetch(query=list(vector), limit=n, filter=flt),
                          m.Prefetch(query=sparse, using=SPARSE, limit=n, filter=flt)],
                query=m.RrfQuery(rrf=m.Rrf(k=RRF_K)))
        elif mode == "sparse":
            kw = dict(query=sparse, using=SPARSE)
        else:
            kw = dict(query=list(vector))
        response = self._call(self.client.query_points, self.collection, limit=limit,
                              with_payload=True, query_filter=flt, **kw)
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in response.points]

    def vectors(self) -> dict[str, Any]:
        info = self._call(self.client.get_collection, self.collection)
        return {"dense": getattr(info.config.params.vectors, "size", None),
                "sparse": sorted((info.config.params.sparse_vectors or {}).keys())}

    def add_sparse(self, batch: int = 256) -> int:
        """Give every chunk its sparse vector from its stored text, without re-embedding; the
        number of points that got one.

        A server cannot add a vector kind to a collection, so one made before sparse vectors
        existed is copied into a build collection with both kinds, then recreated under its own
        name and copied back (the build collection is dropped): the collection keeps its name
        and its dense vectors as stored. A collection with sparse vectors gets them where
        missing (update_vectors)."""
        if self.sparse:
            return self._fill_missing(batch)
        build = f"{self.collection}{BUILD}"
        if self._call(self.client.collection_exists, build):
            self._call(self.client.delete_collection, build)
        dimension = self.vectors()["dense"]
        self._create(build, dimension, bulk_load=False)
        self.sparse = True
        filled = self._copy(self.collection, build, batch)
        self._call(self.client.delete_collection, self.collection)
        self._create(self.collection, dimension, bulk_load=False)
        self._copy(build, self.collection, batch)
        self._call(self.client.delete_collection, build)
        return filled

    def _copy(self, source: str, target: str, batch: int) -> int:
        """Every point of `source` into `target`, with its sparse vector: the chunks that got one."""
        filled, offset = 0, None
        while True:
            records, offset = self._call(self.client.scroll, source, limit=batch, offset=offset,
                                         with_payload=True, with_vectors=[""])
            points = [PointData(str(r.id), plain_vector(r.vector), dict(r.payload or {}))
                      for r in records]
            if points:
                self.upsert(points, collection=target)
                filled += sum(wants_sparse(p.payload) for p in points)
            if offset is None:
                return filled

    def _fill_missing(self, batch: int) -> int:
        m, filled, offset = self.models, 0, None
        while True:
            records, offset = self._call(self.client.scroll, self.collection, limit=batch,
                                         offset=offset, with_payload=True, with_vectors=[SPARSE])
            todo = []
            for r in records:
                payload = dict(r.payload or {})
                has = isinstance(r.vector, dict) and SPARSE in r.vector
                if not has and wants_sparse(payload):
                    terms = term_weights().document(payload.get("text") or "")
                    todo.append(m.PointVectors(id=r.id, vector={SPARSE: m.SparseVector(
                        indices=list(terms.indices), values=list(terms.values))}))
            if todo:
                self._call(self.client.update_vectors, self.collection, points=todo, wait=True)
                filled += len(todo)
            if offset is None:
                return filled

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


