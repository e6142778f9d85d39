"""The real google/embeddinggemma-300m, offline, through Alexandria's own paths.

Loading 300M parameters on two shared cores takes a while: one model per module, every test slow.
They skip with the reason when the model is not in the Hugging Face cache (.ci/run fetches it with
../shared/tools/get-embeddinggemma).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from alexandria.embedding.embedder import get_embedder, resolve_dtype
from alexandria.embedding.models import resolve_model
from alexandria.errors import UsageError
from tests.embedding.gemma import gemma_folder

pytestmark = pytest.mark.slow

TEXTS = [
    "The whale surfaced near the ship, and the harpooners made ready.",
    "Le paquet Debian contient les fichiers de configuration du système.",
    "يحتوي النظام الغذائي على الكثير من الخضروات والفواكه الطازجة.",
    "ライブシステムの構築には設定ファイルが必要です。",
]
QUERIES = ["how do I configure the live system?", "¿qué comen los pacientes con cáncer?"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def gemma():
    """The fp32 model, loaded once for the module, with the hub unreachable on purpose."""
    gemma_folder()
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # tests/conftest.py sets it for the session
    return get_embedder(resolve_model("embeddinggemma"), "cpu", "float32")


def test_the_real_model_loads_offline_with_its_own_prompts(gemma):
    st = gemma.model
    assert gemma.dimension == 768 and gemma.max_seq_length == 2048
    spec = gemma.spec
    # the prompts Alexandria writes are the model's own
    assert st.prompts["query"] == spec.query_prompt
    assert st.prompts["document"] == spec.document_template.format(title="none", text="")


def test_chunks_get_the_document_prompt_and_searches_the_query_prompt(gemma, tmp_path, sample_epubs):
    """A real ingest stores what SentenceTransformer.encode_document gives for each stored chunk
    (with the book's title in the prompt), and a search embeds what encode_query gives."""
    from alexandria.run.ingest import ingest
    from alexandria.run.options import IngestOptions
    from alexandria.store.edge import EdgeStore

    book = min(sample_epubs, key=lambda p: p.stat().st_size)
    report = ingest(IngestOptions(files=(book,), model="embeddinggemma", device="cpu",
                                  dtype="fp32", store=tmp_path / "store", workers=1, prune=False,
                                  store_process=False))
    assert report.books_done == 1 and report.chunks > 0
    store = EdgeStore(tmp_path / "store", report.collection, None)
    try:
        points = [p for page in store.iter_points(with_vectors=True) for p in page]
    finally:
        store.close()
    assert len(points) == report.chunks
    # A file outside a calibre library: its document prompt carries the book's own title (the
    # EPUB's dc:title), its file name only where the book has none.
    from alexandria.sources.epub import extract_epub

    title = extract_epub(book.read_bytes(), str(book)).title or book.stem
    texts = [p.payload["text"] for p in points]
    stored = np.asarray([p.vector for p in points], dtype=np.float32)
    st = gemma.model
    expected = st.encode(texts, prompt=f"title: {title} | text: ", normalize_embeddings=True,
                         convert_to_numpy=True)
    assert cosines(stored, expected).min() > 0.999
    # ... and not what the text gives without its prompt, or with the query prompt
    bare = st.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    as_query = st.encode_query(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert cosines(stored, bare).max() < 0.99
    assert cosines(stored, as_query).max() < 0.99

    # title "none" is the model's own document prompt: encode_document, as is
    ours = gemma.encode_documents([gemma.spec.document_text(t, "") for t in TEXTS], batch_size=4)
    assert cosines(ours, st.encode_document(TEXTS, convert_to_numpy=True)).min() > 0.9999

    ours = np.asarray([gemma.encode_query(q) for q in QUERIES], dtype=np.float32)
    theirs = st.encode_query(QUERIES, normalize_embeddings=True, convert_to_numpy=True)
    assert cosines(ours, theirs).min() > 0.9999
    assert cosines(ours, st.encode(QUERIES, convert_to_numpy=True)).max() < 0.99


def test_cpu_dtype_policy_bf16_is_close_to_fp32_and_fp16_is_refused(gemma, capsys):
    """bf16 where the CPU has bf16 instructions (auto), fp32 elsewhere, fp16 never: fp16 on a CPU
    gave our users zero vectors."""
    from alexandria.embedding.embedder import cpu_has_bf16

    spec = gemma.spec
    assert resolve_dtype("auto", "cpu", spec) == ("bfloat16" if cpu_has_bf16() else "float32")
    with pytest.raises(UsageError, match="fp16 is not supported on the CPU"):
        get_embedder(spec, "cpu", "fp16")
    bf16 = get_embedder(spec, "cpu", "bf16")
    texts = [spec.document_text(t, "none") for t in TEXTS] + [spec.query_text(q) for q in QUERIES]
    a = gemma.encode_documents(texts, batch_size=8)
    b = bf16.encode_documents(texts, batch_size=8)
    assert np.isfinite(b).all() and (np.abs(b).sum(axis=1) > 0).all()
    c = cosines(a, b)
    with capsys.disabled():
        print(f"\nEmbeddingGemma bf16 vs fp32 on this CPU: cosine min {c.min():.4f} "
              f"mean {c.mean():.4f} over {len(c)} texts")
    assert c.min() > 0.98


def test_packed_batches_with_the_real_weights_give_the_padded_vectors(gemma):
    """The real weights through packed (unpadded) batches, on this CPU's per-chunk attention: the
    positions, the sliding-window layers (one text longer than their 512-token window) and the
    pooling over each chunk's tokens give what the padded forward gives. The GPU's flash kernel
    is checked against the padded forward each time a run turns packing on."""
    from tests.conftest import minilm_ids

    spec = gemma.spec
    long = " ".join(f"The {i}th whale was sighted off the coast of Nantucket." for i in range(120))
    texts = [spec.document_text(t, "none") for t in [*TEXTS, long]] + \
        [spec.query_text(q) for q in QUERIES]
    ids = minilm_ids(gemma, texts)  # tokenized as the book workers do it (any model's tokenizer)
    assert max(len(x) for x in ids) > 600
    padded = gemma.encode_ids(ids, token_budget=4096)
    try:
        assert gemma.set_packing("on") and gemma.packed
        packed = gemma.encode_ids(ids, token_budget=4096)
    finally:
        gemma.set_packing("off")  # the cached model's next run asks for its own mode again
    assert cosines(packed, padded).min() > 0.999
