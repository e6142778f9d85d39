"""Stage 1: an EPUB's bytes -> metadata and chapters of plain text, ready to chunk.

ebooklib does the normal work. Books in the wild are often a little broken (a manifest entry whose
file is absent, a nav without a TOC, ...) and ebooklib then gives up on the whole book, so we fall
back to reading the OCF container ourselves and keep whatever is readable.

Both paths share what decides the output (package document, spine plan, text extraction), so a
book gives the same chapters whichever path read it. XML is parsed without DTDs, network access or
entity expansion, and every read from the zip is bounded.
"""

from __future__ import annotations

import io
import posixpath
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from ebooklib import epub
from lxml import etree

from alexandria.sources.boilerplate import block_key, repeated_blocks
from alexandria.sources.book import Chapter, ExtractedBook, ExtractError
from alexandria.sources.markup import (
    local_name,
    paragraphs,
    parse_markup,
    text_of,
    xml_parser,
)
from alexandria.sources.toc import (
    TocEntry,
    confine,
    ebooklib_entries,
    fragment_map,
    nav_entries,
    ncx_entries,
    repair_links,
    resolve,
    title_map,
)

MAX_ENTRY_BYTES = 64 * 1024 * 1024  # one decompressed zip entry; a bigger one is skipped
MAX_BOOK_BYTES = 512 * 1024 * 1024  # all entries together, as declared by the zip directory
MAX_ENTRIES = 100_000  # a zip directory this long is a bomb, not a book

_FONT_OBFUSCATION = frozenset({"http://www.idpf.org/2008/embedding", "http://ns.adobe.com/pdf/enc#RC"})
_CONTENT_EXTENSIONS = frozenset({".xhtml", ".xht", ".html", ".htm", ".xml", ".opf", ".ncx", ".svg", ".smil"})
_HTML_MEDIA_TYPES = frozenset(
    {"application/xhtml+xml", "text/html", "application/xml", "text/xml", "application/x-dtbook+xml"}
)
_HTML_EXTENSIONS = frozenset({".xhtml", ".xht", ".html", ".htm"})
_NCX_MEDIA_TYPE = "application/x-dtbncx+xml"

# What zipfile raises on damaged archives besides BadZipFile (and RuntimeError for passwords).
_ZIP_ERRORS = (NotImplementedError, ValueError, EOFError, OSError, zlib.error)

