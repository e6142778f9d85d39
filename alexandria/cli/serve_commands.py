"""serve: the library in a browser and over a JSON API."""

from __future__ import annotations

import sys

import click

from alexandria.cli.common import (
    api_key,
    chunker_option,
    cli,
    given,
    guard,
    model_options,
    opt,
    variant_options,
)
from alexandria.cli.embed_options import embed_key, search_embed_options


@cli.command("serve")
@opt("--host", default="127.0.0.1", show_default=True,
     help="Address to listen on. Anything but loopback needs --api-key.")
@opt("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
     help="Port to listen on (0: any free port, printed at start).")
@opt("--api-key", "serve_key", default=None, envvar="ALEXANDRIA_SERVE_API_KEY",
     help="Require this key on every request (header 'Authorization: Bearer KEY' or 'X-API-Key', "
          "or the page's login form). Prefer the environment variable: a flag shows in `ps`.")
@chunker_option
@model_options
@variant_options
@search_embed_options
def serve_cmd(host, port, serve_key, **kw) -> None:
    """Search page, library page and JSON API for the collection an ingest wrote (read-only).

    Without --model and --chunker: the store's collection (its only one, or the one they pick).
    """

    def run() -> int:
        from alexandria.query.search import SearchOptions
        from alexandria.serve.options import ServeOptions
        from alexandria.serve.server import serve

        # Without --model and --chunker: the store's collection, as for search.
        kw["model"], kw["chunker"] = given("model", kw["model"]), given("chunker", kw["chunker"])
        search = SearchOptions(api_key=api_key(), embed_key=embed_key(), **kw)
        opts = ServeOptions(search=search, host=host, port=port, api_key=serve_key or None)

        def ready(url: str) -> None:
            click.echo(f"Serving {opts.search.location().where} on {url} (Ctrl-C stops it)",
                       err=True)

        serve(opts, ready)
        return 0

    sys.exit(guard(run))
