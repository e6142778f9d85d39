"""Stage 4 with the real minilm model: token-budget batches, order, OOM back-off, dtype choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alexandria.embedding.embedder import get_embedder, resolve_dtype
from alexandria.embedding.models import resolve_model
from alexandria.errors import UsageError
from tests.conftest import minilm_ids

TEXTS = [("Call me Ishmael. " * (1 + (i * 7) % 40)) + f"Sentence number {i}." for i in range(60)]


@pytest.fixture(scope="module")
def ids(embedder):
    return minilm_ids(embedder, TEXTS)


def test_token_budget_batches_match_sentence_transformers(embedder, ids):
    reference = embedder.encode_documents(TEXTS, batch_size=16)
    before = (embedder.real_tokens, embedder.padded_tokens)
    vectors = embedder.encode_ids(ids, token_budget=2048)
    assert vectors.shape == reference.shape
    # Same rows in the same order as the input, whatever order the batches ran in.
    assert np.min(np.sum(vectors * reference, axis=1)) > 0.9999
    real = embedder.real_tokens - before[0]
    padded = embedder.padded_tokens - before[1]
    assert real == sum(len(x) for x in ids)
    assert real / padded > 0.8  # length-sorted batches waste little on padding


def test_budget_bounds_every_batch(embedder, ids):
    seen = []
    embedder.before_forward = seen.append
    try:
        embedder.encode_ids(ids, token_budget=1000)
    finally:
        embedder.before_forward = None
    longest = max(len(x) for x in ids)
    assert all(tokens <= max(1000, longest) for tokens in seen)
    assert len(seen) > 3


def test_a_batch_ends_before_rows_much_shorter_than_its_first(embedder):
    """The short rows at the end of a group get a batch of their own, not the long rows' width."""
    texts = ["Call me Ishmael. " * 40 + f"Line {i}." for i in range(8)] + [
        f"Whale {i}." for i in range(40)]
    ids = minilm_ids(embedder, texts)
    seen: list[int] = []
    before = (embedder.real_tokens, embedder.padded_tokens)
    embedder.before_forward = seen.append
    try:
        vectors = embedder.encode_ids(ids, token_budget=8000)
    finally:
        embedder.before_forward = None
    assert len(seen) == 2  # 8 long rows, then 40 short ones (one batch of all 38 would fit)
    real, padded = embedder.real_tokens - before[0], embedder.padded_tokens - before[1]
    assert real / padded > 0.9
    reference = embedder.encode_documents(texts, batch_size=16)
    assert np.min(np.sum(vectors * reference, axis=1)) > 0.9999


def test_out_of_memory_halves_the_batch_and_retries(embedder, ids):
    """No GPU in CI: the hook raises the real torch OOM error for batches above a size."""
    reference = embedder.encode_ids(ids, token_budget=4096)

    def fake_oom(tokens: int) -> None:
        if tokens > 1500:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")

    embedder.before_forward = fake_oom
    try:
        backoffs = embedder.oom_backoffs
        vectors = embedder.encode_ids(ids, token_budget=4096)
        assert embedder.oom_backoffs > backoffs
        assert np.allclose(vectors, reference, atol=1e-5)
    finally:
        embedder.before_forward = None
        embedder.budget_cap = None


def test_stop_request_abandons_without_result(embedder, ids):
    assert embedder.encode_ids(ids, token_budget=512, should_stop=lambda: True) is None


def test_dtype_rules():
    gemma, bge = resolve_model("embeddinggemma"), resolve_model("bge-m3")
    assert resolve_dtype("auto", "cuda", gemma) == "bfloat16"
    assert resolve_dtype("auto", "cuda", bge) == "float16"
    assert resolve_dtype("auto", "cpu", bge) in ("float32", "bfloat16")
    with pytest.raises(UsageError):
        resolve_dtype("fp16", "cpu", bge)


def test_cpu_bf16_keeps_quality(ids):
    """bf16 on the CPU must stay within cosine 0.999 of fp32 to be an acceptable default."""
    fp32 = get_embedder(resolve_model("minilm"), "cpu", "fp32").encode_ids(ids, 4096)
    bf16 = get_embedder(resolve_model("minilm"), "cpu", "bf16").encode_ids(ids, 4096)
    assert np.min(np.sum(fp32 * bf16, axis=1)) > 0.999


def test_embedder_is_cached_per_process():
    spec = resolve_model("minilm")
    assert get_embedder(spec, "cpu", "fp32") is get_embedder(spec, "cpu", "fp32")


def test_compiled_forward_is_the_one_that_runs(ids):
    """sentence-transformers 6 calls `auto_model.forward` itself, so `nn.Module.compile` once left
    a 'compiled' model running eager. A counting backend shows which forward really runs."""
    from alexandria.embedding.embedder import Embedder, _load

    spec = resolve_model("minilm")
    emb = Embedder(spec, "cpu", "float32", _load(spec, "cpu", "float32"))  # not the cached one
    reference = emb.encode_ids(ids, 4096)
    calls = []

    def counting(graph, _example_inputs):
        def run(*args):
            calls.append(1)
            return graph.forward(*args)
        return run

    assert emb.compile(backend=counting) and emb.compiled
    try:
        vectors = emb.encode_ids(ids, 4096)
        assert calls, "the compiled forward never ran"
        assert np.allclose(vectors, reference, atol=1e-5)
        # a lone row runs as two (a compiled graph is specialised for size 1)
        assert np.allclose(emb.encode_ids(ids[:1], 4096), reference[:1], atol=1e-5)
        seen = len(calls)
        with emb.eager():  # the benchmark's baseline
            emb.encode_ids(ids[:5], 4096)
        assert len(calls) == seen
        emb.encode_ids(ids[:5], 4096)
        assert len(calls) > seen
        emb._uncompile()  # what a compiler failure falls back to
        seen = len(calls)
        assert np.allclose(emb.encode_ids(ids, 4096), reference, atol=1e-5)
        assert len(calls) == seen and not emb.compiled
    finally:
        torch._dynamo.reset()
