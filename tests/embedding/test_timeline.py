"""The benchmark's GPU timeline arithmetic (alexandria.timeline); CUDA events give the spans on a
GPU, here they are written out."""

from __future__ import annotations

import pytest

from alexandria.embedding.timeline import Batch, summarize


def _batch(first: bool, launch_at: float, rows: int = 4, width: int = 32, real: int = 100) -> Batch:
    return Batch(first, launch_at - 0.001, launch_at, 0.002, None, None, rows, width, real)


def test_busy_time_gaps_and_the_batches_own_speed():
    # a group of two batches back to back, then the next group's first batch 0.5 s late
    batches = [_batch(True, 0.0), _batch(False, 0.05), _batch(True, 1.4)]
    spans = [(0.0, 0.4), (0.4, 0.9), (1.4, 1.9)]
    s = summarize(batches, spans)
    assert s["batches"] == 3
    assert s["busy_s"] == pytest.approx(1.4)
    assert s["span_s"] == pytest.approx(1.9)
    assert s["busy_fraction"] == pytest.approx(1.4 / 1.9, abs=1e-4)
    assert s["idle_s_before_group"] == pytest.approx(0.5) and s["idle_s_within_group"] == 0
    assert s["real_tokens_per_busy_s"] == round(300 / 1.4)
    assert s["padded_tokens"] == 3 * 4 * 32
    assert s["launch_s_total"] == pytest.approx(0.006)
    gap = s["largest_gaps"][0]
    # the host launched it 0.5 s after the GPU ran dry: the main thread was late, not the GPU
    assert gap["batch"] == 2 and gap["first_of_group"] and gap["gap_ms"] == pytest.approx(500)
    assert gap["host_late_ms"] == pytest.approx(500)


def test_a_gap_inside_a_group_is_the_device_threads():
    batches = [_batch(True, 0.0), _batch(False, 0.6)]
    s = summarize(batches, [(0.0, 0.5), (0.7, 1.0)])
    assert s["idle_s_within_group"] == pytest.approx(0.2) and s["idle_s_before_group"] == 0
    assert s["largest_gaps"][0]["host_late_ms"] == pytest.approx(100)
