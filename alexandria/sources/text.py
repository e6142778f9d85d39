"""Plain-text, HTML and Markdown books -> the same ExtractedBook the EPUB reader gives.

Loose files carry no table of contents, so chapters come from the text itself: heading lines in
TXT ("CHAPTER I", or calibre's short unindented lines after a wide gap), h1/h2 in HTML, # and ##
in Markdown. A file without any gives one chapter with an empty title.
"""

from __future__ import annotations

import codecs
import re

from lxml import etree

from alexandria.sources.book import Chapter, ExtractedBook, ExtractError
from alexandria.sources.markup import paragraphs, parse_markup

MAX_TEXT_BYTES = 256 * 1024 * 1024  # a loose text file this big is not a book

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Bytes cp1252 leaves undefined: where they occur, Latin-1 is the honest fallback.
_CP1252_HOLES = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")
_HEADING_WORDS = (
    r"chapter|book|part|letter|section|canto|act|scene|volume|stave|chap\.|kapitel|chapitre|capitulo|capítulo"
)
_NUMBER = r"(?:[ivxlcdm]+|\d+|[a-z]+(?:[- ][a-z]+)?)"
_HEADING_RE = re.compile(
    rf"^\s*(?:(?:{_HEADING_WORDS})\s+{_NUMBER}\b[.:]?(?:\s+.*)?"
    r"|prologue|epilogue|preface|introduction|foreword|afterword|appendix)\s*[.:]?\s*$",
    re.I,
)
_BARE_HEADING_RE = re.compile(rf"^\s*(?:{_HEADING_WORDS})\s+{_NUMBER}\s*[.:]?\s*$", re.I)
_MAX_HEADING_CHARS = 80
_GAP_LINES = 3  # calibre's TXT output sets a section title after 3+ empty lines
_SENTINEL = "\ue000"  # private-use mark on heading paragraphs; never in real text of a heading


def decode_text(data: bytes, warnings: list[str]) -> str:
    """BOM, then strict UTF-8, then BOM-less UTF-16, then cp1252/Latin-1: never a silent U+FFFD."""
    if not data:
        raise ExtractError("empty-file", "0 bytes")
    if len(data) > MAX_TEXT_BYTES:
        raise ExtractError("too-large", f"{len(data)} bytes (limit {MAX_TEXT_BYTES})")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _checked(data[len(bom):].decode(encoding), warnings)
            except UnicodeDecodeError as e:
                raise ExtractError("bad-encoding", f"{encoding} BOM but invalid {encoding}: {e}") from None
    try:
        return _checked(data.decode("utf-8"), warnings)
    except UnicodeDecodeError:
        pass
    sample = data[:4096]
    nul_even, nul_odd = sample[0::2].count(0), sample[1::2].count(0)
    if max(nul_even, nul_odd) > len(sample) // 4:  # ASCII-range UTF-16 without a BOM
        encoding = "utf-16-be" if nul_even > nul_odd else "utf-16-le"
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as e:
            raise ExtractError("bad-encoding", f"looks like {encoding} but is not: {e}") from None
        warnings.append(f"no BOM; decoded as {encoding}")
        return _checked(text, warnings)
    if b"\x00" in data:
        raise ExtractError("not-text", "binary data (NUL bytes) in a text file")
    encoding = "latin-1" if _CP1252_HOLES.search(data) else "cp1252"
    warnings.append(f"not UTF-8; decoded as {encoding}")
    return _checked(data.decode(encoding), warnings)


