"""Dense plus sparse vectors in one point, on Qdrant Edge and on a server (qdrant-client's local
mode): search modes, status, and `ingest --add-sparse` on a collection made before sparse vectors
existed. Real model (minilm), real stores, the generated sample library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alexandria.store.sparse import term_weights
from tests.conftest import ingest_args, run_cli

WHALING = "A Short History of Whaling"


def test_term_weights_split_every_script_into_words():
    """Japanese and Chinese become words (dictionary segmentation), not one term per text."""
    tw = term_weights()
    ja = tw.document("ライブシステムの構築には設定ファイルが必要です。")
    assert len(ja.indices) >= 4
    query = tw.query("設定ファイル")
    assert set(query.indices) <= set(ja.indices) and query.indices
    fr = tw.document("Les baleiniers chassaient la baleine.")
    assert set(tw.query("BALEINE").indices) <= set(fr.indices)  # lowercased, no accents lost
    assert not set(tw.query("baleines").indices) & set(fr.indices)  # no stemmer: exact words
    assert tw.document("").indices == []


def cli_search(args: list[str], query: str, *more: str) -> list[dict]:
    proc = run_cli("search", query, "--model", "minilm", "--device", "cpu", "--json", *args, *more)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def api_search(args: list[str], query: str, **more) -> list[dict]:
    """The same search through the Python API, in this process: the model loads once, where each
    command loads it again (the tests check the command once each, then ask the API)."""
    from alexandria import SearchOptions, search

    where = dict(zip(args[::2], args[1::2], strict=True))
    opts = SearchOptions(model="minilm", device="cpu", store=Path(where["--store"]),
                         qdrant_url=where.get("--qdrant-url"), **more)
    return json.loads(json.dumps([r.to_dict() for r in search(query, opts)]))


def status(args: list[str]) -> dict:
    proc = run_cli("status", "--json", "--model", "minilm", *args)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module",  # the server engine: on demand (-m long)
                params=["edge", pytest.param("server", marks=pytest.mark.long)])
def where(request, tmp_path_factory, sample_library) -> list[str]:
    """The sample library ingested into a new collection: the store options for later commands."""
    root = tmp_path_factory.mktemp(f"sparse-{request.param}")
    args = ["--store", str(root / "store")]
    if request.param == "server":
        args += ["--qdrant-url", f"local:{root / 'qdrant'}"]
    proc = run_cli(*ingest_args(root / "store", "--directory", sample_library, *args[2:]))
    assert proc.returncode == 0, proc.stderr
    return args


@pytest.mark.slow
def test_a_new_collection_carries_dense_and_sparse_vectors_and_every_mode_searches(where):
    s = status(where)
    assert s["vectors"] == {"dense": 384, "sparse": ["bm25"]}
    for mode in ("dense", "sparse", "hybrid"):
        hits = api_search(where, "toggling harpoon", mode=mode, top_k=3)
        assert hits and hits[0]["title"] == WHALING, mode
        assert "harpoon" in hits[0]["text"].lower()
    # sparse scores are BM25 sums, hybrid scores reciprocal ranks: not cosines
    sparse = api_search(where, "toggling harpoon", mode="sparse")
    hybrid = api_search(where, "toggling harpoon", mode="hybrid")
    assert sparse[0]["score"] > 1.0 and hybrid[0]["score"] < 0.1
    assert cli_search(where, "toggling harpoon") == hybrid  # the default where sparse vectors exist
    # a word no chunk holds finds nothing lexically; dense still answers
    assert api_search(where, "xylophonequartz", mode="sparse") == []
    assert api_search(where, "xylophonequartz", mode="dense")
    # filters apply on both sides of a hybrid search
    hits = api_search(where, "harpoon", mode="hybrid", author="Hélène Dufresne")
    assert hits and all(h["authors"] == ["Hélène Dufresne"] for h in hits)
    human = run_cli("status", "--model", "minilm", *where)
    assert "vectors: dense 384, sparse bm25" in human.stdout


def test_an_unknown_mode_is_one_sentence(tmp_path):
    proc = run_cli("search", "x", "--model", "minilm", "--device", "cpu", "--mode", "lexical",
                   "--store", tmp_path)
    assert proc.returncode == 2 and "lexical" in proc.stderr and "Traceback" not in proc.stderr
    from alexandria.errors import UsageError
    from alexandria.query.search import SearchOptions, search

    with pytest.raises(UsageError, match="--mode must be dense, sparse or hybrid"):
        search("x", SearchOptions(model="minilm", store=tmp_path, mode="bm25"))


def legacy_edge(store: Path, collection: str) -> None:
    """A collection as Alexandria made them before sparse vectors: one unnamed dense vector."""
    import qdrant_edge as qe

    path = store / collection
    path.mkdir(parents=True)
    shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(
        vectors=qe.EdgeVectorParams(size=384, distance=qe.Distance.Cosine)))
    shard.update(qe.UpdateOperation.create_field_index("book_key", qe.PayloadSchemaType.Keyword))
    shard.flush()
    shard.close()


def legacy_server(path: Path, collection: str) -> None:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(path))
    client.create_collection(collection, vectors_config=models.VectorParams(
        size=384, distance=models.Distance.COSINE))
    client.close()


def dense_vectors(args: list[str], tmp: Path) -> dict[str, list[float]]:
    from alexandria.store.location import Location

    store = Path(args[1])
    url = args[3] if len(args) > 3 else None
    s = Location.of("minilm", store=store, url=url).open_store()
    try:
        return {p.id: p.vector for page in s.iter_points(with_vectors=True) for p in page}
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["edge", pytest.param("server", marks=pytest.mark.long)])
def test_an_old_dense_only_collection_keeps_working_and_add_sparse_fills_it(
        engine, tmp_path, sample_epubs):
    from alexandria.embedding.models import resolve_model
    from alexandria.store.location import default_collection

    collection = default_collection(resolve_model("minilm"))
    store = tmp_path / "store"
    args = ["--store", str(store)]
    if engine == "server":
        args += ["--qdrant-url", f"local:{tmp_path / 'qdrant'}"]
        legacy_server(tmp_path / "qdrant", collection)
    else:
        legacy_edge(store, collection)
    book = sample_epubs[0]
    proc = run_cli(*ingest_args(store, "--file", book, *args[2:]))
    assert proc.returncode == 0, proc.stderr
    assert status(args)["vectors"] == {"dense": 384, "sparse": []}
    # the default falls back to dense on an old collection, as search was before
    default = cli_search(args, "toggling harpoon")
    assert default == api_search(args, "toggling harpoon", mode="dense")
    assert default[0]["title"] == WHALING
    proc = run_cli("search", "toggling harpoon", "--model", "minilm", "--device", "cpu",
                   "--mode", "hybrid", *args)
    assert proc.returncode == 2 and "--add-sparse" in proc.stderr and "Traceback" not in proc.stderr
    before = dense_vectors(args, tmp_path)

    proc = run_cli("ingest", "--add-sparse", "--model", "minilm", *args)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(before)} chunks of collection {collection} got sparse vectors" in proc.stdout
    assert status(args)["vectors"] == {"dense": 384, "sparse": ["bm25"]}
    after = dense_vectors(args, tmp_path)
    assert after.keys() == before.keys()
    assert all(after[k] == pytest.approx(before[k], abs=1e-6) for k in before)  # not re-embedded
    assert api_search(args, "toggling harpoon", mode="sparse")[0]["title"] == WHALING
    assert api_search(args, "toggling harpoon", mode="hybrid")[0]["title"] == WHALING
    verified = status([*args, "--verify"])
    assert verified["mismatches"] == 0 and verified["totals"]["done"] == 1
    # again: nothing left to fill; a later ingest writes both kinds
    proc = run_cli("ingest", "--add-sparse", "--model", "minilm", *args)
    assert proc.returncode == 0 and proc.stdout.startswith("0 chunks"), proc.stderr
    proc = run_cli(*ingest_args(store, "--file", sample_epubs[1], *args[2:]))
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("ingest", "--add-sparse", "--model", "minilm", *args)
    assert proc.returncode == 0 and proc.stdout.startswith("0 chunks"), proc.stderr
    if engine == "edge":
        assert sorted(p.name for p in store.iterdir() if p.is_dir()) == [collection]


@pytest.mark.slow
def test_the_sparse_terms_the_book_workers_compute_are_those_of_each_stored_text(tmp_path,
                                                                               sample_library):
    """The workers compute each chunk's terms (alexandria.run.prepare.add_sparse_terms) so that
    the store's one owner process need not: what is stored is what the text gives."""
    from alexandria.chunking.chunker import Chunk
    from alexandria.run.ingest import ingest
    from alexandria.run.options import IngestOptions
    from alexandria.run.prepare import add_sparse_terms
    from alexandria.store.edge import EdgeStore
    from alexandria.store.sparse import SPARSE

    report = ingest(IngestOptions(directory=sample_library, model="minilm", device="cpu",
                                  store=tmp_path / "store", workers=2, store_process=False))
    assert report.books_done > 0
    store = EdgeStore(tmp_path / "store", report.collection, None)
    try:
        records, offset, seen = [], None, 0
        while True:
            page, offset = store.shard.scroll(store.qe.ScrollRequest(
                offset=offset, limit=256, with_payload=True, with_vector=[SPARSE]))
            records += page
            if offset is None:
                break
    finally:
        store.close()
    assert len(records) == report.chunks
    for r in records:
        chunk = Chunk(0, "", 0, 0, 0, 0, r.payload["text"])
        add_sparse_terms([chunk])
        stored = r.vector[SPARSE]
        assert list(stored.indices) == chunk.sparse[0]
        assert list(stored.values) == pytest.approx(chunk.sparse[1], rel=1e-6)
        seen += 1
    assert seen == report.chunks


def test_a_book_worker_gives_every_chunk_its_sparse_terms_when_the_run_asks(tmp_path):
    from alexandria.chunking.chunker import ChunkSettings
    from alexandria.embedding.models import resolve_model
    from alexandria.run.prepare import PrepareTask, init_worker, prepare
    from tests.sources.test_extract import build_epub

    tokenizer_json = (Path(resolve_model("minilm").source) / "tokenizer.json").read_text()
    path = tmp_path / "b.epub"
    path.write_bytes(build_epub({"c.xhtml": "<h1>Harpoons</h1>" + "<p>The harpooneer threw.</p>" * 60}))
    init_worker(tokenizer_json, 128, ChunkSettings(), None, sparse_terms=True)
    book = prepare(PrepareTask("k", str(path), "epub", "B"))
    assert len(book.chunks) > 1
    for c in book.chunks:
        want = term_weights().document(c.text)
        assert c.sparse == (list(want.indices), list(want.values))
    init_worker(tokenizer_json, 128, ChunkSettings(), None)  # not asked: the owner computes them
    assert all(c.sparse is None for c in prepare(PrepareTask("k", str(path), "epub", "B")).chunks)