def extract_epub(data: bytes, name: str = "", *, use_ebooklib: bool = True) -> ExtractedBook:
    """Reads an EPUB held in memory; raises ExtractError with a specific reason when it cannot.

    use_ebooklib=False reads the container directly, as the fallback does (both give one book).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib and bs4 warn on stderr; workers must stay quiet
            return _extract(data, use_ebooklib=use_ebooklib)
    except ExtractError as e:
        raise ExtractError(e.reason, f"{name}: {e.detail}" if name else e.detail) from None


def _extract(data: bytes, *, use_ebooklib: bool = True) -> ExtractedBook:
    notes: list[str] = []
    archive = _Archive(data, notes)
    opf_path = _first_rootfile(archive)
    encrypted = _encrypted_resources(archive, notes)
    _check_drm(encrypted, set())
    pkg = _parse_package(archive, opf_path)
    plan, broken = _spine_plan(pkg, notes)
    _check_drm(encrypted, {i.href for i in plan if i.href})

    load: Callable[[_Item], bytes | None]
    try:
        if not use_ebooklib:
            raise RuntimeError("direct read requested")
        load, toc = _with_ebooklib(data, archive, pkg, plan)
    except Exception as e:  # ebooklib gives up on a whole book for, say, one missing font
        notes.append(f"fell back to direct container read: {type(e).__name__}: {e}")
        load, toc = _direct_loader(archive, notes), _direct_toc(archive, pkg)
    toc = repair_links(
        list(toc), lambda path: archive.find(path) is not None,
        [i.href for i in pkg.manifest.values() if i.href and i.is_html and archive.find(i.href)], notes)
    titles = title_map(toc)
    whole_titles = title_map(e for e in toc if "#" not in e[1])
    sections = fragment_map(toc)

    problems: list[str] = []
    documents: list[tuple[str, _Blocks | None]] = []
    read = 0
    for item in plan:
        href = item.href or ""
        raw = load(item)
        if raw is None:
            documents.append((href, None))
            continue
        read += 1
        documents.append((href, _document_blocks(raw, href, problems, sections.get(href, {}))))
    labels = {label for entry in toc for label in entry[0]}
    _drop_repeated_blocks([d for _, d in documents if d is not None], labels, notes)

    chapters: list[Chapter] = []
    title = ""
    for href, blocks in documents:
        if blocks is None:
            title = titles.get(href, title)
            continue
        # A TOC entry pointing into the middle of this document (file.xhtml#part2) starts a
        # chapter there: a poem in five parts in one file is five chapters, not one.
        parts = blocks.sections(sections.get(href, {}))
        if href in whole_titles:
            title = whole_titles[href]
        elif len(parts) <= 1:  # no anchor found: the first entry for the file names all of it
            title = titles.get(href, title)
        elif not title:  # text before the first anchor of the book's first document
            title = pkg.title or ""
        for mark_title, text in parts:
            title = mark_title or title
            if text:
                chapters.append(Chapter(len(chapters), title, href, text))
    if problems:
        notes.append(f"{len(problems)} document(s) not well-formed XML, read as HTML; first: {problems[0]}")
    if not chapters:
        if read == 0 and (plan or broken):
            total = len(plan) + broken
            raise ExtractError("missing-content", f"none of the {total} spine documents is readable")
        raise ExtractError("no-text", f"{read} XHTML spine documents, none with text (image-only?)")
    return ExtractedBook(pkg.title, pkg.authors, pkg.language, chapters, list(dict.fromkeys(notes)))


# ---------------------------------------------------------------------------------------------
# Container


class _Archive:
    """The zip, with the checks that make reading it safe: sizes bounded, paths kept inside."""

    def __init__(self, data: bytes, notes: list[str]) -> None:
        if not data:
            raise ExtractError("empty-file", "0 bytes")
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
            infos = self.zf.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, *_ZIP_ERRORS) as e:
            raise ExtractError("not-a-zip", str(e)) from None
        if len(infos) > MAX_ENTRIES:
            raise ExtractError("too-large", f"{len(infos)} zip entries")
        total = sum(i.file_size for i in infos)  # ZipExtFile never inflates past file_size: a hard bound
        if total > MAX_BOOK_BYTES:
            raise ExtractError("too-large", f"{total} bytes uncompressed (limit {MAX_BOOK_BYTES})")
        encrypted = [i.filename for i in infos if i.flag_bits & 0x1]
        if encrypted:
            detail = f"{len(encrypted)} encrypted entries, first {encrypted[0]}"
            raise ExtractError("password-protected", detail)
        self.notes = notes
        self.unreadable: dict[str, str] = {}  # entry -> why it could not be read
        self.entries: dict[str, zipfile.ZipInfo] = {}
        self.folded: dict[str, str] = {}
        for info in infos:  # a later duplicate wins, as in zipfile itself
            key = confine(info.filename.replace("\\", "/"))
            if key and not info.is_dir():
                self.entries[key] = info
                self.folded.setdefault(key.casefold(), key)

    def find(self, path: str) -> str | None:
        """The entry for a container path; case-insensitive as a last resort (books made on Windows)."""
        if path in self.entries:
            return path
        return self.folded.get(path.casefold())

    def read(self, path: str) -> bytes | None:
        """Bounded read of one entry; None when absent, and None plus a note when oversized or corrupt."""
        key = self.find(path)
        if key is None:
            return None
        info = self.entries[key]
        data = b""
        if info.file_size <= MAX_ENTRY_BYTES:
            try:
                with self.zf.open(info) as fh:
                    data = fh.read(MAX_ENTRY_BYTES + 1)
            except (zipfile.BadZipFile, RuntimeError, *_ZIP_ERRORS) as e:
                self.unreadable[key] = f"corrupt: {e}"
                self.notes.append(f"skipped unreadable entry {key}: {e}")
                return None
        if info.file_size > MAX_ENTRY_BYTES or len(data) > MAX_ENTRY_BYTES:
            self.unreadable[key] = f"oversized: {info.file_size} bytes declared"
            self.notes.append(f"skipped oversized entry {key} ({info.file_size} bytes declared)")
            return None
        return data

    def read_essential(self, path: str, missing: ExtractError) -> tuple[str, bytes]:
        """(entry, bytes) of a file the book cannot do without; `missing` is raised when it is absent."""
        key = self.find(path)
        raw = self.read(key) if key else None
        if key is None:
            raise missing
        if raw is None:
            why = self.unreadable.get(key, "unreadable")
            raise ExtractError("too-large" if why.startswith("oversized") else "corrupt-zip", f"{key}: {why}")
        return key, raw


def _first_rootfile(archive: _Archive) -> str:
    _, raw = archive.read_essential(
        "META-INF/container.xml", ExtractError("no-container", "META-INF/container.xml is missing"))
    try:
        root = etree.fromstring(raw, xml_parser())
    except etree.XMLSyntaxError as e:
        raise ExtractError("bad-xml", f"META-INF/container.xml: {e}") from None
    rootfiles = [
        (el.get("full-path", "").strip(), (el.get("media-type") or "").strip().lower())
        for el in root.iter()
        if local_name(el.tag) == "rootfile" and (el.get("full-path") or "").strip()
    ]
    # The first package is the default rendition (OCF 3.3); ebooklib would take the last one.
    packages = [path for path, media in rootfiles if media in ("", "application/oebps-package+xml")]
    chosen = packages or [path for path, _ in rootfiles]
    if not chosen:
        raise ExtractError("no-package-document", "container.xml lists no rootfile")
    path = confine(chosen[0])
    if path is None:
        raise ExtractError("no-package-document", f"rootfile {chosen[0]!r} is outside the container")
    return path


# ---------------------------------------------------------------------------------------------
# Package document


@dataclass
class _Item:
    id: str
    href: str | None  # container path; None when the href is external or leaves the container
    raw_href: str
    media_type: str
    properties: frozenset[str]
    fallback: str | None

    @property
    def is_html(self) -> bool:
        ext = posixpath.splitext(self.href or "")[1].lower()
        return self.media_type in _HTML_MEDIA_TYPES or ext in _HTML_EXTENSIONS


@dataclass
class _Package:
    path: str
    title: str | None
    authors: list[str]
    language: str | None
    manifest: dict[str, _Item]
    spine: list[str]  # idrefs in reading order
    toc_id: str | None  # the spine's toc attribute: the NCX

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.path)


def _parse_package(archive: _Archive, opf_path: str) -> _Package:
    key, raw = archive.read_essential(
        opf_path, ExtractError("no-package-document", f"{opf_path} is not in the container"))
    try:
        root = etree.fromstring(raw, xml_parser())
    except etree.XMLSyntaxError as e:
        raise ExtractError("bad-xml", f"{key}: {e}") from None
    if root is None or local_name(root.tag) != "package":
        raise ExtractError("bad-xml", f"{key}: the root element is not <package>")
    folder = posixpath.dirname(key)
    title = language = None
    authors: list[str] = []
    manifest: dict[str, _Item] = {}
    spine_el = None
    for section in root:
        name = local_name(section.tag)
        if name == "metadata":
            title, authors, language = _metadata(section)
        elif name == "manifest":
            for el in section:
                item_id = el.get("id")
                if local_name(el.tag) == "item" and item_id and item_id not in manifest:
                    raw_href = el.get("href") or ""
                    manifest[item_id] = _Item(
                        id=item_id,
                        href=resolve(folder, raw_href),
                        raw_href=raw_href,
                        media_type=(el.get("media-type") or "").strip().lower(),
                        properties=frozenset((el.get("properties") or "").split()),
                        fallback=el.get("fallback"),
                    )
        elif name == "spine" and spine_el is None:
            spine_el = section
    if spine_el is None:
        raise ExtractError("missing-spine", f"{key} has no <spine>")
    spine = [el.get("idref", "") for el in spine_el if local_name(el.tag) == "itemref" and el.get("idref")]
    if not spine:
        raise ExtractError("missing-spine", f"{key} has an empty <spine>")
    return _Package(key, title, authors, language, manifest, spine, spine_el.get("toc"))


def _metadata(metadata: etree._Element) -> tuple[str | None, list[str], str | None]:
    """First dc:title, every dc:creator in order, first dc:language (DC 1.0 or 1.1, any nesting)."""
    found: dict[str, list[str]] = {"title": [], "creator": [], "language": []}
    for el in metadata.iter():
        if isinstance(el.tag, str) and "purl.org/dc/elements" in el.tag:
            bucket = found.get(local_name(el.tag))
            text = text_of(el) if bucket is not None else ""
            if bucket is not None and text:
                bucket.append(text)
    first = {k: (v[0] if v else None) for k, v in found.items()}
    return first["title"], found["creator"], first["language"]


def _encrypted_resources(archive: _Archive, notes: list[str]) -> list[tuple[str, str]]:
    """(path, algorithm) of each resource encrypted by something other than font obfuscation."""
    key = archive.find("META-INF/encryption.xml")
    raw = archive.read(key) if key else None
    if raw is None:
        return []
    try:
        root = etree.fromstring(raw, xml_parser())
    except etree.XMLSyntaxError as e:
        notes.append(f"ignored unparseable META-INF/encryption.xml: {e}")
        return []
    found = []
    for data in root.iter():
        if local_name(data.tag) != "encrypteddata":
            continue
        method = next((m for m in data if local_name(m.tag) == "encryptionmethod"), None)
        algorithm = (method.get("Algorithm") or "").strip() if method is not None else ""
        if algorithm in _FONT_OBFUSCATION:
            continue
        for ref in data.iter():
            path = resolve("", ref.get("URI")) if local_name(ref.tag) == "cipherreference" else None
            if path:
                found.append((path, algorithm))
    return found


def _check_drm(encrypted: list[tuple[str, str]], content: set[str]) -> None:
    """Encrypted content documents (not just fonts) mean DRM: the text would be ciphertext."""
    for path, algorithm in encrypted:
        if posixpath.splitext(path)[1].lower() in _CONTENT_EXTENSIONS or path in content:
            raise ExtractError("drm", f"{path} is encrypted ({algorithm or 'no algorithm given'})")


def _spine_plan(pkg: _Package, notes: list[str]) -> tuple[list[_Item], int]:
    """The spine's XHTML documents in reading order (fallbacks followed, nav and repeats dropped),
    and how many spine entries point at nothing usable (unknown id, href outside the container)."""
    plan: list[_Item] = []
    seen: set[str] = set()
    broken = 0
    for idref in pkg.spine:
        item = pkg.manifest.get(idref)
        hops = 0
        while item is not None and not item.is_html and item.fallback and hops < 16:
            item = pkg.manifest.get(item.fallback)  # e.g. a JSON spine item with an XHTML fallback
            hops += 1
        if item is None:
            notes.append(f"skipped spine item with no manifest entry: {idref}")
            broken += 1
        elif item.href is None:
            notes.append(f"skipped spine item outside the container: {item.raw_href}")
            broken += 1
        elif "nav" in item.properties:
            continue
        elif not item.is_html:
            notes.append(f"skipped spine item of type {item.media_type or '?'}: {item.href}")
        elif item.href in seen:
            # The same document twice in the reading order: once is enough for search.
            notes.append(f"skipped repeated spine item: {item.href}")
        else:
            seen.add(item.href)
            plan.append(item)
    return plan, broken


# ---------------------------------------------------------------------------------------------
# Markup and text


@dataclass
class _Blocks:
    """One spine document's paragraphs, and where TOC anchors start chapters among them."""

    paras: list[str]
    starts: list[tuple[int, str]]  # (index of the first paragraph, anchor id)

    def sections(self, marks: dict[str, str]) -> list[tuple[str | None, str]]:
        """(title or None for the part before the first mark, text) per section."""
        bounds: list[tuple[int, str | None]] = [(0, None)]
        bounds += [(i, marks[m]) for i, m in self.starts]
        out = []
        for k, (i, title) in enumerate(bounds):
            end = bounds[k + 1][0] if k + 1 < len(bounds) else len(self.paras)
            out.append((title, "\n\n".join(self.paras[i:end])))
        return out


