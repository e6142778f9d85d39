"""The embedding-server client (alexandria.embedding.remote) on the faults a real server cannot be
made to show on cue, against a real loopback HTTP server (tests/embedding/tiny_server.py). The
answers of real servers are checked against real infinity in tests/run/test_remote_ingest.py."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from alexandria.embedding.endpoints import parse_endpoints
from alexandria.embedding.models import resolve_model
from alexandria.embedding.remote import RemoteEmbedder, connect, expected_dimension
from alexandria.errors import RunFailure, UsageError
from tests.embedding.tiny_server import Behaviour, TinyServer, client_of, own_vectors

MINILM = resolve_model("minilm")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_urls_are_split_at_commas_and_their_route_picks_the_api():
    eps = parse_endpoints(["http://a:1/embed,http://b:2/v1/embeddings#batch=8&concurrency=2",
                           "http://c:3"])
    assert [(e.api, e.batch, e.concurrency) for e in eps] == [
        ("tei", 32, 4), ("openai", 8, 2), ("auto", 32, 4)]
    assert eps[1].name == "http://b:2/v1/embeddings"  # the settings are never sent


@pytest.mark.parametrize("url, words", [
    ("ftp://a/embed", "not an http"),
    ("http://user:secret@a:1/embed", "ALEXANDRIA_EMBED_API_KEY"),
    ("http://a:1/embed#batch=0", "at least 1"),
])
def test_a_bad_embed_url_is_one_sentence(url, words):
    with pytest.raises(UsageError, match=words):
        parse_endpoints([url])


def test_the_route_and_the_api_must_agree():
    with pytest.raises(UsageError, match="tei route but --embed-api says openai"):
        parse_endpoints(["http://a:1/embed"], api="openai")


def test_the_models_dimension_is_read_from_its_config_without_weights():
    assert expected_dimension(MINILM) == 384


def test_a_server_of_another_dimension_is_refused_at_start():
    with TinyServer(Behaviour(dimension=128)) as server:
        with pytest.raises(UsageError, match=r"makes 128-dimensional vectors but model 'minilm' "
                                             r"makes 384"):
            connect(MINILM, [server.url])


def test_a_bare_url_finds_the_openai_route_and_the_probe_checks_it():
    with TinyServer(Behaviour()) as server:
        remote = connect(MINILM, [server.url])
        try:
            assert remote.endpoints[0].url == server.url + "/v1/embeddings"
            vectors = remote.encode_texts(["one", "two", "three"])
            assert vectors.shape == (3, 384)
            assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        finally:
            remote.close()


def test_an_endpoint_nobody_answers_is_refused_at_start_in_one_sentence():
    url = f"http://127.0.0.1:{free_port()}/v1/embeddings"
    with pytest.raises(UsageError, match="did not answer a test text: cannot connect"):
        connect(MINILM, [url], timeout_s=2)


def test_429s_are_retried_and_lower_the_endpoints_concurrency():
    behaviour = Behaviour()
    with client_of(behaviour, batch=2, concurrency=3) as (remote, url):
        behaviour.busy_first = behaviour.requests + 2  # the next two requests are turned away
        vectors = remote.encode_texts(["a", "b", "c", "d"])
        assert vectors.shape == (4, 384)
        stats = remote.stats()[url]
        assert stats["rows"] == 4
        assert stats["concurrency"] < 3


def test_a_server_that_slows_down_gets_fewer_requests_at_once_and_every_vector_still_comes():
    behaviour = Behaviour()
    with client_of(behaviour, batch=2, concurrency=4) as (remote, url):
        remote.encode_texts([f"warm {i}" for i in range(40)])  # its usual speed: 20 requests
        assert remote.stats()[url]["concurrency"] == 4
        behaviour.slow_after, behaviour.delay_s = behaviour.requests, 0.3
        texts = [f"slow {i}" for i in range(16)]
        vectors = remote.encode_texts(texts)
        assert vectors.shape == (16, 384)
        assert remote.stats()[url]["concurrency"] < 4


def test_batches_of_long_texts_and_one_late_answer_are_no_slowdown():
    """A server's time grows with a batch's text and a request has a fixed cost: runs of batches
    of short chunks after long ones, and one late answer now and then, keep the concurrency."""
    behaviour = Behaviour(base_delay_s=0.004, delay_per_char_s=2e-6, late_every=15, late_s=0.15)
    with client_of(behaviour, batch=4, concurrency=4) as (remote, url):
        for _ in range(3):
            remote.encode_texts(["x" * 4000] * 24)  # 6 batches of long texts
            remote.encode_texts(["short"] * 24)  # then 6 of short ones
        assert remote.stats()[url]["concurrency"] == 4
        assert behaviour.requests > 30


@contextlib.contextmanager
def big_and_small(small: Behaviour) -> Iterator[tuple[RemoteEmbedder, Behaviour, str]]:
    """A slow server taking 8 texts a request, one at a time, and one taking 2 a request, two at
    a time, behaving as `small` says; the client of both; the big one's behaviour, the small's URL."""
    big = Behaviour(base_delay_s=0.05)
    with TinyServer(big) as a, TinyServer(small) as b:
        remote = connect(MINILM, [a.url + "/v1/embeddings#batch=8&concurrency=1",
                                  b.url + "/v1/embeddings#batch=2&concurrency=2"])
        try:
            yield remote, big, b.url + "/v1/embeddings"
        finally:
            remote.close()


def test_a_batch_cut_for_a_bigger_endpoint_goes_to_a_smaller_one_in_requests_it_accepts():
    """Batches are cut for the endpoint that looks least loaded when they are queued; one that
    runs on another endpoint with a smaller limit (TEI refuses more inputs than its own) is sent
    there in pieces of that endpoint's size."""
    small = Behaviour(max_inputs=2)
    texts = [f"text {i}" for i in range(64)]
    with big_and_small(small) as (remote, big, small_url):
        vectors = remote.encode_texts(texts)
        small_stats = remote.stats()[small_url]
    np.testing.assert_allclose(vectors, own_vectors(texts), atol=1e-6)  # each its own, in order
    assert 0 < small_stats["rows"] <= 2 * small_stats["requests"]  # each request counted
    assert small.largest == 2 and big.largest == 8


