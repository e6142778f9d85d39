"""Shared fixtures: the real corpus, the real minilm model, real Qdrant Edge stores in tmp folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
EPUBS = CORPUS / "epubs"
CALIBRE = CORPUS / "calibre-library"

# Small real books: fast enough to ingest many times in one test session.
SMALL_BOOKS = [
    "books/idpf-wasteland.epub",
    "books/idpf-regime-anticancer-arabic.epub",
    "edge/idpf-hefty-water.epub",
    "edge/epubcheck-epub2-minimal-valid.epub",
]


def need_corpus() -> None:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is not beside this checkout")


@pytest.fixture(scope="session")
def embedder():
    """The real minilm model on the CPU, loaded once for the session."""
    from alexandria.embed import get_embedder
    from alexandria.models import resolve_model

    return get_embedder(resolve_model("minilm"), "cpu", "fp32")


def minilm_ids(embedder, texts: list[str]) -> list:
    """Model inputs for texts, tokenized exactly as the book workers do it."""
    from alexandria.chunk import Chunker, ChunkSettings
    from alexandria.prepare import model_inputs

    return model_inputs(Chunker(embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings()),
                        texts)


@pytest.fixture
def small_library(tmp_path: Path) -> Path:
    """A plain folder of a few real EPUBs (copied to tmp: tests may change them)."""
    need_corpus()
    lib = tmp_path / "library"
    lib.mkdir()
    for rel in SMALL_BOOKS:
        shutil.copy2(EPUBS / rel, lib / Path(rel).name)
    return lib


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 900):
    """The real command in a real process, as cron and SSH users run it."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "alexandria", *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def ingest_args(store: Path, *more: str) -> list[str]:
    return ["ingest", "--model", "minilm", "--device", "cpu", "--store", str(store),
            "--log-dir", str(store.parent / "logs"), *more]


def status_json(store: Path, verify: bool = True) -> dict:
    args = ["status", "--json", "--model", "minilm", "--store", str(store)]
    if verify:
        args.append("--verify")
    proc = run_cli(*args)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def calibre_ingest(tmp_path_factory) -> dict:
    """The shared calibre library ingested once for the session (real model, real store)."""
    need_corpus()
    root = tmp_path_factory.mktemp("calibre-run")
    store = root / "store"
    report = root / "report.json"
    proc = run_cli(*ingest_args(store, "--directory", CALIBRE, "--report", report))
    return {"store": store, "proc": proc, "report": json.loads(report.read_text()),
            "root": root}
