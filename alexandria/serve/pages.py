"""The HTML pages, rendered on the server by Jinja2 with autoescaping: every piece of book text
reaches the page escaped; the page's own scripts only ever set textContent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from alexandria.errors import UsageError
from alexandria.query.search import Result, Searcher
from alexandria.serve.api import run_search
from alexandria.serve.highlight import segments
from alexandria.serve.library import Library
from alexandria.serve.params import BadRequest, parse_search
from alexandria.store.base import StoreError

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# calibre's three-letter language codes to the HTML lang attribute (picks the right CJK glyphs).
LANG = {"eng": "en", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es", "ita": "it",
        "por": "pt", "nld": "nl", "dut": "nl", "rus": "ru", "heb": "he", "ara": "ar", "fas": "fa",
        "per": "fa", "jpn": "ja", "zho": "zh", "chi": "zh", "kor": "ko", "ell": "el", "gre": "el",
        "tur": "tr", "pol": "pl", "lat": "la"}


def html_lang(code: Any) -> str | None:
    if not code or not isinstance(code, str):
        return None
    return LANG.get(code.lower(), code.lower() if len(code) == 2 else None)


def grouped(results: list[Result], query: str) -> list[dict[str, Any]]:
    """Hits grouped by book, books in the order of their best hit."""
    books: dict[str, dict[str, Any]] = {}
    for r in results:
        book = books.setdefault(r.book_key, {
            "title": r.title or "(untitled)", "authors": r.authors, "book_key": r.book_key,
            "calibre_id": r.payload.get("calibre_id"), "lang": html_lang(r.payload.get("language")),
            "series": r.payload.get("series"), "hits": []})
        book["hits"].append({
            # The cosine where known (a hybrid hit's from the dense search): a reader can judge it,
            # where a fused rank score (about 0.03 at best) says nothing.
            "score": r.similarity if r.similarity is not None else r.score,
            "chapter": r.chapter, "chunk_index": r.chunk_index,
            "segments": segments(r.text, query),
            "parent": (r.parent or {}).get("text") if r.parent else None})
    return list(books.values())


class Pages:
    def __init__(self, searcher: Searcher, library: Library, locked: bool) -> None:
        self.searcher, self.library, self.locked = searcher, library, locked

    def search(self, request: Request) -> Response:
        params = dict(request.query_params)
        context: dict[str, Any] = {"request": request, "params": params, "books": [],
                                   "error": None, "searched": False, "locked": self.locked}
        code = 200
        try:
            facets = self.library.facets(self.library.status()["books"])
            context["facets"] = facets
            req = parse_search(params, facets, require_q=False)
            if req is not None:
                context["searched"] = True
                context["books"] = grouped(run_search(self.searcher, req), req.q)
        except BadRequest as e:
            context["error"], code = str(e), 400
        except (UsageError, StoreError) as e:
            context["error"], code = str(e), 503
        context.setdefault("facets", None)
        return TEMPLATES.TemplateResponse(request, "search.html", context, status_code=code)

    def library_page(self, request: Request) -> Response:
        s = self.library.status()
        meta = self.library.facets(s["books"]).by_book
        books = [{**b, **meta.get(b["book_key"], {}),
                  "lang": html_lang((meta.get(b["book_key"]) or {}).get("language"))}
                 for b in s["books"] if b["status"] != "removed"]
        return TEMPLATES.TemplateResponse(request, "library.html", {
            "request": request, "status": s, "books": books, "runs": self.library.runs(),
            "progress": self.library.progress(), "locked": self.locked,
            "where": self.searcher.where.where})

    def login(self, request: Request, failed: bool = False) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"request": request,
                                                                   "failed": failed},
                                          status_code=401)
