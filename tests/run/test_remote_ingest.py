"""Ingest and search with the vectors made by real infinity servers on loopback (--embed-url):
the same vectors as the model in-process, work spread over two servers, a server SIGKILLed
mid-run, every server killed, the API key. Slow: each server takes 25-90 s to start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ingest_args, owners, run_cli, status_json
from tests.infinity import Infinity, need_infinity, start_all

pytestmark = pytest.mark.slow
KEY = "sk-alexandria-test-7c4f9e21"  # server B requires it; nothing may ever show it


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two minilm servers: A open, B behind an API key (infinity ignores a key it does not ask for,
    so every run sends it to both)."""
    need_infinity()
    logs = tmp_path_factory.mktemp("infinity-logs")
    pair = start_all([Infinity(logs, name="a"), Infinity(logs, api_key=KEY, name="b")])
    yield pair
    for s in pair:
        s.kill()


@pytest.fixture(scope="module")
def library(tmp_path_factory, small_epubs) -> Path:
    """The four small books and two more copies of the anthology (~36k tokens), so a run lasts
    long enough for a server to be killed in the middle of it."""
    from alexandria.tools.bench.corpus import copy_epub

    lib = tmp_path_factory.mktemp("remote-library")
    for src in small_epubs:
        shutil.copy2(src, lib / src.name)
    for i in range(2):
        copy_epub(small_epubs[0], lib / f"{small_epubs[0].stem} (copy {i}).epub", 2000 + i)
    return lib


def remote_args(store: Path, library: Path, *urls: str, more: tuple = ()) -> list[str]:
    return [*ingest_args(store, "--directory", library, "--report", store.parent / "report.json",
                         "--embed-url", ",".join(urls)), *more]


def env() -> dict:
    return {"ALEXANDRIA_EMBED_API_KEY": KEY}


def report_of(store: Path) -> dict:
    return json.loads((store.parent / "report.json").read_text())


def points(store: Path) -> dict[str, tuple[str, np.ndarray]]:
    from alexandria.store.edge import EdgeStore

    s = EdgeStore(store, "alexandria_minilm", None)
    try:
        return {p.id: (p.payload["text"], np.asarray(p.vector, dtype=np.float32))
                for page in s.iter_points(["text"], with_vectors=True) for p in page}
    finally:
        s.close()


def assert_key_never_shown(*texts: str, folders: tuple[Path, ...] = ()) -> None:
    for text in texts:
        assert KEY not in text
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file():
                assert KEY.encode() not in f.read_bytes(), f


BOOKS = 6


@pytest.fixture(scope="module")
def clean(servers, library, tmp_path_factory) -> dict:
    """The library ingested on server A alone: what every other run must store."""
    store = tmp_path_factory.mktemp("clean") / "store"
    proc = run_cli(*remote_args(store, library, servers[0].url), env=env())
    assert proc.returncode == 0, proc.stderr
    return {"store": store, "proc": proc}


def test_vectors_from_one_server_are_the_models_own(servers, clean, embedder):
    a, b = servers
    store, proc = clean["store"], clean["proc"]
    report = report_of(store)
    assert report["books_done"] == BOOKS and report["device"] == f"remote: {a.url}"
    stored = points(store)
    assert len(stored) == report["chunks"]
    texts = [t for t, _ in stored.values()]
    local = embedder.encode_documents(texts, batch_size=32)
    remote = np.stack([v for _, v in stored.values()])
    cosines = np.sum(local * remote, axis=1)
    assert cosines.min() >= 0.999, cosines.min()
    assert_key_never_shown(proc.stdout, proc.stderr, folders=(store.parent,))


def test_two_servers_both_receive_work_and_a_key_reaches_the_one_that_wants_it(
        servers, library, tmp_path):
    a, b = servers
    store = tmp_path / "store"
    proc = run_cli(*remote_args(store, library, a.url, b.url, more=("--embed-batch", "8")),
                   env=env())
    assert proc.returncode == 0, proc.stderr
    counts = report_of(store)["endpoints"]
    assert counts[a.url]["rows"] > 0 and counts[b.url]["rows"] > 0
    assert counts[a.url]["rows"] + counts[b.url]["rows"] == report_of(store)["chunks"]
    assert status_json(store)["mismatches"] == 0
    assert_key_never_shown(proc.stdout, proc.stderr, folders=(tmp_path,))


