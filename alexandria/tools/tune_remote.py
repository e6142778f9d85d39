"""`alexandria tune --embed-url ...`: each embedding server's best batch size and concurrency.

A server's speed depends on its card, its engine's own batching and the network, none of which
Alexandria can see; so each endpoint is timed alone on real chunks of the user's books, first over
batch sizes (at a middling concurrency), then over concurrency (at the best batch), and the best
pair goes into .env as the URL's settings (URL#batch=B&concurrency=C in ALEXANDRIA_EMBED_URL).
"Best" is the least the server is asked for among the settings about as fast as the fastest: two
identical servers then get the same settings, and a smaller batch leaves the run fewer part-full
requests.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from alexandria.embedding.endpoints import Latency, settings_url
from alexandria.embedding.models import resolve_model
from alexandria.embedding.remote import RemoteEmbedder, connect
from alexandria.errors import RunFailure, UsageError

BATCHES = (8, 16, 32, 64)
CONCURRENCY = (1, 2, 4, 8)
PROBE_CONCURRENCY = 4  # while batch sizes are tried
REPEATS = 2  # timed passes per trial, the faster kept: a pass can be under a second on a GPU
NEAR = 0.97  # within 3 % of the fastest counts as as fast: trials of one server differ that much


@dataclass
class RemoteTrial:
    endpoint: str
    batch: int
    concurrency: int
    tokens_per_s: float | None
    why: str = ""


def sample_texts(folder: Path, spec, want_tokens: int) -> tuple[list[str], int]:
    """What the run would send for the first books of the folder, about want_tokens of it."""
    from alexandria.chunking.settings import ChunkSettings
    from alexandria.embedding.embedder import load_tokenizer_json
    from alexandria.run.prepare import PrepareTask, chunk_texts, init_worker, prepare

    books = sorted(p for p in Path(folder).rglob("*.epub") if p.is_file())
    if not books:
        raise UsageError(f"{folder} holds no .epub files to tune on.")
    tokenizer_json, max_len = load_tokenizer_json(spec)
    init_worker(tokenizer_json, max_len, ChunkSettings(), spec.document_template)
    texts: list[str] = []
    tokens = 0
    for path in books:
        prepared = prepare(PrepareTask(str(path), str(path), "epub", path.stem, title_is_file_name=True))
        book_texts = chunk_texts(prepared, 0, len(prepared.chunks), spec.document_template, max_len)
        for text, chunk in zip(book_texts, prepared.chunks, strict=True):
            texts.append(text)
            tokens += chunk.tokens
            if tokens >= want_tokens:
                return texts, tokens
    if not texts:
        raise UsageError(f"No book in {folder} could be read and chunked.")
    return texts, tokens


def choose(trials: list[RemoteTrial]) -> RemoteTrial | None:
    """Of the clean trials about as fast as the fastest (NEAR), the one asking least of the server:
    the lowest concurrency, then the smallest batch. None if no trial was clean."""
    good = [t for t in trials if t.tokens_per_s and not t.why]
    if not good:
        return None
    fastest = max(t.tokens_per_s or 0 for t in good)
    return min((t for t in good if (t.tokens_per_s or 0) >= NEAR * fastest),
               key=lambda t: (t.concurrency, t.batch))


def time_endpoint(remote: RemoteEmbedder, texts: list[str], tokens: int, batch: int,
                  concurrency: int) -> RemoteTrial:
    e = remote.endpoints[0]
    e.batch, e.concurrency, e.limit = batch, concurrency, concurrency
    e.latency = Latency()  # "usual" latency depends on the concurrency: learnt again
    try:
        # warm: connections and the server's shapes, on at most a quarter of the sample
        remote.encode_texts(texts[: min(batch * concurrency, max(1, len(texts) // 4))])
        seconds = float("inf")
        for _ in range(REPEATS):
            started = time.perf_counter()
            remote.encode_texts(texts)
            seconds = min(seconds, time.perf_counter() - started)
    except RunFailure as err:
        return RemoteTrial(e.name, batch, concurrency, None, str(err))
    lowered = e.limit < concurrency
    return RemoteTrial(e.name, batch, concurrency, round(tokens / seconds, 1),
                       "the server turned requests away (429 or timeouts)" if lowered else "")


def tune_remote(directory: Path, urls, model: str, api: str = "auto", api_key: str | None = None,
                env_file: Path | None = Path(".env"), sample_tokens: int = 40_000,
                timeout_s: float = 60.0) -> dict:
    from alexandria.tools.tune import write_env

    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UsageError(f"The folder {directory} does not exist.")
    spec = resolve_model(model)
    texts, tokens = sample_texts(directory, spec, sample_tokens)
    probe = connect(spec, urls, api, api_key, timeout_s)  # every endpoint checked before any timing
    endpoints = [e.url for e in probe.endpoints]
    probe.close()
    trials: list[RemoteTrial] = []
    best: dict[str, RemoteTrial] = {}
    for url in endpoints:
        remote = connect(spec, [url], api, api_key, timeout_s, retry_budget_s=timeout_s,
                         concurrency=max(CONCURRENCY))
        try:
            by_batch = [time_endpoint(remote, texts, tokens, b, PROBE_CONCURRENCY) for b in BATCHES]
            chosen = choose(by_batch)
            if chosen is None:
                raise UsageError(f"The embedding server {remote.endpoints[0].name} answered no "
                                 f"batch size cleanly: {by_batch[-1].why}")
            by_conc = [time_endpoint(remote, texts, tokens, chosen.batch, c) for c in CONCURRENCY
                       if c != PROBE_CONCURRENCY]
            trials += by_batch + by_conc
            best[url] = choose([chosen, *by_conc]) or chosen
        finally:
            remote.close()
    value = ",".join(settings_url(url, t.batch, t.concurrency) for url, t in best.items())
    if env_file is not None:
        write_env(Path(env_file), {"ALEXANDRIA_EMBED_URL": f"'{value}'"},
                  f"alexandria tune: {spec.name} on {len(best)} embedding server(s), "
                  + ", ".join(f"{t.tokens_per_s:,.0f}" for t in best.values()) + " tokens/s")
    return {"model": spec.name, "sample_tokens": tokens, "sample_texts": len(texts),
            "best": {url: {"batch": t.batch, "concurrency": t.concurrency,
                           "tokens_per_s": t.tokens_per_s} for url, t in best.items()},
            "trials": [asdict(t) for t in trials], "embed_url": value,
            "env_file": str(env_file) if env_file else None}