def _checked(text: str, warnings: list[str]) -> str:
    bad = text.count("\ufffd")
    if bad:
        warnings.append(f"{bad} replacement character(s) (U+FFFD) already in the file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------------------------------------
# TXT


def extract_txt(data: bytes, name: str = "") -> ExtractedBook:
    """Chapters from heading lines, paragraphs from blank lines; hard-wrapped lines are joined."""
    warnings: list[str] = []
    text = _named(decode_text, data, warnings, name=name)
    blocks = _blocks(text)
    if not blocks:
        raise ExtractError("no-text", f"{name}: only whitespace")
    explicit = [i for i, (_, lines) in enumerate(blocks) if len(lines) == 1 and _is_heading(lines[0])]
    gapped = [
        i for i, (gap, lines) in enumerate(blocks)
        if len(lines) == 1 and gap >= _GAP_LINES and _short_unindented(lines[0])
    ]
    heads = explicit if len(explicit) >= 2 else gapped if len(gapped) >= 2 else []
    titles: dict[int, str] = {}
    swallowed: set[int] = set()
    for i in heads:
        title = " ".join(blocks[i][1][0].split())
        nxt = blocks[i + 1][1] if i + 1 < len(blocks) else []
        if (heads is explicit and _BARE_HEADING_RE.match(title) and len(nxt) == 1
                and i + 1 not in heads and len(nxt[0].strip()) <= 60):
            title = f"{title.rstrip('.:')}. {' '.join(nxt[0].split())}"  # "CHAPTER I" + "Loomings."
            swallowed.add(i + 1)
        titles[i] = title
    chapters: list[Chapter] = []
    title, paras = "", []
    for i, (_, lines) in enumerate(blocks):
        if i in titles:
            _add_chapter(chapters, title, paras, "")
            title, paras = titles[i], []
        elif i not in swallowed:
            paras.append(" ".join(" ".join(lines).split()))
    _add_chapter(chapters, title, paras, "")
    if not chapters:
        raise ExtractError("no-text", f"{name}: headings only, no text")
    return ExtractedBook(None, [], None, chapters, warnings)


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """(empty lines before it, its lines) for each run of non-empty lines; the file start counts as a gap."""
    out: list[tuple[int, list[str]]] = []
    gap, lines = _GAP_LINES, []
    for line in text.split("\n"):
        if line.strip():
            lines.append(line.rstrip())
            continue
        if lines:
            out.append((gap, lines))
            gap, lines = 0, []
        gap += 1
    if lines:
        out.append((gap, lines))
    return out


def _is_heading(line: str) -> bool:
    return len(line.strip()) <= _MAX_HEADING_CHARS and bool(_HEADING_RE.match(line))


def _short_unindented(line: str) -> bool:
    stripped = line.strip()
    return (not line[:1].isspace() and len(stripped) <= _MAX_HEADING_CHARS
            and not stripped.endswith((",", ";")) and any(c.isalnum() for c in stripped))


def _add_chapter(chapters: list[Chapter], title: str, paras: list[str], href: str) -> None:
    text = "\n\n".join(p for p in paras if p)
    if text:
        chapters.append(Chapter(len(chapters), title, href, text))


def _named(fn, *args, name: str):  # noqa: ANN001, ANN202 - a thin wrapper that adds the file name
    try:
        return fn(*args)
    except ExtractError as e:
        raise ExtractError(e.reason, f"{name}: {e.detail}" if name else e.detail) from None


# ---------------------------------------------------------------------------------------------
# HTML


def extract_html(
    data: bytes, name: str = "", split_tags: frozenset[str] = frozenset({"h1", "h2"})
) -> ExtractedBook:
    """One HTML document: bs4's UnicodeDammit + lxml (shared with the EPUB reader), chapters at h1/h2."""
    if not data:
        raise ExtractError("empty-file", f"{name}: 0 bytes")
    if len(data) > MAX_TEXT_BYTES:
        raise ExtractError("too-large", f"{name}: {len(data)} bytes")
    root, entities, problem = parse_markup(data)
    if root is None:
        raise ExtractError("bad-html", f"{name}: {problem or 'nothing parseable'}")
    title = _head_title(root)
    chapters = html_chapters(root, entities, split_tags)
    if not chapters:
        raise ExtractError("no-text", f"{name}: no text in the document")
    return ExtractedBook(title, _meta_authors(root), root.get("lang"), chapters, [])


def html_chapters(
    root: etree._Element, entities: dict[str, str], split_tags: frozenset[str], href: str = "",
    first_title: str = "",
) -> list[Chapter]:
    """Paragraphs as the EPUB reader makes them; a new chapter at each heading in split_tags."""
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.rpartition("}")[2].lower() in split_tags:
            el.text = _SENTINEL + (el.text or "")
    chapters: list[Chapter] = []
    title, paras = first_title, []
    for para in paragraphs(root, entities):
        if para.startswith(_SENTINEL):
            heading = para.replace(_SENTINEL, "").strip()
            if not heading:
                continue
            _add_chapter(chapters, title, paras, href)
            title, paras = heading, [heading]
        else:
            paras.append(para.replace(_SENTINEL, ""))
    _add_chapter(chapters, title, paras, href)
    return chapters


def _head_title(root: etree._Element) -> str | None:
    for el in root.iter():
        if isinstance(el.tag, str) and el.tag.rpartition("}")[2].lower() == "title":
            text = " ".join("".join(el.itertext()).split())
            return text or None
    return None


def _meta_authors(root: etree._Element) -> list[str]:
    return [
        " ".join(el.get("content", "").split())
        for el in root.iter()
        if isinstance(el.tag, str) and el.tag.rpartition("}")[2].lower() == "meta"
        and (el.get("name") or "").lower() in ("author", "dc.creator") and el.get("content", "").strip()
    ]


# ---------------------------------------------------------------------------------------------
# Markdown

_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_FRONT_MATTER_RE = re.compile(r"\A---\n.*?\n(?:---|\.\.\.)\n", re.S)
_INLINE = (
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # image -> alt text
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # link -> its text
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference link
    (re.compile(r"<(https?://[^>]+)>"), r"\1"),  # autolink
    (re.compile(r"<[^>\n]+>"), ""),  # inline HTML tags
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?!\w)"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),
)
_BLOCK_PREFIX_RE = re.compile(r"^ {0,3}(?:>[ \t]?)+|^[ \t]*(?:[-*+]|\d+[.)])[ \t]+")
_LINK_DEF_RE = re.compile(r"^ {0,3}\[[^\]]+\]:\s+\S+")


