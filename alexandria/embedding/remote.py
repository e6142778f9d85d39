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
from urllib.parse import urlsplit

import numpy as np
import orjson

from alexandria.embedding.endpoints import (
    Endpoint,
    EndpointError,
    Latency,
    answer_rows,
    parse_endpoints,
)
from alexandria.embedding.models import ModelSpec
from alexandria.errors import RunFailure, UsageError

log = logging.getLogger("alexandria")

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
JSON_BODY = {"Content-Type": "application/json"}


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
    """A group's batches on the servers; result() waits for them, in input order. A batch may
    hold the last rows of one group and the first of the next: each group reads its own slice."""

    def __init__(self, n: int, dimension: int) -> None:
        self.n, self.dimension = n, dimension
        self.batches: list[tuple[list[int], Future, int]] = []  # rows, batch, first row in it
        self.sent = 0  # rows out so far: all of them once no tail is held back

    def add(self, rows: list[int], future: Future, offset: int) -> None:
        self.batches.append((rows, future, offset))
        self.sent += len(rows)

    def done(self) -> bool:
        return self.sent == self.n and all(f.done() for _, f, _ in self.batches)

    def result(self) -> np.ndarray:
        if self.sent != self.n:
            raise RuntimeError("a tail of this group is held back: flush() first")
        out = np.empty((self.n, self.dimension), dtype=np.float32)
        for rows, future, offset in self.batches:
            out[rows] = future.result()[offset:offset + len(rows)]
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
                                               repr=False)  # batches out: in threads or queued
    _last_answer: float = 0.0  # when any endpoint last answered a batch: the retry budget's start
    _first_sent: float = 0.0  # when the first batch went out (the probes' answers excluded)
    # rows submit_texts held back for the next group's first batch: (its group, row, text)
    _held: list[tuple[PendingRemote, int, str]] = field(default_factory=list, repr=False)

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
        # One batch queued per thread: a thread whose answer came back starts the next batch
        # itself, without waiting for the feeder's thread to get the GIL and hand one over.
        self._tasks = threading.BoundedSemaphore(2 * max(1, total))
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
                    vectors = self._first_answer(candidate)
                except EndpointError as err:
                    tried.append(f"{route}: {err}")
                    continue
                e.url, e.api, e.served_model = candidate.url, api, candidate.served_model
                e.encoding = candidate.encoding
                return vectors[0]
            raise UsageError(f"The embedding server {e.name} answered no embedding route ("
                             + "; ".join(tried) + ").")
        try:
            return self._first_answer(e)[0]
        except EndpointError as err:
            raise UsageError(f"The embedding server {e.name} did not answer a test text: {err}.") \
                from None

    def _first_answer(self, e: Endpoint) -> np.ndarray:
        """The probe's answer; an OpenAI route that refuses base64 vectors is asked for lists of
        numbers from then on."""
        try:
            return self._request(e, [PROBE_TEXT])
        except EndpointError as err:
            if e.api != "openai" or e.encoding == "float" or err.transient:
                raise
        e.encoding = "float"
        return self._request(e, [PROBE_TEXT])

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
                    "encoding_format": e.encoding}
        try:
            response = self._client.post(  # type: ignore[attr-defined]
                e.url, content=orjson.dumps(body), headers=JSON_BODY)
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
                vectors = np.asarray(data, dtype=np.float32)
            else:
                items = sorted(data["data"], key=lambda d: d.get("index", 0))
                vectors = answer_rows(d["embedding"] for d in items)
                if e.served_model is None and isinstance(data.get("model"), str):
                    e.served_model = data["model"]
        except (ValueError, KeyError, TypeError) as err:  # orjson's and base64's are ValueErrors
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

    def submit_texts(self, texts: list[str], should_stop: Callable[[], bool] | None = None,
                     hold_tail: bool = False) -> PendingRemote | None:
        """Hand the texts out in batches as the pool has room; return once all are out (None if
        stopped first). Each batch is cut to the size of the endpoint it will most likely go to
        (the least-loaded one that is up); the endpoint itself is taken when the batch runs.

        hold_tail: a last batch that would go out part-full is held back, to go out with the
        first texts of the next call (or at flush()): a server takes about as long for a
        part-full request as for a full one, and a run's groups each ended in one. The run's
        feeder thread alone calls this and flush()."""
        pending = PendingRemote(len(texts), self.dimension)
        todo = self._held + [(pending, i, t) for i, t in enumerate(texts)]
        self._held = []
        pos = 0
        while pos < len(todo):
            size = self._next_endpoint().batch
            # a tail waits for one next group at most: its caller waits for it after this call
            if hold_tail and len(todo) - pos < size and todo[pos][0] is pending:
                self._held = todo[pos:]
                break
            if (should_stop is not None and should_stop()) or not self._room(should_stop):
                # stopped: the rows of the groups before this one still go out, their caller
                # waits for them; this group's do not
                rest = [x for x in todo[pos:] if x[0] is not pending]
                for i in range(0, len(rest), size):
                    if self._room(None):
                        self._send(rest[i:i + size])
                return None
            self._send(todo[pos:pos + size])
            pos += size
        return pending

    def flush(self) -> None:
        """Send the tail submit_texts held back, part-full: no more texts are coming soon."""
        held, self._held = self._held, []
        if held and self._room(None):
            self._send(held)

    def _send(self, items: list[tuple[PendingRemote, int, str]]) -> None:
        """One batch to the pool (its room taken): its answer serves each group it holds rows of."""
        assert self._pool is not None
        future = self._pool.submit(self._run_batch, [text for _, _, text in items])
        start = 0
        while start < len(items):
            owner, end = items[start][0], start
            while end < len(items) and items[end][0] is owner:
                end += 1
            owner.add([row for _, row, _ in items[start:end]], future, start)
            start = end

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        pending = self.submit_texts(texts)
        assert pending is not None
        return pending.result()

    def encode_query(self, query: str) -> list[float]:
        return self.encode_texts([self.spec.query_text(query)])[0].tolist()

    def _room(self, should_stop: Callable[[], bool] | None) -> bool:
        """Wait until fewer batches are out (in the pool's threads or queued for them) than twice
        its threads: a batch waiting in the queue holds no slot, so a batch being retried always
        finds one."""
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
                    e.count(+1, now)
                    if not self._first_sent:
                        self._first_sent = now
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
        pieces: list[np.ndarray] = []  # answered so far: a retry sends only the rest
        while True:
            if e is None:
                e = self._take_slot(None)
                if e is None:  # closed
                    raise RunFailure("the embedding servers were closed")
            try:
                self._request_in(e, texts, pieces)
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
            with self._cond:
                e.count(-1, time.monotonic())
                self._cond.notify_all()
            return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def _request_in(self, e: Endpoint, texts: list[str], pieces: list[np.ndarray]) -> None:
        """The texts not answered yet (past those in pieces) from e, in requests of at most e's
        batch size (the batch was cut for the endpoint that looked least loaded when it was
        queued, and TEI refuses more inputs than its limit), each answer added to pieces,
        counted and timed on its own."""
        for i in range(sum(map(len, pieces)), len(texts), e.batch):
            piece = texts[i:i + e.batch]
            started = time.monotonic()
            pieces.append(self._request(e, piece))
            self._answered(e, len(piece), sum(map(len, piece)), time.monotonic() - started)

    def _any_up_locked(self) -> bool:
        now = time.monotonic()
        return any(e.up(now) for e in self.endpoints)

    def _failed(self, e: Endpoint, err: EndpointError) -> None:
        with self._cond:
            e.count(-1, time.monotonic())
            e.last_error = str(err)
            e.failures += 1
            e.successes = 0
            if err.slow_down and e.limit > 1:
                e.limit -= 1
                log.info("embedding server %s: %s, concurrency lowered to %d", e.name, err, e.limit)
            if e.failures >= DOWN_AFTER and e.up(time.monotonic()) and not self._closed:
                e.down_until = time.monotonic() + COOLDOWN_S
                log.warning("embedding server %s taken out for %g s after %d failures (%s); the "
                            "others go on", e.name, COOLDOWN_S, e.failures, err)
            self._cond.notify_all()

    def _answered(self, e: Endpoint, rows: int, chars: int, seconds: float) -> None:
        """One request answered right: counted, and timed against the usual (its slot is still
        taken; the caller frees it)."""
        with self._cond:
            self._last_answer = time.monotonic()
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

    def stats(self) -> dict[str, dict[str, float]]:
        """Per endpoint so far (the report, the bench and the tests read it): requests, rows and
        the concurrency now; and, from the first batch sent to the last answer, the requests it
        had in flight on average and the share of that time it had any: whether the run kept it
        fed."""
        with self._cond:
            span = self._last_answer - self._first_sent if self._first_sent else 0.0
            out: dict[str, dict[str, float]] = {}
            for e in self.endpoints:
                row: dict[str, float] = {"requests": e.requests, "rows": e.rows,
                                         "concurrency": e.limit}
                if span > 0:
                    row["mean_in_flight"] = round(e.load_s / span, 3)
                    row["busy_share"] = round(min(1.0, e.busy_s / span), 4)
                out[e.name] = row
            return out


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
