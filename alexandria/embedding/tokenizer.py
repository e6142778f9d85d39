"""A model's tokenizer and window without its weights (--dry-run, the run's chunker), and the
libraries' loading noise turned off.

What transformers' AutoTokenizer makes of a model's files is kept in Alexandria's cache, keyed by
those files' contents and the libraries' versions: a later run (a remote-embedding run, a plan)
reads it back without importing transformers and torch, which took most of such a run's start-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from importlib import metadata
from pathlib import Path

from alexandria.embedding.cache import cache_root
from alexandria.embedding.hub import ensure_loadable
from alexandria.embedding.models import ModelSpec
from alexandria.errors import UsageError


def quiet_libraries() -> None:
    """transformers 5 prints a weight-loading bar per load; cron mail wants none of it."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


# Every file AutoTokenizer or the window may read; those a model has go into the cache key.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model", "config.json",
                   "sentence_bert_config.json")
log = logging.getLogger("alexandria")


def load_tokenizer_json(spec: ModelSpec) -> tuple[str, int]:
    """The model's tokenizer (as JSON) and maximum length, without loading weights."""
    quiet_libraries()
    ensure_loadable(spec)
    key = tokenizer_key(spec)
    stored = cache_root() / "tokenizers" / f"{key}.json" if key else None
    if stored is not None and stored.is_file():
        try:
            saved = json.loads(stored.read_text(encoding="utf-8"))
            return saved["tokenizer"], int(saved["max_seq_length"])
        except (OSError, ValueError, KeyError, TypeError):
            log.debug("tokenizer cache %s unreadable; made again", stored)
    tokenizer, max_len = _from_transformers(spec)
    if stored is not None:
        _save(stored, {"model": spec.source, "tokenizer": tokenizer, "max_seq_length": max_len})
    return tokenizer, max_len


def tokenizer_key(spec: ModelSpec) -> str | None:
    """A hash of the model's tokenizer files and of the versions that read them; None where the
    files are not on this machine (AutoTokenizer then fetches them)."""
    folder = _files_folder(spec)
    if folder is None:
        return None
    digest = hashlib.sha256()
    for package in ("transformers", "tokenizers"):
        try:
            digest.update(f"{package}={metadata.version(package)}\n".encode())
        except metadata.PackageNotFoundError:
            return None
    found = False
    for name in TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            found = found or name in ("tokenizer.json", "tokenizer_config.json")
            digest.update(f"{name}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32] if found else None


def _files_folder(spec: ModelSpec) -> Path | None:
    if os.path.isdir(spec.source):
        return Path(spec.source)
    from huggingface_hub import try_to_load_from_cache

    for name in ("tokenizer_config.json", "tokenizer.json"):
        found = try_to_load_from_cache(spec.source, name)
        if isinstance(found, str):
            return Path(found).parent
    return None


def _save(path: Path, data: dict) -> None:
    """Atomically, so that two runs starting at once never read half a file; a cache that cannot
    be written costs only the next run's start-up."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False,
                                         suffix=".tmp") as f:
            tmp = f.name
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("tokenizer cache not written (%s)", e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _from_transformers(spec: ModelSpec) -> tuple[str, int]:
    from transformers import AutoTokenizer

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