def test_without_the_key_the_server_that_wants_one_is_refused_at_start(servers, library, tmp_path):
    a, b = servers
    proc = run_cli(*remote_args(tmp_path / "store", library, b.url))
    assert proc.returncode == 2
    assert f"The embedding server {b.url} did not answer a test text: HTTP 401" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_search_with_embed_url_needs_no_model_weights(servers, clean):
    a, _ = servers
    store = clean["store"]
    local = run_cli("search", "whales and whaling ships", "--json", "--model", "minilm",
                    "--device", "cpu", "--store", store)
    remote = run_cli("search", "whales and whaling ships", "--json", "--model", "minilm",
                     "--store", store, "--embed-url", a.url)
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    hits, remote_hits = json.loads(local.stdout), json.loads(remote.stdout)
    assert [h["text"] for h in hits] == [h["text"] for h in remote_hits]
    assert all(abs(x["score"] - y["score"]) < 1e-3 for x, y in zip(hits, remote_hits, strict=True))


def start_run(store: Path, library: Path, *urls: str, more: tuple = (),
              extra_env: dict | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "alexandria", *map(str, remote_args(store, library, *urls,
                                                                      more=more))]
    import os

    return subprocess.Popen(args, env=dict(os.environ, **env(), **(extra_env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_answers(server: Infinity, proc: subprocess.Popen, answers: int = 3,
                     timeout: float = 300) -> None:
    """Until `server` has answered this many batches of the run (its access log, written after
    each answer, says so): the run is in its middle."""
    before = server.answered()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if server.answered() - before >= answers + 1:  # the probe is one of them
            return
        time.sleep(0.05)
    raise AssertionError(f"{server.name} answered no batch of the run")


def test_a_server_killed_mid_run_leaves_the_run_to_the_other_with_exactly_the_points(
        servers, library, clean, tmp_path):
    a, b = servers
    store = tmp_path / "store"
    run = start_run(store, library, a.url, b.url, more=("--embed-batch", "4"))
    try:
        wait_for_answers(b, run)
        b.kill()
        out, err = run.communicate(timeout=900)
    finally:
        if run.poll() is None:
            run.kill()
        b.restart()
    assert run.returncode == 0, err
    counts = report_of(store)["endpoints"]
    assert counts[b.url]["rows"] > 0 and counts[a.url]["rows"] > 0
    assert f"embedding server {b.url} taken out" in err
    assert status_json(store)["mismatches"] == 0
    stored, expected = points(store), points(clean["store"])
    assert stored.keys() == expected.keys()
    assert all(float(np.dot(stored[k][1], expected[k][1])) > 0.999 for k in expected)


def test_every_server_killed_is_exit_74_naming_them_and_the_next_run_completes(
        servers, library, tmp_path):
    a, b = servers
    store = tmp_path / "store"
    run = start_run(store, library, a.url, b.url,
                    more=("--embed-batch", "4", "--embed-retry-budget", "5"))
    try:
        wait_for_answers(a, run)
        a.kill()
        b.kill()
        out, err = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    try:
        assert run.returncode == 74, err
        assert "No embedding server answered for 5 s" in err
        assert a.url in err and b.url in err and "Traceback" not in err
        done_before = status_json(store, verify=False)["totals"]["done"]
        assert done_before < BOOKS
    finally:
        start_all([a, b])
    again = run_cli(*remote_args(store, library, a.url, b.url), env=env())
    assert again.returncode == 0, again.stderr
    after = status_json(store)
    assert after["mismatches"] == 0 and after["totals"]["done"] == BOOKS
    assert_key_never_shown(out, err, again.stdout, again.stderr, folders=(tmp_path,))


def test_tune_writes_each_servers_best_settings_and_the_next_run_uses_them(servers, library,
                                                                           tmp_path):
    a, b = servers
    env_file = tmp_path / ".env"
    proc = run_cli("tune", "--directory", library, "--model", "minilm", "--embed-url",
                   f"{a.url},{b.url}", "--sample-tokens", "2000", "--env-file", env_file, "--json",
                   env=env())
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out["best"]) == {a.url, b.url}
    assert len(out["trials"]) == 2 * 7  # 4 batch sizes, then 3 more concurrencies, per server
    line = next(x for x in env_file.read_text().splitlines() if x.startswith("ALEXANDRIA_EMBED_URL="))
    for url, best in out["best"].items():
        assert f"{url}#batch={best['batch']}&concurrency={best['concurrency']}" in line
    store = tmp_path / "store"
    run = run_cli(*ingest_args(store, "--directory", library, "--report", tmp_path / "report.json"),
                  env={**env(), "ALEXANDRIA_ENV_FILE": str(env_file)})
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["device"] == f"remote: {a.url},{b.url}"
    assert_key_never_shown(proc.stdout, proc.stderr, run.stdout, run.stderr, folders=(tmp_path,))


def test_a_server_of_another_model_is_refused_at_start(tmp_path, library):
    """A real infinity serving minilm with a 128-wide Dense layer on top: another model, of
    another dimension, than the --model minilm the run names. The folder is minilm's own with a
    Dense module added by hand, in the config format of infinity's older sentence-transformers."""
    need_infinity()
    import torch
    from safetensors.torch import save_file

    from alexandria.embedding.models import resolve_model

    folder = tmp_path / "minilm-128"
    shutil.copytree(resolve_model("minilm").source, folder)
    (folder / "3_Dense").mkdir()
    (folder / "3_Dense" / "config.json").write_text(json.dumps({
        "in_features": 384, "out_features": 128, "bias": True,
        "activation_function": "torch.nn.modules.activation.Tanh"}))
    weights = torch.randn(128, 384, generator=torch.Generator().manual_seed(0)) / 20
    save_file({"linear.weight": weights, "linear.bias": torch.zeros(128)},
              str(folder / "3_Dense" / "model.safetensors"))
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    server = Infinity(tmp_path / "logs", model=str(folder), name="other").start()
    try:
        server.wait_ready()
        proc = run_cli(*remote_args(tmp_path / "store", library, server.url))
    finally:
        server.kill()
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"Error: The embedding server {server.url} makes 128-dimensional vectors but model "
        "'minilm' makes 384: it serves another model.")


def corpus_of(epubs, folder: Path) -> Path:
    """A folder of the bench's books (bench --corpus)."""
    folder.mkdir()
    for src in epubs:
        shutil.copy2(src, folder / src.name)
    return folder


def test_bench_with_embed_url_compares_real_runs_with_the_servers_alone_over_one_and_two(
        servers, small_epubs, tmp_path):
    a, b = servers
    corpus = corpus_of(small_epubs, tmp_path / "corpus")
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--embed-url", f"{a.url},{b.url}#batch=8&concurrency=2", "--model",
                   "minilm", "--corpus", corpus, "--tokens", "1000", "--repeats", "1", "--json",
                   out, env=env())
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["by_servers"]) == {"1", "2"}
    assert result["servers"] == [a.url, b.url]  # shown without their settings
    used = result["by_servers"]["2"]["runs"][0]["endpoints"]
    assert used[b.url]["concurrency"] == 2 and used[a.url]["concurrency"] == 4  # B's own, A's default
    assert 0 < used[b.url]["rows"] <= 8 * used[b.url]["requests"]  # batches of at most 8
    for row in result["by_servers"].values():
        run = row["runs"][0]
        assert run["tokens"] == result["tokens_per_run"]  # the run embedded exactly the texts timed
        assert row["servers_alone_tokens_per_s"] > 0 and row["end_to_end_tokens_per_s"] > 0
        assert 0 < row["ratio"] == pytest.approx(
            run["end_to_end_tokens_per_s"] / run["servers_alone_tokens_per_s"], abs=1e-3)
        before_index = run["tokens"] / (run["elapsed_s"] - run["stages_s"]["index"])
        assert row["before_index_tokens_per_s"] == round(before_index)
        assert row["before_index_tokens_per_s"] >= row["end_to_end_tokens_per_s"]
        assert row["index_s"] == round(run["stages_s"]["index"], 2)
        # how full the servers were kept, in the run and alone: at most their slots
        slots = 4 + (2 if row is result["by_servers"]["2"] else 0)
        assert 0 < row["in_flight"] <= slots and 0 < row["in_flight_alone"] <= slots
        assert set(run["endpoints_alone"]) == set(run["endpoints"])
    assert "servers alone" in proc.stdout and "end to end" in proc.stdout
    assert "in flight" in proc.stdout
    assert "before index" in proc.stdout
    assert_key_never_shown(proc.stdout, proc.stderr, folders=(tmp_path,))


