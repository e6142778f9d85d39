"""PDF books -> chapters that know their pages, through PDFium (pypdfium2: Apache-2.0/BSD, fast, no AGPL).

Chapters come from the outline (bookmarks) when there is one, else the whole document is one
chapter. Each chapter keeps where every page starts in its text, so a chunk's character span maps
back to a page range (alexandria.pages), and search results can say "p. 12-13".
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field

from alexandria.sources.book import Chapter, ExtractedBook, ExtractError

MAX_PDF_BYTES = 1024 * 1024 * 1024
MIN_CHARS_PER_PAGE = 20  # below this on average, the pages are scans without a text layer
_HYPHEN_RE = re.compile(r"(\w)[-\u00ad\u2010\x02]\n(?=[a-z])")  # "exam-\nple" -> "example"


@dataclass
class PagedChapter(Chapter):
    """A chapter whose text spans PDF pages: page_starts[i] is where page first_page+i begins."""

    first_page: int = 1  # 1-based, as a reader sees it
    page_starts: list[int] = field(default_factory=list)


def extract_pdf(data: bytes, name: str = "") -> ExtractedBook:
    try:
        return _extract(data)
    except ExtractError as e:
        raise ExtractError(e.reason, f"{name}: {e.detail}" if name else e.detail) from None


def _extract(data: bytes) -> ExtractedBook:
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    if not data:
        raise ExtractError("empty-file", "0 bytes")
    if len(data) > MAX_PDF_BYTES:
        raise ExtractError("too-large", f"{len(data)} bytes (limit {MAX_PDF_BYTES})")
    if b"%PDF-" not in data[:1024]:
        raise ExtractError("not-a-pdf", f"no %PDF- header (starts {data[:8]!r})")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        code = getattr(e, "err_code", None)
        if code == pdfium_c.FPDF_ERR_PASSWORD:
            raise ExtractError("password-protected", "the PDF needs a password to open") from None
        if code == pdfium_c.FPDF_ERR_SECURITY:
            raise ExtractError("drm", "unsupported security handler (DRM)") from None
        raise ExtractError("bad-pdf", str(e)) from None
    warnings: list[str] = []
    try:
        pages = _page_texts(pdf, warnings)
        outline = _outline(pdf, len(pages))
        meta = pdf.get_metadata_dict(skip_empty=True)
    finally:
        pdf.close()
    if not pages:
        raise ExtractError("bad-pdf", "no pages")
    chars = sum(len(t) for t in pages)
    if chars < MIN_CHARS_PER_PAGE * len(pages) and chars < 2000:
        detail = f"{chars} characters on {len(pages)} pages (scanned images without a text layer?)"
        raise ExtractError("no-text", detail)
    starts = outline or [(0, "")]
    if starts[0][0] > 0:
        starts.insert(0, (0, ""))  # pages before the first bookmark (cover, title page)
    chapters: list[Chapter] = []
    for n, (first, title) in enumerate(starts):
        last = starts[n + 1][0] if n + 1 < len(starts) else len(pages)
        first = next((p for p in range(first, last) if pages[p]), last)  # leading blank pages
        text, page_starts = "", []
        for page in range(first, last):
            if pages[page]:
                text += "\n\n" if text else ""
            page_starts.append(len(text))  # a blank page starts where the next one does
            text += pages[page]
        if text:
            chapters.append(PagedChapter(len(chapters), title, f"page:{first + 1}", text,
                                         first_page=first + 1, page_starts=page_starts))
    title = (meta.get("Title") or "").strip() or None
    authors = [a.strip() for a in re.split(r";|\band\b", meta.get("Author") or "") if a.strip()]
    return ExtractedBook(title, authors, None, chapters, warnings)


def _page_texts(pdf, warnings: list[str]) -> list[str]:  # noqa: ANN001 - pypdfium2.PdfDocument
    texts: list[str] = []
    broken = 0
    for index in range(len(pdf)):
        try:
            page = pdf[index]
            textpage = page.get_textpage()
            raw = textpage.get_text_range()
            textpage.close()
            page.close()
        except Exception:  # one damaged page: keep the others
            broken += 1
            raw = ""
        texts.append(paragraphs(raw))
    if broken:
        warnings.append(f"{broken} page(s) could not be read")
    return texts


def paragraphs(raw: str) -> str:
    """PDF text is lines, not paragraphs: rejoin lines, break after a line well short of the others."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _HYPHEN_RE.sub(r"\1", text)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    lengths = [len(line) for line in lines if line]
    if not lengths:
        return ""
    typical = statistics.quantiles(lengths, n=5)[-1] if len(lengths) >= 5 else max(lengths)
    paras: list[str] = []
    buf: list[str] = []
    for line in lines:
        if not line:
            if buf:
                paras.append(" ".join(buf))
                buf = []
            continue
        buf.append(line)
        if len(line) < 0.7 * typical:  # lines run full width except at a paragraph's (or heading's) end
            paras.append(" ".join(buf))
            buf = []
    if buf:
        paras.append(" ".join(buf))
    return "\n\n".join(paras)


def _outline(pdf, page_count: int) -> list[tuple[int, str]]:  # noqa: ANN001 - pypdfium2.PdfDocument
    """(0-based first page, "Part I > Chapter 2") per bookmark with a page, in page order."""
    out: dict[int, str] = {}
    path: list[str] = []
    try:
        for bookmark in pdf.get_toc(max_depth=8):
            title = " ".join((bookmark.get_title() or "").split())
            del path[bookmark.level:]
            path.append(title)
            dest = bookmark.get_dest()
            page = dest.get_index() if dest is not None else None
            if page is None or not 0 <= page < page_count:
                continue
            out.setdefault(page, " > ".join(p for p in path if p))  # the first (outermost) wins a page
    except Exception:  # a broken outline costs the titles, never the text
        return []
    return sorted(out.items())