def test_a_split_batch_whose_later_request_fails_sends_only_the_rest_again():
    """The pieces of a split batch already answered are kept: the retry (here or on the other
    endpoint) sends the texts after them, and no text is counted twice."""
    small = Behaviour(max_inputs=2, busy_every=3)
    texts = [f"text {i}" for i in range(96)]
    with big_and_small(small) as (remote, _, _):
        vectors = remote.encode_texts(texts)
        stats = remote.stats()
    np.testing.assert_allclose(vectors, own_vectors(texts), atol=1e-6)
    assert small.requests >= 3 and small.largest == 2  # some of its requests were turned away
    assert sum(s["rows"] for s in stats.values()) == len(texts)


@pytest.mark.parametrize("server", ["yes", "refuse", "ignore"])
def test_vectors_come_as_base64_where_the_server_can_and_as_numbers_where_it_cannot(server):
    """base64 float32 saves parsing a JSON number per element (under the run's GIL); a server
    that refuses it is asked for numbers after the probe, one that ignores it is read as sent."""
    behaviour = Behaviour(base64=server)
    with client_of(behaviour, batch=4) as (remote, url):
        texts = [f"text {i}" for i in range(10)]
        got = remote.encode_texts(texts)
    np.testing.assert_allclose(got, own_vectors(texts), atol=1e-6)
    asked = behaviour.encodings
    if server == "refuse":  # the probe asked once for base64, everything after for numbers
        assert asked[0] == "base64" and set(asked[1:]) == {"float"}
    else:
        assert set(asked) == {"base64"}


