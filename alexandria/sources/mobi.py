"""Kindle books without DRM (AZW3/KF8, MOBI, AZW, PRC) -> chapters, read directly.

Why our own reader: the PyPI options are GPL-3.0 (mobi/KindleUnpack) or metadata-only, and this
project is Apache-2.0. The part we need is small: the PalmDB record table, the MOBI/EXTH headers,
PalmDOC decompression, and the HTML the text records hold. A KF8 book stores each XHTML file as a
skeleton (head, empty body) followed by the body's fragments, so each file is cut at its
<?xml/<html> start and parsed leniently with its closing body/html tags dropped; the text then
goes through the EPUB reader's paragraph logic, and chapters start at h1/h2 as in HTML books.
"""

from __future__ import annotations

import re
import struct

from lxml import etree

from alexandria.sources.book import ExtractedBook, ExtractError
from alexandria.sources.markup import parse_markup
from alexandria.sources.text import extract_txt, html_chapters

MAX_TEXT_BYTES = 256 * 1024 * 1024  # decompressed text; more is a bomb, not a book
_KF8_FILE_RE = re.compile(rb"(?:<\?xml[^>]*\?>\s*)?<html[\s>]", re.I)
_MOBI7_BREAK_RE = re.compile(rb"<mbp:pagebreak\s*/?>", re.I)
_CLOSE_DOC_RE = re.compile(rb"</(?:body|html)\s*>", re.I)
# Navigation and apparatus that KF8 keeps as a plain type="..." attribute (EPUB's epub:type).
_DROP_TYPES = frozenset({"toc", "landmarks", "page-list", "pagebreak", "noteref", "backlink"})
_SPLIT = frozenset({"h1", "h2"})
_ENCODINGS = {65001: "utf-8", 1252: "cp1252"}


