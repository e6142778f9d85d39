"""Blocks a book repeats on many of its pages: navigation bars, running headers and footers.

Web-made EPUBs (Sphinx, DocBook, calibre conversions of sites) carry "Navigation next previous |"
or "Prev Up Home Next" on every document; embedded as content, they win queries on the words
they share. What counts as repeated is decided per book, from the book itself: one pass counts
in how many documents each normalised block occurs, a second drops the frequent ones.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

# A block is boilerplate when at least this many documents hold it...
MIN_DOCUMENTS = 4
# ...and at least this share of the book's documents with text: a navigation bar or a running
# header is on (nearly) every page; a heading such as "Notes" in a few chapters is not.
MIN_SHARE = 0.5


# Blocks up to this long are compared after folding (bars and headers are short); longer ones
# as they are: folding every paragraph of a novel cost a fifth of its extraction.
FOLD_CHARS = 200


def block_key(text: str) -> str:
    """What two copies of one bar have in common: NFKC, case and whitespace folded (short
    blocks; a long one repeats word for word or not at all)."""
    if len(text) > FOLD_CHARS:
        return text
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def repeated_blocks(documents: Sequence[Sequence[str]], keep: Iterable[str] = ()) -> frozenset[str]:
    """Keys (block_key) of the blocks found in many of the documents (each a list of blocks).

    keep: texts that are never furniture, such as the book's TOC labels (a chapter's heading
    repeated in a list of figures, a list of notes and a printed contents page is still its
    heading)."""
    with_text = [d for d in documents if d]
    if len(with_text) < MIN_DOCUMENTS:
        return frozenset()
    counts: Counter[str] = Counter()
    for blocks in with_text:
        counts.update({block_key(b) for b in blocks})
    need = max(MIN_DOCUMENTS, MIN_SHARE * len(with_text))
    found = {k for k, n in counts.items() if n >= need and k}
    return frozenset(found.difference(block_key(t) for t in keep)) if found else frozenset()
