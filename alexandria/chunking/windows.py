"""Token windows cut at the best nearby break: one tokenizer pass per chapter, not one per try.

semantic-text-splitter measures candidate sections by re-tokenizing them (a binary search per
chunk), which made chunking cost about seven tokenizer passes over every book: on a GPU box the
extraction workers, not the model, set the pace. Here a chapter is tokenized once with offsets,
break positions found by regular expressions are mapped onto token boundaries (numpy), and each
window ends at the strongest break (paragraph > line > sentence > clause > word) in its last
three quarters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Strength of a break *before* the token at which it lands.
PARAGRAPH, LINE, SENTENCE, CLAUSE, WORD = 5, 4, 3, 2, 1
WHITESPACE = np.array([9, 10, 11, 12, 13, 32, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                       0x202F, 0x205F, 0x3000], dtype=np.uint32)
_BREAKS = (
    (CLAUSE, re.compile(r"[,;:\u2013\u2014][\"'\u201d\u2019\u00bb)\]]*\s+|[\u3001\uff0c\uff1b\uff1a]")),
    (SENTENCE, re.compile(
        r"[.!?\u2026\u203d][\"'\u201d\u2019\u00bb)\]]*\s+"  # Latin, Greek, Cyrillic, Hebrew...
        r"|[\u3002\uff01\uff1f][\u300d\u300f\uff09)\]\"'\u201d\u2019]*"  # CJK: no space after
        r"|[\u061f\u06d4][\"'\u201d\u2019\u00bb)\]]*\s*"  # Arabic question mark, full stop
    )),
    (LINE, re.compile(r"\n\s*")),
    (PARAGRAPH, re.compile(r"\n[ \t\r\f\v]*\n\s*")),
)


@dataclass(frozen=True)
class Window:
    start: int  # char span in the text, whitespace trimmed
    end: int
    tokens: int  # tokens of the span inside the whole text (no special tokens)
    first: int  # index of its first token in the whole text's tokens


def break_levels(text: str, ends: np.ndarray) -> np.ndarray:
    """levels[i]: strength of a break before token i (levels[0] and levels[n] are ends of text)."""
    n = len(ends)
    levels = np.zeros(n + 1, dtype=np.int8)
    # Word breaks, vectorised (there is one per word): a token that starts at or right after a space.
    chars = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    space = np.isin(chars, WHITESPACE)
    starts = np.concatenate(([0], ends[:-1]))  # the gap before a token belongs to it
    levels[:n][space[np.minimum(starts, len(chars) - 1)]] = WORD
    for level, pattern in _BREAKS:
        positions = np.fromiter((m.end() for m in pattern.finditer(text)), dtype=np.int64)
        if positions.size:
            # The break lands before the first token that ends after it (a token that
            # carries the preceding space, as Metaspace tokens do, moves with its word).
            idx = np.searchsorted(ends, positions, side="right")
            np.maximum.at(levels, idx, np.int8(level))
    levels[0] = levels[n] = PARAGRAPH + 1
    return levels


def windows(text: str, offsets: list[tuple[int, int]], capacity: int, overlap: int = 0,
            min_tokens: int = 0) -> list[Window]:
    """Spans of at most `capacity` tokens covering the text, consecutive ones sharing up to
    `overlap` tokens that start at a break. No window but a whole text's is under `min_tokens`
    where a cut can avoid it: the last cut leaves at least that much for the last window."""
    n = len(offsets)
    if n == 0:
        return []
    capacity = max(1, capacity)
    overlap = max(0, min(overlap, capacity // 2))
    spans = np.asarray(offsets, dtype=np.int64).reshape(n, 2)
    levels = break_levels(text, spans[:, 1])
    min_fill = max(1, capacity // 4)
    min_tokens = max(0, min(min_tokens, capacity // 4))
    out: list[Window] = []
    start = 0
    while start < n:
        limit = start + capacity
        if limit >= n:
            end = n
        else:
            lo = start + min_fill
            if n - limit < min_tokens:  # a cut at the limit would leave a scrap for the last window
                limit = max(lo, n - min_tokens)
            region = levels[lo: limit + 1]
            best = int(region.max())
            # the last break of the strongest kind: as much text as fits, cut as cleanly as it can
            end = limit if best == 0 else lo + int(len(region) - 1 - np.argmax(region[::-1] == best))
        # From token start to the next window's first token: characters a tokenizer drops
        # (combining marks, controls) between tokens still belong to a window.
        a = 0 if start == 0 else int(spans[start, 0])
        b = len(text) if end >= n else int(spans[end, 0])
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append(Window(a, b, end - start, start))
        if end >= n:
            break
        nxt = end
        if overlap:
            lo = max(start + 1, end - overlap)
            region = levels[lo:end]
            if region.size:
                best = int(region.max())
                # the earliest break of the strongest kind: the overlap starts cleanly, up to `overlap`
                nxt = lo + int(np.argmax(region == best)) if best > 0 else lo
        start = max(nxt, start + 1)
    return out
