"""User mistakes end in one plain sentence and exit code 2; options come from flags, env and .env."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, ingest_args, run_cli


def one_sentence(proc) -> str:
    """The error's sentence: the only line on stderr besides the run's progress lines."""
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()
             and not line.startswith(("loading model ", "skipped  "))]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_folder(tmp_path):
    proc = run_cli(*ingest_args(tmp_path / "s", "--directory", tmp_path / "nowhere"))
    assert proc.returncode == 2
    assert "does not exist" in one_sentence(proc)


def test_unknown_model(small_library, tmp_path):
    proc = run_cli("ingest", "--directory", small_library, "--model", "no-such/model-xyz",
                   "--device", "cpu", "--store", tmp_path / "s", "--log-dir", tmp_path / "logs")
    assert proc.returncode == 2
    assert "no-such/model-xyz" in one_sentence(proc)


def test_cuda_requested_but_absent(small_library, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("ingest", "--directory", small_library, "--model", "minilm", "--device", "cuda",
                   "--store", tmp_path / "s", "--log-dir", tmp_path / "logs")
    assert proc.returncode == 2
    assert "CUDA is not available" in one_sentence(proc)


def test_bad_flag_is_a_usage_error(tmp_path):
    proc = run_cli("ingest", "--no-such-flag")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "No such option" in proc.stderr


def test_nothing_to_ingest(tmp_path):
    proc = run_cli(*ingest_args(tmp_path / "s"))
    assert proc.returncode == 2
    assert "--directory" in one_sentence(proc)


def test_dimension_mismatch_is_a_clear_error(small_library, tmp_path):
    """A collection made by one model cannot silently take another model's vectors."""
    from alexandria.store.edge import EdgeStore

    store = tmp_path / "s"
    EdgeStore(store, "shared", 1024).close()
    proc = run_cli(*ingest_args(store, "--directory", small_library, "--collection", "shared"))
    assert proc.returncode == 2
    assert "1024-dimensional" in one_sentence(proc)


def test_flags_beat_environment_beat_dotenv(small_library, tmp_path):
    (tmp_path / ".env").write_text(
        f"ALEXANDRIA_DIRECTORY={small_library}\nALEXANDRIA_MODEL=minilm\n"
        "ALEXANDRIA_DEVICE=cpu\nALEXANDRIA_CHUNK_TOKENS=100\nALEXANDRIA_OVERLAP=10\n"
        "ALEXANDRIA_DRY_RUN=true\n"
    )
    base = ["ingest", "--log-dir", tmp_path / "logs"]
    env = {"PYTHONPATH": str(REPO)}
    from_dotenv = run_cli(*base, "--report", tmp_path / "a.json", cwd=tmp_path, env=env)
    assert from_dotenv.returncode == 0, from_dotenv.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["dry_run"] and max(b["token_lengths"]["max"] for b in a["books"]) <= 102

    env["ALEXANDRIA_CHUNK_TOKENS"] = "60"
    from_env = run_cli(*base, "--report", tmp_path / "b.json", cwd=tmp_path, env=env)
    b = json.loads((tmp_path / "b.json").read_text())
    assert from_env.returncode == 0 and max(x["token_lengths"]["max"] for x in b["books"]) <= 62

    from_flag = run_cli(*base, "--chunk-tokens", "40", "--report", tmp_path / "c.json",
                        cwd=tmp_path, env=env)
    c = json.loads((tmp_path / "c.json").read_text())
    assert from_flag.returncode == 0 and max(x["token_lengths"]["max"] for x in c["books"]) <= 42


def test_env_example_lists_every_ingest_option():
    from alexandria.cli import ingest_script

    text = (REPO / ".env.example").read_text()
    for param in ingest_script.params:
        if param.envvar:
            assert param.envvar in text, param.envvar


def test_script_has_the_same_options(small_library, tmp_path):
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "ingest_books.py"), "--help"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0
    for flag in ("--directory", "--file", "--device", "--model", "--batch-size", "--store",
                 "--qdrant-url", "--collection", "--report", "--dry-run", "--force"):
        assert flag in proc.stdout


def test_second_run_exits_75_while_the_first_holds_the_lock(small_library, tmp_path):
    import subprocess
    import time

    store = tmp_path / "s"
    store.mkdir()
    holder = subprocess.Popen([
        sys.executable, "-c",
        "import sys, time; from pathlib import Path; from alexandria.store.lock import RunLock\n"
        f"with RunLock(Path({str(store / 'alexandria.lock')!r})):\n"
        "    print('held', flush=True); time.sleep(60)",
    ], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli(*ingest_args(store, "--directory", small_library))
        assert proc.returncode == 75
        line = one_sentence(proc)
        assert f"PID {holder.pid}" in line and "--wait-lock" in line
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    # The holder died without releasing anything by hand: the kernel dropped its flock.
    assert run_cli(*ingest_args(store, "--directory", small_library)).returncode == 0


def test_output_cut_short_by_its_reader_ends_quietly():
    """`alexandria search ... | head -1`: the reader leaving is no error of Alexandria's."""
    import subprocess

    code = ("import sys; from alexandria.cli.common import guard; "
            "sys.exit(guard(lambda: [print('x' * 1000) for _ in range(1000)]))")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"x" * 1000 + b"\n"
    proc.stdout.close()  # more than a pipe's buffer is still to come
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141  # the shell's own status for it (128 + SIGPIPE)
    assert err == b""
