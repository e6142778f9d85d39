"""Embedding on servers: TEI's /embed and OpenAI-compatible /v1/embeddings (infinity, vLLM, TEI).

Alexandria keeps the tokenizer (chunks fit the model), the prompts (applied to the text it sends)
and the run; the servers only turn texts into vectors. A group of chunks is cut into batches of
each endpoint's size and every batch goes, as a slot frees, to the least-loaded endpoint that is
up (in flight / its concurrency); the vectors come back in input order, checked (count,
dimension) before anyone may store them.

Threads, not asyncio: the run is threaded (one feeder per device), a request is I/O that releases
the GIL, and a few dozen requests in flight need a pool of that many threads, no event loop beside
the run's. httpx: one pooled client, timeouts per request, HTTP/1.1 keep-alive.

Faults: 429, 5xx, timeouts and connection errors are retried with exponential backoff on the
least-loaded endpoint that is up; an endpoint that fails `DOWN_AFTER` times in a row is taken out
for `COOLDOWN_S` and tried again after that; once no endpoint has answered anything for
`retry_budget_s`, a failing batch fails the run (RunFailure, exit 74, the endpoints named). A 429
or a timeout also lowers that endpoint's concurrency by one (back up by one after `RECOVER_AFTER`
successes), and so does a server that slows down: `SLOW_STREAK` answers in a row that each took
`SLOW_FACTOR` times what an answer of its size usually takes there (Latency: a running fit of
seconds against characters over the answers that were not slow, learnt again after each lowering,
so a lasting slowdown lowers the concurrency a step, not down to one). By size, since a batch of long
chunks takes longer than one of short ones and both pay the same fixed cost per request; in a row,
since one late answer (a server's garbage collection, a long queue) is no slowdown. Retries
take free slots like first tries: a slow server sent more work only gets slower, and a request
that timed out is still being computed there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import orjson

from alexandria.embedding.models import ModelSpec
from alexandria.errors import RunFailure, UsageError

log = logging.getLogger("alexandria")

APIS = ("auto", "tei", "openai")
DEFAULT_BATCH = 32  # TEI refuses more than 32 inputs per request by default (--max-client-batch-size)
DEFAULT_CONCURRENCY = 4
DOWN_AFTER = 3  # failures in a row that take an endpoint out
COOLDOWN_S = 5.0  # how long it stays out before it is tried again
BACKOFF_S = (0.2, 5.0)  # first and longest wait between tries of one batch
RECOVER_AFTER = 20  # successes in a row that give a lowered endpoint one more slot back
SLOW_FACTOR = 3.0  # an answer this many times slower than one of its size usually is: a slow one
SLOW_STREAK = 4  # slow answers in a row that lower the concurrency by one
SLOW_AFTER = 8  # requests timed before "usual" means anything
PROBE_TEXT = "Alexandria checks the embedding server."
# Where a bare http://host:port answers, in the order tried.
ROUTES = (("openai", "/v1/embeddings"), ("openai", "/embeddings"), ("tei", "/embed"))


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
    last_error: str = ""
    latency: Latency = field(default_factory=Latency)  # what an answer usually takes
    slow_streak: int = 0  # slow answers in a row

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


def expected_dimension(spec: ModelSpec) -> int | None:
    """The model's output size from its sentence-transformers config, no weights (None: unknown)."""
    import json
    from pathlib import Path

    def config(name: str) -> dict | None:
        path = Path(spec.source) / name
        if not path.is_file():
            try:
                from huggingface_hub import hf_hub_download

                path = Path(hf_hub_download(spec.source, name))
            except Exception:
                return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    modules = config("modules.json")
    if not modules:
        return None
    size = None
    for m in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(m.get("type", ""))
        cfg = config(f"{m.get('path', '')}/config.json") if m.get("path") else None
        if cfg is None:
            continue
        if kind.endswith("Pooling"):
            size = cfg.get("word_embedding_dimension", size)
        elif kind.endswith("Dense"):
            size = cfg.get("out_features", size)
    return int(size) if size else None


class PendingRemote:
    """A group's batches on the servers; result() waits for them, in input order."""

    def __init__(self, n: int, dimension: int, batches: list[tuple[list[int], Future]]) -> None:
        self.n, self.dimension, self.batches = n, dimension, batches

    def done(self) -> bool:
        return all(f.done() for _, f in self.batches)

    def result(self) -> np.ndarray:
        out = np.empty((self.n, self.dimension), dtype=np.float32)
        for rows, future in self.batches:
            out[rows] = future.result()
        return out