@pytest.mark.long  # the bench's store option; the server engine has its own tests
def test_bench_with_embed_url_can_write_its_runs_to_a_qdrant_server_instead(
        servers, small_epubs, tmp_path):
    from qdrant_client import QdrantClient

    a, _ = servers
    corpus = corpus_of(small_epubs, tmp_path / "corpus")
    work = tmp_path / "work"
    proc = run_cli("bench", "--embed-url", a.url, "--model", "minilm", "--corpus", corpus,
                   "--tokens", "1000", "--repeats", "1", "--workdir", work,
                   "--qdrant-url", f"local:{tmp_path / 'q'}", "--json", tmp_path / "bench.json",
                   env=env())
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["store"] == "qdrant-client local mode"
    assert "into the qdrant-client local mode store" in proc.stdout
    assert not (work / "run-1" / "store" / "alexandria_minilm").exists()  # no embedded shard
    client = QdrantClient(path=str(tmp_path / "q" / "run-1"))  # each run its own fresh folder
    try:
        assert client.count("alexandria_minilm").count == result["chunks_per_run"]
    finally:
        client.close()


@pytest.mark.long  # the SIGKILL test below also builds mid-run; this one compares a clean run
def test_a_run_indexes_its_first_points_while_it_goes_on_and_stores_exactly_the_same(
        servers, library, clean, tmp_path):
    from alexandria.store.edge import EdgeStore

    store = tmp_path / "store"
    # Room for six segments (this 2-core box's own target, Qdrant's, is two: a build during the run
    # would be merged by the next), and segments of this small library's size indexed at all.
    EdgeStore(store, "alexandria_minilm", 384, {"segments": 6, "index_threshold_kb": 60}).close()
    proc = run_cli(*remote_args(store, library, servers[0].url),
                   env={**env(), "ALEXANDRIA_INDEX_EVERY": "40"})
    assert proc.returncode == 0, proc.stderr
    report = report_of(store)
    builds = report["index_builds"]
    assert builds >= 2 and report["stages_s"]["index_during"] > 0, report["stages_s"]
    s = EdgeStore(store, "alexandria_minilm", None)
    try:
        info = s.shard.info()
        # One segment per build (none merged into another), never past the six of the target.
        assert builds + 1 <= info.segments_count <= 6
        assert info.indexed_vectors_count >= info.points_count  # every point's graph is built
    finally:
        s.close()
    assert status_json(store)["mismatches"] == 0
    stored, expected = points(store), points(clean["store"])
    assert stored.keys() == expected.keys()
    assert all(float(np.dot(stored[k][1], expected[k][1])) > 0.999 for k in expected)


