"""One entry point to every reader: a book file's bytes in, its chapters out, or a named reason."""

from __future__ import annotations

import importlib
from pathlib import Path

from alexandria.errors import BookError
from alexandria.sources.book import ExtractedBook, ExtractError


def read_book_file(path: Path) -> bytes:
    """A book file's bytes; an unreadable one is a BookError that names the cause."""
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise BookError("file-missing", str(path)) from e
    except IsADirectoryError as e:
        raise BookError("not-a-file", str(path)) from e
    except PermissionError as e:
        raise BookError("unreadable", f"permission denied: {path}") from e
    except OSError as e:
        raise BookError("unreadable", f"{path}: {e.strerror}") from e


# Reader per format, as "module:function"; imported on first use so a worker that only reads EPUBs
# never loads PDFium. library.READABLE_FORMATS lists the same keys.
READERS = {
    "epub": "epub:extract_epub",
    "azw3": "mobi:extract_mobi",
    "azw": "mobi:extract_mobi",
    "mobi": "mobi:extract_mobi",
    "prc": "mobi:extract_mobi",
    "pdf": "pdf:extract_pdf",
    "txt": "text:extract_txt",
    "text": "text:extract_txt",
    "md": "text:extract_markdown",
    "markdown": "text:extract_markdown",
    "html": "text:extract_html",
    "htm": "text:extract_html",
    "xhtml": "text:extract_html",
}


def extract_book(data: bytes, fmt: str, name: str) -> ExtractedBook:
    """The chapters of a book in format `fmt`, from the reader of that format."""
    reader = READERS.get(fmt)
    if reader is None:
        raise BookError(f"unsupported-format:{fmt}", name)
    module, function = reader.split(":")
    extract = getattr(importlib.import_module(f"alexandria.sources.{module}"), function)
    try:
        return extract(data, name)
    except ExtractError as e:
        raise BookError(e.reason, e.detail) from e
