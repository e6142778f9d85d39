"""extract_epub on the real corpus: every broken/edge file has a decided outcome, read from the file.

A few tests also build small EPUBs in memory for what the corpus lacks (zip bombs, zip passwords,
paths climbing out of the container, Shift_JIS); those are real archives, not mocks.
"""

from __future__ import annotations

import io
import pickle
import posixpath
import struct
import time
import unicodedata
import zipfile
from functools import cache
from pathlib import Path
from urllib.parse import unquote

import pytest
from lxml import etree

from alexandria.sources.book import Chapter, ExtractedBook, ExtractError
from alexandria.sources.epub import MAX_BOOK_BYTES, MAX_ENTRY_BYTES, extract_epub

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
EPUBS = CORPUS / "epubs"

# Decided by reading each file (unzip -l, its container.xml, OPF and content documents), not by
# running the code: ("ok", exact number of chapters with text) or ("error", reason).
EXPECTED: dict[str, tuple[str, int | str]] = {
    # A .docx: a zip, but no META-INF/container.xml.
    "broken/epubcheck-container-not-ocf.epub": ("error", "no-container"),
    "broken/epubcheck-container-xml-missing.epub": ("error", "no-container"),
    # The Latin-1 is in a stylesheet, which we never read.
    "broken/epubcheck-css-latin1.epub": ("ok", 1),
    # encryption.xml: content_001.xhtml encrypted with kw-aes128 (plain in fact, but declared DRM).
    "broken/epubcheck-encryption-xml-drm-like.epub": ("error", "drm"),
    # The absent file is a font; ebooklib gives up, the direct read keeps the one chapter.
    "broken/epubcheck-epub2-manifest-file-missing.epub": ("ok", 1),
    "broken/epubcheck-epub2-mimetype-file-missing.epub": ("ok", 1),
    # Two rootfiles, identical content: the first (OPS/) is read.
    "broken/epubcheck-epub2-multiple-opf.epub": ("ok", 1),
    # A bogus NCX entry only costs a title.
    "broken/epubcheck-epub2-ncx-points-to-missing.epub": ("ok", 1),
    # The <spine> is commented out.
    "broken/epubcheck-epub2-no-spine.epub": ("error", "missing-spine"),
    "broken/epubcheck-epub2-opf-missing.epub": ("error", "no-package-document"),
    # Spine 001, 002, 001: the repeat is dropped, both documents have text.
    "broken/epubcheck-epub2-spine-itemref-repeated.epub": ("ok", 2),
    # encryption.xml lists only an obfuscated font (http://www.idpf.org/2008/embedding).
    "broken/epubcheck-font-obfuscation.epub": ("ok", 1),
    "broken/epubcheck-image-corrupt.epub": ("ok", 1),
    # missing.xhtml is in the manifest but not in the spine.
    "broken/epubcheck-manifest-item-missing.epub": ("ok", 1),
    "broken/epubcheck-mimetype-entry-extra-field.epub": ("ok", 1),
    "broken/epubcheck-mimetype-entry-missing.epub": ("ok", 1),
    # ebooklib raises IndexError on the nav; the direct read has the text, without a title.
    "broken/epubcheck-nav-without-toc.epub": ("ok", 1),
    "broken/epubcheck-not-a-zip-image.epub": ("error", "not-a-zip"),
    # Declares ISO-8859-1 and is pure ASCII: a well-formed OPF.
    "broken/epubcheck-opf-latin1-declared.epub": ("ok", 1),
    # <metadata></package>: not well-formed.
    "broken/epubcheck-opf-malformed-xml.epub": ("error", "bad-xml"),
    # encoding="unknown": no parser can know what the bytes mean.
    "broken/epubcheck-opf-unknown-encoding-declared.epub": ("error", "bad-xml"),
    # UTF-16 with BOM: not what EPUB recommends, but unambiguous.
    "broken/epubcheck-opf-utf16.epub": ("ok", 1),
    # Despite the name, UTF-32BE without BOM; libxml2 detects it from the first four bytes.
    "broken/epubcheck-opf-utf32-bom.epub": ("ok", 1),
    "broken/epubcheck-package-document-missing.epub": ("error", "no-package-document"),
    # Body is "&amp " (no semicolon): read as HTML, the text is "&".
    "broken/epubcheck-xhtml-entity-no-semicolon.epub": ("ok", 1),
    # Declares an external entity and never uses it; its <body> is empty.
    "broken/epubcheck-xhtml-external-entity.epub": ("error", "no-text"),
    # Body is "&foo;": read as HTML, kept literally as a browser shows it.
    "broken/epubcheck-xhtml-undeclared-entity.epub": ("ok", 1),
    # UTF-16LE with BOM, <h1>Test</h1>.
    "broken/epubcheck-xhtml-utf16.epub": ("ok", 1),
    # <?xml version="1.1"?>, <p>...</p>.
    "broken/epubcheck-xhtml-xml11.epub": ("ok", 1),
    "broken/epubcheck-zero-byte.epub": ("error", "empty-file"),
    "broken/epubcheck-zip-duplicate-entry.epub": ("ok", 1),
    # Name byte 0x82 without the UTF-8 flag is "é" in CP437, the zip default: it matches the OPF.
    "broken/epubcheck-zip-filename-not-utf8.epub": ("ok", 1),
    "broken/epubcheck-zip-no-end-of-central-directory.epub": ("error", "not-a-zip"),
    # 16 spine documents, one of them the nav (dropped); the absent MP3s only cost ebooklib.
    "broken/idpf-kusamakura-japanese-vertical-missing-audio.epub": ("ok", 15),
    "edge/epubcheck-epub2-minimal-valid.epub": ("ok", 1),
    "edge/idpf-figure-gallery-bindings.epub": ("ok", 1),
    "edge/idpf-hefty-water.epub": ("ok", 4),  # TOC entries point at #fragments
    # 7 spine documents; cover.xhtml is a lone <img>.
    "edge/idpf-internallinks.epub": ("ok", 18),
    # main.xhtml is ten <img>; readme.xhtml has the text.
    "edge/idpf-vertically-scrollable-manga.epub": ("ok", 1),
    "edge/idpf-wasteland-otf-obf.epub": ("ok", 7),
    "edge/w3c-nav-spine_not-in-spine.epub": ("ok", 2),
    # Three renditions; the first, FOO/BAR/, says "Test passes if you see this."
    "edge/w3c-ocf-package_multiple.epub": ("ok", 1),
    "edge/w3c-ocf-url_parse-leaking-relative.epub": ("ok", 1),
    # Despite its purpose, an ordinary single-segment zip.
    "edge/w3c-ocf-zip-mult.epub": ("ok", 1),
    "edge/w3c-pkg-creator-order.epub": ("ok", 1),
    "edge/w3c-pkg-dir_rtl-root-unset.epub": ("ok", 1),
    # Spine 001, 002, 002, 002: each document once.
    "edge/w3c-pkg-spine-duplicate-item-rendering.epub": ("ok", 2),
    "edge/w3c-pkg-title-order.epub": ("ok", 1),
    "edge/w3c-pkg-unique-id_duplicate.epub": ("ok", 1),
    # The spine item is JSON; its manifest fallback is the XHTML document.
    "edge/w3c-pub-foreign_json-spine.epub": ("ok", 1),
    "edge/w3c-pub-xml-external-id.epub": ("ok", 1),
    "edge/w3c-pub-xml-non-validating_unclosed.epub": ("ok", 1),
}

