"""`alexandria serve`: the model loaded once, one client of the store's owner, uvicorn until
stopped. Nothing here writes the store or the manifest."""

from __future__ import annotations

import errno
import socket

from alexandria.errors import UsageError
from alexandria.query.search import Searcher
from alexandria.serve.options import ServeOptions, check_bind


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one sentence (and port 0 a free
    one, which the caller is told)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"Port {port} on {host} is already in use; pick another with --port.") \
                from None
        raise UsageError(f"Cannot listen on {host}:{port} ({e.strerror or e}).") from None
    return sock


def serve(opts: ServeOptions, ready=None) -> None:
    """Serve until interrupted. `ready(url)` is called once the model is loaded and the socket
    bound (the CLI prints the address)."""
    import uvicorn

    from alexandria.serve.app import build_app

    check_bind(opts.host, opts.api_key)
    sock = bind(opts.host, opts.port)  # before the model loads: a port in use fails at once
    try:
        searcher = Searcher(opts.search)
        try:
            app = build_app(searcher, opts.api_key)
            host = f"[{opts.host}]" if ":" in opts.host else opts.host
            if ready is not None:
                ready(f"http://{host}:{sock.getsockname()[1]}/")
            config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False)
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            searcher.close()
    finally:
        sock.close()
