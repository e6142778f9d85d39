"""The extraction cache: a book's bytes are parsed once; a later read gets the same chapters."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from alexandria.errors import BookError
from alexandria.sources.cache import cache_file, extract_cached
from tests.sources.test_clean import prose, write_book


def test_a_second_read_of_the_same_bytes_comes_from_the_cache(tmp_path):
    data = write_book(tmp_path / "b.epub", [("a.xhtml", "A", prose("alpha"))]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    first = extract_cached(data, "epub", "b.epub", digest, tmp_path / "cache")
    path = cache_file(tmp_path / "cache", digest)
    assert path.is_file() and not list((tmp_path / "cache").glob("*.tmp"))
    # what the cache holds is what a later read returns, without parsing the book again
    marked = pickle.loads(path.read_bytes())
    marked.chapters[0].text = "from the cache"
    path.write_bytes(pickle.dumps(marked))
    again = extract_cached(data, "epub", "b.epub", digest, tmp_path / "cache")
    assert again.chapters[0].text == "from the cache" and first.chapters[0].text != again.chapters[0].text
    assert extract_cached(data, "epub", "b.epub", digest, None).chapters == first.chapters


def test_a_book_that_fails_is_not_cached(tmp_path):
    with pytest.raises(BookError):
        extract_cached(b"not a zip", "epub", "bad.epub", "x", tmp_path)
    assert not list(tmp_path.iterdir())