# Image-only books: every spine document is an image wrapper. (Haruko has a text "About this
# document" page and Sous le vent is a fixed-layout novel with real text: both extract.)
NO_TEXT_BOOKS = {"idpf-page-blanche.epub"}


def need_corpus() -> None:
    if not EPUBS.is_dir():
        pytest.skip(f"corpus not found at {CORPUS}")


@cache
def outcome(rel: str) -> ExtractedBook | ExtractError:
    """Each file is extracted once per session; tests share the result."""
    try:
        return extract_epub((EPUBS / rel).read_bytes(), rel)
    except ExtractError as e:
        return e


def book(rel: str) -> ExtractedBook:
    need_corpus()
    result = outcome(rel)
    assert isinstance(result, ExtractedBook), f"{rel}: {result}"
    return result


def all_books() -> list[str]:
    return sorted(f"books/{p.name}" for p in (EPUBS / "books").glob("*.epub")) if EPUBS.is_dir() else []


def check_invariants(rel: str, result: ExtractedBook) -> None:
    with zipfile.ZipFile(EPUBS / rel) as zf:
        names = set(zf.namelist())
    assert [c.index for c in result.chapters] == list(range(len(result.chapters)))
    for c in result.chapters:
        assert isinstance(c, Chapter)
        assert c.text and c.text == c.text.strip()
        assert "\n\n\n" not in c.text
        for para in c.text.split("\n\n"):
            assert para and para == " ".join(para.split()), (rel, c.href, para[:80])
        assert not c.href.startswith(("../", "/")) and c.href in names, (rel, c.href)