def test_a_run_and_its_store_owner_sigkilled_after_an_index_build_mid_run_lose_nothing(
        servers, library, clean, tmp_path):
    import os
    import signal

    from alexandria.store.edge import EdgeStore

    store = tmp_path / "store"
    shard = store / "alexandria_minilm"
    EdgeStore(store, "alexandria_minilm", 384, {"segments": 6, "index_threshold_kb": 60}).close()
    run = start_run(store, library, servers[0].url, more=("--embed-batch", "4"),
                    extra_env={"ALEXANDRIA_INDEX_EVERY": "40"})
    try:
        deadline = time.monotonic() + 300
        while len(list((shard / "segments").iterdir())) < 3:  # a segment built during the run
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no index was built during the run"
            time.sleep(0.02)
        run.kill()
        for owner in owners(shard):
            os.kill(owner, signal.SIGKILL)
        run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert status_json(store, verify=False)["totals"]["done"] < BOOKS  # it was cut off
    again = run_cli(*remote_args(store, library, servers[0].url),
                    env={**env(), "ALEXANDRIA_INDEX_EVERY": "40"})
    assert again.returncode == 0, again.stderr
    assert status_json(store)["mismatches"] == 0
    stored, expected = points(store), points(clean["store"])
    assert stored.keys() == expected.keys()
    assert all(float(np.dot(stored[k][1], expected[k][1])) > 0.999 for k in expected)
