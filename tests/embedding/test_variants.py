"""The CPU variants of a model (--backend onnx, --quantize int8, --dims) with the real minilm.

The export tests copy minilm's folder into tmp first: a local model's export lands beside it, so
each run starts with none and sees it made once.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from alexandria.chunking.settings import ChunkSettings
from alexandria.embedding.embedder import get_embedder
from alexandria.embedding.models import parse_variant, resolve_model
from alexandria.embedding.onnx import EXPORT_NAME, export_dir, load_onnx, quant_flavour
from alexandria.errors import UsageError
from alexandria.store.location import fingerprint, variant_of
from tests.conftest import corpus_book, ingest_args, minilm_ids, run_cli

# minilm's int8 vectors against its fp32 ones, on real chunks: the lowest cosine measured was
# 0.991 (docs/performance.md); the floor leaves room for other CPUs' int8 kernels.
MINILM_INT8_FLOOR = 0.98

TEXTS = [
    "The whale surfaced near the ship, and the harpooners made ready.",
    "April is the cruellest month, breeding lilacs out of the dead land.",
    "Le paquet Debian contient les fichiers de configuration du système.",
    "Holmes had the photograph in his hand before the lady could stop him, and he smiled.",
    "The accessibility of an EPUB depends on its structure, its navigation and its alt text.",
    "A short one.",
]


def test_each_variant_names_its_own_collection_and_the_published_model_keeps_its_name():
    plain = resolve_model("minilm")
    assert plain.variant == "" and plain.slug == "minilm"
    int8 = resolve_model("minilm", "onnx", "int8", 128)
    assert int8.variant == "onnx-int8-d128" and int8.slug == "minilm-onnx-int8-d128"
    assert parse_variant(int8.variant) == ("onnx", "int8", 128)
    assert parse_variant("") == ("torch", None, None)
    assert resolve_model("minilm", "onnx").slug != resolve_model("minilm", None, None, 256).slug


def test_the_fingerprint_carries_the_variant_and_rows_from_before_variants_still_match():
    settings = ChunkSettings()
    assert fingerprint(settings, 512) == f"{settings.fingerprint()}|max=512"
    assert variant_of(fingerprint(settings, 512)) == ""
    assert variant_of(fingerprint(settings, 512, "onnx-int8-d256")) == "onnx-int8-d256"


def test_variant_mistakes_are_one_sentence():
    with pytest.raises(UsageError, match="--backend onnx"):
        resolve_model("minilm", "torch", "int8")
    with pytest.raises(UsageError, match="--backend must be"):
        resolve_model("minilm", "tensorrt")
    with pytest.raises(UsageError, match="optimum-intel"):
        get_embedder(resolve_model("minilm", "openvino"), "cpu")
    with pytest.raises(UsageError, match="runs on the CPU"):
        get_embedder(resolve_model("minilm", "onnx"), "cuda")


def test_the_int8_settings_follow_the_cpu():
    assert quant_flavour("fpu sse avx2 avx512f avx512_vnni amx_int8", "x86_64") == "avx512_vnni"
    assert quant_flavour("fpu sse avx2 avx512f", "x86_64") == "avx512"
    assert quant_flavour("fpu sse avx2", "x86_64") == "avx2"
    assert quant_flavour("", "aarch64") == "arm64"


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory):
    src = resolve_model("minilm").source
    dest = tmp_path_factory.mktemp("models") / "minilm"
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("onnx"))
    return dest


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.mark.slow
def test_an_export_is_made_once_then_reused_and_int8_stays_near_fp32(minilm_copy, embedder):
    fp32 = embedder.encode_ids(minilm_ids(embedder, TEXTS), 4096)
    spec = resolve_model(str(minilm_copy), "onnx")
    onnx = get_embedder(spec, "cpu")
    exported = export_dir(spec) / EXPORT_NAME
    assert exported.is_file() and exported.parent == minilm_copy / "onnx"
    made = exported.stat().st_mtime_ns
    assert cosines(onnx.encode_ids(minilm_ids(embedder, TEXTS), 4096), fp32).min() > 0.9999

    int8 = get_embedder(resolve_model(str(minilm_copy), "onnx", "int8"), "cpu")
    assert int8.dtype == "int8" and int8.model.path.name == f"model_qint8_{quant_flavour()}.onnx"
    assert cosines(int8.encode_ids(minilm_ids(embedder, TEXTS), 4096), fp32).min() >= MINILM_INT8_FLOOR
    # a second load (another process would do the same) reads the cached files
    again = load_onnx(resolve_model(str(minilm_copy), "onnx", "int8"), onnx.max_seq_length)
    assert exported.stat().st_mtime_ns == made and again.path == int8.model.path
    query = int8.encode_query("the whale and the ship")
    assert len(query) == 384 and abs(np.linalg.norm(query) - 1) < 1e-4


@pytest.mark.slow
def test_dims_cut_and_renormalise_the_vectors_at_ingest_and_search(tmp_path, sample_epubs, embedder):
    store = tmp_path / "store"
    book = corpus_book("books/idpf-wasteland.epub", sample_epubs)
    proc = run_cli(*ingest_args(store, "--file", book, "--dims", "128"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = json.loads(run_cli("status", "--json", "--store", store).stdout)
    assert status["collection"] == "alexandria_minilm-d128" and status["dimension"] == 128
    # the stored vectors are minilm's first 128 dimensions, normalised again
    from alexandria.embedding.embedder import get_embedder as load

    cut = load(resolve_model("minilm", None, None, 128), "cpu", "fp32")
    vectors = cut.encode_ids(minilm_ids(embedder, TEXTS), 4096)
    full = embedder.encode_ids(minilm_ids(embedder, TEXTS), 4096)
    expected = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    assert vectors.shape == (len(TEXTS), 128) and np.allclose(vectors, expected, atol=1e-5)
    # search takes the collection's cut without being told, and with it
    for extra in ((), ("--dims", "128")):
        found = run_cli("search", "April is the cruellest month", "--json", "--store", store, *extra)
        assert found.returncode == 0, found.stderr[-2000:]
        assert "April" in json.loads(found.stdout)[0]["text"]
    other = run_cli("search", "April", "--store", store, "--collection", "alexandria_minilm-d128",
                    "--dims", "256")
    assert other.returncode == 2 and "d128" in other.stderr and "Traceback" not in other.stderr


@pytest.mark.slow
def test_a_collection_of_one_variant_refuses_another_variants_vectors(tmp_path, sample_epubs):
    store = tmp_path / "store"
    book = corpus_book("books/idpf-wasteland.epub", sample_epubs)
    first = run_cli(*ingest_args(store, "--file", book, "--collection", "mine"))
    assert first.returncode == 0, first.stderr[-2000:]
    mixed = run_cli(*ingest_args(store, "--file", corpus_book("books/idpf-sous-le-vent.epub",
                                                               sample_epubs),
                                 "--collection", "mine", "--dims", "128"))
    assert mixed.returncode == 2, mixed.stderr[-2000:]
    assert "holds vectors of minilm as torch" in mixed.stderr and "Traceback" not in mixed.stderr
    # without --collection the variant gets a collection of its own
    own = run_cli(*ingest_args(store, "--file", book, "--dims", "128"))
    assert own.returncode == 0, own.stderr[-2000:]
    names = {c for c in (store.iterdir()) if (c / "edge_config.json").is_file()}
    assert {p.name for p in names} == {"mine", "alexandria_minilm-d128"}