# ---------------------------------------------------------------------------------------------
# The table


def test_table_covers_every_broken_and_edge_file() -> None:
    need_corpus()
    present = {f"{folder}/{p.name}" for folder in ("broken", "edge") for p in (EPUBS / folder).glob("*.epub")}
    assert present - EXPECTED.keys() == set(), "new corpus files: decide their outcome in EXPECTED"
    assert EXPECTED.keys() - present == set(), "EXPECTED lists files that are gone"


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_broken_and_edge_outcome(rel: str) -> None:
    need_corpus()
    kind, value = EXPECTED[rel]
    result = outcome(rel)
    if kind == "error":
        assert isinstance(result, ExtractError), f"{rel} extracted, expected {value}"
        assert result.reason == value, str(result)
        assert str(result).startswith(f"{value}: ")
    else:
        assert isinstance(result, ExtractedBook), f"{rel}: {result}"
        assert len(result.chapters) == value, [c.href for c in result.chapters]
        check_invariants(rel, result)


@pytest.mark.parametrize("rel", all_books())
def test_every_book_extracts_or_has_no_text(rel: str) -> None:
    need_corpus()
    result = outcome(rel)
    if Path(rel).name in NO_TEXT_BOOKS:
        assert isinstance(result, ExtractError) and result.reason == "no-text", result
        return
    assert isinstance(result, ExtractedBook), f"{rel}: {result}"
    assert result.chapters and result.title
    check_invariants(rel, result)
    assert not any("fell back" in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("rel", all_books())
def test_direct_read_gives_the_same_book_as_ebooklib(rel: str) -> None:
    """The fallback must not change a book's chunks when it is the one that reads it."""
    need_corpus()
    data = (EPUBS / rel).read_bytes()
    try:
        via_ebooklib = extract_epub(data)
    except ExtractError as e:
        with pytest.raises(ExtractError) as direct:
            extract_epub(data, use_ebooklib=False)
        assert direct.value.reason == e.reason
        return
    direct_book = extract_epub(data, use_ebooklib=False)
    assert direct_book.chapters == via_ebooklib.chapters
    assert (direct_book.title, direct_book.authors, direct_book.language) == (
        via_ebooklib.title, via_ebooklib.authors, via_ebooklib.language)
    assert any(w.startswith("fell back to direct container read: ") for w in direct_book.warnings)


# ---------------------------------------------------------------------------------------------
# Real books


def opf_spine_hrefs(epub_path: Path) -> list[str]:
    """The spine as container paths, read without the code under test."""
    with zipfile.ZipFile(epub_path) as zf:
        container = etree.fromstring(zf.read("META-INF/container.xml"))
        opf_path = container.find(".//{*}rootfile").get("full-path")
        opf = etree.fromstring(zf.read(opf_path))
    folder = posixpath.dirname(opf_path)
    manifest = {i.get("id"): i.get("href") for i in opf.find("{*}manifest")}
    return [posixpath.normpath(posixpath.join(folder, unquote(manifest[r.get("idref")])))
            for r in opf.find("{*}spine")]


def test_moby_dick_follows_the_spine() -> None:
    rel = "books/idpf-moby-dick.epub"
    result = book(rel)
    spine = opf_spine_hrefs(EPUBS / rel)
    hrefs = [c.href for c in result.chapters]
    assert hrefs == [h for h in spine if h in set(hrefs)]  # same order as the spine
    # 144 spine items: cover.xhtml and titlepage.xhtml are images, toc.xhtml is the nav.
    assert len(hrefs) == 141 and set(spine) - set(hrefs) == {"OPS/cover.xhtml", "OPS/titlepage.xhtml",
                                                              "OPS/toc.xhtml"}
    loomings = next(c for c in result.chapters if c.title == "Chapter 1. Loomings.")
    assert loomings.href == "OPS/chapter_001.xhtml"
    assert loomings.text.startswith("Chapter 1. Loomings.\n\nCall me Ishmael. Some years ago")
    assert [c.title for c in result.chapters[-2:]] == ["Epilogue", "Copyright Page"]
    assert "Call me Ishmael" in "".join(c.text for c in result.chapters)
    assert (result.title, result.authors, result.language) == ("Moby-Dick", ["Herman Melville"], "en-US")


def test_paragraphs_are_kept_and_inline_runs_stay_in_their_sentence() -> None:
    result = book("books/se-the-adventures-of-sherlock-holmes.epub")
    # the story's parts I-III are #fragment TOC entries inside one file: chapters of their own
    parts = [c for c in result.chapters if c.title.startswith("A Scandal in Bohemia")]
    assert [c.title for c in parts] == ["A Scandal in Bohemia", "A Scandal in Bohemia > I",
                                        "A Scandal in Bohemia > II", "A Scandal in Bohemia > III"]
    text = "\n\n".join(c.text for c in parts)
    paras = text.split("\n\n")
    assert len(paras) > 100
    assert "To Sherlock Holmes she is always the woman. I have seldom heard him" in parts[1].text
    # <i>E</i>, <i>g</i>, <i>P</i>... inside one <p>: one paragraph, words separated by spaces.
    assert any(p.startswith("I did so, and saw a large E with a small g, a P, and a large G with a small t")
               for p in paras)


def code_in_source(zf: zipfile.ZipFile, href: str) -> tuple[list[str], bool]:
    """What the document's <script> and <style> elements hold, and whether its prose itself
    mentions "<script" or "<style" (the EPUB specification and the accessibility guide do)."""
    raw = zf.read(href)
    root = etree.fromstring(raw, etree.XMLParser(recover=True, resolve_entities=False, no_network=True))
    code = [" ".join("".join(el.itertext()).split()) for el in root.iter("{*}script", "{*}style")]
    return [c for c in code if len(c) >= 12], b"&lt;script" in raw or b"&lt;style" in raw


def test_no_script_or_css_in_any_text() -> None:
    need_corpus()
    checked = 0
    for rel in [*all_books(), *EXPECTED]:
        result = outcome(rel)
        if isinstance(result, ExtractError):
            continue
        with zipfile.ZipFile(EPUBS / rel) as zf:
            for c in result.chapters:
                code, mentioned = code_in_source(zf, c.href)
                if not mentioned:
                    assert "<script" not in c.text and "<style" not in c.text, (rel, c.href)
                flat = " ".join(c.text.split())
                for snippet in code:
                    assert snippet[:60] not in flat, (rel, c.href, snippet[:60])
                    checked += 1
    assert checked >= 10  # the scripts and styles of hefty-water, sous-le-vent, the w3c tests...
    leaking = book("edge/w3c-ocf-url_parse-leaking-relative.epub").chapters[0].text
    assert "expected_path" not in leaking and "addEventListener" not in leaking
    assert "This reading system does not support scripting" in leaking


def test_nested_and_inherited_titles() -> None:
    pepys = book("books/se-the-diary-of-samuel-pepys.epub")
    titles = [c.title for c in pepys.chapters]
    assert "The Diary of Samuel Pepys > January 1659–60" in titles
    # Standard Ebooks noterefs ("cold.48") and word joiners are not text.
    january = pepys.chapters[titles.index("The Diary of Samuel Pepys > January 1659–60")]
    assert january.text.startswith("January 1659–60\n\nBlessed be God")
    assert "upon taking of cold. I lived in Axe Yard, having my wife" in january.text
    assert "\u2060" not in january.text
    # A spine item without a TOC entry takes the previous one's title; "" before the first.
    accessible = book("books/idpf-accessible_epub_3.epub")
    assert accessible.chapters[0].title == "" and accessible.chapters[0].href == "EPUB/index.xhtml"
    assert "Preface > Using Code Examples" in [c.title for c in accessible.chapters]
    vent = book("books/idpf-sous-le-vent.epub")
    started = [c.title for c in vent.chapters if c.href.endswith(("pageNum-11.xhtml", "pageNum-15.xhtml"))]
    assert started == ["Commencer la lecture", "Commencer la lecture"]


def test_pepys_is_fast() -> None:
    need_corpus()
    data = (EPUBS / "books/se-the-diary-of-samuel-pepys.epub").read_bytes()
    started = time.perf_counter()
    result = extract_epub(data)
    elapsed = time.perf_counter() - started
    assert sum(len(c.text) for c in result.chapters) > 6_000_000
    assert elapsed < 10, f"{elapsed:.1f}s"  # about 0.6 s on the development machine


@pytest.mark.parametrize(
    ("rel", "script", "minimum"),
    [
        ("books/idpf-mymedia_lite.epub", "CJK", 5000),
        ("books/idpf-jlreq-in-japanese.epub", "CJK", 50000),
        ("broken/idpf-kusamakura-japanese-vertical-missing-audio.epub", "CJK", 50000),
        ("edge/idpf-internallinks.epub", "CJK", 1000),
        ("books/idpf-regime-anticancer-arabic.epub", "ARABIC", 10000),
        ("books/idpf-israelsailing.epub", "HEBREW", 20000),
    ],
)
def test_non_latin_scripts(rel: str, script: str, minimum: int) -> None:
    result = book(rel)
    text = "".join(c.text for c in result.chapters)
    assert "\ufffd" not in text
    count = sum(1 for ch in text if ch.isalpha() and _script_of(ch) == script)
    assert count >= minimum, count


def _script_of(ch: str) -> str:
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK", "HIRAGANA", "KATAKANA")):
        return "CJK"
    return name.split(" ")[0]


def test_japanese_ruby_readings_are_not_spliced_into_the_text() -> None:
    # Source: <ruby>山路<rt>やまみち</rt></ruby>を登りながら、こう考えた。
    result = book("broken/idpf-kusamakura-japanese-vertical-missing-audio.epub")
    first = result.chapters[1]
    assert first.title == "一" and first.href == "OPS/xhtml/一.xhtml"
    assert first.text.startswith("一\n\n山路を登りながら、こう考えた。\n\n智に働けば角が立つ。情に棹させば")
    assert "やまみち" not in first.text


# ---------------------------------------------------------------------------------------------
# Edge files, beyond the outcome


def test_xml_external_entity_is_not_resolved() -> None:
    text = book("edge/w3c-pub-xml-external-id.epub").chapters[0].text
    assert "Test passes unless a failure statement follows this paragraph." in text
    assert "The test fails" not in text  # the content of foo.xhtml, the entity's target
    err = outcome("broken/epubcheck-xhtml-external-entity.epub")
    assert isinstance(err, ExtractError) and err.reason == "no-text"


def test_first_rendition_is_used() -> None:
    result = book("edge/w3c-ocf-package_multiple.epub")
    assert [c.href for c in result.chapters] == ["FOO/BAR/content_001.xhtml"]
    assert result.chapters[0].text == "Test passes if you see this."
    assert result.title == "ocf-package_multiple"


def test_metadata_order_and_rtl_title() -> None:
    creators = book("edge/w3c-pkg-creator-order.epub")
    assert creators.authors == ["Dave Cramer", "Wendy Reid", "Dan Lazin", "Ivan Herman", "Brady Duga"]
    assert book("edge/w3c-pkg-title-order.epub").title == "pkg-title-order"
    rtl = book("edge/w3c-pkg-dir_rtl-root-unset.epub")
    assert rtl.title == "CSS: הרפתקה חדשה!" and rtl.language == "en"
    assert book("books/idpf-israelsailing.epub").language == "he"


def test_manifest_fallback_and_duplicates() -> None:
    json_spine = book("edge/w3c-pub-foreign_json-spine.epub")
    assert json_spine.chapters[0].text == "Test passes if you see this text."
    assert json_spine.chapters[0].href == "EPUB/content_001.xhtml"
    duplicated = book("edge/w3c-pkg-spine-duplicate-item-rendering.epub")
    assert [c.href for c in duplicated.chapters] == ["EPUB/content_001.xhtml", "EPUB/content_002.xhtml"]
    assert any("repeated spine item" in w for w in duplicated.warnings)


def test_encodings_and_malformed_documents() -> None:
    assert book("broken/epubcheck-xhtml-utf16.epub").chapters[0].text == "Test"
    assert book("broken/epubcheck-xhtml-xml11.epub").chapters[0].text == "..."
    assert book("broken/epubcheck-opf-utf16.epub").title == "Minimal EPUB 3.0"
    assert book("broken/epubcheck-opf-utf32-bom.epub").chapters[0].text == "Loomings\n\nCall me Ishmael."
    unclosed = book("edge/w3c-pub-xml-non-validating_unclosed.epub")
    assert unclosed.chapters[0].text.endswith("This paragraph has an unclosed tag.")
    assert any("read as HTML" in w for w in unclosed.warnings)
    assert book("broken/epubcheck-zip-filename-not-utf8.epub").chapters[0].href == "EPUB/content_é.xhtml"


@pytest.mark.parametrize(
    "rel",
    [
        "broken/epubcheck-epub2-manifest-file-missing.epub",
        "broken/epubcheck-manifest-item-missing.epub",
        "broken/epubcheck-nav-without-toc.epub",
        "broken/idpf-kusamakura-japanese-vertical-missing-audio.epub",
    ],
)
def test_fallback_is_reported(rel: str) -> None:
    result = book(rel)
    assert any(w.startswith("fell back to direct container read: ") for w in result.warnings)
    assert result.chapters and result.title


def test_fallback_keeps_toc_titles() -> None:
    kusamakura = book("broken/idpf-kusamakura-japanese-vertical-missing-audio.epub")
    assert [c.title for c in kusamakura.chapters][1:4] == ["一", "二", "三"]
    assert kusamakura.authors == ["夏目 漱石"]


# ---------------------------------------------------------------------------------------------
# Small EPUBs built here, for cases the corpus does not have


def build_epub(docs: dict[str, str], spine: list[str] | None = None, extra: dict[str, bytes] | None = None,
               manifest_hrefs: dict[str, str] | None = None) -> bytes:
    """A minimal EPUB 3; docs maps OEBPS-relative hrefs to XHTML bodies."""
    hrefs = manifest_hrefs or {f"d{i}": href for i, href in enumerate(docs)}
    items = "".join(f'<item id="{i}" href="{h}" media-type="application/xhtml+xml"/>'
                    for i, h in hrefs.items())
    refs = "".join(f'<itemref idref="{i}"/>' for i in (spine or list(hrefs)))
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Built</dc:title>'
        f"<dc:language>en</dc:language></metadata><manifest>{items}</manifest><spine>{refs}</spine></package>"
    )
    container = (
        '<?xml version="1.0"?>'
        '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/container.xml", container)
        zf.writestr("OEBPS/content.opf", opf)
        for href, body in docs.items():
            zf.writestr(f"OEBPS/{href}", body if body.startswith("<?xml") else
                        f'<html xmlns="http://www.w3.org/1999/xhtml"><body>{body}</body></html>')
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return out.getvalue()


def patch_central_directory(data: bytes, name: str, *, flag_bits: int | None = None,
                            file_size: int | None = None, crc: int | None = None) -> bytes:
    """Rewrites one central directory record, as a hostile or damaged archive would have it."""
    buf = bytearray(data)
    pos = buf.find(b"PK\x01\x02")
    while pos != -1:
        name_len = struct.unpack_from("<H", buf, pos + 28)[0]
        if buf[pos + 46: pos + 46 + name_len].decode() == name:
            if flag_bits is not None:
                struct.pack_into("<H", buf, pos + 8, struct.unpack_from("<H", buf, pos + 8)[0] | flag_bits)
            if file_size is not None:
                struct.pack_into("<I", buf, pos + 24, file_size)
            if crc is not None:
                struct.pack_into("<I", buf, pos + 16, crc)
            return bytes(buf)
        pos = buf.find(b"PK\x01\x02", pos + 4)
    raise AssertionError(f"{name} not in the archive")


def test_built_epub_reads() -> None:
    result = extract_epub(build_epub({"a.xhtml": "<h1>One</h1><p>Some <b>bold</b> text.</p>"}))
    assert result.chapters[0].text == "One\n\nSome bold text." and result.warnings == []


def test_paths_leaving_the_container_are_not_followed() -> None:
    # "../secret.xhtml" from OEBPS/ is the container root (allowed); "../../secret.xhtml" is above it,
    # and the archive even holds an entry literally named so.
    data = build_epub(
        {"a.xhtml": "<p>Inside.</p>"},
        manifest_hrefs={"a": "a.xhtml", "out": "../../secret.xhtml", "abs": "../../../etc/passwd"},
        spine=["out", "a", "abs"],
        extra={"../secret.xhtml": b'<html xmlns="http://www.w3.org/1999/xhtml"><body><p>Secret</p></body></html>'},
    )
    result = extract_epub(data)
    assert [c.text for c in result.chapters] == ["Inside."]
    assert sum(w.startswith("skipped spine item outside the container") for w in result.warnings) == 2


def test_external_entity_to_a_local_file_is_not_read(tmp_path: Path) -> None:
    # The corpus XXE file points inside the zip, which a parser could not reach anyway; this one
    # points at a real file, which lxml with resolve_entities=True would inline.
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-MARKER")
    doc = (f'<?xml version="1.0"?><!DOCTYPE html [<!ENTITY xxe SYSTEM "{secret.as_uri()}">'
           '<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
           '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>before &xxe; after</p>'
           "<p>&a; &b;</p></body></html>")
    result = extract_epub(build_epub({"a.xhtml": doc}))
    text = result.chapters[0].text
    assert "SECRET-MARKER" not in text
    assert text == "before after\n\nha"  # plain internal entities expand once; nested ones never


def test_zip_bomb_is_refused_before_reading() -> None:
    data = build_epub({"a.xhtml": "<p>Text.</p>"}, extra={"OEBPS/big.bin": b"\0" * 1000})
    bomb = patch_central_directory(data, "OEBPS/big.bin", file_size=MAX_BOOK_BYTES + 1)
    with pytest.raises(ExtractError) as err:
        extract_epub(bomb, "bomb.epub")
    assert err.value.reason == "too-large" and "bomb.epub" in err.value.detail


def test_oversized_entry_is_skipped() -> None:
    data = build_epub({"a.xhtml": "<p>Text.</p>", "b.xhtml": "<p>More.</p>"})
    patched = patch_central_directory(data, "OEBPS/b.xhtml", file_size=MAX_ENTRY_BYTES + 1)
    result = extract_epub(patched)
    assert [c.text for c in result.chapters] == ["Text."]
    assert any("oversized" in w for w in result.warnings)
    only = patch_central_directory(build_epub({"a.xhtml": "<p>x</p>"}), "OEBPS/a.xhtml",
                                   file_size=MAX_ENTRY_BYTES + 1)
    with pytest.raises(ExtractError) as err:
        extract_epub(only)
    assert err.value.reason == "missing-content"


def test_corrupt_entries() -> None:
    data = build_epub({"a.xhtml": "<p>Text.</p>", "b.xhtml": "<p>More.</p>"})
    with pytest.raises(ExtractError) as err:
        extract_epub(patch_central_directory(data, "META-INF/container.xml", crc=0))
    assert err.value.reason == "corrupt-zip" and "CRC" in err.value.detail
    result = extract_epub(patch_central_directory(data, "OEBPS/b.xhtml", crc=0))
    assert [c.text for c in result.chapters] == ["Text."]
    assert any(w.startswith("skipped unreadable entry OEBPS/b.xhtml") for w in result.warnings)


def test_password_protected_zip() -> None:
    data = patch_central_directory(build_epub({"a.xhtml": "<p>Text.</p>"}), "OEBPS/a.xhtml", flag_bits=0x1)
    with pytest.raises(ExtractError) as err:
        extract_epub(data)
    assert err.value.reason == "password-protected"


def test_missing_spine_documents_are_reported() -> None:
    data = build_epub({"a.xhtml": "<p>x</p>"}, manifest_hrefs={"a": "a.xhtml", "gone": "gone.xhtml"},
                      spine=["gone", "a"])
    result = extract_epub(data)
    assert [c.text for c in result.chapters] == ["x"]
    assert any("gone.xhtml" in w for w in result.warnings)
    data = build_epub({}, manifest_hrefs={"gone": "gone.xhtml"}, spine=["gone"])
    with pytest.raises(ExtractError) as err:
        extract_epub(data)
    assert err.value.reason == "missing-content"


def test_shift_jis_declared_and_meta_only() -> None:
    text = "吾輩は猫である。名前はまだ無い。"
    declared = ('<?xml version="1.0" encoding="Shift_JIS"?>'
                f'<html xmlns="http://www.w3.org/1999/xhtml"><body><p>{text}</p></body></html>')
    meta_only = f'<html><head><meta charset="Shift_JIS"></head><body><p>{text}<br>&nbsp;</p></body></html>'
    data = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(build_epub({"a.xhtml": "<p>x</p>", "b.xhtml": "<p>y</p>"}))) as src, \
            zipfile.ZipFile(data, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "OEBPS/a.xhtml":
                body = declared.encode("shift_jis")
            elif info.filename == "OEBPS/b.xhtml":
                body = meta_only.encode("shift_jis")
            dst.writestr(info, body)
    result = extract_epub(data.getvalue())
    assert [c.text for c in result.chapters] == [text, text]


def test_bold_and_br_handling() -> None:
    body = ("<div>Lead text<p>Para <i>one</i>.</p>tail text</div>"
            "<p>line one<br/>line two<br/><br/>new para</p><table><tr><td>a</td><td>b</td></tr></table>"
            "<nav><p>menu</p></nav><script>var x = 1;</script><p>x<span epub:type='noteref' "
            "xmlns:epub='http://www.idpf.org/2007/ops'>12</span> y</p>")
    result = extract_epub(build_epub({"a.xhtml": body}))
    assert result.chapters[0].text.split("\n\n") == [
        "Lead text", "Para one.", "tail text", "line one line two", "new para", "a", "b", "x y"]


def test_error_is_picklable_and_formatted() -> None:
    err = ExtractError("drm", "EPUB/a.xhtml is encrypted")
    assert str(err) == "drm: EPUB/a.xhtml is encrypted"
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.detail, str(back)) == (err.reason, err.detail, str(err))
    with pytest.raises(ExtractError) as empty:
        extract_epub(b"", "x.epub")
    assert empty.value.reason == "empty-file" and str(empty.value) == "empty-file: x.epub: 0 bytes"


def test_extracted_book_is_picklable() -> None:
    result = book("edge/idpf-hefty-water.epub")
    assert pickle.loads(pickle.dumps(result)) == result


def test_fragment_toc_entries_start_chapters() -> None:
    """The Waste Land is one XHTML file whose nav points at #fragments: one chapter per part,
    the title page before the first part named after the book."""
    result = book("books/idpf-wasteland.epub")
    assert [c.title for c in result.chapters] == [
        "The Waste Land", "I. THE BURIAL OF THE DEAD", "II. A GAME OF CHESS", "III. THE FIRE SERMON",
        "IV. DEATH BY WATER", "V. WHAT THE THUNDER SAID", 'NOTES ON "THE WASTE LAND"']
    assert result.chapters[1].text.startswith("I. THE BURIAL OF THE DEAD\n\nApril is the cruellest month")
    assert "April is the cruellest" not in result.chapters[0].text