def test_a_groups_part_full_last_batch_goes_out_with_the_next_groups_first_texts():
    behaviour = Behaviour()
    with client_of(behaviour, batch=8, concurrency=2) as (remote, url):
        first, second = [f"a {i}" for i in range(20)], [f"b {i}" for i in range(10)]
        probe = behaviour.requests
        one = remote.submit_texts(first, hold_tail=True)  # 8 + 8 out, 4 held
        assert one.sent == 16 and not one.done()
        two = remote.submit_texts(second, hold_tail=True)  # 4 + 4 out, 6 held
        assert one.sent == 20 and two.sent == 4
        with pytest.raises(RuntimeError, match="flush"):
            two.result()
        remote.flush()
        np.testing.assert_allclose(one.result(), own_vectors(first), atol=1e-6)
        np.testing.assert_allclose(two.result(), own_vectors(second), atol=1e-6)
        assert behaviour.requests - probe == 4  # 30 texts in batches of 8: 8, 8, 8, 6


def test_a_tail_waits_for_one_next_group_only_even_when_both_make_less_than_a_batch():
    behaviour = Behaviour()
    with client_of(behaviour, batch=8, concurrency=2) as (remote, url):
        one = remote.submit_texts(["a 1", "a 2", "a 3"], hold_tail=True)  # all three held
        assert one.sent == 0
        two = remote.submit_texts(["b 1", "b 2"], hold_tail=True)  # 5: out together, part-full
        assert one.sent == 3 and two.sent == 2
        np.testing.assert_allclose(one.result(), own_vectors(["a 1", "a 2", "a 3"]), atol=1e-6)
        np.testing.assert_allclose(two.result(), own_vectors(["b 1", "b 2"]), atol=1e-6)


def test_a_stop_still_sends_the_rows_held_back_for_the_group_before():
    behaviour = Behaviour()
    with client_of(behaviour, batch=8, concurrency=2) as (remote, url):
        first = [f"a {i}" for i in range(12)]
        one = remote.submit_texts(first, hold_tail=True)
        assert remote.submit_texts(["b"] * 30, lambda: True, hold_tail=True) is None
        np.testing.assert_allclose(one.result(), own_vectors(first), atol=1e-6)


def test_an_endpoints_time_in_flight_is_counted_while_requests_are_out():
    from alexandria.embedding.endpoints import Endpoint

    e = Endpoint("http://a:1/embed", "tei")
    e.count(+1, 10.0)  # one request from 10 s
    e.count(+1, 11.0)  # two from 11 s
    e.count(-1, 13.0)  # one from 13 s
    e.count(-1, 14.0)  # none from 14 s
    e.count(+1, 20.0)
    e.count(-1, 21.0)
    assert e.in_flight == 0
    assert e.load_s == pytest.approx(1 + 2 * 2 + 1 + 1)
    assert e.busy_s == pytest.approx(5.0)


def test_the_stats_say_how_full_the_endpoint_was_kept():
    behaviour = Behaviour(base_delay_s=0.02)
    with client_of(behaviour, batch=2, concurrency=3) as (remote, url):
        assert "mean_in_flight" not in remote.stats()[url]  # nothing sent yet: no span
        remote.encode_texts([f"t {i}" for i in range(60)])  # 30 requests, three at a time
        stats = remote.stats()[url]
        assert 2.0 < stats["mean_in_flight"] <= 3.0
        assert 0.9 < stats["busy_share"] <= 1.0


def test_the_usual_time_of_an_answer_is_fitted_to_its_size():
    from alexandria.embedding.endpoints import Latency

    lat = Latency()
    for chars in (100, 4000, 200, 8000, 100, 4000) * 3:
        lat.add(chars, 0.002 + 1e-6 * chars)
    assert lat.expected(100) == pytest.approx(0.0021, rel=0.05)
    assert lat.expected(8000) == pytest.approx(0.010, rel=0.05)
    flat = Latency()
    for _ in range(5):
        flat.add(500, 0.01)
    assert flat.expected(500) == pytest.approx(0.01)


