"""Python, the packages, CUDA and the driver."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys
from typing import Any

from alexandria.tools.doctor.report import Check, error_text, gib, guarded

PACKAGES = [
    ("torch", "torch"),
    ("sentence-transformers", "sentence_transformers"),
    ("transformers", "transformers"),
    ("qdrant-edge-py", "qdrant_edge"),
    ("qdrant-client", "qdrant_client"),
    ("ebooklib", "ebooklib"),
    ("beautifulsoup4", "bs4"),
    ("lxml", "lxml.etree"),
    ("semantic-text-splitter", "semantic_text_splitter"),
]
# Importing these takes seconds; loading the model imports them anyway, so only then are they imported.
HEAVY_IMPORTS = {"sentence_transformers", "transformers"}


def check_python() -> list[Check]:
    v = sys.version_info
    detail = f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"
    if v < (3, 10):
        return [Check("python", "fail", f"{detail}; Alexandria needs 3.10 or newer")]
    return [Check("python", "ok", detail)]


def check_packages(import_heavy: bool) -> list[Check]:
    return [guarded(dist, lambda d=dist, m=module: [check_package(d, m, import_heavy)])[0]
            for dist, module in PACKAGES]


def check_package(dist: str, module: str, import_heavy: bool) -> Check:
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return Check(dist, "fail", f"not installed (pip install {dist})")
    if module in HEAVY_IMPORTS and not import_heavy:
        return Check(dist, "ok", version)
    try:
        importlib.import_module(module)
    except Exception as e:
        return Check(dist, "fail", f"{version} is installed but `import {module}` fails: {error_text(e)}")
    return Check(dist, "ok", version)


def check_cuda(device: str) -> list[Check]:
    wants_cuda = (device or "auto").strip().lower().startswith("cuda")
    checks: list[Check] = []
    import torch

    built = torch.version.cuda
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        checks.append(Check("cuda", "ok", f"available: CUDA {built}, {n} device(s)"))
    else:
        why = (f"torch {torch.__version__} is a CPU-only build" if built is None
               else f"not available (torch built for CUDA {built})")
        if wants_cuda:
            checks.append(Check("cuda", "fail", f"--device {device} was requested but {why}"))
        else:
            checks.append(Check("cuda", "info", f"{why}; embedding runs on the CPU"))
    checks.extend(guarded("nvidia driver", check_driver))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            checks.extend(guarded(f"gpu {i}", lambda i=i: [check_gpu(torch, i)]))
    return checks


def check_driver() -> list[Check]:
    try:
        import pynvml
    except ImportError:
        return [Check("nvidia driver", "info", "nvidia-ml-py is not installed; driver not checked")]
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return [Check("nvidia driver", "info", "no NVIDIA driver")]
    try:
        version = pynvml.nvmlSystemGetDriverVersion()
        if isinstance(version, bytes):
            version = version.decode()
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            version = f"{version} (supports CUDA {cuda // 1000}.{cuda % 1000 // 10})"
        except Exception:
            pass
        return [Check("nvidia driver", "ok", str(version))]
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def check_gpu(torch: Any, index: int) -> Check:
    name = torch.cuda.get_device_name(index)
    free, total = torch.cuda.mem_get_info(index)
    detail = f"{name}: {gib(free)} free of {gib(total)}"
    if total and free < 0.25 * total:
        return Check(f"gpu {index}", "warn", f"{detail}; other processes use most of its memory")
    return Check(f"gpu {index}", "ok", detail)


