"""An embedded collection's configuration: chosen when it is created, stored beside the shard,
reported by status, and kept by every later opening (never silently changed)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import pytest

from alexandria import Location, status
from alexandria.errors import UsageError
from alexandria.store.base import PointData
from alexandria.store.config import CONFIG_NAME, DEFAULT, LEGACY, StoreConfig, read_config
from alexandria.store.edge import EdgeStore
from tests.conftest import run_cli

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets")


def unit_points(book: str, n: int, dim: int = 8) -> list[PointData]:
    out = []
    for i in range(n):
        v = [0.0] * dim
        v[i % dim] = 1.0
        v[(i + 1) % dim] = 0.1 * (i // dim + 1)
        out.append(PointData(f"00000000-0000-0000-0000-{i:012d}", v,
                             {"book_key": book, "chunk_index": i, "authors": ["A"]}))
    return out


def engine_config(root) -> tuple:
    """What Qdrant Edge recorded of the vectors and the index (it adds resolved defaults on load)."""
    record = json.loads((root / "c" / "edge_config.json").read_text())
    return record["vectors"], record["hnsw_config"]


def test_the_options_given_are_stored_with_a_new_collection_and_status_reports_them(tmp_path):
    where = Location.of("minilm", store=tmp_path, collection="c",
                        store_config={"quantization": "binary", "on_disk": False, "hnsw_m": 24})
    store = where.open_store(8)
    try:
        store.upsert(unit_points("a", 40))
        store.flush()
        assert store.store_config()["quantization"] == "binary"
    finally:
        store.close()
    stored = json.loads((tmp_path / "c" / CONFIG_NAME).read_text())
    assert (stored["quantization"], stored["on_disk"], stored["hnsw_m"]) == ("binary", False, 24)
    edge = json.loads((tmp_path / "c" / "edge_config.json").read_text())
    assert "binary" in json.dumps(edge).lower()  # the engine's own record agrees
    reported = status(Location.of("minilm", store=tmp_path, collection="c"))["store_config"]
    assert (reported["quantization"], reported["on_disk"], reported["hnsw_m"]) == (
        "binary", False, 24)


def test_status_prints_the_configuration_of_the_store(tmp_path):
    store = EdgeStore(tmp_path, "alexandria_minilm", 8, {"quantization": "none"})
    store.close()
    out = run_cli("status", "--model", "minilm", "--store", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "store: quantization none, vectors on disk, HNSW m 16" in out.stdout


def test_a_new_collection_without_options_gets_the_default(tmp_path):
    store = EdgeStore(tmp_path, "c", 8)
    store.close()
    assert read_config(tmp_path / "c") == DEFAULT


def test_an_existing_store_is_opened_with_its_own_configuration(tmp_path):
    first = EdgeStore(tmp_path, "c", 8, {"quantization": "binary", "hnsw_m": 32})
    first.upsert(unit_points("a", 20))
    first.close()
    engine_record = engine_config(tmp_path)

    again = Location.of("minilm", store=tmp_path, collection="c").open_store(8)  # no options
    try:
        assert again.store_config()["quantization"] == "binary"
        assert again.store_config()["hnsw_m"] == 32
        assert again.count() == 20
    finally:
        again.close()
    with pytest.raises(UsageError, match=r"quantization='binary' \(asked 'int8'\).*keeps its"):
        EdgeStore(tmp_path, "c", 8, {"quantization": "int8"})
    asked = Location.of("minilm", store=tmp_path, collection="c",
                        store_config={"hnsw_m": 16, "quantization": None})
    with pytest.raises(UsageError, match=r"hnsw_m=32 \(asked 16\)"):
        asked.open_store(8)  # through the shard's owner process too
    same = EdgeStore(tmp_path, "c", 8, {"quantization": "binary"})  # the same choice is fine
    same.close()
    assert read_config(tmp_path / "c").quantization == "binary"
    assert engine_config(tmp_path) == engine_record


def test_a_store_from_before_configurations_were_recorded_keeps_qdrants_defaults(tmp_path):
    EdgeStore(tmp_path, "c", 8, {"quantization": "none", "on_disk": False}).close()
    (tmp_path / "c" / CONFIG_NAME).unlink()
    store = EdgeStore(tmp_path, "c", 8)
    try:
        assert store.config == replace(LEGACY, sparse=True)  # the shard's own vectors say sparse
    finally:
        store.close()
    assert not (tmp_path / "c" / CONFIG_NAME).exists()  # opening it wrote nothing new


def test_a_collection_made_with_no_sparse_holds_dense_vectors_only_and_keeps_it(tmp_path):
    store = Location.of("minilm", store=tmp_path, collection="c",
                        store_config={"sparse": False}).open_store(8)
    try:
        store.upsert(unit_points("a", 10))
        store.flush()
        assert store.vectors() == {"dense": 8, "sparse": []}
        assert store.store_config()["sparse"] is False
    finally:
        store.close()
    with pytest.raises(UsageError, match=r"sparse=False \(asked True\)"):
        EdgeStore(tmp_path, "c", 8, {"sparse": True})
    out = run_cli("ingest", "--help")
    assert "--no-sparse" in out.stdout


@pytest.mark.parametrize("quantization", ["none", "int8", "binary"])
def test_each_quantization_finds_the_nearest_point_after_the_index_is_built(tmp_path, quantization):
    store = EdgeStore(tmp_path, "c", 8, {"quantization": quantization})
    try:
        store.upsert(unit_points("a", 64))
        store.flush()
        store.finish()  # builds what the configuration asks for
        target = unit_points("a", 64)[13]
        hits = store.search(target.vector, 3)
        assert hits[0].id == target.id
        hits = store.search(target.vector, 3, must={"authors": "A", "book_key": "a"})
        assert hits[0].id == target.id
    finally:
        store.close()


def test_bad_configuration_options_are_one_sentence():
    with pytest.raises(UsageError, match="--quantization must be one of none, int8, binary"):
        StoreConfig(quantization="pq")
    with pytest.raises(UsageError, match="--hnsw-m must be between 4 and 128"):
        StoreConfig(hnsw_m=2)


def test_configuration_options_with_a_server_url_are_refused(tmp_path):
    where = Location.of("minilm", store=tmp_path, url="http://127.0.0.1:9",
                        store_config={"quantization": "int8"})
    with pytest.raises(UsageError, match="--quantization configure the embedded store"):
        where.open_store(8)


def test_a_store_opened_on_another_machine_builds_its_index_with_that_machines_threads(
        tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXANDRIA_INDEX_THREADS", "3")
    first = EdgeStore(tmp_path, "c", 8, {"quantization": "none", "hnsw_m": 24})
    first.upsert(unit_points("a", 40))
    first.close()
    vectors, hnsw = engine_config(tmp_path)
    assert hnsw["max_indexing_threads"] == 3

    monkeypatch.setenv("ALEXANDRIA_INDEX_THREADS", "2")  # the store moved to a smaller box
    again = Location.of("minilm", store=tmp_path, collection="c").open_store(8)  # via the owner
    try:
        assert again.count() == 40
        again.finish()
        target = unit_points("a", 40)[7]
        assert again.search(target.vector, 1)[0].id == target.id
    finally:
        again.close()
    moved_vectors, moved_hnsw = engine_config(tmp_path)
    assert moved_vectors == vectors  # nothing but the thread count changed
    assert moved_hnsw == {**hnsw, "max_indexing_threads": 2}
    assert read_config(tmp_path / "c").hnsw_m == 24


def test_a_shard_whose_configuration_this_version_would_not_make_keeps_its_thread_count(
        tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXANDRIA_INDEX_THREADS", "3")
    EdgeStore(tmp_path, "c", 8).close()
    record = json.loads((tmp_path / "c" / CONFIG_NAME).read_text())
    (tmp_path / "c" / CONFIG_NAME).write_text(json.dumps({**record, "hnsw_m": 20}))
    before = engine_config(tmp_path)
    monkeypatch.setenv("ALEXANDRIA_INDEX_THREADS", "2")
    store = EdgeStore(tmp_path, "c", 8)  # its record no longer says how it was made
    store.close()
    assert engine_config(tmp_path) == before


def test_the_index_thread_count_is_every_core_up_to_16_unless_set(monkeypatch):
    from alexandria.store.config import index_threads

    monkeypatch.delenv("ALEXANDRIA_INDEX_THREADS", raising=False)
    assert 1 <= index_threads() <= 16
    monkeypatch.setenv("ALEXANDRIA_INDEX_THREADS", "0")  # Qdrant's own choice
    assert index_threads() == 0
    monkeypatch.setenv("ALEXANDRIA_INDEX_THREADS", "many")
    with pytest.raises(UsageError, match="ALEXANDRIA_INDEX_THREADS must be a whole number"):
        index_threads()


def test_an_index_built_during_a_run_adds_a_segment_until_the_optimiser_would_merge(tmp_path):
    import numpy as np

    # Room for four segments; segments of more than 1 KB of vectors (8 of these) get an index.
    EdgeStore(tmp_path, "c", 32, {"segments": 4, "index_threshold_kb": 1}).close()
    store = Location.of("minilm", store=tmp_path, collection="c").open_store(32)  # via the owner
    rows = np.random.default_rng(0).standard_normal((120, 32))
    points = [PointData(f"00000000-0000-0000-0000-{i:012d}", row.tolist(), {"book_key": "a"})
              for i, row in enumerate(rows)]
    try:
        added = []
        for part in range(3):
            store.upsert(points[part * 40:(part + 1) * 40])
            added.append(store.index_part())
        # the appendable segment and two built ones: a third would make four, where Qdrant merges
        assert added == [True, True, False]
        store.finish()
        assert store.count() == 120
        for target in points[::17]:
            assert store.search(target.vector, 1)[0].id == target.id
    finally:
        store.close()
    shard = EdgeStore(tmp_path, "c", None)
    try:
        info = shard.shard.info()
        assert info.segments_count == 4 and info.indexed_vectors_count >= 120
    finally:
        shard.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values per thread: Linux")
def test_an_index_built_during_a_run_yields_the_cores_and_its_threads_inherit_it():
    """Qdrant starts its build threads for each build, from the thread that asked: they inherit
    its nice value, so the build takes only the cores the run and the servers leave."""
    import os
    import threading

    from alexandria.store.edge import BUILD_NICE, yielding

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = nice()
    seen: list[int] = []

    def build() -> str:
        seen.append(nice())
        started = threading.Thread(target=lambda: seen.append(nice()))
        started.start()
        started.join()
        return "built"

    assert yielding(build) == "built"
    assert seen == [min(19, mine + BUILD_NICE)] * 2
    assert nice() == mine  # the caller keeps its priority
    with pytest.raises(ZeroDivisionError):
        yielding(lambda: 1 / 0)


def test_the_segment_target_is_qdrants_own_unless_the_store_sets_one():
    from alexandria.store.config import segment_target, usable_cores

    assert segment_target(DEFAULT) == min(max(usable_cores(), 2), 8)
    assert segment_target(replace(DEFAULT, segments=12)) == 12


def test_the_points_between_builds_during_a_run_can_be_set_or_turned_off(monkeypatch):
    from alexandria.store.config import index_every

    monkeypatch.delenv("ALEXANDRIA_INDEX_EVERY", raising=False)
    assert index_every() == 10_000
    monkeypatch.setenv("ALEXANDRIA_INDEX_EVERY", "0")  # only at the end of a run
    assert index_every() == 0
    monkeypatch.setenv("ALEXANDRIA_INDEX_EVERY", "often")
    with pytest.raises(UsageError, match="ALEXANDRIA_INDEX_EVERY must be a whole number"):
        index_every()
