"""Where the real google/embeddinggemma-300m is: the Hugging Face cache, offline, or a skip."""

from __future__ import annotations

from pathlib import Path

import pytest

HUB_ID = "google/embeddinggemma-300m"
FETCH = "../shared/tools/get-embeddinggemma"


def gemma_folder() -> Path:
    """The cached snapshot folder, or a skip that says how to get it."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(HUB_ID, local_files_only=True))
    except Exception as e:  # not in the cache: LocalEntryNotFoundError and friends
        pytest.skip(f"{HUB_ID} is not in the Hugging Face cache ({type(e).__name__}); "
                    f"run {FETCH} to rebuild it")
    if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
        pytest.skip(f"{HUB_ID} in {folder} is incomplete; run {FETCH} again")
    return folder