@dataclass
class RemoteEmbedder:
    """The run's embedder when the vectors come from servers; the Feeder drives it like a device."""

    spec: ModelSpec
    endpoints: list[Endpoint]
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or reported
    timeout_s: float = 60.0
    retry_budget_s: float = 300.0
    dimension: int = 0
    device: str = "remote"
    dtype: str = "remote"
    packed: bool = False
    reads_text: bool = True  # the Feeder sends chunk texts, not token ids
    _client: object = field(default=None, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _closed: bool = False
    _closing: threading.Event = field(default_factory=threading.Event, repr=False)
    _tasks: threading.BoundedSemaphore = field(default_factory=threading.BoundedSemaphore,
                                               repr=False)  # batches out, at most the pool's threads
    _last_answer: float = 0.0  # when any endpoint last answered a batch: the retry budget's start

    # --- set-up -------------------------------------------------------------------------------

    def connect(self) -> RemoteEmbedder:
        """Probe every endpoint (one text each): it must answer, and all with one dimension that is
        the model's. One sentence (exit 2) otherwise."""
        import httpx

        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        total = sum(e.concurrency for e in self.endpoints)
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
            limits=httpx.Limits(max_connections=total + len(self.endpoints),
                                max_keepalive_connections=total + len(self.endpoints)))
        self._pool = ThreadPoolExecutor(max_workers=max(1, total), thread_name_prefix="alexandria-embed")
        self._tasks = threading.BoundedSemaphore(max(1, total))
        want = expected_dimension(self.spec)
        dims: dict[str, int] = {}
        for e in self.endpoints:
            vector = self._probe(e)
            dims[e.name] = len(vector)
        if want is not None:
            wrong = [n for n, d in dims.items() if d != want]
            if wrong:
                raise UsageError(
                    f"The embedding server {wrong[0]} makes {dims[wrong[0]]}-dimensional vectors but "
                    f"model {self.spec.name!r} makes {want}: it serves another model.")
        if len(set(dims.values())) > 1:
            raise UsageError("The embedding servers make vectors of different sizes ("
                             + ", ".join(f"{n}: {d}" for n, d in dims.items())
                             + "): they serve different models.")
        self.dimension = next(iter(dims.values()))
        self._last_answer = time.monotonic()
        return self

    def _probe(self, e: Endpoint) -> np.ndarray:
        if e.api == "auto" or not urlsplit(e.url).path:
            base = e.url.rstrip("/")
            tried = []
            for api, route in ROUTES:
                if e.api not in ("auto", api):
                    continue
                candidate = Endpoint(base + route, api)
                try:
                    vectors = self._request(candidate, [PROBE_TEXT])
                except EndpointError as err:
                    tried.append(f"{route}: {err}")
                    continue
                e.url, e.api, e.served_model = candidate.url, api, candidate.served_model
                return vectors[0]
            raise UsageError(f"The embedding server {e.name} answered no embedding route ("
                             + "; ".join(tried) + ").")
        try:
            return self._request(e, [PROBE_TEXT])[0]
        except EndpointError as err:
            raise UsageError(f"The embedding server {e.name} did not answer a test text: {err}.") \
                from None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._closing.set()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()  # type: ignore[attr-defined]

    # --- one request --------------------------------------------------------------------------

    def _request(self, e: Endpoint, texts: list[str]) -> np.ndarray:
        """Normalised float32 rows for texts, from endpoint e, checked; EndpointError if not."""
        import httpx

        if e.api == "tei":
            body: dict = {"inputs": texts, "normalize": True, "truncate": True}
        else:
            body = {"input": texts, "model": e.served_model or self.spec.source,
                    "encoding_format": "float"}
        try:
            response = self._client.post(e.url, json=body)  # type: ignore[attr-defined]
        except httpx.TimeoutException:
            raise EndpointError(f"no answer within {self.timeout_s:g} s", True, True) from None
        except httpx.TransportError as err:
            raise EndpointError(f"cannot connect ({type(err).__name__})", True) from None
        status = response.status_code
        if status != 200:
            detail = self._scrub(response.text.strip().replace("\n", " ")[:200])
            transient = status == 429 or status >= 500
            raise EndpointError(f"HTTP {status} {detail}".strip(), transient, status == 429)
        try:
            data = orjson.loads(response.content)
            if e.api == "tei":
                rows = data
            else:
                items = sorted(data["data"], key=lambda d: d.get("index", 0))
                rows = [d["embedding"] for d in items]
                if e.served_model is None and isinstance(data.get("model"), str):
                    e.served_model = data["model"]
            vectors = np.asarray(rows, dtype=np.float32)
        except (ValueError, KeyError, TypeError) as err:  # orjson.JSONDecodeError is a ValueError
            raise EndpointError(f"an answer that is not embeddings ({type(err).__name__})", False) \
                from None
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            got = vectors.shape[0] if vectors.ndim else 0
            raise EndpointError(f"{got} vectors for {len(texts)} texts", False)
        if self.dimension and vectors.shape[1] != self.dimension:
            raise EndpointError(f"{vectors.shape[1]}-dimensional vectors, not {self.dimension}",
                                False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def _scrub(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    # --- the run's side -----------------------------------------------------------------------

    def submit_texts(self, texts: list[str], should_stop: Callable[[], bool] | None = None
                     ) -> PendingRemote | None:
        """Hand the texts out in batches as the pool has room; return once all are out (None if
        stopped first). Each batch is cut to the size of the endpoint it will most likely go to
        (the least-loaded one that is up); the endpoint itself is taken when the batch runs."""
        n = len(texts)
        batches: list[tuple[list[int], Future]] = []
        pos = 0
        while pos < n:
            if should_stop is not None and should_stop():
                return None
            if not self._room(should_stop):
                return None
            rows = list(range(pos, min(n, pos + self._next_endpoint().batch)))
            pos = rows[-1] + 1
            assert self._pool is not None
            batches.append((rows, self._pool.submit(self._run_batch, [texts[i] for i in rows])))
        return PendingRemote(n, self.dimension, batches)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        pending = self.submit_texts(texts)
        assert pending is not None
        return pending.result()

    def encode_query(self, query: str) -> list[float]:
        return self.encode_texts([self.spec.query_text(query)])[0].tolist()

    def _room(self, should_stop: Callable[[], bool] | None) -> bool:
        """Wait until fewer batches are out than the pool has threads: a batch waiting in the
        pool's queue holds nothing, so a batch being retried always finds a slot."""
        while not self._closed:
            if self._tasks.acquire(timeout=0.05):
                return True
            if should_stop is not None and should_stop():
                return False
        return False

    def _next_endpoint(self) -> Endpoint:
        with self._cond:
            now = time.monotonic()
            up = [e for e in self.endpoints if e.up(now)] or self.endpoints
            return min(up, key=Endpoint.load)

    def _run_batch(self, texts: list[str]) -> np.ndarray:
        try:
            return self._embed_batch(texts)
        finally:
            self._tasks.release()

    def _take_slot(self, should_stop: Callable[[], bool] | None) -> Endpoint | None:
        """A free slot, taken: on the least-loaded endpoint that is up, or, while every endpoint
        is out, on the one back soonest. Never more in flight than the endpoints' limits, first
        tries and retries alike: a slow server sent more work only gets slower (and a request
        that timed out is still being computed there)."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                free = [e for e in self.endpoints if e.in_flight < e.limit]
                up = [e for e in free if e.up(now)]
                e = None
                if up:
                    e = min(up, key=Endpoint.load)
                elif free and not any(x.up(now) for x in self.endpoints):
                    e = min(free, key=lambda x: x.down_until)
                if e is not None:
                    e.in_flight += 1
                    return e
                self._cond.wait(0.05)
                if should_stop is not None and should_stop():
                    return None
        return None

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """One batch, in a free slot of the least-loaded endpoint that is up, retried on transient
        failures the same way, until it succeeds; the run fails once no endpoint has answered
        anything for retry_budget_s."""
        e: Endpoint | None = None
        wait = BACKOFF_S[0]
        while True:
            if e is None:
                e = self._take_slot(None)
                if e is None:  # closed
                    raise RunFailure("the embedding servers were closed")
            started = time.monotonic()
            try:
                vectors = self._request(e, texts)
            except EndpointError as err:
                self._failed(e, err)
                if self._closed:  # the run is over (failed or stopped): nobody waits for this batch
                    raise RunFailure("the embedding servers were closed") from None
                if not err.transient:
                    raise RunFailure(
                        f"The embedding server {e.name} answered a batch of {len(texts)} texts "
                        f"with {err}; nothing of it was stored, books already done are kept."
                    ) from None
                with self._cond:
                    silent = time.monotonic() - self._last_answer
                    names = ", ".join(f"{x.name} ({x.last_error or 'no answer'})"
                                      for x in self.endpoints)
                    pause = wait if not self._any_up_locked() else min(wait, 0.05)
                if silent > self.retry_budget_s:
                    raise RunFailure(
                        f"No embedding server answered for {self.retry_budget_s:g} s: {names}; "
                        "books already done are kept and the next run resumes.") from None
                e = None
                self._closing.wait(pause)  # close() cuts the backoff short
                wait = min(wait * 2, BACKOFF_S[1])
                continue
            self._succeeded(e, len(texts), sum(map(len, texts)), time.monotonic() - started)
            return vectors

    def _any_up_locked(self) -> bool:
        now = time.monotonic()
        return any(e.up(now) for e in self.endpoints)

    def _failed(self, e: Endpoint, err: EndpointError) -> None:
        with self._cond:
            e.in_flight -= 1
            e.last_error = str(err)
            e.failures += 1
            e.successes = 0
            if err.slow_down and e.limit > 1:
                e.limit -= 1
                log.info("embedding server %s: %s, concurrency lowered to %d", e.name, err, e.limit)
            if e.failures >= DOWN_AFTER and e.up(time.monotonic()):
                e.down_until = time.monotonic() + COOLDOWN_S
                log.warning("embedding server %s taken out for %g s after %d failures (%s); the "
                            "others go on", e.name, COOLDOWN_S, e.failures, err)
            self._cond.notify_all()

    def _succeeded(self, e: Endpoint, rows: int, chars: int, seconds: float) -> None:
        with self._cond:
            self._last_answer = time.monotonic()
            e.in_flight -= 1
            if e.failures >= DOWN_AFTER:
                log.info("embedding server %s is back", e.name)
            e.failures = 0
            e.requests += 1
            e.rows += rows
            usual = e.latency.expected(chars)
            if e.latency.n >= SLOW_AFTER and seconds > SLOW_FACTOR * usual:
                e.successes = 0  # a slow answer never counts towards a raise
                e.slow_streak += 1
                if e.slow_streak >= SLOW_STREAK and e.limit > 1:
                    e.limit -= 1
                    e.slow_streak = 0
                    e.latency = Latency()  # the usual time at the new concurrency, learnt again
                    log.info("embedding server %s slowed down (%.0f ms for %d characters, usually "
                             "%.0f), concurrency lowered to %d", e.name, 1000 * seconds, chars,
                             1000 * usual, e.limit)
                self._cond.notify_all()
                return
            e.latency.add(chars, seconds)
            e.slow_streak = 0
            e.successes += 1
            if e.limit < e.concurrency and e.successes >= RECOVER_AFTER:
                e.limit += 1
                e.successes = 0
            self._cond.notify_all()

    def rows_in_flight(self) -> int:
        """Texts the endpoints hold at once with every slot busy: the run's groups are made at
        least this big, or the servers would wait between groups."""
        return sum(e.batch * e.concurrency for e in self.endpoints)

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests and rows per endpoint so far (the report and the tests read it)."""
        with self._cond:
            return {e.name: {"requests": e.requests, "rows": e.rows, "concurrency": e.limit}
                    for e in self.endpoints}


def connect(spec: ModelSpec, urls: Sequence[str] | str, api: str = "auto", api_key: str | None = None,
            timeout_s: float = 60.0, retry_budget_s: float = 300.0, batch: int | None = None,
            concurrency: int | None = None) -> RemoteEmbedder:
    """The endpoints, probed and checked against the model (UsageError, exit 2, when wrong)."""
    endpoints = parse_endpoints(urls, api, batch, concurrency)
    if not endpoints:
        raise UsageError("--embed-url names no endpoint.")
    embedder = RemoteEmbedder(spec, endpoints, api_key, timeout_s, retry_budget_s)
    try:
        return embedder.connect()
    except BaseException:
        embedder.close()
        raise
