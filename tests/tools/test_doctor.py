"""`alexandria doctor` against real things: the bundled minilm model, real Edge stores, real SQLite."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the doctor must never reach for the network in tests

import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from alexandria.store.edge import EdgeStore  # noqa: E402
from alexandria.store.manifest import Manifest  # noqa: E402
from alexandria.tools.doctor import (  # noqa: E402
    Check,
    exit_code,
    location_for,
    render_table,
    run_checks,
)
from tests.conftest import CALIBRE  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def checks_for(store: Path, **kw) -> list[Check]:
    args = dict(model="minilm", device="cpu", store=store, qdrant_url=None, api_key=None,
                collection=None, directory=None, manifest=None, load_model=False)
    args.update(kw)
    where = location_for(args["model"], store=args["store"], url=args["qdrant_url"],
                         api_key=args["api_key"], collection=args["collection"],
                         manifest=args["manifest"])
    return run_checks(where, args["device"], args["directory"], load_model=args["load_model"])


def row(checks: list[Check], name: str) -> Check:
    found = [c for c in checks if c.name == name]
    assert len(found) == 1, f"{name!r} not in {[c.name for c in checks]}"
    return found[0]


@pytest.fixture(scope="module")
def empty_store_loaded(tmp_path_factory) -> tuple[Path, list[Check]]:
    """One real model load for the module; later load_model=True calls reuse the cached embedder."""
    store = tmp_path_factory.mktemp("doctor") / "store"
    store.mkdir()
    return store, checks_for(store, load_model=True)


def test_empty_store_is_healthy_except_the_missing_collection(empty_store_loaded) -> None:
    store, checks = empty_store_loaded
    assert not [c for c in checks if c.status == "fail"], render_table(checks)
    for c in checks:
        expected = {"warn"} if c.name == "store collection" else {"ok", "info"}
        assert c.status in expected, (c, render_table(checks))
    assert "does not exist yet" in row(checks, "store collection").detail
    load = row(checks, "model load")
    assert load.status == "ok" and "dimension 384" in load.detail and "device cpu" in load.detail
    for name in ("python", "torch", "sentence-transformers", "transformers", "qdrant-edge-py",
                 "qdrant-client", "ebooklib", "beautifulsoup4", "lxml", "semantic-text-splitter",
                 "cuda", "nvidia driver", "model", "store folder", "manifest", "disk space", "lock"):
        row(checks, name)
    assert row(checks, "manifest").status == "info"
    assert row(checks, "lock").status == "info"
    assert exit_code(checks) == 0
    # Only the writability probe touched the store, and it cleaned up after itself.
    assert list(store.iterdir()) == []
    table = render_table(checks)
    assert "384" in table
    assert "\x1b" not in table  # no colour codes in cron mail


def test_table_columns_line_up(empty_store_loaded) -> None:
    _, checks = empty_store_loaded
    lines = render_table(checks).splitlines()
    header, rule = lines[0], lines[1]
    status_col = header.index("STATUS")
    detail_col = header.index("DETAIL")
    assert rule.index("-", status_col) == status_col
    for line, c in zip(lines[2:2 + len(checks)], checks, strict=True):
        assert line.startswith(c.name)
        assert line[status_col:].startswith(c.status)
        assert line[detail_col:] == c.detail
    assert re.fullmatch(r"\d+ ok, \d+ warnings, 0 failures, \d+ notes", lines[-1])


def test_collection_with_another_dimension_fails(tmp_path: Path, empty_store_loaded) -> None:
    store = tmp_path / "s"
    EdgeStore(store, "alexandria_minilm", 1024).close()
    for load in (True, False):  # loaded, or the dimension read from the model's config files
        checks = checks_for(store, load_model=load)
        clash = row(checks, "store collection")
        assert clash.status == "fail", clash
        assert "384" in clash.detail and "1024" in clash.detail
        assert exit_code(checks) == 1


def test_matching_collection_reports_points(tmp_path: Path) -> None:
    store = tmp_path / "s"
    EdgeStore(store, "alexandria_minilm", 384).close()
    c = row(checks_for(store), "store collection")
    assert c.status == "ok" and "0 points" in c.detail and "384" in c.detail


def test_collection_open_elsewhere_is_a_warning(tmp_path: Path) -> None:
    store = tmp_path / "s"
    busy = EdgeStore(store, "alexandria_minilm", 384)
    try:
        c = row(checks_for(store), "store collection")
    finally:
        busy.close()
    assert c.status == "warn" and "in use by a running ingest" in c.detail


def test_calibre_library_counts_books(tmp_path: Path) -> None:
    if not (CALIBRE / "metadata.db").is_file():
        pytest.skip("the shared calibre library is not beside this checkout")
    c = row(checks_for(tmp_path / "s", directory=CALIBRE), "library")
    assert c.status == "ok", c
    assert "12 books" in c.detail


def test_folder_of_epubs_and_missing_library(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    (lib / "a.epub").write_bytes(b"x")
    (lib / "sub" / "b.EPUB").write_bytes(b"x")
    (lib / "notes.txt").write_text("x")
    c = row(checks_for(tmp_path / "s", directory=lib), "library")
    assert c.status == "ok" and "2 books" in c.detail
    c = row(checks_for(tmp_path / "s", directory=tmp_path / "nowhere"), "library")
    assert c.status == "fail" and "does not exist" in c.detail


def test_corrupt_manifest_fails(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.sqlite").write_bytes(os.urandom(8192))
    checks = checks_for(store)
    c = row(checks, "manifest")
    assert c.status == "fail", c
    assert "manifest.sqlite" in c.detail
    assert exit_code(checks) == 1


def test_manifest_counts_books_by_status(tmp_path: Path) -> None:
    store = tmp_path / "store"
    m = Manifest(store / "manifest.sqlite")
    try:
        for i, status in enumerate(["done", "done", "failed", "skipped"]):
            m.upsert("alexandria_minilm", f"book-{i}", status=status)
        m.upsert("alexandria_bge-m3", "book-x", status="done")
    finally:
        m.close()
    c = row(checks_for(store), "manifest")
    assert c.status == "ok", c
    assert "integrity ok" in c.detail
    assert "4 books (2 done, 1 failed, 1 skipped)" in c.detail
    assert "1 other collection" in c.detail
    # An explicit --manifest elsewhere is the one checked.
    c = row(checks_for(tmp_path / "other", manifest=store / "manifest.sqlite"), "manifest")
    assert c.status == "ok" and "4 books" in c.detail


def test_lock_held_by_a_running_process_names_it(tmp_path: Path) -> None:
    store = tmp_path / "store"
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from alexandria.store.lock import RunLock, lock_path
        with RunLock(lock_path(Path({str(store)!r}))):
            print("locked", flush=True)
            time.sleep(30)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        held = row(checks_for(store), "lock")
        assert held.status == "info" and f"PID {child.pid}" in held.detail
        # The doctor's probe released the lock at once: the holder still has it.
        assert child.poll() is None
    finally:
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
    free = row(checks_for(store), "lock")
    assert free.status == "ok" and "free" in free.detail


def test_server_errors_never_show_the_api_key(tmp_path: Path) -> None:
    key = "s3cr3t-key-123"
    checks = checks_for(tmp_path / "s", qdrant_url="http://admin:pa55word@127.0.0.1:1", api_key=key)
    table = render_table(checks)
    assert key not in table and "pa55word" not in table
    assert row(checks, "qdrant api key").status == "warn"  # an API key over plain http
    assert row(checks, "store collection").status == "fail"


def test_local_server_collection(tmp_path: Path) -> None:
    url = f"local:{tmp_path / 'q'}"
    c = row(checks_for(tmp_path / "s", qdrant_url=url), "store collection")
    assert c.status == "warn" and "reachable" in c.detail and "does not exist yet" in c.detail


def test_broken_inputs_become_fail_rows_not_exceptions(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    checks = checks_for(not_a_folder, model=str(tmp_path / "no" / "such" / "model"), load_model=True)
    assert row(checks, "model").status == "fail"
    assert row(checks, "store folder").status == "fail"
    assert all(c.status in ("ok", "warn", "fail", "info") for c in checks)
    assert all("\n" not in c.detail for c in checks)


def test_cuda_requested_without_cuda_fails(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    c = row(checks_for(tmp_path / "s", device="cuda"), "cuda")
    assert c.status == "fail" and "--device cuda" in c.detail
