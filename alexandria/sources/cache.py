"""Extracted books kept on disk by content hash, so that runs over the same files (one per
chunker in `alexandria eval`) read and parse each book once.

The cache is a private folder the caller owns (a temporary one): its pickles are only ever read
back by the process tree that wrote them.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

from alexandria.sources.book import ExtractedBook
from alexandria.sources.readers import extract_book


def cache_file(folder: Path, content_hash: str) -> Path:
    return Path(folder) / f"{content_hash}.pickle"


def extract_cached(data: bytes, fmt: str, name: str, content_hash: str,
                   folder: Path | None) -> ExtractedBook:
    """extract_book, or its earlier result for the same bytes; failures are not cached."""
    if folder is None:
        return extract_book(data, fmt, name)
    path = cache_file(folder, content_hash)
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError):
        pass
    book = extract_book(data, fmt, name)
    store(book, path)
    return book


def store(book: ExtractedBook, path: Path) -> None:
    """Written whole or not at all: a reader never sees half a pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(book, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)
