"""Server mode against qdrant-client's local mode (same API, in-process), with faults injected.

`Flaky` wraps a real local-mode client and makes chosen calls fail the way a restarting server
or a dropped network does; everything else reaches the real client.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from alexandria.store import base as store_mod
from alexandria.store import server as server_mod
from alexandria.store.base import PointData, RetryPolicy, StoreError
from alexandria.store.server import ServerStore
from tests.conftest import EPUBS, ingest_args, need_corpus, run_cli

SECRET = "s3cret-api-key-0f9e8d7c"
FAST = RetryPolicy(retries=3, base_s=0.01, max_s=0.05, budget_s=5)


def connection_refused() -> Exception:
    return ResponseHandlingException(httpx.ConnectError("[Errno 111] Connection refused"))


def http_503() -> Exception:
    return UnexpectedResponse(503, "Service Unavailable", b"restarting", httpx.Headers())


class Flaky:
    """A real client whose calls named in `fail` raise `error()` while `budget` lasts."""

    def __init__(self, client, fail: set[str], budget: int, error=connection_refused) -> None:
        self.client, self.fail, self.budget, self.error = client, fail, budget, error
        self.calls: list[tuple[str, dict]] = []
        self.failed = 0

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            self.calls.append((name, kwargs))
            if (name in self.fail or "*" in self.fail) and self.budget > 0:
                self.budget -= 1
                self.failed += 1
                raise self.error()
            return attr(*args, **kwargs)

        return call


def points(n: int, book: str = "b1") -> list[PointData]:
    return [PointData(store_mod.point_id(book, i), [1.0, float(i), 0.5, 0.25],
                      {"book_key": book, "chunk_index": i}) for i in range(n)]


def test_transient_failures_are_retried_with_backoff():
    flaky = Flaky(QdrantClient(":memory:"), {"*"}, budget=3, error=http_503)
    s = ServerStore("c", 4, client=flaky, retry=FAST)  # even opening rides out the hiccups
    assert flaky.failed == 3 and s.retries_used == 3
    flaky.budget, flaky.fail, flaky.error = 2, {"upsert"}, connection_refused
    s.upsert(points(10))
    assert s.count_book("b1") == 10 and s.retries_used == 5


def test_retry_budget_then_one_sentence_without_the_key():
    flaky = Flaky(QdrantClient(":memory:"), {"upsert"}, budget=100)
    s = ServerStore("c", 4, client=flaky, retry=FAST, api_key=SECRET)
    with pytest.raises(StoreError) as err:
        s.upsert(points(3))
    text = str(err.value)
    assert "upsert" in text and "after 4 attempts" in text and "Connection refused" in text
    assert SECRET not in text and "\n" not in text
    assert err.value.__cause__ is None  # nothing in a traceback can carry the key either


def test_request_errors_are_not_retried():
    bad = UnexpectedResponse(400, "Bad Request", b"wrong vector size", httpx.Headers())
    flaky = Flaky(QdrantClient(":memory:"), {"upsert"}, budget=5, error=lambda: bad)
    s = ServerStore("c", 4, client=flaky, retry=FAST)
    with pytest.raises(StoreError, match="400"):
        s.upsert(points(1))
    assert s.retries_used == 0 and flaky.failed == 1


def test_bulk_load_defers_hnsw_and_restores_it():
    flaky = Flaky(QdrantClient(":memory:"), set(), budget=0)
    s = ServerStore("c", 4, client=flaky, bulk_load=True)
    create = next(kw for name, kw in flaky.calls if name == "create_collection")
    assert create["hnsw_config"].m == 0
    s.upsert(points(5))
    s.finish()
    update = [kw for name, kw in flaky.calls if name == "update_collection"]
    assert len(update) == 1 and update[0]["hnsw_config"].m == server_mod.DEFAULT_HNSW_M
    s.finish()  # once only
    assert len([1 for name, _ in flaky.calls if name == "update_collection"]) == 1


@pytest.fixture
def tiny_library(tmp_path: Path) -> Path:
    need_corpus()
    lib = tmp_path / "lib"
    lib.mkdir()
    for rel in ("edge/idpf-hefty-water.epub", "books/idpf-wasteland.epub",
                "edge/epubcheck-epub2-minimal-valid.epub"):
        shutil.copy2(EPUBS / rel, lib / Path(rel).name)
    return lib


def test_ingest_through_a_flaky_server_then_a_dead_one(tiny_library, tmp_path, monkeypatch):
    """The real pipeline, in-process: hiccups are ridden out; a server that stays down stops
    the run with one sentence, the manifest still true, and the next run completes."""
    from alexandria import IngestOptions, Location, status
    from alexandria.errors import UsageError
    from alexandria.run.ingest import Ingest

    def ingest(opts, wrap=None):
        """The run, its server client passed through `wrap` (a real client made to fail on cue)."""
        def open_store(where, dimension, server):
            return where.open_store(dimension, **server, wrap_client=wrap)
        return Ingest(opts, open_store=open_store if wrap else None).run()

    store = tmp_path / "store"
    url = f"local:{tmp_path / 'qdrant'}"
    opts = dict(directory=tiny_library, model="minilm", device="cpu", store=store,
                qdrant_url=url, api_key=SECRET, qdrant_retries=3)
    wrappers: list[Flaky] = []

    def every_upsert_fails_once(client):
        wrappers.append(Flaky(client, {"upsert", "delete"}, budget=2))
        return wrappers[-1]

    report = ingest(IngestOptions(**opts), every_upsert_fails_once)
    assert report.books_done == 3 and report.books_failed == 0
    assert sum(w.failed for w in wrappers) == 2
    assert SECRET not in json.dumps(report.to_dict())
    s = status(Location.of("minilm", store=store, url=url), verify=True)
    assert s["mismatches"] == 0 and s["totals"]["done"] == 3

    # A server that goes away for good in the middle of the next (forced) run.
    with pytest.raises(UsageError) as err:
        ingest(IngestOptions(**opts, force=True), _Dying)
    text = str(err.value)
    assert "failed after" in text and SECRET not in text, text
    report = ingest(IngestOptions(**opts))
    s = status(Location.of("minilm", store=store, url=url), verify=True)
    assert s["mismatches"] == 0 and s["totals"]["done"] == 3, s


class _Dying:
    """A real client that answers until its second upsert, then is unreachable for good."""

    def __init__(self, client) -> None:
        self.client, self.upserts = client, 0

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            if name == "upsert":
                self.upserts += 1
            if self.upserts >= 2 and name not in ("close",):
                raise connection_refused()
            return attr(*args, **kwargs)

        return call


def test_api_key_never_printed_logged_or_reported(tiny_library, tmp_path):
    env = {"QDRANT_API_KEY": SECRET}
    store, report = tmp_path / "store", tmp_path / "r.json"
    # A server that is not there: one sentence, exit 2, no key.
    proc = run_cli(*ingest_args(store, "--directory", tiny_library, "--qdrant-url",
                                "http://127.0.0.1:9", "--qdrant-retries", "1", "--no-grpc"),
                   env=env)
    assert proc.returncode == 2 and "not reachable" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # A working one (local mode): the report, the output and the logs never hold the key.
    proc = run_cli(*ingest_args(store, "--directory", tiny_library, "--qdrant-url",
                                f"local:{tmp_path / 'q'}", "--report", report), env=env)
    assert proc.returncode == 0, proc.stderr
    texts = [proc.stdout, proc.stderr, report.read_text()]
    texts += [p.read_text() for p in (tmp_path / "logs").glob("*")]
    assert texts[2] and all(SECRET not in t for t in texts)
