"""Packed (unpadded) batches give the padded batches' vectors: real minilm, and the real
transformers code of XLM-RoBERTa (bge-m3) and Gemma 3 (EmbeddingGemma) with small random weights.

The CPU runs the per-chunk attention instead of the GPU's flash kernel: what these tests pin is
the packing itself (positions per chunk, chunk boundaries reaching every layer, the sliding
window, the pooling over each chunk's tokens, the row order); the flash kernel is checked
against the padded forward on the GPU each time a run turns packing on (Embedder.set_packing).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from alexandria.embedding import packed
from alexandria.embedding.embedder import Embedder
from alexandria.embedding.models import ModelSpec
from alexandria.errors import UsageError
from tests.conftest import minilm_ids

TEXTS = [("Call me Ishmael. " * (1 + (i * 7) % 40)) + f"Sentence number {i}." for i in range(60)]


@contextlib.contextmanager
def packing(embedder, mode: str = "on"):
    try:
        yield embedder.set_packing(mode)
    finally:
        embedder.set_packing("off")
        embedder._packing = None  # the next run decides again


def test_packed_batches_give_the_padded_vectors_in_input_order(embedder):
    ids = minilm_ids(embedder, TEXTS)
    padded = embedder.encode_ids(ids, token_budget=2048)
    sizes: list[int] = []
    with packing(embedder) as on:
        assert on and embedder.packed
        before = (embedder.real_tokens, embedder.padded_tokens)
        embedder.before_forward = sizes.append
        try:
            vectors = embedder.encode_ids(ids, token_budget=2048)
        finally:
            embedder.before_forward = None
    assert vectors.shape == padded.shape
    assert np.min(np.sum(vectors * padded, axis=1)) > 0.9999  # row i is still chunk i
    real, fed = embedder.real_tokens - before[0], embedder.padded_tokens - before[1]
    assert real == fed == sum(len(x) for x in ids)  # not one pad token
    longest = max(len(x) for x in ids)
    assert len(sizes) > 3 and all(s <= max(2048, longest) for s in sizes)


def test_packed_out_of_memory_halves_the_budget_and_retries(embedder):
    ids = minilm_ids(embedder, TEXTS)
    reference = embedder.encode_ids(ids, token_budget=4096)

    def fake_oom(tokens: int) -> None:
        if tokens > 1500:
            raise torch.OutOfMemoryError("simulated: CUDA out of memory")

    with packing(embedder):
        embedder.before_forward = fake_oom
        try:
            backoffs = embedder.oom_backoffs
            vectors = embedder.encode_ids(ids, token_budget=4096)
            assert embedder.oom_backoffs > backoffs
        finally:
            embedder.before_forward = None
            embedder.budget_cap = None
    assert np.min(np.sum(vectors * reference, axis=1)) > 0.9999


def test_packing_modes(embedder):
    with pytest.raises(UsageError, match="--packing must be auto, on or off"):
        embedder.set_packing("sometimes")
    assert not embedder.set_packing("auto")  # the CPU keeps padded batches unless asked
    assert not embedder.set_packing("off")
    embedder._packing = None


def _tiny(tmp_path, config, pooling: str, arch: str):
    """A sentence-transformers model of the real architecture code, small random weights."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoModel

    from alexandria.tools.bench.synthetic import SYNTHETIC, train_tokenizer

    torch.manual_seed(0)
    folder = tmp_path / arch
    AutoModel.from_config(config).save_pretrained(folder)
    train_tokenizer(["whales and ships and the sea " * 40], SYNTHETIC[arch], 120).save_pretrained(folder)
    model = SentenceTransformer(modules=[Transformer(str(folder)), Pooling(config.hidden_size, pooling),
                                         Normalize()], device="cpu")
    return Embedder(ModelSpec(arch, str(folder)), "cpu", "float32", model.eval())


