"""A real HTTP server on loopback, written with the standard library, for the faults a real
embedding server cannot be made to show on cue: vectors of another dimension, a wrong number of
vectors, 429s, a limit on the texts of one request. Every right answer elsewhere comes from real
infinity servers (tests/run/test_remote_ingest.py); this one only answers the OpenAI-compatible
route."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from alexandria.embedding.remote import RemoteEmbedder


@dataclass
class Behaviour:
    dimension: int = 384
    extra_vectors: int = 0  # answer this many vectors more than asked
    busy_first: int = 0  # the first N requests get 429
    busy_every: int | None = None  # and every Nth request after them
    after_ok: int | None = None  # once this many requests were answered, answer with extra_vectors
    slow_after: int | None = None  # once this many requests were answered, each takes delay_s
    delay_s: float = 0.0
    # every answer takes base_delay_s + delay_per_char_s x its texts' characters (a real server's
    # fixed and per-text costs); every late_every-th answer late_s more
    base_delay_s: float = 0.0
    delay_per_char_s: float = 0.0
    late_every: int | None = None
    late_s: float = 0.0
    max_inputs: int | None = None  # more texts in one request: 413, as TEI's client batch limit
    base64: str = "yes"  # "yes": as asked; "refuse": 422 for encoding_format base64; "ignore": floats
    encodings: list = field(default_factory=list)  # each request's encoding_format
    seen_auth: list = field(default_factory=list)
    requests: int = 0
    largest: int = 0  # the most texts one request held


def vector(text: str, dimension: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dimension).astype(float).tolist()


@contextlib.contextmanager
def client_of(behaviour: Behaviour, route: str = "/v1/embeddings", **settings: Any
              ) -> Iterator[tuple[RemoteEmbedder, str]]:
    """A tiny server that behaves so, and the client connected to it for minilm (closed after)."""
    from alexandria.embedding.models import resolve_model
    from alexandria.embedding.remote import connect

    with TinyServer(behaviour) as server:
        url = server.url + route
        remote = connect(resolve_model("minilm"), [url], **settings)
        try:
            yield remote, url
        finally:
            remote.close()


def own_vectors(texts: list[str], dimension: int = 384) -> np.ndarray:
    """What the server answers for each text, normalised as the client returns it."""
    rows = np.array([vector(t, dimension) for t in texts], dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def encoded(row: list[float], as_base64: bool) -> list[float] | str:
    """A vector as OpenAI sends it: numbers, or base64 of little-endian float32."""
    return base64.b64encode(np.asarray(row, dtype="<f4").tobytes()).decode() if as_base64 else row


class TinyServer:
    def __init__(self, behaviour: Behaviour) -> None:
        b = self.behaviour = behaviour
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet: the test output is the report
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    b.requests += 1
                    n = b.requests
                    b.seen_auth.append(self.headers.get("Authorization"))
                if self.path not in ("/v1/embeddings", "/embeddings"):
                    return self._send(404, {"detail": "Not Found"})
                if n <= b.busy_first or (b.busy_every and n % b.busy_every == 0):
                    return self._send(429, {"error": "busy"})
                texts = body["input"]
                encoding = body.get("encoding_format", "float")
                with lock:
                    b.largest = max(b.largest, len(texts))
                    b.encodings.append(encoding)
                if encoding == "base64" and b.base64 == "refuse":
                    return self._send(422, {"detail": "encoding_format: Input should be 'float'"})
                if b.max_inputs is not None and len(texts) > b.max_inputs:
                    return self._send(413, {"error": f"batch size {len(texts)} > {b.max_inputs}"})
                if b.slow_after is not None and n > b.slow_after:
                    time.sleep(b.delay_s)
                time.sleep(b.base_delay_s + b.delay_per_char_s * sum(map(len, texts))
                           + (b.late_s if b.late_every and n % b.late_every == 0 else 0.0))
                extra = b.extra_vectors if b.after_ok is None or n > b.after_ok else 0
                as_base64 = encoding == "base64" and b.base64 == "yes"
                data = [{"index": i, "embedding": encoded(vector(t, b.dimension), as_base64),
                         "object": "embedding"} for i, t in enumerate(texts + texts[:1] * extra)]
                self._send(200, {"data": data, "model": body.get("model"), "object": "list"})

            def _send(self, status: int, payload: dict) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> TinyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
