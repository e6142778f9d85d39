"""The --embed-url family: embedding on TEI, infinity or OpenAI-compatible servers."""

from __future__ import annotations

import os

import click

from alexandria.cli.common import opt

EMBED_KEY_ENV = "ALEXANDRIA_EMBED_API_KEY"


def embed_key() -> str | None:
    """The servers' key: from the environment (or .env) only, never an option, so it never shows
    in a process list or a shell history."""
    return os.environ.get(EMBED_KEY_ENV) or None


def _url_options(f):
    for decorator in reversed([
        opt("--embed-url", "embed_urls", multiple=True,
            help="Embed on these servers instead of in this process (repeat or comma-separate): "
                 "TEI's /embed, an OpenAI-compatible /v1/embeddings or /embeddings (infinity, vLLM, "
                 "TEI), or a bare http://host:port (the route is found). Key from "
                 f"{EMBED_KEY_ENV}. Settings per URL: URL#batch=64&concurrency=8."),
        opt("--embed-api", type=click.Choice(["auto", "tei", "openai"]), default="auto",
            show_default=True, help="The servers' API (auto: from each URL's route)."),
        opt("--embed-timeout", type=float, default=60.0, show_default=True, metavar="SECONDS",
            help="Embedding servers: timeout of one request."),
    ]):
        f = decorator(f)
    return f


def search_embed_options(f):
    return _url_options(f)


def ingest_embed_options(f):
    for decorator in reversed([
        _url_options,
        opt("--embed-retry-budget", type=float, default=300.0, show_default=True,
            metavar="SECONDS", help="Embedding servers: how long a batch may find no server up "
            "before the run stops (exit 74; nothing done is lost)."),
        opt("--embed-batch", type=int, default=None,
            help="Embedding servers: texts per request (default 32, or each URL's #batch=)."),
        opt("--embed-concurrency", type=int, default=None,
            help="Embedding servers: requests in flight per server (default 4, or each URL's "
                 "#concurrency=)."),
    ]):
        f = decorator(f)
    return f
