"""`alexandria export`: an embedded Edge store copied into a Qdrant collection, nothing re-embedded.

The target is qdrant-client's local mode (in-process, same API as a server): through an injected
client in the Python API, and through `--to-path` on the command line.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tests.conftest import SMALL_BOOKS, ingest_args, run_cli, status_json

COLLECTION = "alexandria_minilm"


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, small_epubs) -> dict:
    """A small plain-folder library ingested once into an Edge store (real model, real store)."""
    root = tmp_path_factory.mktemp("export")
    lib = root / "library"
    lib.mkdir()
    assert len(small_epubs) == len(SMALL_BOOKS)
    for src in small_epubs:
        shutil.copy2(src, lib / src.name)
    store = root / "store"
    proc = run_cli(*ingest_args(store, "--directory", lib))
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "lib": lib, "store": store}


def edge_points(store: Path) -> dict:
    from alexandria.store.edge import EdgeStore

    s = EdgeStore(store, COLLECTION, None)
    try:
        return {p.id: p for page in s.iter_points(with_vectors=True) for p in page}
    finally:
        s.close()


def test_export_into_an_injected_local_client(ingested):
    from qdrant_client import QdrantClient

    from alexandria import Location, export

    source = edge_points(ingested["store"])
    client = QdrantClient(":memory:")
    report = export(Location.of("minilm", store=ingested["store"], collection=COLLECTION), client=client,
                    batch=50)
    assert report.points == report.target_points == len(source) > 50
    assert report.batches == math.ceil(len(source) / 50)

    records, offset = client.scroll(COLLECTION, limit=10_000, with_payload=True, with_vectors=True)
    assert offset is None and len(records) == len(source)
    for r in records:
        src = source[str(r.id)]  # the same point id
        assert r.payload == src.payload
        # the copy carries the dense vector as stored, and a sparse one made from the chunk's text
        assert set(r.vector) == {"", "bm25"} and r.vector["bm25"].indices
        assert max(abs(a - b) for a, b in zip(r.vector[""], src.vector, strict=True)) < 1e-6
    # Search gives the same nearest point on both sides.
    probe = next(iter(source.values()))
    hit = client.query_points(COLLECTION, query=probe.vector, limit=1).points[0]
    assert str(hit.id) == probe.id

    # Exporting again overwrites (same ids): nothing is doubled.
    again = export(Location.of("minilm", store=ingested["store"], collection=COLLECTION), client=client)
    assert again.target_points == len(source)


def test_export_cli_then_ingest_against_the_copy(ingested, tmp_path):
    target = tmp_path / "qdrant-local"
    proc = run_cli("export", "--model", "minilm", "--store", ingested["store"],
                   "--to-path", target, "--batch", "100")
    assert proc.returncode == 0, proc.stderr
    assert "Copied" in proc.stdout and "Traceback" not in proc.stderr

    # The manifest beside the Edge store is valid for the copy: nothing to embed.
    url = f"local:{target}"
    report = tmp_path / "r.json"
    proc = run_cli(*ingest_args(ingested["store"], "--directory", ingested["lib"],
                                "--qdrant-url", url, "--report", report))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["books_done"] == 0 and r["books_unchanged"] == len(SMALL_BOOKS), r
    s = json.loads(run_cli("status", "--json", "--verify", "--model", "minilm", "--store",
                           ingested["store"], "--qdrant-url", url).stdout)
    assert s["mismatches"] == 0 and s["totals"]["done"] == len(SMALL_BOOKS)
    assert status_json(ingested["store"])["mismatches"] == 0  # the Edge store is untouched


def test_export_mistakes_are_one_sentence(ingested, tmp_path):
    proc = run_cli("export", "--model", "minilm", "--store", ingested["store"])
    assert proc.returncode == 2 and "--to-url" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("export", "--model", "minilm", "--store", tmp_path / "empty",
                   "--to-path", tmp_path / "t")
    assert proc.returncode == 2 and "no collection" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
