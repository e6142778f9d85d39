"""Shared fixtures: the real corpus, the real minilm model, real Qdrant Edge stores in tmp folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html import escape
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


def have_corpus() -> bool:
    return CORPUS.is_dir()


def need_corpus(why: str = "") -> None:
    """Skip a test that needs particular books of the shared corpus (tests that only need some real
    EPUBs use the fixtures below, which fall back to the generated sample library)."""
    if not have_corpus():
        pytest.skip(f"{CORPUS} is not beside this checkout" + (f" ({why})" if why else ""))


# Without ../shared the fast suite still runs on real EPUBs: the project's own sample library
# (alexandria.tools.sample, four short books in English and French), generated once per session.


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory) -> Path:
    """The generated demo calibre library (metadata.db and four EPUBs). Read it, never change it."""
    from alexandria.tools.sample import make_sample_library

    return make_sample_library(tmp_path_factory.mktemp("sample") / "library")


@pytest.fixture(scope="session")
def sample_epubs(sample_library) -> list[Path]:
    """The sample library's four EPUBs, in calibre id order (the whaling history first)."""
    return sorted(sample_library.rglob("*.epub"), key=lambda p: int(p.parent.name.rsplit("(", 1)[1][:-1]))


def corpus_book(rel: str, sample_epubs: list[Path], index: int = 0) -> Path:
    """EPUBS / rel where the corpus is beside the checkout, else sample book `index`."""
    return EPUBS / rel if have_corpus() else sample_epubs[index]


def some_books(rels: list[str], sample_epubs: list[Path], tmp_path: Path) -> list[Path]:
    """As many real EPUBs as rels names: those corpus books, else the sample books and, past
    four, distinct copies of them (each its own content hash, so each its own book)."""
    if have_corpus():
        return [EPUBS / rel for rel in rels]
    from alexandria.tools.bench.corpus import copy_epub

    out = []
    for i in range(len(rels)):
        src = sample_epubs[i % len(sample_epubs)]
        if i >= len(sample_epubs):
            copy = tmp_path / "copies" / f"{src.stem} (copy {i}).epub"
            copy_epub(src, copy, 1000 + i)  # a copy number no test's own copies use
            src = copy
        out.append(src)
    return out


@pytest.fixture(scope="session")
def calibre_library(request) -> Path:
    """A real calibre library to read (copy it before changing it): the corpus's, else the sample."""
    return CALIBRE if have_corpus() else request.getfixturevalue("sample_library")


def write_anthology(dest: Path) -> Path:
    """One EPUB with every chapter of the four sample books (~12k minilm tokens): a book long
    enough to fill several batches, as the corpus's small library has one (the Arabic book)."""
    from ebooklib import epub

    from alexandria.tools.sample import SAMPLE_BOOKS

    book = epub.EpubBook()
    book.set_identifier("alexandria-test-anthology")
    book.set_title("A Sample Anthology")
    book.set_language("en")
    book.add_author("Alexandria Tests")
    docs = []
    for sample in SAMPLE_BOOKS:
        for title, paragraphs in sample.chapters():
            n = len(docs) + 1
            doc = epub.EpubHtml(uid=f"c{n:02d}", title=title, file_name=f"c{n:02d}.xhtml")
            doc.content = f"<h1>{escape(title)}</h1>" + "".join(f"<p>{escape(t)}</p>" for t in paragraphs)
            docs.append(doc)
    for doc in docs:
        book.add_item(doc)
    book.toc = docs
    book.spine = docs
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(dest), book)
    return dest


@pytest.fixture(scope="session")
def small_epubs(request, tmp_path_factory) -> list[Path]:
    """Four small real EPUBs: SMALL_BOOKS from the corpus, else an anthology of the sample books
    and three of them on their own (lower-case names, as the corpus files have)."""
    if have_corpus():
        return [EPUBS / rel for rel in SMALL_BOOKS]
    folder = tmp_path_factory.mktemp("small-books")
    books = [write_anthology(folder / "sample-anthology.epub")]
    for src, name in zip(request.getfixturevalue("sample_epubs")[1:], ("night-sky", "levain", "gardening"),
                         strict=True):
        books.append(folder / f"sample-{name}.epub")
        shutil.copy2(src, books[-1])
    return books


@pytest.fixture(scope="session")
def embedder():
    """The real minilm model on the CPU, loaded once for the session."""
    from alexandria.embedding.embedder import get_embedder
    from alexandria.embedding.models import resolve_model

    return get_embedder(resolve_model("minilm"), "cpu", "fp32")


def minilm_ids(embedder, texts: list[str]) -> list:
    """Model inputs for texts, tokenized exactly as the book workers do it."""
    from alexandria.chunking.chunker import Chunker, ChunkSettings
    from alexandria.run.prepare import model_inputs

    return model_inputs(Chunker(embedder.tokenizer_json(), embedder.max_seq_length, ChunkSettings()),
                        texts)


@pytest.fixture
def small_library(tmp_path: Path, small_epubs: list[Path]) -> Path:
    """A plain folder of four small real EPUBs (copied to tmp: tests may change them)."""
    lib = tmp_path / "library"
    lib.mkdir()
    for src in small_epubs:
        shutil.copy2(src, lib / src.name)
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


def owners(shard: Path) -> list[int]:
    """Owner processes of this shard (found by their command line: connecting would count as a
    client and keep the owner on)."""
    out = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = entry.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"alexandria.store.owner" in args and os.fsencode(shard.parent) in args:
            out.append(int(entry.name))
    return out


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