def _document_blocks(raw: bytes, path: str, problems: list[str], marks: dict[str, str]
                     ) -> _Blocks | None:
    if not raw:
        return None
    root, entities, problem = parse_markup(raw)
    if problem:
        problems.append(f"{path}: {problem}")
    if root is None:
        return None
    starts: list[tuple[int, str]] = []
    paras = paragraphs(root, entities, marks, starts)
    return _Blocks(paras, starts)


def _drop_repeated_blocks(documents: list[_Blocks], labels: set[str], notes: list[str]) -> None:
    """Drops, in place, the blocks that repeat across many of the book's documents (navigation
    bars, running headers), keeping each document's chapter starts on the same paragraphs."""
    keys = repeated_blocks([d.paras for d in documents], labels)
    if not keys:
        return
    dropped: dict[str, str] = {}
    for doc in documents:
        kept: list[str] = []
        moved: list[int] = []  # paragraph index -> index among the kept ones
        for p in doc.paras:
            moved.append(len(kept))
            key = block_key(p)
            if key in keys:
                dropped.setdefault(key, p)
            else:
                kept.append(p)
        moved.append(len(kept))
        doc.starts = [(moved[i], anchor) for i, anchor in doc.starts]
        doc.paras = kept
    shown = "; ".join(repr(b[:60]) for b in list(dropped.values())[:3])
    notes.append(f"dropped {len(dropped)} block(s) repeated across at least half of the "
                 f"{len(documents)} documents, such as {shown}")


