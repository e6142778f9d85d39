"""The title in a model's document prompt ("title: {title} | text: ..."): the library's title for a
calibre book, the book's own title (not its file name) for a plain file."""

from __future__ import annotations

from pathlib import Path

from alexandria.chunking.chunker import ChunkSettings
from alexandria.embedding.models import resolve_model
from alexandria.run.prepare import PrepareTask, chunk_texts, init_worker, prepare
from tests.sources.test_extract import build_epub

TEMPLATE = "title: {title} | text: {text}"


def _prepared(tmp_path: Path, title: str, title_is_file_name: bool):
    tokenizer_json = (Path(resolve_model("minilm").source) / "tokenizer.json").read_text()
    init_worker(tokenizer_json, 256, ChunkSettings(), TEMPLATE)
    path = tmp_path / "se-some-file-name.epub"
    path.write_bytes(build_epub({"c1.xhtml": "<h1>One</h1>" + "<p>Words of the first chapter.</p>" * 40}))
    return prepare(PrepareTask("k", str(path), "epub", title, title_is_file_name=title_is_file_name))


def test_a_plain_files_prompt_carries_the_books_own_title_not_its_file_name(tmp_path):
    book = _prepared(tmp_path, "se-some-file-name", title_is_file_name=True)
    assert book.reason is None and book.prompt_title == "Built"  # the EPUB's dc:title
    texts = chunk_texts(book, 0, len(book.chunks), TEMPLATE, 256)
    assert texts and all(t.startswith("title: Built | text: ") for t in texts)


def test_a_calibre_books_prompt_carries_the_librarys_title(tmp_path):
    book = _prepared(tmp_path, "The Title in calibre", title_is_file_name=False)
    assert book.prompt_title == "The Title in calibre"