def extract_markdown(data: bytes, name: str = "") -> ExtractedBook:
    """CommonMark-ish by hand (no dependency): chapters at the two top heading levels used."""
    warnings: list[str] = []
    text = _FRONT_MATTER_RE.sub("", _named(decode_text, data, warnings, name=name), count=1)
    items = _markdown_items(text)  # (heading level or 0, text)
    levels = sorted({level for level, _ in items if level})
    split = set(levels[:2]) if levels else set()
    if len(levels) > 2 and levels[0] == 1 and sum(1 for lv, _ in items if lv == 1) == 1:
        split = set(levels[1:3])  # one "# Book title" on top: chapters are the next two levels
    book_title = next((t for lv, t in items if lv == 1), None)
    chapters: list[Chapter] = []
    title, paras = "", []
    for level, para in items:
        if level in split:
            _add_chapter(chapters, title, paras, "")
            title, paras = para, [para]
        else:
            paras.append(para)
    _add_chapter(chapters, title, paras, "")
    if not chapters:
        raise ExtractError("no-text", f"{name}: no text")
    return ExtractedBook(book_title, [], None, chapters, warnings)


def _markdown_items(text: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    buf: list[str] = []
    code: list[str] | None = None
    fence = ""

    def flush() -> None:
        if buf:
            para = _inline(" ".join(buf))
            buf.clear()
            if para:
                items.append((0, para))

    for line in text.split("\n"):
        if code is not None:
            if line.strip().startswith(fence):
                code_text = "\n".join(code).strip()
                if code_text:
                    items.append((0, code_text))
                code = None
            else:
                code.append(line)
            continue
        fenced = _FENCE_RE.match(line)
        if fenced:
            flush()
            code, fence = [], fenced.group(1)
            continue
        atx = _ATX_RE.match(line)
        if atx:
            flush()
            heading = _inline(atx.group(2) or "")
            if heading:
                items.append((len(atx.group(1)), heading))
            continue
        setext = _SETEXT_RE.match(line)
        if setext and len(buf) == 1 and not _BLOCK_PREFIX_RE.match(buf[0]):
            heading = _inline(buf.pop())
            if heading:
                items.append((1 if setext.group(1)[0] == "=" else 2, heading))
            continue
        if not line.strip() or _LINK_DEF_RE.match(line) or re.match(r"^ {0,3}([-*_])( *\1){2,} *$", line):
            flush()
            continue
        if _BLOCK_PREFIX_RE.match(line) and buf and re.match(r"^[ \t]*(?:[-*+]|\d+[.)])[ \t]+", line):
            flush()  # each list item is its own paragraph
        buf.append(_BLOCK_PREFIX_RE.sub("", line).strip())
    if code:
        items.append((0, "\n".join(code).strip()))
    flush()
    return items


def _inline(text: str) -> str:
    for pattern, repl in _INLINE:
        text = pattern.sub(repl, text)
    return " ".join(text.replace("\\", "").split())
