"""A model's tokenizer and window without its weights (--dry-run, the run's chunker), and the
libraries' loading noise turned off."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alexandria.embedding.hub import ensure_loadable
from alexandria.embedding.models import ModelSpec
from alexandria.errors import UsageError


def quiet_libraries() -> None:
    """transformers 5 prints a weight-loading bar per load; cron mail wants none of it."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def load_tokenizer_json(spec: ModelSpec) -> tuple[str, int]:
    """Tokenizer and maximum length without loading weights, for --dry-run."""
    quiet_libraries()
    from transformers import AutoTokenizer

    ensure_loadable(spec)
    try:
        tok = AutoTokenizer.from_pretrained(spec.source)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(
            f"The tokenizer of model {spec.name!r} could not be loaded ({first[:200]})."
        ) from e
    max_len = _sentence_max_length(spec.source) or min(int(tok.model_max_length), 8192)
    return tok.backend_tokenizer.to_str(), max_len


def _sentence_max_length(source: str) -> int | None:
    import json

    cfg = Path(source) / "sentence_bert_config.json"
    if not cfg.is_file():
        try:
            from huggingface_hub import hf_hub_download

            cfg = Path(hf_hub_download(source, "sentence_bert_config.json"))
        except Exception:
            return None
    try:
        return int(json.loads(cfg.read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError):
        return None
