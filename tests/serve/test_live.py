"""A running ingest watched on the library page: serve starts on a store holding one book, a real
ingest of several more runs beside it, and the page's numbers move while it runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, ingest_args, some_books
from tests.serve.helpers import Server

pytestmark = pytest.mark.slow  # a model load and an ingest of eight books

BOOKS = ["books/idpf-wasteland.epub", "books/idpf-regime-anticancer-arabic.epub",
         "edge/idpf-hefty-water.epub", "edge/epubcheck-epub2-minimal-valid.epub",
         "books/idpf-childrens-literature.epub", "books/idpf-georgia-cfi.epub",
         "books/idpf-sous-le-vent.epub", "books/idpf-mymedia_lite.epub"]


def test_a_running_ingest_moves_on_the_library_page(page, sample_epubs, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    for book in some_books(BOOKS, sample_epubs, tmp_path):
        shutil.copy2(book, library / book.name)
    store = tmp_path / "store"
    first = sorted(library.iterdir())[0]  # serve needs a collection to know the model: one book
    made = subprocess.run([sys.executable, "-m", "alexandria",
                           *ingest_args(store, "--file", first)], cwd=REPO, capture_output=True,
                          text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    server = Server(store, tmp_path / "serve.log")
    try:
        page.goto(server.url + "/library")
        assert page.locator("#live").is_hidden() and page.locator("#total-books").inner_text() == "1"
        log = (tmp_path / "ingest.err").open("w")
        ingest = subprocess.Popen([sys.executable, "-m", "alexandria",
                                   *ingest_args(store, "--directory", library, "--workers", "1")],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        seen: list[tuple[str, str, str]] = []  # (done, to do, chunks) as the page showed them
        deadline = time.monotonic() + 600
        while ingest.poll() is None and time.monotonic() < deadline:
            if page.locator("#live").is_visible():
                seen.append((page.locator("#live-done").inner_text(),
                             page.locator("#live-todo").inner_text(),
                             page.locator("#live-chunks").inner_text()))
            time.sleep(0.5)
        assert ingest.wait(60) == 0, (tmp_path / "ingest.err").read_text()
        assert seen, "the live view never showed the running ingest"
        done = [int(d) for d, _, _ in seen]
        assert done == sorted(done) and len(set(done)) >= 2, seen  # it moved, never backwards
        assert {t for _, t, _ in seen} - {"?"}, seen  # books to do were known
        assert len({c for _, _, c in seen}) >= 2, seen
        # Once it finished, the next poll hides the live view and the totals show every book.
        page.locator("#live").wait_for(state="hidden", timeout=10_000)
        page.wait_for_function("document.getElementById('total-done').textContent === '8'",
                               timeout=10_000)
        _, hits = server.get("/api/search?q=water&top_k=3")  # searches see what the ingest wrote
        assert len(hits) == 3
    finally:
        server.stop()