# ---------------------------------------------------------------------------------------------
# Table of contents


def _direct_toc(archive: _Archive, pkg: _Package) -> list[TocEntry]:
    """The nav document's toc (EPUB 3), else the NCX: the order ebooklib uses with ignore_ncx=True."""
    nav = next((i for i in pkg.manifest.values() if "nav" in i.properties and i.href), None)
    if nav is not None and nav.href:
        raw = archive.read(nav.href)
        root = parse_markup(raw)[0] if raw else None
        entries = nav_entries(root, posixpath.dirname(nav.href)) if root is not None else []
        if entries:
            return entries
    ncx = pkg.manifest.get(pkg.toc_id or "")
    if ncx is None or not ncx.href:
        ncx = next((i for i in pkg.manifest.values() if i.media_type == _NCX_MEDIA_TYPE and i.href), None)
    if ncx is not None and ncx.href:
        raw = archive.read(ncx.href)
        root = parse_markup(raw)[0] if raw else None
        if root is not None:
            return ncx_entries(root, posixpath.dirname(ncx.href))
    return []


# ---------------------------------------------------------------------------------------------
# The two readers


class _BoundedEpubReader(epub.EpubReader):
    """ebooklib's reader, reading through our archive (bounded, confined) and using the FIRST
    rootfile, which upstream does not: it takes the last one when a container lists several."""

    def __init__(self, data: bytes, archive: _Archive, opf_path: str) -> None:
        # ignore_ncx=True: the EPUB 3 nav wins, the NCX is read only when there is no nav.
        super().__init__(io.BytesIO(data), {"ignore_ncx": True})
        self._archive = archive
        self._opf_path = opf_path

    def _load_container(self) -> None:
        self.opf_file = self._opf_path
        self.opf_dir = posixpath.dirname(self._opf_path)

    def read_file(self, name: str) -> bytes:
        path = confine(name)
        if path is None:
            raise KeyError(f"{name!r} is outside the container")
        if self._archive.find(path) is None:
            raise KeyError(f"There is no item named {path!r} in the archive")
        data = self._archive.read(path)
        return b"" if data is None else data  # oversized or corrupt: noted; the spine loader skips it


