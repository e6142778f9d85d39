"""Chapter titles from table-of-contents labels: short, one line, never the chapter's contents.

Some converters (calibre's "detect chapters") write a whole block into a TOC label: the chapter's
own table of contents and its first paragraph, about 1,000 characters. Such a title buries the
payload, the search results and the question of which chapter a hit came from.
"""

from __future__ import annotations

import re

MAX_LABEL = 200  # characters of one TOC label
MAX_TITLE = 200  # characters of a chapter path ("Part II > Chapter 3")
SEPARATOR = " > "
ELLIPSIS = "\u2026"

_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f\u061f\u06d4](?=\s|$)|[\u3002\uff01\uff1f]")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary where there is one, marked with '…'."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space >= limit // 2:
        head = head[:space]
    return head.rstrip(" ,;:-\u2013\u2014") + ELLIPSIS


def short_label(raw: str | None) -> str:
    """A TOC label as a title: whitespace collapsed; one that runs over MAX_LABEL is cut to its
    first line, else its first sentence, else its first words (short labels are kept whole, line
    breaks and all, since pretty-printed navs break lines inside a label)."""
    text = _collapse(raw or "")
    if len(text) <= MAX_LABEL:
        return text
    first_line = next((_collapse(line) for line in (raw or "").splitlines() if line.strip()), "")
    if first_line and len(first_line) <= MAX_LABEL:
        return first_line
    m = _SENTENCE_END.search(text)
    if m and 0 < m.end() <= MAX_LABEL:
        return text[: m.end()].strip()
    return _cut(text, MAX_LABEL)


def title_path(labels: tuple[str, ...] | list[str]) -> str:
    """Nested labels as one title of at most MAX_TITLE characters: the levels below the root give
    way first, the highest first ("Part I > … > 3.2 Rules > 3.2.1 Core"), then the last label
    is cut."""
    parts = [label for label in labels if label]
    title = SEPARATOR.join(parts)
    if len(title) <= MAX_TITLE:
        return title
    for keep in range(len(parts) - 2, 0, -1):  # the root, then as many of the deepest as fit
        title = SEPARATOR.join([parts[0], ELLIPSIS, *parts[-keep:]])
        if len(title) <= MAX_TITLE:
            return title
    if len(parts) > 2:
        parts = [parts[0], ELLIPSIS, parts[-1]]
    head = SEPARATOR.join(parts[:-1] + [""]) if len(parts) > 1 else ""
    if len(head) > MAX_TITLE // 2:
        head = ""
    return head + _cut(parts[-1], MAX_TITLE - len(head))
