"""One library for the browser and API tests, ingested once per session with the real model: the
sample library, an EPUB whose text holds <script>, a broken EPUB and, with the corpus, a Hebrew
and a Japanese book; and one `alexandria serve` over it."""

from __future__ import annotations

from html import escape
from pathlib import Path

import pytest

from tests.conftest import EPUBS, have_corpus, ingest_args, run_cli
from tests.serve.helpers import Server, need_chromium

SCRIPT_TITLE = "<script>window.__pwned = 1</script> The Tides"
SCRIPT_TEXT = ("Harbour tides rise twice a day. <script>window.__pwned = 1</script> "
               "<img src=x onerror=\"window.__pwned = 2\"> The tide tables of the harbour master "
               "list every high water of the year for the pilots of the port.")
CORPUS_BOOKS = {
    "hebrew": "books/idpf-israelsailing.epub",
    "japanese": "books/idpf-mymedia_lite.epub",
}
BROKEN = "broken/epubcheck-not-a-zip-image.epub"


def write_script_epub(dest: Path) -> Path:
    """A real EPUB whose title and text hold markup as text (escaped in its XHTML)."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("alexandria-test-script")
    book.set_title(SCRIPT_TITLE)
    book.set_language("en")
    book.add_author("<b>Mallory</b>")
    doc = epub.EpubHtml(uid="c1", title="Tide <tables>", file_name="c1.xhtml")
    doc.content = "<h1>Tide &lt;tables&gt;</h1>" + "".join(f"<p>{escape(SCRIPT_TEXT)}</p>" for _ in range(3))
    book.add_item(doc)
    book.toc = [doc]
    book.spine = [doc]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(dest), book)
    return dest


@pytest.fixture(scope="session")
def served_store(tmp_path_factory, sample_library) -> Path:
    root = tmp_path_factory.mktemp("served")
    store = root / "store"
    proc = run_cli(*ingest_args(store, "--directory", sample_library, "--quiet"))
    assert proc.returncode == 0, proc.stderr
    extra = [write_script_epub(root / "tides.epub")]
    if have_corpus():
        extra += [EPUBS / rel for rel in CORPUS_BOOKS.values()] + [EPUBS / BROKEN]
    else:  # a broken book all the same: bytes that are no zip
        (root / "broken.epub").write_bytes(b"this is not a zip file")
        extra.append(root / "broken.epub")
    files = [a for f in extra for a in ("--file", str(f))]
    proc = run_cli(*ingest_args(store, *files, "--quiet"))
    assert proc.returncode == 1, proc.stderr  # exit 1: the broken book failed, the rest are done
    return store


@pytest.fixture(scope="session")
def server(served_store, tmp_path_factory):
    s = Server(served_store, tmp_path_factory.mktemp("serve-log") / "serve.log")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def browser():
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium")
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    yield page
    context.close()
