"""Device names, checked before torch is imported (the embedder resolves them against the machine)."""

from __future__ import annotations

from alexandria.errors import UsageError


def check_device_names(device: str) -> None:
    """A misspelt --device is one sentence at once, before torch is imported or a book is read."""
    for part in (device or "auto").split(","):
        name = part.strip().lower()
        if name in ("auto", "cpu", "cuda", "") or (name.startswith("cuda:") and name[5:].isdigit()):
            continue
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {part.strip()!r}.")
