"""`alexandria search` in the fast suite: the generated sample library (a real calibre library of
four books in English and French, no corpus needed) ingested once, then real searches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ingest_args, run_cli

WHALING = "A Short History of Whaling"


@pytest.fixture(scope="module")
def store(tmp_path_factory, sample_library) -> Path:
    store = tmp_path_factory.mktemp("search") / "store"
    proc = run_cli(*ingest_args(store, "--directory", sample_library))
    assert proc.returncode == 0, proc.stderr
    return store


def search(store: Path, query: str, *more: str) -> list[dict]:
    proc = run_cli("search", query, "--model", "minilm", "--device", "cpu", "--store", store, "--json",
                   *more)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_search_finds_the_whaling_history_for_a_harpoon_question(store):
    hits = search(store, "how did a toggling harpoon work?", "--top-k", "3")
    assert len(hits) == 3
    assert hits[0]["title"] == WHALING and hits[0]["authors"] == ["Ruth Ellery", "Samuel J. Pratt"]
    assert hits[0]["chapter"] and "harpoon" in hits[0]["text"].lower()
    assert hits[0]["score"] >= hits[-1]["score"]
    human = run_cli("search", "whale oil", "--model", "minilm", "--device", "cpu", "--store", store,
                    "--top-k", "2")
    assert human.returncode == 0 and WHALING in human.stdout


def test_search_filters_by_author(store):
    hits = search(store, "the night sky", "--author", "Hélène Dufresne")  # not her topic: a filter
    assert hits and all(h["authors"] == ["Hélène Dufresne"] for h in hits)


def test_a_manifest_an_ingest_has_only_just_created_reads_as_no_store_yet(tmp_path):
    """The moment between an ingest creating manifest.sqlite and writing its tables: a search
    then says there is nothing yet, as before the file existed (it was a traceback)."""
    import sqlite3

    from alexandria.errors import UsageError
    from alexandria.query.search import SearchOptions, search

    store = tmp_path / "store"
    store.mkdir()
    sqlite3.connect(store / "manifest.sqlite").close()  # the file, no tables yet
    with pytest.raises(UsageError, match="^There is no store"):
        search("water", SearchOptions(model="minilm", device="cpu", store=store))