class _Records:
    """The PalmDB record table, bounds-checked: a damaged table gives corrupt-mobi, not IndexError."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 78:
            raise ExtractError("corrupt-mobi", f"{len(data)} bytes: shorter than a PalmDB header")
        (count,) = struct.unpack_from(">H", data, 76)
        if count == 0 or 78 + 8 * count > len(data):
            raise ExtractError("corrupt-mobi", f"record table of {count} entries does not fit the file")
        offsets = [struct.unpack_from(">I", data, 78 + 8 * i)[0] for i in range(count)] + [len(data)]
        if any(b < a for a, b in zip(offsets, offsets[1:], strict=False)) or offsets[0] > len(data):
            raise ExtractError("corrupt-mobi", "record offsets out of order")
        self.data, self.offsets, self.count = data, offsets, count

    def __getitem__(self, i: int) -> bytes:
        if not 0 <= i < self.count:
            raise ExtractError("corrupt-mobi", f"record {i} of {self.count} does not exist")
        return self.data[self.offsets[i]:self.offsets[i + 1]]


def extract_mobi(data: bytes, name: str = "") -> ExtractedBook:
    try:
        return _extract(data)
    except ExtractError as e:
        raise ExtractError(e.reason, f"{name}: {e.detail}" if name else e.detail) from None
    except (struct.error, IndexError) as e:  # a truncated header field somewhere
        raise ExtractError("corrupt-mobi", f"{name}: {e}") from None


def _extract(data: bytes) -> ExtractedBook:
    if not data:
        raise ExtractError("empty-file", "0 bytes")
    if data.startswith(b"\xeaDRMION\xee"):
        raise ExtractError("drm", "KFX book with DRM (DRMION)")
    if data.startswith(b"CONT\x02\x00") or data.startswith(b"PK"):
        kind = "a KFX container" if data.startswith(b"CONT") else "a zip (EPUB or KFX-zip?)"
        raise ExtractError("not-a-mobi", f"{kind}, not a MOBI/AZW3 PalmDB file")
    kind = data[60:68]
    if kind not in (b"BOOKMOBI", b"TEXtREAd"):
        raise ExtractError("not-a-mobi", f"PalmDB type/creator {kind!r}, not BOOKMOBI")
    records = _Records(data)
    start = 0
    header = _Header(records[0])
    warnings: list[str] = []
    if kind == b"BOOKMOBI" and header.version < 8 and 121 in header.exth:
        boundary = struct.unpack(">I", header.exth[121][0][:4])[0]  # joint MOBI: KF8 part after BOUNDARY
        if 0 < boundary < records.count and records[boundary - 1].startswith(b"BOUNDARY"):
            start, kf8 = boundary, _Header(records[boundary])
            kf8.exth = kf8.exth or header.exth
            header = kf8
    text = _text(records, start, header)
    if kind == b"TEXtREAd":
        book = extract_txt(text, "")  # plain PalmDOC: the text reader finds its chapters
        book.warnings[:0] = warnings
        return book
    encoding = _ENCODINGS.get(header.encoding, "cp1252")
    if header.version >= 8:
        flow = _first_flow(records, start, header, text)
        pieces = _split(flow, [m.start() for m in _KF8_FILE_RE.finditer(flow)])
    else:
        pieces = _split(text, [0] + [m.end() for m in _MOBI7_BREAK_RE.finditer(text)])
    chapters = []
    title = ""
    for raw in pieces:
        root = _parse(raw, encoding)
        if root is None or _is_link_list(root):
            continue
        for chapter in html_chapters(root, {}, _SPLIT, href=f"part{len(chapters):04d}", first_title=title):
            chapter.index = len(chapters)
            chapters.append(chapter)
            title = chapter.title
    if not chapters:
        raise ExtractError("no-text", f"{len(pieces)} document(s) without text (image-only?)")
    exth = header.exth
    book_title = _exth_text(exth, 503, encoding) or header.full_name(encoding) or None
    authors = [a for a in (_decode(v, encoding) for v in exth.get(100, [])) if a]
    language = _exth_text(exth, 524, encoding)
    return ExtractedBook(book_title, authors, language, chapters, warnings)


class _Header:
    """Record 0 of a MOBI section: PalmDOC header, MOBI header, EXTH."""

    def __init__(self, rec0: bytes) -> None:
        self.rec0 = rec0
        self.compression, _, self.text_length, self.text_records, _, self.encryption = struct.unpack_from(
            ">HHIHHH", rec0, 0
        )
        if self.encryption:
            method = {1: "old Mobipocket", 2: "Mobipocket"}.get(self.encryption, str(self.encryption))
            raise ExtractError("drm", f"text records are encrypted ({method} DRM)")
        self.exth: dict[int, list[bytes]] = {}
        self.version = self.encoding = self.extra_flags = 0
        self.header_len = 0
        if rec0[16:20] != b"MOBI":
            return  # plain PalmDOC
        self.header_len, _, self.encoding, _, self.version = struct.unpack_from(">IIIII", rec0, 20)
        if self.header_len >= 0xE4 and len(rec0) >= 0xF4:
            (self.extra_flags,) = struct.unpack_from(">H", rec0, 0xF2)
        (exth_flags,) = struct.unpack_from(">I", rec0, 0x80)
        if exth_flags & 0x40:
            self.exth = _exth(rec0, 16 + self.header_len)

    def full_name(self, encoding: str) -> str:
        offset, length = struct.unpack_from(">II", self.rec0, 0x54)
        return _decode(self.rec0[offset:offset + length], encoding) if length < 4096 else ""

    def u32(self, offset: int) -> int | None:
        if self.header_len + 16 < offset + 4 or len(self.rec0) < offset + 4:
            return None
        (value,) = struct.unpack_from(">I", self.rec0, offset)
        return None if value == 0xFFFFFFFF else value


def _exth(rec0: bytes, at: int) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    if rec0[at:at + 4] != b"EXTH":
        return out
    _, count = struct.unpack_from(">II", rec0, at + 4)
    pos = at + 12
    for _ in range(min(count, 10_000)):
        if pos + 8 > len(rec0):
            break
        kind, size = struct.unpack_from(">II", rec0, pos)
        if size < 8:
            break
        out.setdefault(kind, []).append(rec0[pos + 8:pos + size])
        pos += size
    return out


def _text(records: _Records, start: int, header: _Header) -> bytes:
    """The text records, trailing entries stripped, decompressed and joined."""
    if header.compression == 17480:
        raise ExtractError("unsupported-compression", "HUFF/CDIC (kindlegen output) is not read yet")
    if header.compression not in (1, 2):
        raise ExtractError("corrupt-mobi", f"unknown compression {header.compression}")
    out = bytearray()
    for i in range(start + 1, start + 1 + header.text_records):
        chunk = _strip_trailing(records[i], header.extra_flags)
        out += _palmdoc(chunk) if header.compression == 2 else chunk
        if len(out) > MAX_TEXT_BYTES:
            raise ExtractError("too-large", f"more than {MAX_TEXT_BYTES} bytes of text")
    return bytes(out[: header.text_length]) if header.text_length else bytes(out)


def _strip_trailing(rec: bytes, flags: int) -> bytes:
    """Each flag bit above bit 0 adds an entry at the record's end, sized by a backward varint;
    bit 0 adds 1-4 multibyte-overlap bytes, innermost."""
    for bit in range(15, 0, -1):
        if flags & (1 << bit):
            size = 0
            for byte in rec[-4:]:
                size = 0 if byte & 0x80 else size
                size = (size << 7) | (byte & 0x7F)
            rec = rec[: max(0, len(rec) - size)]
    if flags & 1 and rec:
        rec = rec[: len(rec) - ((rec[-1] & 3) + 1)]
    return rec


def _palmdoc(data: bytes) -> bytes:
    """PalmDOC LZ77: literals, runs of 1-8 raw bytes, space+char pairs, (distance, length) copies."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        i += 1
        if c == 0 or 9 <= c <= 0x7F:
            out.append(c)
        elif c <= 8:
            out += data[i:i + c]
            i += c
        elif c >= 0xC0:
            out += bytes((32, c ^ 0x80))
        else:
            if i >= n:
                break
            pair = (c << 8) | data[i]
            i += 1
            dist, length = (pair >> 3) & 0x7FF, (pair & 7) + 3
            if dist == 0 or dist > len(out):
                raise ExtractError("corrupt-mobi", "PalmDOC back-reference before the start of the record")
            if dist >= length:
                out += out[-dist:len(out) - dist + length]
            else:
                for _ in range(length):
                    out.append(out[-dist])
    return bytes(out)


