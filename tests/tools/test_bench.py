"""`alexandria bench` on the CPU with the real minilm model, and the synthetic architectures' sizes."""

from __future__ import annotations

import json
import shutil

import pytest

from alexandria.embedding.embedder import budget_for_vram
from alexandria.tools.bench.run import REQUIRED_KEYS
from alexandria.tools.bench.synthetic import config_parameter_counts, synthetic_config
from tests.conftest import corpus_book, run_cli


@pytest.mark.parametrize("alias,non_embedding_m", [("bge-m3", 302), ("embeddinggemma", 101.5)])
def test_synthetic_architectures_have_the_real_sizes(alias, non_embedding_m):
    """Same FLOPs as the real models: the non-embedding parameter counts the issue gives."""
    _, non_embedding = config_parameter_counts(synthetic_config(alias))
    assert abs(non_embedding / 1e6 - non_embedding_m) < 1.5


def test_budget_for_vram_scales_the_probe():
    gib = 2**30
    # 1 GiB of weights; a probe of 8,192 tokens took 0.5 GiB, i.e. 64 KiB per token
    cap = budget_for_vram(12 * gib, 1 * gib, gib // 2, 8192, headroom=1.0)
    assert cap == int(11 * gib / (gib / 2 / 8192))
    assert budget_for_vram(gib, 2 * gib, gib, 1000) == 0  # weights alone exceed the cap


@pytest.mark.slow
def test_bench_on_cpu_writes_every_key(tmp_path, sample_epubs):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy2(corpus_book("books/idpf-wasteland.epub", sample_epubs), corpus)
    out = tmp_path / "bench.json"
    proc = run_cli("bench", "--corpus", corpus, "--model", "minilm", "--device", "cpu",
                   "--tokens", "30000", "--repeats", "1", "--json", out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    for key in REQUIRED_KEYS:
        assert key in result, key
    assert result["device"] == "cpu" and result["synthetic_weights"] is False
    assert result["e2e_tokens_per_s"] > 0 and result["baseline_tokens_per_s"] > 0
    assert result["copies"] >= 2  # the corpus was repeated (distinct copies) to reach --tokens
    assert result["runs"][0]["books_done"] == result["books"] * result["copies"]
    assert 0 < result["padding_efficiency"] <= 1
    assert "end to end" in proc.stdout


def test_bench_mistakes_are_one_sentence(tmp_path, sample_epubs):
    proc = run_cli("bench", "--corpus", tmp_path / "nowhere", "--model", "minilm", "--device", "cpu")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "does not exist" in proc.stderr
    (tmp_path / "c").mkdir()
    shutil.copy2(corpus_book("books/idpf-wasteland.epub", sample_epubs), tmp_path / "c")
    proc = run_cli("bench", "--corpus", tmp_path / "c", "--model", "minilm", "--device", "cpu",
                   "--synthetic-weights")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run_cli("bench", "--corpus", tmp_path / "c", "--model", "minilm", "--device", "cpu",
                   "--gpus", "2")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "CUDA is not available" in proc.stderr
    proc = run_cli("bench", "--corpus", tmp_path / "c", "--model", "minilm", "--device", "cpu",
                   "--workers", "0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--workers must be at least 1." in proc.stderr
    proc = run_cli("bench", "--corpus", tmp_path / "c", "--model", "minilm", "--device", "cpu",
                   "--qdrant-url", "local:/tmp/q")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--qdrant-url is for the servers' bench: give --embed-url too." in proc.stderr


@pytest.mark.slow
def test_each_repeat_leaves_the_results_so_far(tmp_path, sample_epubs):
    """A bench cut off by a time limit still has the repeats it finished."""
    from alexandria.tools.bench.run import run_bench

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy2(corpus_book("books/idpf-wasteland.epub", sample_epubs), corpus)
    partial: list[dict] = []
    result = run_bench(corpus, "minilm", "cpu", tokens=10_000, repeats=2, workdir=tmp_path / "w",
                       workers=1, on_repeat=partial.append)
    assert [p["repeats"] for p in partial] == [1] and len(partial[0]["runs"]) == 1
    # the summary rounds the raw speed to 0.1, each run keeps it to 0.001: equal within 0.05
    assert partial[0]["e2e_tokens_per_s"] == pytest.approx(
        partial[0]["runs"][0]["e2e_tokens_per_s"], abs=0.0501)
    assert result["repeats"] == 2 and len(result["runs"]) == 2
    assert result["workers"] == 1


@pytest.mark.slow
def test_profile_compares_each_kernel_per_million_tokens(tmp_path, sample_epubs):
    """--profile: one more pass of each kind under torch.profiler, outside the medians; the
    model's own ops show up in both, per million real tokens."""
    from alexandria.tools.bench.run import run_bench

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy2(corpus_book("books/idpf-wasteland.epub", sample_epubs), corpus)
    partial: list[dict] = []
    result = run_bench(corpus, "minilm", "cpu", tokens=10_000, repeats=1, workdir=tmp_path / "w",
                       workers=1, profile=True, on_repeat=partial.append)
    assert len(partial) == 1 and "profile" not in partial[0]  # the medians, before the profile
    prof = result["profile"]
    assert prof["e2e_us_per_m"] > 0 and prof["model_only_us_per_m"] > 0
    both = [k for k in prof["kernels"] if k["e2e_calls"] and k["model_only_calls"]]
    assert any(k["name"] == "aten::addmm" for k in both), [k["name"] for k in prof["kernels"]]
    assert all(k["ratio"] > 0 for k in both)


def test_kernel_comparison_is_per_million_real_tokens():
    from alexandria.tools.bench.kernels import compare

    e2e = [{"name": "gemm", "calls": 10, "self_us": 300.0}, {"name": "pad", "calls": 5, "self_us": 50.0}]
    alone = [{"name": "gemm", "calls": 4, "self_us": 100.0}]
    out = compare(e2e, 2_000_000, alone, 1_000_000)
    assert out["e2e_us_per_m"] == 175.0 and out["model_only_us_per_m"] == 100.0
    assert out["ratio"] == 1.75
    gemm, pad = out["kernels"]
    assert (gemm["name"], gemm["e2e_us_per_m"], gemm["model_only_us_per_m"], gemm["ratio"]) == \
        ("gemm", 150.0, 100.0, 1.5)
    assert pad["ratio"] is None and pad["model_only_calls"] == 0


def test_a_qdrant_server_the_bench_cannot_reach_is_one_sentence_before_any_timing(
        tmp_path, sample_epubs):
    import socket

    from tests.embedding.tiny_server import Behaviour, TinyServer

    (tmp_path / "c").mkdir()
    shutil.copy2(corpus_book("books/idpf-wasteland.epub", sample_epubs), tmp_path / "c")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{s.getsockname()[1]}"
    with TinyServer(Behaviour()) as server:
        proc = run_cli("bench", "--corpus", tmp_path / "c", "--model", "minilm", "--embed-url",
                       server.url + "/v1/embeddings", "--qdrant-url", nobody, "--repeats", "1")
        requests = server.behaviour.requests
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"The Qdrant server {nobody} cannot be used for the bench" in proc.stderr
    assert requests == 1  # the probe only: nothing was timed
