"""What the benchmark reads off the machine: the device's clock, memory and peak, the versions."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import threading
import time
from pathlib import Path
from typing import Any


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: str, dtype: str) -> float:
    """Dense matmul throughput on the spot, in the model's dtype (the MFU denominator)."""
    import torch

    tdtype = getattr(torch, dtype)
    if device.startswith("cuda"):
        n, warm, reps = 8192, 3, 10
        a = torch.randn(n, n, device=device, dtype=tdtype)
        b = torch.randn(n, n, device=device, dtype=tdtype)
        for _ in range(warm):
            a @ b
        times = []
        for _ in range(reps):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        del a, b
        torch.cuda.empty_cache()
    else:
        n, warm, reps = 2048, 1, 5
        a = torch.randn(n, n, dtype=tdtype)
        b = torch.randn(n, n, dtype=tdtype)
        for _ in range(warm):
            a @ b
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(times) / 1e12


class GpuSampler:
    """NVML utilisation and SM clock every 100 ms in a background thread; does nothing without a
    GPU. The clock tells whether a long run is slower because the card clocks down under sustained
    load (the model-only pass lasts seconds, the end-to-end run a minute)."""

    def __init__(self, device: str, interval: float = 0.1) -> None:
        self.samples: list[int] = []
        self.clocks: list[int] = []  # SM MHz, where utilisation > 0
        self.mem_peak_mb: float | None = None
        self.interval = interval
        self._handle = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not device.startswith("cuda"):
            return
        try:
            import pynvml
            import torch

            pynvml.nvmlInit()
            index = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # no NVML library or no permission: no utilisation, not an error
            self._handle = None

    def __enter__(self) -> GpuSampler:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, name="bench-nvml", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        import pynvml

        while not self._stop.is_set():
            try:
                util = int(pynvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
                self.samples.append(util)
                if util > 0:
                    with contextlib.suppress(Exception):  # not every card reports it
                        self.clocks.append(int(pynvml.nvmlDeviceGetClockInfo(self._handle,
                                                                             pynvml.NVML_CLOCK_SM)))
                used = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
                self.mem_peak_mb = max(self.mem_peak_mb or 0.0, used)
            except Exception:
                return
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any] | None:
        if self._handle is None or not self.samples:
            return None
        busy = [i for i, s in enumerate(self.samples) if s > 0]
        span = self.samples[busy[0]: busy[-1] + 1] if busy else []
        return {
            "mean_pct": round(statistics.fmean(self.samples), 1),
            "busy_fraction": round(sum(1 for s in span if s > 0) / len(span), 3) if span else 0.0,
            "samples": len(self.samples),
            "nvml_mem_peak_mb": round(self.mem_peak_mb, 1) if self.mem_peak_mb else None,
            "sm_clock_mhz": round(statistics.fmean(self.clocks)) if self.clocks else None,
        }


def reset_vram(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def vram_mb(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def machine_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)} ({os.cpu_count()} CPUs)"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} CPUs)"


def versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "transformers", "sentence_transformers", "tokenizers", "qdrant_edge"):
        try:
            out[mod] = str(getattr(__import__(mod), "__version__", "?"))
        except Exception:
            out[mod] = "missing"
    return out


# -- the benchmark ---------------------------------------------------------------------------------


