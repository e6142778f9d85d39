"""alexandria bench-store on a tiny real store: every step measured, a cut-off fill resumed, and the
vectors as clustered as the bench says they are."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from alexandria.store.config import StoreConfig
from alexandria.tools.bench.store_scale import (
    ScaleOptions,
    Vectors,
    parse_steps,
    render,
    run_scale,
)
from tests.conftest import run_cli


def test_steps_are_read_as_sizes():
    assert parse_steps("100k, 1M,2.5k,500") == [500, 2500, 100_000, 1_000_000]


@pytest.mark.slow
def test_a_cut_off_fill_resumes_and_every_step_is_measured(tmp_path):
    out = tmp_path / "bs.json"
    opts = ScaleOptions(workdir=tmp_path / "w", steps=[1200, 2400], dimension=16,
                        config=StoreConfig(quantization="binary"), points_per_book=100,
                        queries=20, recall_queries=10, max_seconds=0.0)
    first = run_scale(opts, out)
    assert first["steps"] == [] and first["pending"]["fill_parts"][0]["reached"] is False
    stored = json.loads(out.read_text())["pending"]["fill_parts"][0]["points_written"]
    assert 0 < stored < 1200

    opts.max_seconds = None
    result = run_scale(opts, out)
    assert [s["target"] for s in result["steps"]] == [1200, 2400]
    assert "pending" not in result
    for step in result["steps"]:
        assert step["points"] == step["target"]
        assert step["upsert_points_per_s"] > 0
        assert abs(step["keeps_up_with_tokens_per_s"] - 480 * step["upsert_points_per_s"]) <= 480
        for kind in ("none", "author", "book"):
            q = step["search"][kind]
            assert q["p50_ms"] <= q["p95_ms"] <= q["p99_ms"]
            assert 0.0 <= q["recall_at_10"] <= 1.0
        assert step["nightly"]["books_counted"] == step["points"] // 100
        assert step["rss_mb"] > 0 and step["disk_mb"] > 0
    assert result["config"]["quantization"] == "binary"
    assert len(result["steps"][0]["fill_parts"]) == 2  # the cut-off part and its resumption
    assert "2,400" in render(result)

    again = run_scale(opts, out)  # nothing left to do: the steps in the file are kept
    assert again["steps"] == result["steps"]


def test_chunks_of_a_chapter_are_nearer_than_of_a_book_and_of_the_library():
    v = Vectors(256, 560, seed=3)
    chapter = v.block(0, 20)  # book 0, chapter 0
    same_book = v.block(300, 320)  # book 0, another chapter
    other = v.block(560 * 7 + 1, 560 * 7 + 21)  # book 7: another genre
    sims = chapter @ chapter.T
    within = float((sims.sum() - np.trace(sims)) / (20 * 19))
    assert float(np.mean(chapter @ same_book.T)) < within
    assert float(np.mean(chapter @ other.T)) < float(np.mean(chapter @ same_book.T))
    q, book = v.query(random.Random(0), 9)
    assert abs(float(np.linalg.norm(q)) - 1) < 1e-5 and 0 <= book < 9


def test_the_command_prints_the_table(tmp_path):
    done = run_cli("bench-store", "--workdir", tmp_path / "w", "--steps", "600", "--dim", "8",
                   "--points-per-book", "100", "--queries", "10", "--json", tmp_path / "b.json")
    assert done.returncode == 0, done.stderr
    assert "8 dims, quantization int8, on disk, m 16" in done.stdout
    assert json.loads((tmp_path / "b.json").read_text())["steps"][0]["points"] == 600
    grid = run_cli("bench-store", "--workdir", tmp_path / "w", "--dim", "8", "--points-per-book",
                   "100", "--queries", "10", "--grid-ef", "default,32", "--grid-oversampling", "3")
    assert grid.returncode == 0, grid.stderr
    rows = [line.split() for line in grid.stdout.splitlines()[1:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [("600", "default", "3.0"), ("600", "32", "3.0")]
