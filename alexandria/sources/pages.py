"""Page numbers for chunks of paged books (PDF): a chunk's character span -> its page range.

Kept apart from the PDF reader so the pipeline can map pages without importing any reader.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

PageMap = dict[int, tuple[int, list[int]]]  # chapter index -> (first page, where each page starts)


def page_map(chapters: Iterable[object]) -> PageMap:
    """Small enough to travel with the chunks between processes; empty for unpaged books."""
    return {
        c.index: (c.first_page, list(c.page_starts))  # type: ignore[attr-defined]
        for c in chapters
        if getattr(c, "page_starts", None)
    }


def page_range(pages: PageMap, chapter_index: int, char_start: int, char_end: int) -> tuple[int, int] | None:
    """(first page, last page), 1-based, of a chunk's character span; None for unpaged books."""
    found = pages.get(chapter_index)
    if found is None:
        return None
    first_page, starts = found

    def at(offset: int) -> int:
        return first_page + max(0, bisect.bisect_right(starts, offset) - 1)

    return at(char_start), at(max(char_start, char_end - 1))
