"""When each batch ran on the GPU, from CUDA events: the benchmark's exact GPU busy time.

NVML's utilisation is a 100 ms sample of "some kernel ran", which says nothing about where the
idle time falls. Two timing events per batch give the GPU's own clock for every batch, and the
host's clock at its launch tells whether a gap came from a late group (the main thread) or a late
batch within a group (the device thread).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Batch:
    first: bool  # the first batch of a group (an encode call)
    build_at: float  # host seconds since the timeline started: the batch's build began...
    launch_at: float  # ...its forward was called (after the wait for room on the device)...
    launch_s: float  # ...and took this long to queue, the copy back included
    begin: Any  # torch.cuda.Event before the forward
    end: Any  # after its vectors' copy to the host
    rows: int  # its shape: rows x width tokens, of which `real` are not padding
    width: int
    real: int


@dataclass
class Timeline:
    device: str
    batches: list[Batch] = field(default_factory=list)
    _ref: Any = None
    _t0: float = 0.0

    def start(self) -> None:
        """The reference: an event on an idle device, at a known host time."""
        import torch

        torch.cuda.synchronize(self.device)
        self._ref = torch.cuda.Event(enable_timing=True)
        self._ref.record(torch.cuda.current_stream(self.device))
        self._t0 = time.perf_counter()
        self.batches.clear()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def summary(self, top: int = 5) -> dict[str, Any] | None:
        """Busy share between the first batch's start and the last one's end, and the gaps."""
        if not self.batches or self._ref is None:
            return None
        return summarize(self.batches, self.spans(), top)

    def spans(self) -> list[tuple[float, float]]:
        """Each batch's start and end on the GPU, in seconds since start() (waits for the GPU)."""
        import torch

        torch.cuda.synchronize(self.device)
        ref = self._ref
        return [(ref.elapsed_time(b.begin) / 1e3, ref.elapsed_time(b.end) / 1e3) for b in self.batches]


def summarize(batches: list[Batch], spans: list[tuple[float, float]], top: int = 5) -> dict[str, Any]:
    """The summary of batches that ran on the GPU from spans[i][0] to spans[i][1] (seconds on
    the timeline's clock)."""
    busy = sum(e - s for s, e in spans)
    whole = spans[-1][1] - spans[0][0]
    gaps = []
    for i in range(1, len(spans)):
        gap = spans[i][0] - spans[i - 1][1]
        if gap > 0:
            b = batches[i]
            # positive: the host began building this batch after the GPU ran out of work
            late = b.launch_at - spans[i - 1][1]
            gaps.append((gap, i, b.first, late, b.launch_at - b.build_at, b.launch_s))
    first_gaps = sum(g[0] for g in gaps if g[2])
    launches = [b.launch_s for b in batches]
    real = sum(b.real for b in batches)
    return {
        "batches": len(spans),
        "busy_fraction": round(busy / whole, 4) if whole > 0 else None,
        "busy_s": round(busy, 3),
        # the batches' own speed: below the model alone's, the batches (their shapes, or a
        # host too slow to queue their kernels) cost the time, not the gaps between them
        "real_tokens_per_busy_s": round(real / busy) if busy > 0 else None,
        "padded_tokens": sum(b.rows * b.width for b in batches),
        "span_s": round(whole, 3),
        "idle_s_before_group": round(first_gaps, 3),  # the next group came late
        "idle_s_within_group": round(sum(g[0] for g in gaps) - first_gaps, 3),
        "first_batch_at_s": round(spans[0][0], 3),
        "launch_s_median": round(statistics.median(launches), 4),
        # near busy_s: the host queues kernels about as fast as the GPU runs them, and a slow
        # launch (a thread waiting for the GIL or a core) stalls the GPU inside a batch
        "launch_s_total": round(sum(launches), 3),
        "launch_s_max": round(max(launches), 4),
        "largest_gaps": [
            {"batch": i, "first_of_group": first, "gap_ms": round(1e3 * gap, 1),
             "host_late_ms": round(1e3 * late, 1), "build_ms": round(1e3 * build, 1),
             "launch_ms": round(1e3 * launch, 1)}
            for gap, i, first, late, build, launch in sorted(gaps, reverse=True)[:top]],
    }