def test_a_wrong_number_of_vectors_fails_the_batch_loudly():
    behaviour = Behaviour()
    with client_of(behaviour, "/embeddings") as (remote, url):
        behaviour.extra_vectors = 1
        with pytest.raises(RunFailure, match=r"answered a batch of 2 texts with 3 vectors for 2 "
                                             r"texts; nothing of it was stored"):
            remote.encode_texts(["a", "b"])


def test_a_server_gone_past_the_retry_budget_fails_the_run_naming_it():
    """More batches than the pool has threads: the batches being retried must still find slots
    (a first version let queued batches hold them all, and the run hung)."""
    server = TinyServer(Behaviour()).__enter__()
    remote = connect(MINILM, [server.url + "/v1/embeddings"], retry_budget_s=1.5, batch=1,
                     concurrency=2)
    server.__exit__()
    try:
        started = time.monotonic()
        with pytest.raises(RunFailure, match=rf"No embedding server answered for 1.5 s: "
                                             rf"{server.url}/v1/embeddings \(cannot connect"):
            remote.encode_texts(["a", "b", "c", "d", "e", "f"])
        assert time.monotonic() - started < 10
    finally:
        remote.close()


def test_the_key_is_sent_as_a_bearer_token_and_never_shown():
    key = "sk-test-5f0e1d2c3b4a"
    behaviour = Behaviour()
    with TinyServer(behaviour) as server:
        remote = connect(MINILM, [server.url], api_key=key)
        try:
            remote.encode_texts(["a"])
            assert set(behaviour.seen_auth[-2:]) == {f"Bearer {key}"}
            assert key not in repr(remote) and key not in str(remote.stats())
        finally:
            remote.close()


def test_the_command_refuses_a_server_of_another_dimension_in_one_sentence(small_library, tmp_path):
    from tests.conftest import ingest_args, run_cli

    with TinyServer(Behaviour(dimension=768)) as server:
        proc = run_cli(*ingest_args(tmp_path / "store", "--directory", small_library,
                                    "--embed-url", server.url + "/v1/embeddings"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: The embedding server {server.url}/v1/embeddings makes 768-dimensional vectors but "
        "model 'minilm' makes 384: it serves another model.")
    assert not (tmp_path / "store" / "alexandria_minilm").exists()


@pytest.mark.slow
def test_a_batch_answered_with_too_many_vectors_stops_the_run_and_is_never_stored(
        small_library, tmp_path):
    from tests.conftest import ingest_args, run_cli, status_json

    with TinyServer(Behaviour(extra_vectors=1, after_ok=3)) as server:
        proc = run_cli(*ingest_args(tmp_path / "store", "--directory", small_library,
                                    "--embed-url", server.url + "/embeddings", "--embed-batch", "4",
                                    "--embed-concurrency", "1"))
    assert proc.returncode == 74, proc.stderr
    assert "answered a batch of 4 texts with 5 vectors for 4 texts" in proc.stderr
    assert "Traceback" not in proc.stderr
    status = status_json(tmp_path / "store")  # a book done before the bad batch stays done
    assert status["totals"]["done"] < 4 and status["mismatches"] == 0


def test_an_ingest_with_embedding_servers_never_imports_torch(tmp_path, sample_epubs):
    """Its start-up is the tokenizer (from Alexandria's cache after the first run), never the
    deep-learning libraries it has no use for."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys, json; from alexandria import IngestOptions, ingest; "
        "r = ingest(IngestOptions(files=(sys.argv[1],), model='minilm', store=sys.argv[2], "
        "embed_urls=(sys.argv[3],))); "
        "print(json.dumps([r.chunks, 'torch' in sys.modules, 'transformers' in sys.modules]))")
    with TinyServer(Behaviour()) as server:
        for store in ("first", "second"):  # the first run may fill the tokenizer cache
            out = subprocess.run(
                [sys.executable, "-c", code, str(sample_epubs[0]), str(tmp_path / store), server.url],
                cwd=REPO, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr
    chunks, torch, transformers = json.loads(out.stdout.strip().splitlines()[-1])
    assert chunks > 0
    assert not torch and not transformers
