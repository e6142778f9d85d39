"""`alexandria tune`: the fastest token budget for this model on this card, written into .env.

A 12 GB A2000 and an H100 want very different batches (a big card runs bge-m3 faster at several
times the default budget); guessing wastes the card or runs it out of memory. This times the model on
real chunks of the user's own books at a few budgets, drops any that ran out of memory or passed
--max-vram-gb, and keeps the fastest as ALEXANDRIA_TOKEN_BUDGET so every later run uses it.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from alexandria.errors import UsageError

FACTORS = (0.5, 1, 2, 4, 8)  # times batch_size x chunk tokens
SAMPLE_TOKENS = {"cuda": 400_000, "cpu": 40_000}


@dataclass
class Trial:
    token_budget: int
    tokens_per_s: float | None
    vram_peak_mb: float | None
    ok: bool
    why: str = ""


def sample_ids(folder: Path, tokenizer_json: str, max_seq_length: int, settings, template,
               want_tokens: int) -> list[np.ndarray]:
    """Model inputs of real chunks from the first books of the folder, about want_tokens of them."""
    from alexandria.run.prepare import PrepareTask, init_worker, prepare

    books = sorted(p for p in Path(folder).rglob("*.epub") if p.is_file())
    if not books:
        raise UsageError(f"{folder} holds no .epub files to tune on.")
    init_worker(tokenizer_json, max_seq_length, settings, template)
    ids: list[np.ndarray] = []
    for path in books:
        prepared = prepare(PrepareTask(str(path), str(path), "epub", path.stem, title_is_file_name=True))
        ids.extend(prepared.token_ids)
        if sum(len(x) for x in ids) >= want_tokens:
            break
    if not ids:
        raise UsageError(f"No book in {folder} could be read and chunked.")
    return ids


def run_trials(embedder, ids: list[np.ndarray], budgets: list[int], max_vram_gb: float | None,
               repeats: int = 2) -> list[Trial]:
    import torch

    cuda = embedder.device.startswith("cuda")
    real = sum(len(x) for x in ids)
    trials = []
    for budget in budgets:
        embedder.budget_cap = None
        before = embedder.oom_backoffs
        if cuda:
            torch.cuda.synchronize(embedder.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(embedder.device)
        try:
            embedder.encode_ids(ids[: max(1, len(ids) // 8)], budget, max_batch=max(384, budget // 32))
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                embedder.encode_ids(ids, budget, max_batch=max(384, budget // 32))
                if cuda:
                    torch.cuda.synchronize(embedder.device)
                times.append(time.perf_counter() - start)
        except torch.OutOfMemoryError:
            trials.append(Trial(budget, None, None, False, "out of memory"))
            continue
        vram = torch.cuda.max_memory_allocated(embedder.device) / 2**20 if cuda else None
        trial = Trial(budget, real / min(times), round(vram, 1) if vram else None, True)
        if embedder.oom_backoffs > before:
            trial.ok, trial.why = False, "out of memory (backed off)"
        elif max_vram_gb and vram and vram > max_vram_gb * 1024:
            trial.ok, trial.why = False, f"above --max-vram-gb {max_vram_gb:g}"
        trials.append(trial)
    embedder.budget_cap = None
    return trials


def write_env(env_file: Path, values: dict[str, str], comment: str) -> None:
    """Set these keys in a .env file, keeping every other line as it was."""
    lines = env_file.read_text().splitlines() if env_file.is_file() else []
    for key, value in values.items():
        pattern = re.compile(rf"^\s*#?\s*{re.escape(key)}=")
        kept = [line for line in lines if not pattern.match(line)]
        lines = kept + [f"# {comment}", f"{key}={value}"]
    env_file.write_text("\n".join(lines) + "\n")


def tune(directory: Path, model: str = "bge-m3", device: str = "auto", dtype: str = "auto",
         max_vram_gb: float | None = None, env_file: Path | None = Path(".env"),
         batch_size: int = 96, chunk_tokens: int = 512, sample_tokens: int | None = None) -> dict:
    from alexandria.chunking.chunker import ChunkSettings
    from alexandria.embedding.embedder import get_embedder
    from alexandria.embedding.models import resolve_model

    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise UsageError(f"The folder {directory} does not exist.")
    spec = resolve_model(model)
    embedder = get_embedder(spec, device, dtype)
    kind = "cuda" if embedder.device.startswith("cuda") else "cpu"
    if kind == "cuda":
        embedder.compile()
    ids = sample_ids(directory, embedder.tokenizer_json(), embedder.max_seq_length,
                     ChunkSettings(chunk_tokens=chunk_tokens), spec.document_template,
                     sample_tokens or SAMPLE_TOKENS[kind])
    base = batch_size * min(chunk_tokens, embedder.max_seq_length)
    budgets = sorted({max(embedder.max_seq_length, int(base * f)) for f in FACTORS})
    trials = run_trials(embedder, ids, budgets, max_vram_gb)
    good = [t for t in trials if t.ok]
    if not good:
        raise UsageError("No token budget fitted on this device; lower --max-vram-gb's demands or "
                         "use a smaller model.")
    best = max(good, key=lambda t: t.tokens_per_s or 0)
    if env_file is not None:
        write_env(Path(env_file), {"ALEXANDRIA_TOKEN_BUDGET": str(best.token_budget)},
                  f"alexandria tune: {spec.name} on {embedder.device} ({embedder.dtype}), "
                  f"{best.tokens_per_s:,.0f} tokens/s")
    return {"model": spec.name, "device": embedder.device, "dtype": embedder.dtype,
            "sample_tokens": int(sum(len(x) for x in ids)), "best_token_budget": best.token_budget,
            "trials": [asdict(t) for t in trials], "env_file": str(env_file) if env_file else None}
