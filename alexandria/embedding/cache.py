"""Where Alexandria keeps what it derives from a model once and reuses (ONNX exports, tokenizers)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ALEXANDRIA_CACHE"


def cache_root() -> Path:
    """ALEXANDRIA_CACHE, else $XDG_CACHE_HOME/alexandria, else ~/.cache/alexandria."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "alexandria"
