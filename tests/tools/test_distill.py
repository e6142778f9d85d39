"""`alexandria distill` with the real minilm: a static model that ingests and searches end to end."""

from __future__ import annotations

import json

import pytest

from alexandria.tools.distill import kept_ids
from tests.conftest import corpus_book, run_cli


def test_the_kept_vocabulary_is_the_special_tokens_then_the_most_frequent():
    from transformers import AutoTokenizer

    from alexandria.embedding.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm").source)
    texts = ["the whale the whale the sea", "the sea"]
    keep = kept_ids(tokenizer, len(tokenizer.all_special_ids) + 2, texts)
    words = set(tokenizer.convert_ids_to_tokens(keep)) - set(tokenizer.all_special_tokens)
    assert words == {"the", "whale"} or words == {"the", "sea"}
    assert set(tokenizer.all_special_ids) <= set(keep)
    # without texts: the vocabulary's first ids
    specials = set(tokenizer.all_special_ids)
    first = [i for i in range(len(tokenizer)) if i not in specials][:50 - len(specials)]
    assert kept_ids(tokenizer, 50, None) == sorted(specials | set(first))


@pytest.mark.long  # a distillation, then a run
def test_a_distilled_model_ingests_and_searches_end_to_end(tmp_path, sample_epubs):
    books = tmp_path / "books"
    books.mkdir()
    book = corpus_book("books/idpf-wasteland.epub", sample_epubs)
    (books / book.name).write_bytes(book.read_bytes())
    out = tmp_path / "static"
    made = run_cli("distill", "--model", "minilm", "--out", out, "--dims", "64",
                   "--vocabulary-size", "600", "--vocabulary-from", books)
    assert made.returncode == 0, made.stderr[-2000:]
    assert "600 tokens" in made.stdout and (out / "modules.json").is_file()
    assert "StaticEmbedding" in (out / "modules.json").read_text()
    again = run_cli("distill", "--model", "minilm", "--out", out)
    assert again.returncode == 2 and "not empty" in again.stderr

    store = tmp_path / "store"
    ingested = run_cli("ingest", "--file", books / book.name, "--model", out, "--device", "cpu",
                       "--store", store, "--log-dir", tmp_path / "logs")
    assert ingested.returncode == 0, ingested.stderr[-2000:]
    status = json.loads(run_cli("status", "--json", "--store", store).stdout)
    assert status["dimension"] == 64 and status["totals"]["done"] == 1
    found = run_cli("search", "April is the cruellest month, breeding lilacs", "--json",
                    "--store", store, "--top-k", "3")
    assert found.returncode == 0, found.stderr[-2000:]
    hits = json.loads(found.stdout)
    assert any("April is the cruellest month" in h["text"] for h in hits)