def _with_ebooklib(
    data: bytes, archive: _Archive, pkg: _Package, plan: list[_Item]
) -> tuple[Callable[[_Item], bytes | None], list[TocEntry]]:
    """(loader, toc entries) backed by ebooklib; raises whatever ebooklib raises."""
    book = _BoundedEpubReader(data, archive, pkg.path).load()
    contents: dict[str, bytes] = {}
    for item in plan:
        found = book.get_item_with_id(item.id)
        if found is None or not isinstance(found.content, bytes):
            raise LookupError(f"ebooklib has no content for spine item {item.id!r}")
        contents[item.id] = found.content
    if any(isinstance(i, epub.EpubNav) for i in book.get_items()):
        base = pkg.folder  # ebooklib resolved the nav's hrefs against the nav's folder already
    else:
        ncx = book.get_item_with_id(pkg.toc_id) if pkg.toc_id else None
        base = posixpath.dirname(posixpath.join(pkg.folder, ncx.file_name)) if ncx is not None else pkg.folder
    toc = list(ebooklib_entries(book.toc, (), base))
    if not toc:
        toc = _direct_toc(archive, pkg)  # e.g. an NCX the spine does not name: still worth its titles

    def load(item: _Item) -> bytes | None:
        if item.href is None or archive.find(item.href) in archive.unreadable:
            return None
        return contents.get(item.id)

    return load, toc


def _direct_loader(archive: _Archive, notes: list[str]) -> Callable[[_Item], bytes | None]:
    def load(item: _Item) -> bytes | None:
        if item.href is None or archive.find(item.href) is None:
            notes.append(f"skipped missing spine document: {item.href}")
            return None
        return archive.read(item.href)

    return load
