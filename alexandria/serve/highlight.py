"""The query's words marked in a passage, as plain (text, marked) segments: the template escapes
each one, so a book's markup can never become the page's."""

from __future__ import annotations

import re

# Words too common to be worth marking (English; other languages' particles are short or
# written without spaces, and are left to the length rule).
STOPWORDS = frozenset("""
a an and are as at be but by did do does for from had has have he her his how i in into is it its
of on or she that the their them then there they this to was were what when where which who whom
why will with would you your
""".split())
# Scripts written without spaces between words: a query word is found inside a longer run.
UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
WORD = re.compile(r"\w+")


def terms(query: str) -> list[str]:
    """What to look for: a stem of each word that is not a stopword (whaling -> whal, so whale
    and whales are marked too); runs of unspaced script cut into overlapping pairs of characters
    (a query's run rarely appears whole in a passage)."""
    out = []
    for word in WORD.findall(query.casefold()):
        if UNSPACED.search(word):
            out.extend(word[i:i + 2] for i in range(len(word) - 1))
        elif len(word) >= 3 and word not in STOPWORDS:
            out.append(word[:max(4, len(word) - 3)])
    return sorted(set(out), key=len, reverse=True)


def segments(text: str, query: str) -> list[tuple[str, bool]]:
    """`text` cut into pieces, each marked when it holds one of the query's words."""
    found = terms(query)
    if not found or not text:
        return [(text, False)]
    spaced = [re.escape(t) + r"\w*" for t in found if not UNSPACED.search(t)]
    unspaced = [re.escape(t) for t in found if UNSPACED.search(t)]
    parts = ([r"(?<!\w)(?:" + "|".join(spaced) + ")"] if spaced else []) + unspaced
    pattern = re.compile("|".join(parts), re.IGNORECASE)
    out: list[tuple[str, bool]] = []
    at = 0
    for m in pattern.finditer(text):
        if m.start() > at:
            out.append((text[at:m.start()], False))
        out.append((m.group(0), True))
        at = m.end()
    if at < len(text):
        out.append((text[at:], False))
    return out
