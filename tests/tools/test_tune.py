"""`alexandria tune` on the CPU with the real minilm model: trials timed, the winner kept in .env."""

from __future__ import annotations

import json
import shutil

import pytest

from alexandria.tools.tune import write_env
from tests.conftest import corpus_book, run_cli


def test_write_env_replaces_only_its_key(tmp_path):
    env = tmp_path / ".env"
    env.write_text("ALEXANDRIA_MODEL=minilm\n# ALEXANDRIA_TOKEN_BUDGET=\nQDRANT_API_KEY=secret\n")
    write_env(env, {"ALEXANDRIA_TOKEN_BUDGET": "4096"}, "tuned")
    write_env(env, {"ALEXANDRIA_TOKEN_BUDGET": "8192"}, "tuned again")
    lines = env.read_text().splitlines()
    assert "ALEXANDRIA_MODEL=minilm" in lines and "QDRANT_API_KEY=secret" in lines
    assert [x for x in lines if "TOKEN_BUDGET" in x] == ["ALEXANDRIA_TOKEN_BUDGET=8192"]


@pytest.mark.slow
def test_tune_writes_the_fastest_budget(tmp_path, sample_epubs):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy2(corpus_book("books/idpf-wasteland.epub", sample_epubs), lib)
    env = tmp_path / "tuned.env"
    proc = run_cli("tune", "--directory", lib, "--model", "minilm", "--device", "cpu",
                   "--env-file", env, "--sample-tokens", "4000", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert len(out["trials"]) >= 3 and all(t["ok"] for t in out["trials"])
    fastest = max(out["trials"], key=lambda t: t["tokens_per_s"])
    assert out["best_token_budget"] == fastest["token_budget"]
    assert f"ALEXANDRIA_TOKEN_BUDGET={fastest['token_budget']}" in env.read_text().splitlines()
    proc = run_cli("tune", "--directory", tmp_path / "missing", "--model", "minilm", "--device", "cpu")
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
