"""Tables of contents (EPUB 3 nav, EPUB 2 NCX, ebooklib's) as flat entries, and the chapter
titles they give container paths; also the container path rules both readers share.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

from ebooklib import epub
from lxml import etree

from alexandria.sources.markup import EPUB_TYPE, local_name
from alexandria.sources.titles import short_label, title_path

TocEntry = tuple[tuple[str, ...], str, str]  # (labels from the root down, href, folder it is relative to)


def confine(path: str) -> str | None:
    """A normalised container path, or None when it climbs out of the container ('../')."""
    norm = posixpath.normpath(path.lstrip("/")) if path else ""
    if not norm or norm in (".", "..") or norm.startswith("../"):
        return None
    return norm


def resolve(base_dir: str, href: str | None) -> str | None:
    """Container path of a relative URL; None for external URLs and for paths leaving the container."""
    if not href:
        return None
    parts = urlsplit(href.strip())
    if parts.scheme or parts.netloc or not parts.path:
        return None
    path = unquote(parts.path)
    return confine(path if path.startswith("/") else posixpath.join(base_dir, path))



def title_map(entries: Iterable[TocEntry]) -> dict[str, str]:
    """Container path -> "Part II > Chapter 3", from the first TOC entry (pre-order) pointing at it."""
    titles: dict[str, str] = {}
    for labels, href, base in entries:
        target = resolve(base, href)
        if target and target not in titles:
            titles[target] = title_path(labels)
    return titles


def fragment_map(entries: list[TocEntry]) -> dict[str, dict[str, str]]:
    """Container path -> {fragment id: chapter path} for TOC entries that point inside a file."""
    out: dict[str, dict[str, str]] = {}
    for labels, href, base in entries:
        target = resolve(base, href)
        fragment = unquote(urlsplit(href.strip()).fragment) if href else ""
        if not target or not fragment:
            continue
        out.setdefault(target, {}).setdefault(fragment, title_path(labels))
    return out


def label_of(el: etree._Element | None) -> str:
    return short_label("".join(el.itertext())) if el is not None else ""


def repair_links(entries: list[TocEntry], exists: Callable[[str], bool], files: Iterable[str],
                 notes: list[str]) -> list[TocEntry]:
    """A TOC link to a file the container lacks points at the package's only file of that name,
    if there is one (e.g. a nav written for files that were then moved into a language folder);
    otherwise it names no chapter. Either way the book's warnings say so."""
    by_name: dict[str, list[str]] = {}
    for path in files:  # the package's content documents that are in the container
        by_name.setdefault(posixpath.basename(path), []).append(path)
    out: list[TocEntry] = []
    moved: dict[str, str] = {}  # missing target -> the file used instead
    lost: dict[str, None] = {}
    for labels, href, base in entries:
        target = resolve(base, href)
        if target is None or exists(target):
            out.append((labels, href, base))
            continue
        found = list(dict.fromkeys(by_name.get(posixpath.basename(target), [])))
        if len(found) == 1:
            fragment = urlsplit(href.strip()).fragment
            fixed = quote(found[0]) + (f"#{fragment}" if fragment else "")
            out.append((labels, fixed, ""))
            moved[target] = found[0]
        else:
            out.append((labels, href, base))
            lost[target] = None
    if moved:
        first = next(iter(moved.items()))
        notes.append(f"{len(moved)} file(s) named by the table of contents are not in the book; "
                     f"matched by file name, first: {first[0]} -> {first[1]}")
    if lost:
        notes.append(f"{len(lost)} file(s) named by the table of contents are not in the book, "
                     f"first: {next(iter(lost))}")
    return out


def ebooklib_entries(nodes: object, labels: tuple[str, ...], base: str) -> Iterator[TocEntry]:
    """Flattens ebooklib's toc: Link, Section, (Section, children) and lists of those."""
    if isinstance(nodes, (epub.Link, epub.Section)):
        nodes = [nodes]
    if not isinstance(nodes, (list, tuple)):
        return
    for node in nodes:
        if isinstance(node, tuple) and len(node) == 2 and isinstance(node[0], epub.Section):
            here = labels + (short_label(node[0].title),)
            yield here, node[0].href or "", base
            yield from ebooklib_entries(node[1], here, base)
        elif isinstance(node, (epub.Link, epub.Section)):
            yield labels + (short_label(node.title),), node.href or "", base
        elif isinstance(node, list):
            yield from ebooklib_entries(node, labels, base)


def nav_entries(root: etree._Element, base: str) -> list[TocEntry]:
    navs = [el for el in root.iter() if local_name(el.tag) == "nav"]
    toc = next((n for n in navs if "toc" in (n.get(EPUB_TYPE) or n.get("epub:type") or "").split()), None)
    if toc is None:
        toc = next((n for n in navs if "toc" in n.attrib.values()), None)  # ebooklib's rule
    top = (next((el for el in toc.iter() if local_name(el.tag) in ("ol", "ul")), None)
           if toc is not None else None)
    out: list[TocEntry] = []

    def walk(lst: etree._Element, labels: tuple[str, ...], depth: int) -> None:
        for li in lst:
            if local_name(li.tag) != "li" or depth > 64:
                continue
            label = next((c for c in li if local_name(c.tag) not in ("ol", "ul", "")), None)
            link = None
            if label is not None:
                link = next((a for a in label.iter() if local_name(a.tag) == "a"), None)
            here = labels + (label_of(label),)
            out.append((here, link.get("href", "") if link is not None else "", base))
            sub = next((c for c in li if local_name(c.tag) in ("ol", "ul")), None)
            if sub is not None:
                walk(sub, here, depth + 1)

    if top is not None:
        walk(top, (), 0)
    return out


def ncx_entries(root: etree._Element, base: str) -> list[TocEntry]:
    out: list[TocEntry] = []

    def walk(parent: etree._Element, labels: tuple[str, ...], depth: int) -> None:
        for point in parent:
            if local_name(point.tag) != "navpoint" or depth > 64:
                continue
            label = next((c for c in point if local_name(c.tag) == "navlabel"), None)
            content = next((c for c in point if local_name(c.tag) == "content"), None)
            here = labels + (label_of(label),)
            out.append((here, content.get("src", "") if content is not None else "", base))
            walk(point, here, depth + 1)

    nav_map = next((el for el in root.iter() if local_name(el.tag) == "navmap"), None)
    if nav_map is not None:
        walk(nav_map, (), 0)
    return out
