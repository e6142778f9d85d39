"""One embedding server as the client sees it (alexandria.embedding.remote drives them).

Its URL and settings (`--embed-url http://gpu1:8080/embed#batch=64&concurrency=8`, as `alexandria
tune` writes them), its state during a run (requests in flight, failures, its concurrency now,
what its answers usually take) and how its answers are read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pybase64

from alexandria.errors import UsageError

APIS = ("auto", "tei", "openai")
DEFAULT_BATCH = 32  # TEI refuses more than 32 inputs per request by default (--max-client-batch-size)
DEFAULT_CONCURRENCY = 4


class EndpointError(Exception):
    """A request failed; `transient` ones are retried (429, 5xx, timeouts, connection errors)."""

    def __init__(self, message: str, transient: bool, slow_down: bool = False) -> None:
        super().__init__(message)
        self.transient, self.slow_down = transient, slow_down


@dataclass
class Latency:
    """What an answer of a given size usually takes on one endpoint: seconds = a + b x characters,
    fitted by least squares over exponentially weighted running means (the fixed cost of a request
    and the cost of its text), so that batches of short and of long chunks are judged alike."""

    n: int = 0
    x: float = 0.0  # mean characters
    y: float = 0.0  # mean seconds
    xx: float = 0.0
    xy: float = 0.0

    WEIGHT = 0.2  # of the newest answer in the running means

    def add(self, chars: int, seconds: float) -> None:
        w = 1.0 if self.n == 0 else self.WEIGHT
        self.x += w * (chars - self.x)
        self.y += w * (seconds - self.y)
        self.xx += w * (chars * chars - self.xx)
        self.xy += w * (chars * seconds - self.xy)
        self.n += 1

    def expected(self, chars: int) -> float:
        var = self.xx - self.x * self.x
        if var <= 1e-9 * max(1.0, self.xx):  # every answer the same size so far
            return self.y
        b = (self.xy - self.x * self.y) / var
        a = self.y - b * self.x
        if b < 0:  # noise: size tells nothing yet
            return self.y
        if a < 0:  # no fixed cost visible: proportional to size
            return self.y * chars / max(1.0, self.x)
        return a + b * chars


@dataclass
class Endpoint:
    """One server. `url` is where requests go; settings ride in the fragment, which is never sent:
    http://gpu1:8080/embed#batch=64&concurrency=8 (what `alexandria tune` writes)."""

    url: str
    api: str  # "tei", "openai" or "auto" until the probe found the route
    batch: int = DEFAULT_BATCH
    concurrency: int = DEFAULT_CONCURRENCY
    # live state, under the pool's lock
    limit: int = 0  # concurrency now (lowered on 429s and timeouts)
    in_flight: int = 0
    failures: int = 0  # in a row
    down_until: float = 0.0
    successes: int = 0  # in a row, to raise a lowered limit again
    requests: int = 0
    rows: int = 0
    served_model: str | None = None
    # OpenAI routes: vectors as base64 float32 (what OpenAI, vLLM, TEI and infinity can send),
    # "float" where the probe found a server that cannot
    encoding: str = "base64"
    last_error: str = ""
    latency: Latency = field(default_factory=Latency)  # what an answer usually takes
    slow_streak: int = 0  # slow answers in a row
    # how full it was kept: requests in flight integrated over time, and the time with any
    load_s: float = 0.0
    busy_s: float = 0.0
    changed: float = 0.0  # when in_flight last changed

    def count(self, delta: int, now: float) -> None:
        """One more or one fewer request in flight, at `now` (under the pool's lock)."""
        if self.in_flight:
            self.load_s += self.in_flight * (now - self.changed)
            self.busy_s += now - self.changed
        self.in_flight += delta
        self.changed = now

    @property
    def name(self) -> str:
        """The URL as shown: no credentials, no fragment."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    @property
    def with_settings(self) -> str:
        return settings_url(self.url, self.batch, self.concurrency)

    def up(self, now: float) -> bool:
        return now >= self.down_until

    def load(self) -> float:
        return self.in_flight / max(1, self.limit)


def settings_url(url: str, batch: int, concurrency: int) -> str:
    """A URL with its settings in the fragment, as --embed-url reads them (endpoint_of)."""
    return f"{url}#batch={batch}&concurrency={concurrency}"


def parse_endpoints(urls: Sequence[str] | str, api: str = "auto", batch: int | None = None,
                    concurrency: int | None = None) -> list[Endpoint]:
    """--embed-url values (each may hold several, comma- or space-separated) to endpoints."""
    if api not in APIS:
        raise UsageError(f"--embed-api must be tei or openai, not {api!r}.")
    if isinstance(urls, str):
        urls = [urls]
    out: list[Endpoint] = []
    for value in urls:
        for raw in value.replace(",", " ").split():
            out.append(endpoint_of(raw, api, batch, concurrency))
    if len({e.url for e in out}) != len(out):
        raise UsageError("--embed-url names the same endpoint twice.")
    return out


def endpoint_of(raw: str, api: str, batch: int | None, concurrency: int | None) -> Endpoint:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--embed-url {raw!r} is not an http(s) URL.")
    if parts.username or parts.password:
        raise UsageError("--embed-url must not hold credentials; put the key in "
                         "ALEXANDRIA_EMBED_API_KEY.")
    settings = dict(item.split("=", 1) for item in parts.fragment.split("&") if "=" in item)
    try:
        b = int(settings.get("batch", batch or DEFAULT_BATCH))
        c = int(settings.get("concurrency", concurrency or DEFAULT_CONCURRENCY))
    except ValueError:
        raise UsageError(f"--embed-url {raw!r}: batch and concurrency must be whole numbers.") from None
    if b < 1 or c < 1:
        raise UsageError(f"--embed-url {raw!r}: batch and concurrency must be at least 1.")
    path = parts.path.rstrip("/")
    if path.endswith("/embed"):
        kind = "tei"
    elif path.endswith("/embeddings"):
        kind = "openai"
    elif path:
        kind = api
    else:
        kind = "auto"  # a bare server: the route is found by the probe, api narrows it
    if api != "auto" and kind not in ("auto", api):
        raise UsageError(f"--embed-url {raw!r} is a {kind} route but --embed-api says {api}.")
    url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    return Endpoint(url, kind if kind != "auto" else ("auto" if api == "auto" else api),
                    b, c, limit=c)


def answer_rows(embeddings: Iterable[object]) -> np.ndarray:
    """An OpenAI answer's vectors as float32 rows: base64 of little-endian float32 (decoded
    without a Python float per element: parsing JSON numbers cost the run's GIL more than
    anything else it does per answer), or lists of numbers from a server that sends those."""
    rows = [np.frombuffer(pybase64.b64decode(x, validate=True), dtype="<f4") if isinstance(x, str)
            else np.asarray(x, dtype=np.float32) for x in embeddings]
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    if len({r.shape for r in rows}) != 1 or rows[0].ndim != 1:
        raise ValueError("vectors of different sizes")
    return np.stack(rows).astype(np.float32, copy=False)
