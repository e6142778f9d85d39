"""The cyclic garbage collector during a run: a full collection stops every thread of the process.

After torch, transformers and a compiled model are loaded, a full collection walks millions of
objects that live as long as the process (seconds on a GPU box): the device threads, the writer
and the main thread all stand still, and the GPUs run dry. Freezing them (gc.freeze) keeps every
later collection to the objects of the run itself; the pauses that remain go into the report.
"""

from __future__ import annotations

import gc
import time
from typing import Any


class GcWatch:
    """Freeze what exists at the start (and again once the model is compiled); time the pauses."""

    def __init__(self) -> None:
        self.total_s = 0.0
        self.longest_s = 0.0
        self.full_collections = 0
        self._began: float | None = None

    def __enter__(self) -> GcWatch:
        gc.freeze()
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
        gc.unfreeze()  # a process that runs again later collects this run's leftovers then

    def freeze(self) -> None:
        """torch.compile builds its graphs during the first batches: those objects stay too."""
        gc.freeze()

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        if self._began is None:
            return
        pause = time.perf_counter() - self._began
        self._began = None
        self.total_s += pause
        self.longest_s = max(self.longest_s, pause)
        if info.get("generation") == 2:
            self.full_collections += 1