def _first_flow(records: _Records, start: int, header: _Header, text: bytes) -> bytes:
    """KF8 keeps CSS and SVG as further flows after the text: the FDST record says where they start."""
    fdst = header.u32(0xC0)
    if fdst is None or not 0 < fdst + start < records.count:
        return text
    rec = records[start + fdst]
    if rec[:4] != b"FDST" or len(rec) < 20:
        return text
    first_start, first_end = struct.unpack_from(">II", rec, 12)
    return text[first_start:first_end] if first_start < first_end <= len(text) else text


def _split(text: bytes, starts: list[int]) -> list[bytes]:
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    bounds = [*starts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if text[a:b].strip()]


def _parse(raw: bytes, encoding: str) -> etree._Element | None:
    """Lenient parse of one file, fragments kept inside <body>; drops KF8's nav and apparatus."""
    raw = _CLOSE_DOC_RE.sub(b"", raw)
    if encoding != "utf-8" and b"charset" not in raw[:2048].lower():
        try:
            raw = raw.decode(encoding).encode("utf-8")
        except UnicodeDecodeError:  # bytes cp1252 leaves undefined: Latin-1 maps every byte
            raw = raw.decode("latin-1").encode("utf-8")
    root = parse_markup(raw)[0]
    if root is None:
        return None
    drop = [
        el for el in root.iter()
        if isinstance(el.tag, str) and _DROP_TYPES & set((el.get("type") or "").split())
        and el.tag.lower() not in ("link", "style", "script", "input")
    ]
    for el in drop:
        parent = el.getparent()
        if parent is None:
            continue
        if el.tail:  # keep the text after a note marker
            prev = el.getprevious()
            if prev is not None:
                prev.tail = (prev.tail or "") + el.tail
            else:
                parent.text = (parent.text or "") + el.tail
        parent.remove(el)
    return root


def _is_link_list(root: etree._Element) -> bool:
    """A generated table of contents (calibre's inline TOC): text that is nearly all links."""
    links = [el for el in root.iter("a", "{*}a") if el.get("href")]
    if len(links) < 5:
        return False
    linked = sum(len("".join(el.itertext()).strip()) for el in links)
    total = len("".join(t.strip() for t in root.itertext()))
    return linked >= 0.8 * total


def _decode(raw: bytes, encoding: str) -> str:
    return " ".join(raw.decode(encoding, errors="replace").split())


def _exth_text(exth: dict[int, list[bytes]], kind: int, encoding: str) -> str | None:
    values = exth.get(kind)
    return _decode(values[0], encoding) or None if values else None

