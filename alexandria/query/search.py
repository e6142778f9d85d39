"""Query side: the same model and collection as the ingest, so vectors are comparable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexandria.chunking.settings import ChunkSettings
from alexandria.store.location import DEFAULT_STORE, Location


@dataclass
class SearchOptions:
    model: str = "bge-m3"
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
    chunker: str = "structural"  # picks the default collection, as at ingest
    with_parent: bool = False  # hierarchical: attach each hit's chapter (its parent point)
    manifest: Path | None = None
    # Embedding servers (alexandria.embedding.remote): a machine with no model weights can search
    embed_urls: tuple[str, ...] = ()
    embed_api: str = "auto"
    embed_key: str | None = field(default=None, repr=False)  # never printed, logged or reported
    embed_timeout: float = 60.0

    def location(self) -> Location:
        return Location.of(self.model, store=self.store, url=self.qdrant_url, api_key=self.api_key,
                           collection=self.collection, manifest=self.manifest,
                           settings=ChunkSettings(strategy=self.chunker))


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
    from alexandria.embedding.embedder import get_embedder

    opts = opts or SearchOptions()
    where = opts.location()
    if opts.embed_urls:
        from alexandria.embedding.remote import connect

        remote = connect(where.spec, opts.embed_urls, opts.embed_api, opts.embed_key,
                         opts.embed_timeout, retry_budget_s=opts.embed_timeout)
        try:
            dimension, vector = remote.dimension, remote.encode_query(query)
        finally:
            remote.close()
    else:
        embedder = get_embedder(where.spec, opts.device, opts.dtype)
        dimension, vector = embedder.dimension, embedder.encode_query(query)
    store = where.open_store(dimension)
    try:
        must = {k: v for k, v in {
            "authors": opts.author, "tags": opts.tag, "language": opts.language,
            "series": opts.series, "book_key": opts.book_key,
        }.items() if v}
        # Chunks are ranked; hierarchical chapter points only come along with --with-parent.
        hits = store.search(vector, opts.top_k, must or None,
                            must_not={"kind": "parent"})
        parent_ids = sorted({h.payload["parent_id"] for h in hits if h.payload.get("parent_id")})
        parents = store.get(parent_ids) if opts.with_parent else {}
    finally:
        store.close()
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
        )
        for h in hits
    ]
