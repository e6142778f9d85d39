"""Where a pass's device time goes, kernel by kernel (torch.profiler), for `alexandria bench --profile`.

When the end-to-end batches yield fewer real tokens per second of GPU busy time than the model
alone on the same chunks (docs/performance.md), kernel time per million real tokens, end to end
against model alone, tells whether the same kernels run slower there or whether other kernels
(other shapes) take the time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

TOP = 40  # kernels kept per pass


@contextlib.contextmanager
def profiled(device: str) -> Iterator[list[dict[str, Any]]]:
    """Profile the block; the list holds its kernels (CPU ops on the CPU) afterwards."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no start/stop lines on stderr
    from torch._C._profiler import _ExperimentalConfig
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    # On a GPU only the kernels count, and CUPTI sees every thread's: the CPU ops of every thread
    # would only add overhead. On the CPU the ops are the kernels, and the model runs on the device
    # threads (alexandria.feed), not this one.
    activities = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    rows: list[dict[str, Any]] = []
    config = _ExperimentalConfig(profile_all_threads=not cuda)
    with profile(activities=activities, experimental_config=config) as prof:
        yield rows
    rows.extend(kernel_rows(prof.key_averages(), cuda))


def kernel_rows(averages: Any, cuda: bool) -> list[dict[str, Any]]:
    """Name, calls and self time in microseconds, largest first. On a GPU: the kernels (and
    copies) alone, since an op's row also carries the device time of the kernels it launched."""
    from torch.autograd import DeviceType

    rows = []
    for evt in averages:
        if cuda and evt.device_type != DeviceType.CUDA:
            continue
        us = float(evt.self_device_time_total if cuda else evt.self_cpu_time_total)
        if us > 0:
            rows.append({"name": evt.key, "calls": int(evt.count), "self_us": round(us, 1)})
    rows.sort(key=lambda r: -r["self_us"])
    return rows


def compare(e2e: list[dict[str, Any]], e2e_tokens: int, alone: list[dict[str, Any]],
            alone_tokens: int, top: int = TOP) -> dict[str, Any]:
    """Microseconds per million real tokens of each kernel in both passes, and their ratio."""
    def per_m(rows: list[dict[str, Any]], tokens: int) -> dict[str, float]:
        return {r["name"]: r["self_us"] * 1e6 / max(1, tokens) for r in rows}

    a, b = per_m(e2e, e2e_tokens), per_m(alone, alone_tokens)
    names = sorted(set(a) | set(b), key=lambda n: -a.get(n, 0.0))[:top]
    calls_a = {r["name"]: r["calls"] for r in e2e}
    calls_b = {r["name"]: r["calls"] for r in alone}
    kernels = [{"name": n, "e2e_us_per_m": round(a.get(n, 0.0), 1),
                "model_only_us_per_m": round(b.get(n, 0.0), 1),
                "ratio": round(a[n] / b[n], 3) if a.get(n) and b.get(n) else None,
                "e2e_calls": calls_a.get(n, 0), "model_only_calls": calls_b.get(n, 0)}
               for n in names]
    total_a, total_b = sum(a.values()), sum(b.values())
    return {"e2e_us_per_m": round(total_a, 1), "model_only_us_per_m": round(total_b, 1),
            "ratio": round(total_a / total_b, 3) if total_b else None, "kernels": kernels}
