"""Query side: the same model and collection as the ingest, so vectors are comparable."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexandria.errors import UsageError
from alexandria.store.base import CollectionMissing, Hit, StoreError, VectorStore
from alexandria.store.catalog import StoredCollection
from alexandria.store.location import DEFAULT_STORE, Location
from alexandria.store.sparse import check_mode, prefetch_limit


@dataclass
class SearchOptions:
    model: str | None = None  # None: the model of the store's collection (its only one)
    device: str = "auto"
    dtype: str = "auto"
    store: Path = DEFAULT_STORE
    qdrant_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or reported
    collection: str | None = None
    top_k: int = 5
    author: str | None = None
    tag: str | None = None
    language: str | None = None
    series: str | None = None
    book_key: str | None = None
    chunker: str | None = None  # picks the collection, as at ingest; None: any
    with_parent: bool = False  # hierarchical: attach each hit's chapter (its parent point)
    # dense, sparse (BM25 terms) or hybrid (both, fused by rank); None: hybrid where the collection
    # has sparse vectors, dense where it was made before them (docs/performance.md: the eval)
    mode: str | None = None
    manifest: Path | None = None
    # Embedding servers (alexandria.embedding.remote): a machine with no model weights can search
    embed_urls: tuple[str, ...] = ()
    embed_api: str = "auto"
    embed_key: str | None = field(default=None, repr=False)  # never printed, logged or reported
    embed_timeout: float = 60.0
    # The model variant (--backend, --quantize, --dims): None picks nothing, and the collection's
    # own is used whatever is given (a mismatch is one sentence).
    backend: str | None = None
    quantize: str | None = None
    dims: int | None = None

    def location(self) -> Location:
        """The existing collection these options mean (never created: missing is a UsageError)."""
        return self.find()[0]

    def find(self) -> tuple[Location, StoredCollection]:
        asked = (self.backend, self.quantize, self.dims) if (
            self.backend or self.quantize or self.dims) else None
        return Location.find(self.model, chunker=self.chunker, store=self.store,
                             url=self.qdrant_url, api_key=self.api_key,
                             collection=self.collection, manifest=self.manifest, variant=asked)


@dataclass
class Result:
    score: float
    title: str
    authors: list[str]
    chapter: str
    text: str
    book_key: str
    chunk_index: int | None
    payload: dict[str, Any]
    parent: dict[str, Any] | None = None  # the chapter around a hierarchical hit (--with-parent)
    mode: str = "dense"  # the search that scored it: only dense scores are cosines
    # The hit's cosine to the query where known (dense: its score; hybrid: from the dense
    # prefetch): what says a match is weak, whatever the mode's own score scale.
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "score": self.score, "title": self.title, "authors": self.authors,
            "chapter": self.chapter, "text": self.text, "book_key": self.book_key,
            "chunk_index": self.chunk_index, "calibre_id": self.payload.get("calibre_id"),
            "chapter_index": self.payload.get("chapter_index"),
            "source_path": self.payload.get("source_path"),
        }
        if self.payload.get("parent_id"):
            out["parent_id"] = self.payload["parent_id"]
        if self.parent is not None:
            out["parent"] = {"chapter": self.parent.get("chapter"), "text": self.parent.get("text")}
        return out


def search(query: str, opts: SearchOptions | None = None) -> list[Result]:
    """The passages nearest in meaning to `query`, best first, from the collection `opts` names."""
    opts = opts or SearchOptions()
    if not query.strip():
        raise UsageError("The query is empty: give the words to search for.")
    if opts.mode:
        check_mode(opts.mode)  # a mistyped mode is one sentence before anything loads
    try:
        searcher = Searcher(opts)
    except UsageError:
        if ingest_running(opts):  # it is creating the collection: nothing is stored yet
            return []
        raise
    try:
        return searcher.search(query)
    finally:
        searcher.close()


class Searcher:
    """One model and one store client for many searches: `search()` makes one per call, `alexandria
    serve` one for its lifetime (the model loads once; the store's owner serves every search, so a
    book an ingest finished is found at once).

    The model, store and collection come from `opts`; each call may bring its own SearchOptions
    for top_k, the filters and with_parent. Thread-safe: the store client serializes its calls.
    """

    def __init__(self, opts: SearchOptions) -> None:
        from alexandria.embedding.embedder import get_embedder

        self.opts = opts
        self.where, stored = opts.find()  # an existing collection only: never created
        self._remote = None
        if opts.embed_urls:  # embedding servers: a machine with no model weights can search
            from alexandria.embedding.remote import connect

            self._remote = self.embedder = connect(
                self.where.spec, opts.embed_urls, opts.embed_api, opts.embed_key,
                opts.embed_timeout, retry_budget_s=opts.embed_timeout)
        else:
            self.embedder = get_embedder(self.where.spec, opts.device,
                                         query_dtype(opts.dtype, stored.dtype))
        if stored.dimension is not None and stored.dimension != self.embedder.dimension:
            raise UsageError(f"Collection {self.where.collection!r} holds {stored.dimension}-"
                             f"dimensional vectors but {self.where.spec.name} makes "
                             f"{self.embedder.dimension}; give the --model of its ingest.")
        self._store: VectorStore | None = None
        self._opening = threading.Lock()

    def embed(self, query: str) -> list[float]:
        return self.embedder.encode_query(query)

    def search(self, query: str, opts: SearchOptions | None = None,
               timings: dict[str, float] | None = None) -> list[Result]:
        """`timings`, when given, gets embed_s and store_s: where this search's time went."""
        opts = opts or self.opts
        if not query.strip():
            raise UsageError("The query is empty: give the words to search for.")
        started = time.perf_counter()
        must = {k: v for k, v in {
            "authors": opts.author, "tags": opts.tag, "language": opts.language,
            "series": opts.series, "book_key": opts.book_key,
        }.items() if v}
        mode = check_mode(opts.mode) if opts.mode else None
        try:
            if mode is None:  # hybrid where the collection has sparse vectors, else dense
                sparse = self._with_store(lambda store: store.vectors())["sparse"]
                mode = "hybrid" if sparse else "dense"
            vector = self.embed(query) if mode != "sparse" else []
            embedded = time.perf_counter()

            def run(store: VectorStore) -> tuple[list[Hit], dict[str, dict[str, Any]],
                                                 dict[str, float]]:
                # Chunks are ranked; hierarchical chapter points come only with --with-parent.
                hits = store.search(vector, opts.top_k, must or None, must_not={"kind": "parent"},
                                    mode=mode, text=query)
                parent_ids = sorted({h.payload["parent_id"] for h in hits
                                     if h.payload.get("parent_id")})
                cosines = ({h.id: h.score for h in store.search(
                    vector, prefetch_limit(opts.top_k), must or None, must_not={"kind": "parent"})}
                           if mode == "hybrid" else {})
                return hits, (store.get(parent_ids) if opts.with_parent else {}), cosines

            hits, parents, cosines = self._with_store(run)
        except CollectionMissing:
            if ingest_running(self.opts):  # it is creating the collection: nothing stored yet
                return []
            raise
        if timings is not None:
            timings.update(embed_s=embedded - started, store_s=time.perf_counter() - embedded)
        return [
            Result(
                score=h.score,
                title=h.payload.get("title") or "",
                authors=list(h.payload.get("authors") or []),
                chapter=h.payload.get("chapter") or "",
                text=h.payload.get("text") or "",
                book_key=h.payload.get("book_key") or "",
                chunk_index=h.payload.get("chunk_index"),
                payload=h.payload,
                parent=parents.get(h.payload.get("parent_id") or ""),
                mode=mode,
                similarity=h.score if mode == "dense" else cosines.get(h.id),
            )
            for h in hits
        ]

    def get(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Payloads of these points by id (missing ids are left out)."""
        return self._with_store(lambda store: store.get(ids)) if ids else {}

    def _with_store(self, call):
        """The store opened on first use (a collection an ingest has not made yet is made later);
        an owner process that went away (killed) is replaced once, by opening it again."""
        for attempt in (1, 2):
            store = self._open()
            try:
                return call(store)
            except StoreError:
                if attempt == 2:
                    raise
                self._drop(store)
        raise AssertionError("unreachable")

    def _open(self) -> VectorStore:
        with self._opening:
            if self._store is None:
                self._store = self.where.open_store()  # no dimension: never creates a collection
            return self._store

    def _drop(self, store: VectorStore) -> None:
        with self._opening:
            if self._store is store:
                self._store = None
        try:
            store.close()
        except Exception:  # the owner is gone already: nothing left to close
            pass

    def close(self) -> None:
        with self._opening:
            store, self._store = self._store, None
            remote, self._remote = self._remote, None
        try:
            if store is not None:
                store.close()
        finally:
            if remote is not None:
                remote.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ingest_running(opts: SearchOptions) -> bool:
    """Whether an ingest holds this store's run lock (it may be creating the collection now)."""
    from alexandria.store.lock import LOCK_NAME, probe

    folder = Path(opts.manifest).expanduser().parent if opts.manifest else Path(opts.store)
    return probe(folder / LOCK_NAME) is not None


def query_dtype(asked: str, stored: str | None) -> str:
    """--dtype auto: the dtype the collection was embedded in, where this device can run it (no
    fp16 on a CPU); else the device's own choice."""
    if asked not in ("auto", "", None) or not stored:
        return asked or "auto"
    from alexandria.embedding.embedder import DTYPES

    return stored if stored in DTYPES.values() and stored != "float16" else "auto"
