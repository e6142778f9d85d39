"""The JSON API: the same JSON as the commands' --json, errors as {"error": sentence}."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from alexandria.errors import UsageError
from alexandria.query.search import Result, Searcher
from alexandria.serve.library import Library
from alexandria.serve.params import BadRequest, SearchRequest, parse_search
from alexandria.store.base import CollectionMissing, StoreError, point_id


def error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **({"param": param} if param else {})}, status)


def run_search(searcher: Searcher, req: SearchRequest,
               timings: dict[str, float] | None = None) -> list[Result]:
    opts = replace(searcher.opts, top_k=req.top_k, with_parent=req.with_parent, **req.filters())
    return searcher.search(req.q, opts, timings)


def server_timing(timings: dict[str, float], started: float) -> str:
    """The Server-Timing header: where one search's time went inside serve (milliseconds)."""
    total = time.perf_counter() - started
    return (f"embed;dur={timings.get('embed_s', 0) * 1000:.2f}, "
            f"store;dur={timings.get('store_s', 0) * 1000:.2f}, total;dur={total * 1000:.2f}")


def guarded(handler):
    """A store or library problem is one sentence with a status code, never a traceback."""
    def wrapped(request: Request) -> JSONResponse:
        try:
            return handler(request)
        except BadRequest as e:
            return JSONResponse(e.to_dict(), 400)
        except CollectionMissing as e:
            return error(404, str(e))
        except UsageError as e:
            return error(409, str(e))
        except StoreError as e:
            return error(503, f"The store cannot be read now: {e}")
    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


class Api:
    def __init__(self, searcher: Searcher, library: Library) -> None:
        self.searcher, self.library = searcher, library

    def search(self, request: Request) -> JSONResponse:
        """Best passages for q: a list, as `alexandria search --json` prints it.
        ---
        summary: Search the library
        parameters:
          - {name: q, in: query, required: true, schema: {type: string}}
          - {name: top_k, in: query, schema: {type: integer, minimum: 1, maximum: 100, default: 5}}
          - {name: author, in: query, schema: {type: string}}
          - {name: tag, in: query, schema: {type: string}}
          - {name: language, in: query, schema: {type: string}}
          - {name: series, in: query, schema: {type: string}}
          - {name: with_parent, in: query, schema: {type: boolean, default: false}}
        responses:
          200: {description: "The hits, best first: score, title, authors, chapter, text, book_key,
                chunk_index, calibre_id, chapter_index, source_path"}
          400: {description: "A bad parameter: {error, param}"}
          404: {description: "No collection yet: {error}"}
        """
        started = time.perf_counter()
        params = dict(request.query_params)
        req = parse_search(params, self.library.facets_for(params))
        assert req is not None
        timings: dict[str, float] = {}
        hits = [r.to_dict() for r in run_search(self.searcher, req, timings)]
        response = JSONResponse(hits)
        response.headers["Server-Timing"] = server_timing(timings, started)
        return response

    def books(self, request: Request) -> JSONResponse:
        """Every book of the manifest with its status, chunks and failure reason.
        ---
        summary: Every book, with status, chunks, reason and (once stored) its metadata
        responses:
          200: {description: "A list of books, as in `alexandria status --json`, plus authors,
                tags, language and series"}
        """
        books = self.library.status()["books"]
        meta = self.library.facets(books).by_book
        return JSONResponse([{**b, **meta.get(b["book_key"], {})} for b in books])

    def status(self, request: Request) -> JSONResponse:
        """`alexandria status --json`, with the running ingest's progress and the last runs.
        ---
        summary: Totals, books and runs; progress of a running ingest
        responses:
          200: {description: "`alexandria status --json` plus progress (null when no ingest runs)
                and runs (newest first)"}
        """
        out: dict[str, Any] = self.library.status()
        out["progress"] = self.library.progress()
        out["runs"] = self.library.runs()
        return JSONResponse(out)

    def context(self, request: Request) -> JSONResponse:
        """The chunks before and after a hit, and its chapter where the collection has one.
        ---
        summary: The text around one hit
        parameters:
          - {name: book_key, in: query, required: true, schema: {type: string}}
          - {name: chunk_index, in: query, required: true, schema: {type: integer, minimum: 0}}
        responses:
          200: {description: "before, text, after and (hierarchical collections) parent"}
          404: {description: "No such chunk"}
        """
        p = request.query_params
        unknown = sorted(set(p) - {"book_key", "chunk_index"})
        if unknown:
            raise BadRequest(f"Unknown parameter {unknown[0]!r}; use book_key and chunk_index.",
                             unknown[0])
        key = p.get("book_key") or ""
        try:
            index = int(p.get("chunk_index") or "")
        except ValueError:
            raise BadRequest("chunk_index must be a whole number.", "chunk_index") from None
        if not key or index < 0:
            raise BadRequest("Give book_key and a chunk_index of 0 or more.", "book_key")
        ids = {i: point_id(key, i) for i in (index - 1, index, index + 1) if i >= 0}
        found = self.searcher.get(list(ids.values()))
        hit = found.get(ids[index])
        if hit is None:
            return error(404, f"No chunk {index} of book {key} is stored.")
        parent = self.searcher.get([hit["parent_id"]]).get(hit["parent_id"]) \
            if hit.get("parent_id") else None

        def text(i: int) -> str | None:
            payload = found.get(ids[i]) if i in ids else None
            return payload.get("text") if payload else None

        return JSONResponse({
            "book_key": key, "chunk_index": index, "chapter": hit.get("chapter"),
            "before": text(index - 1), "text": hit.get("text"), "after": text(index + 1),
            "parent": {"chapter": parent.get("chapter"), "text": parent.get("text")}
            if parent else None,
        })

    def health(self, request: Request) -> JSONResponse:
        """Alive, and which collection and model it serves.
        ---
        summary: Health check
        responses:
          200: {description: "{ok, collection, model, store}"}
        """
        where = self.searcher.where
        return JSONResponse({"ok": True, "collection": where.collection, "model": where.spec.name,
                             "store": where.where})
