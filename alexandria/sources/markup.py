"""Markup shared by the readers (EPUB documents, HTML files, MOBI's HTML): bytes to a safe tree,
a tree to paragraphs of plain text.

XML is parsed without DTDs, network access or entity expansion; what is not well-formed goes to
libxml2's HTML parser, which never expands DTD entities either.
"""

from __future__ import annotations

import re

from bs4 import UnicodeDammit
from lxml import etree

# Elements that start and end a paragraph. Anything else is inline: its text joins the current
# paragraph, so <b>/<i>/<a> runs stay inside their sentence.
BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption center dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html legend li main menu ol "
    "option p pre section summary table tbody td tfoot th thead tr ul".split()
)
# Never text for a reader: metadata, code, navigation, and ruby readings (furigana would be spliced
# into the Japanese sentence they annotate).
SKIP_TAGS = frozenset("head title script style nav template noembed rt rp".split())
# Inline, but never glued to their neighbours: fixed-layout books set each line as an SVG <text>.
SPACED_TAGS = frozenset({"text"})
EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"
# epub:type values that mark apparatus, not prose: page numbers, note markers glued to the word they
# follow ("cold.48"), and the back-arrows of endnotes.
SKIP_EPUB_TYPES = frozenset({"pagebreak", "noteref", "backlink"})
# Invisible characters that only split tokens: soft hyphen, word joiner, zero-width no-break space.
INVISIBLE_RE = re.compile("[\u00ad\u2060\ufeff]")
PROLOG_RE = re.compile(r"\A\s*(?:<\?xml[^>]*\?>\s*)?(?:<!DOCTYPE[^\[>]*(?:\[.*?\]\s*)?>)?", re.S | re.I)


def xml_parser() -> etree.XMLParser:
    """No DTD, no network, no entity expansion: XXE and billion-laughs both stay inert."""
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
        remove_comments=True, remove_pis=True, huge_tree=False,
    )


def html_parser() -> etree.HTMLParser:
    return etree.HTMLParser(no_network=True, remove_comments=True, remove_pis=True, default_doctype=False)


def local_name(tag: object) -> str:
    """Lower-case local name of a tag; '' for comments, PIs and entity references."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2].rpartition(":")[2].lower()


def clean(text: str | None) -> str:
    return " ".join(text.split()) if text else ""


def text_of(el: etree._Element) -> str:
    return clean("".join(el.itertext()))


def parse_markup(raw: bytes) -> tuple[etree._Element | None, dict[str, str], str | None]:
    """(root, internal entities, why XML failed): strict XML first, HTML for what is not well-formed.

    XML honours the declared encoding and BOMs (UTF-16/32). When it fails (HTML entities such as
    &nbsp; without a DTD, unclosed tags, bytes that do not match the declaration), bs4's UnicodeDammit
    picks the encoding from BOM, declaration or meta charset (then UTF-8, then guesses) and libxml2's
    HTML parser, which knows HTML entities and never expands DTD entities, builds the tree.
    """
    try:
        root = etree.fromstring(raw, xml_parser())
    except etree.XMLSyntaxError as e:
        problem = str(e) or "not well-formed"
    else:
        if root is None:
            return None, {}, "empty document"
        return root, internal_entities(root), None
    text = UnicodeDammit(raw, ["utf-8"], is_html=True).unicode_markup
    text = PROLOG_RE.sub("", text or "", count=1)  # lxml refuses a str with an XML declaration
    if not text.strip():
        return None, {}, problem
    try:
        root = etree.fromstring(text, html_parser())
    except (etree.XMLSyntaxError, etree.ParserError, ValueError):
        root = None
    return root, {}, problem


def internal_entities(root: etree._Element) -> dict[str, str]:
    """Plain-text entities declared in the internal subset: kept as references by the parser."""
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is None:
        return {}
    return {
        ent.name: ent.content
        for ent in dtd.iterentities()
        if ent.system_url is None and ent.content and "&" not in ent.content and "<" not in ent.content
    }


def paragraphs(root: etree._Element, entities: dict[str, str], marks: dict[str, str] | None = None,
                starts: list[tuple[int, str]] | None = None) -> list[str]:
    """One string per block element, inline runs joined. An explicit stack: deep nesting is fine.

    marks: element ids where a TOC entry points; starts gets (paragraph index, id) for each one
    met, so the caller can cut the document into chapters there."""
    paras: list[str] = []
    buf: list[str] = []
    after_br = False

    def flush() -> None:
        nonlocal after_br
        after_br = False
        if buf:
            text = " ".join(INVISIBLE_RE.sub("", "".join(buf)).split())
            buf.clear()
            if text:
                paras.append(text)

    def add(text: str) -> None:
        nonlocal after_br
        buf.append(text)
        if after_br and not text.isspace():
            after_br = False

    stack: list[tuple[etree._Element, bool | None]] = [(root, None)]
    while stack:
        el, closing = stack.pop()
        if closing is not None:  # leaving an element; its tail follows it
            if closing:
                flush()
            elif local_name(el.tag) in SPACED_TAGS:
                buf.append(" ")
            if el.tail:
                add(el.tail)
            continue
        tag = el.tag
        if not isinstance(tag, str):  # an entity reference (comments and PIs are already gone)
            if tag is etree.Entity and el.name in entities:
                add(entities[el.name])
            if el.tail:
                add(el.tail)
            continue
        name = local_name(tag)
        if marks and starts is not None:
            anchor = el.get("id") or (el.get("name") if name == "a" else None)
            if anchor in marks and not any(a == anchor for _, a in starts):
                flush()
                starts.append((len(paras), anchor))
        epub_type = el.get(EPUB_TYPE) or el.get("epub:type")
        if (
            name in SKIP_TAGS
            or el.get("hidden") is not None
            or (epub_type and not SKIP_EPUB_TYPES.isdisjoint(epub_type.split()))
        ):
            if el.tail:
                add(el.tail)
            continue
        if name == "br":
            if after_br:  # <br/><br/> is how converters often separate paragraphs
                flush()
            else:
                buf.append(" ")
                after_br = True
            if el.tail:
                add(el.tail)
            continue
        block = name in BLOCK_TAGS
        if block:
            flush()
        elif name in SPACED_TAGS:
            buf.append(" ")
        if el.text:
            add(el.text)
        stack.append((el, block))
        stack.extend((child, None) for child in reversed(el))
    flush()
    return paras
