"""The web application: routes to the API and the pages, static files, the key check."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.schemas import SchemaGenerator
from starlette.staticfiles import StaticFiles

from alexandria.query.search import Searcher
from alexandria.serve.api import Api, guarded
from alexandria.serve.auth import KeyCheck
from alexandria.serve.headers import SecurityHeaders
from alexandria.serve.library import Library
from alexandria.serve.pages import Pages

SCHEMAS = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "Alexandria", "version": "1"}})


def build_app(searcher: Searcher, api_key: str | None = None) -> Starlette:
    library = Library(searcher.where, searcher)
    api = Api(searcher, library)
    pages = Pages(searcher, library, locked=api_key is not None)

    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(SCHEMAS.get_schema(routes=app.routes))

    routes = [
        Route("/", pages.search, name="search"),
        Route("/library", pages.library_page, name="library"),
        Route("/api/search", guarded(api.search)),
        Route("/api/books", guarded(api.books)),
        Route("/api/status", guarded(api.status)),
        Route("/api/context", guarded(api.context)),
        Route("/api/health", api.health),
        Route("/openapi.json", openapi, include_in_schema=False),
        Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]  # outermost: the key check's answers get them too
    if api_key:
        middleware.append(Middleware(KeyCheck, key=api_key, login_page=pages.login))
    app = Starlette(routes=routes, middleware=middleware)
    return app