def _compare(embedder: Embedder) -> float:
    rng = np.random.default_rng(0)
    ids = [rng.integers(5, 110, size=n) for n in (3, 40, 17, 33, 2, 25, 40, 9)]
    padded = embedder.encode_ids(ids, token_budget=120)
    assert embedder.set_packing("on")
    vectors = embedder.encode_ids(ids, token_budget=120)
    return float(np.min(np.sum(vectors * padded, axis=1)))


def test_xlm_roberta_positions_start_after_the_pad_id(tmp_path):
    """bge-m3's architecture: RoBERTa positions count from pad + 1 in every chunk; CLS pooling."""
    from transformers import XLMRobertaConfig

    config = XLMRobertaConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=128,
                              max_position_embeddings=130, pad_token_id=1, type_vocab_size=1)
    assert _compare(_tiny(tmp_path, config, "cls", "bge-m3")) > 0.99999


@pytest.mark.parametrize("window", [8, 64])
def test_gemma3_bidirectional_sliding_window(tmp_path, window):
    """EmbeddingGemma's architecture: rotary positions per chunk, one key head for three query
    heads, mean pooling, and a sliding window shorter (8) or longer (64) than the chunks."""
    from transformers import Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=120, hidden_size=48, num_hidden_layers=3, num_attention_heads=3,
        num_key_value_heads=1, head_dim=16, intermediate_size=96, sliding_window=window,
        max_position_embeddings=128, query_pre_attn_scalar=16, pad_token_id=0,
        use_bidirectional_attention=True, use_cache=False,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    assert _compare(_tiny(tmp_path, config, "mean", "embeddinggemma")) > 0.99999


def test_poolings_packing_cannot_do_keep_padded_batches(tmp_path):
    from transformers import XLMRobertaConfig

    config = XLMRobertaConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=130, pad_token_id=1, type_vocab_size=1)
    embedder = _tiny(tmp_path, config, "max", "bge-m3")
    assert "pooling" in packed.supported(embedder.model)
    assert not embedder.set_packing("on") and not embedder.packed


def test_pack_layout():
    batch = packed.pack([np.array([7, 8, 9]), np.array([5]), np.array([4, 4])], start=2)
    assert batch.input_ids.tolist() == [7, 8, 9, 5, 4, 4]
    assert batch.position_ids.tolist() == [2, 3, 4, 2, 2, 3]
    assert batch.cu_seqlens.tolist() == [0, 3, 4, 6]
    assert batch.row_of.tolist() == [0, 0, 0, 1, 2, 2]
    assert batch.max_length == 3 and batch.rows == 3


@pytest.mark.long  # two full ingests; the packed kernels' own tests are fast
def test_a_packed_ingest_finds_what_a_padded_one_finds(small_library, tmp_path):
    """The whole pipeline with --packing on (the GPU's path, run here on the CPU): the same chunks,
    and a search ranks the same passages with the same scores.

    Both runs pin fp32: `--dtype auto` is bf16 on a CPU with bf16 instructions, where packed and
    padded batches round differently (scores ~1e-3 apart) although the packing is exact."""
    import json

    from tests.conftest import ingest_args, run_cli

    hits = {}
    for mode in ("off", "on"):
        store = tmp_path / f"store-{mode}"
        proc = run_cli(*ingest_args(store, "--directory", small_library, "--packing", mode,
                                    "--dtype", "fp32", "--report", tmp_path / f"{mode}.json"))
        assert proc.returncode == 0, proc.stderr
        found = run_cli("search", "the sea and the ships", "--model", "minilm", "--device", "cpu",
                        "--dtype", "fp32", "--store", store, "--json", "--top-k", "5")
        assert found.returncode == 0, found.stderr
        hits[mode] = json.loads(found.stdout)
    reports = {m: json.loads((tmp_path / f"{m}.json").read_text()) for m in ("off", "on")}
    assert reports["on"]["packed"] and not reports["off"]["packed"]
    assert reports["on"]["chunks"] == reports["off"]["chunks"] > 0
    assert [h["text"] for h in hits["on"]] == [h["text"] for h in hits["off"]]
    assert np.allclose([h["score"] for h in hits["on"]], [h["score"] for h in hits["off"]], atol=1e-4)
