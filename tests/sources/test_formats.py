"""The non-EPUB readers on real input: the calibre library's TXT and AZW3 books, and PDF, HTML and
Markdown files made in tmp from the TXT book's text (no binary fixtures in the repository)."""

from __future__ import annotations

import json
import shutil
from html import escape
from pathlib import Path

import pytest

from alexandria.sources import library
from alexandria.sources.book import ExtractError
from alexandria.sources.mobi import extract_mobi
from alexandria.sources.pages import page_map, page_range
from alexandria.sources.pdf import PagedChapter, extract_pdf
from alexandria.sources.readers import READERS
from alexandria.sources.text import extract_html, extract_markdown, extract_txt
from alexandria.store.edge import EdgeStore
from tests.conftest import CALIBRE, ingest_args, need_corpus, run_cli

BIERCE = (CALIBRE / "Ambrose Bierce" / "The Devil's Dictionary (12)"
          / "The Devil's Dictionary - Ambrose Bierce.txt")
MOBY = CALIBRE / "Herman Melville" / "Moby-Dick (2)"
MOBY_AZW3 = MOBY / "Moby-Dick - Herman Melville.azw3"


def corpus_copy(src: Path, tmp_path: Path) -> bytes:
    """Tests read copies in tmp, never the shared corpus files in place."""
    need_corpus()
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    return dst.read_bytes()


@pytest.fixture(scope="module")
def bierce(tmp_path_factory) -> list[tuple[str, list[str]]]:
    """(title, paragraphs) for a few letters of The Devil's Dictionary: text for the made-up files."""
    data = corpus_copy(BIERCE, tmp_path_factory.mktemp("bierce"))
    book = extract_txt(data)
    return [(c.title, c.text.split("\n\n")[:30]) for c in book.chapters if c.title in ("A", "B", "C")]


# ---------------------------------------------------------------------------------------------
# TXT


def test_txt_calibre_book_has_one_chapter_per_letter(tmp_path):
    book = extract_txt(corpus_copy(BIERCE, tmp_path), "bierce.txt")
    titles = [c.title for c in book.chapters]
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    assert [t for t in titles if len(t) == 1] == letters
    assert "Author’s Preface" in titles and book.warnings == []
    a = book.chapters[titles.index("A")]
    assert a.text.startswith("A is the first letter in every properly constructed alphabet.")
    assert "\n\nAbacot\n\nA cap of state" in a.text  # paragraphs from blank lines, tabs gone
    assert [c.index for c in book.chapters] == list(range(len(book.chapters)))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32", "cp1252", "latin-1"])
def test_txt_encodings_decode_without_replacement_characters(bierce, encoding):
    body = "\n\n".join(bierce[0][1][:5]).replace("\u2060", "")  # word joiner: not in cp1252
    if encoding == "latin-1":
        body = body.replace("’", "'").replace("—", "-").replace("“", '"').replace("”", '"')
    text = "Café Noël — " if encoding != "latin-1" else "Café Noël "
    body = text + body
    book = extract_txt(body.encode(encoding))
    assert book.chapters[0].text.startswith(text.strip())
    assert "\ufffd" not in book.chapters[0].text
    assert ("decoded as" in " ".join(book.warnings)) == (encoding in ("utf-16-le", "cp1252", "latin-1"))


def test_txt_reasons_and_replacement_warning():
    with pytest.raises(ExtractError) as e:
        extract_txt(b"")
    assert e.value.reason == "empty-file"
    with pytest.raises(ExtractError) as e:
        extract_txt(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00")
    assert e.value.reason == "not-text"
    assert "replacement" in extract_txt("bad \ufffd byte".encode()).warnings[0]


def test_txt_chapter_heading_lines(bierce):
    parts = ["THE DEVIL'S DICTIONARY", "By Ambrose Bierce."]
    for n, (letter, paras) in enumerate(bierce, start=1):
        parts += [f"CHAPTER {'I' * n}", f"Words in {letter}.", *paras[:4]]
    book = extract_txt("\n\n".join(parts).encode())
    assert [c.title for c in book.chapters] == ["", "CHAPTER I. Words in A.", "CHAPTER II. Words in B.",
                                                "CHAPTER III. Words in C."]
    assert book.chapters[1].text == "\n\n".join(bierce[0][1][:4])


# ---------------------------------------------------------------------------------------------
# HTML and Markdown


def test_html_chapters_from_headings_in_declared_charset(bierce):
    body = "".join(
        f"<h1>{escape(t)}</h1>" + "".join(f"<p>{escape(p)}</p>" for p in paras) for t, paras in bierce
    )
    html = (f'<html><head><meta charset="windows-1252"><title>Devil\'s Dictionary</title>'
            f'<meta name="author" content="Ambrose Bierce"><script>var x = "no";</script></head>'
            f"<body><nav><a href='#a'>A</a></nav><p>Front matter</p>{body}</body></html>")
    ascii_html = html.replace("’", "&#8217;").replace("—", "&mdash;").replace("\u2060", "")
    book = extract_html(ascii_html.replace("Front", "Fr\u00f6nt").encode("cp1252", "xmlcharrefreplace"))
    assert book.title == "Devil's Dictionary" and book.authors == ["Ambrose Bierce"]
    assert [c.title for c in book.chapters] == ["", "A", "B", "C"]
    assert book.chapters[0].text == "Fr\u00f6nt matter"
    assert book.chapters[1].text.split("\n\n")[1] == bierce[0][1][0].replace("\u2060", "")
    assert "var x" not in "".join(c.text for c in book.chapters)


def test_markdown_chapters_and_inline_markup(bierce):
    lines = ["---", "title: front matter", "---", "# The Devil's Dictionary", "", "By *Ambrose Bierce*.", ""]
    for title, paras in bierce:
        lines += [f"## Letter {title}", ""]
        for p in paras[:6]:
            lines += [p, ""]
    lines += ["```", "# not a heading", "```", "", "- a [linked](https://example.org) item", "- `code` item"]
    book = extract_markdown("\n".join(lines).encode())
    assert book.title == "The Devil's Dictionary"
    assert [c.title for c in book.chapters] == ["The Devil's Dictionary", "Letter A", "Letter B", "Letter C"]
    assert "By Ambrose Bierce." in book.chapters[0].text
    last = book.chapters[-1].text
    assert "# not a heading" in last and "a linked item" in last and "code item" in last
    assert "https://" not in last and "---" not in book.chapters[0].text


# ---------------------------------------------------------------------------------------------
# PDF (made with reportlab, BSD, a test-only extra)


def make_pdf(path: Path, chapters: list[tuple[str, list[str]]], outline: bool = True, **encrypt) -> Path:
    from reportlab.lib.pagesizes import A6
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate

    styles = getSampleStyleSheet()

    class Doc(SimpleDocTemplate):
        def afterFlowable(self, flowable) -> None:  # noqa: ANN001 - reportlab's hook
            title = getattr(flowable, "bookmark", None)
            if title and outline:
                self.canv.bookmarkPage(title)
                self.canv.addOutlineEntry(title, title, level=0)

    story = []
    for title, paras in chapters:
        heading = Paragraph(escape(title), styles["Heading1"])
        heading.bookmark = title
        story += [heading, *(Paragraph(escape(p), styles["BodyText"]) for p in paras), PageBreak()]
    extra = {}
    if encrypt:
        from reportlab.lib.pdfencrypt import StandardEncryption

        extra["encrypt"] = StandardEncryption(**encrypt)
    Doc(str(path), pagesize=A6, title="The Devil's Dictionary", author="Ambrose Bierce", **extra).build(story)
    return path


def test_pdf_chapters_from_outline_know_their_pages(bierce, tmp_path):
    import pypdfium2 as pdfium

    path = make_pdf(tmp_path / "bierce.pdf", bierce)
    book = extract_pdf(path.read_bytes(), path.name)
    assert book.title == "The Devil's Dictionary" and book.authors == ["Ambrose Bierce"]
    assert [c.title for c in book.chapters] == ["A", "B", "C"]
    pdf = pdfium.PdfDocument(str(path))
    try:
        for chapter in book.chapters:
            assert isinstance(chapter, PagedChapter) and len(chapter.page_starts) > 1
            for i, start in enumerate(chapter.page_starts):  # each offset is where its page's text starts
                first_words = " ".join(chapter.text[start:].split()[:4])
                page_text = " ".join(pdf[chapter.first_page - 1 + i].get_textpage().get_text_range().split())
                assert page_text.startswith(first_words), (chapter.title, i)
    finally:
        pdf.close()
    assert book.chapters[1].first_page == book.chapters[0].first_page + len(book.chapters[0].page_starts)
    pages = page_map(book.chapters)
    b = book.chapters[1]
    second = b.page_starts[1]
    assert page_range(pages, 1, 0, 10) == (b.first_page, b.first_page)
    assert page_range(pages, 1, second - 50, second + 50) == (b.first_page, b.first_page + 1)
    assert page_range(pages, 1, 0, len(b.text)) == (b.first_page, b.first_page + len(b.page_starts) - 1)


def test_pdf_without_outline_is_one_chapter(bierce, tmp_path):
    path = make_pdf(tmp_path / "plain.pdf", bierce[:2], outline=False)
    book = extract_pdf(path.read_bytes())
    assert len(book.chapters) == 1 and book.chapters[0].title == "" and book.chapters[0].first_page == 1
    assert "Abacot" in book.chapters[0].text and "Baal" in book.chapters[0].text


def test_pdf_failures_have_specific_reasons(bierce, tmp_path):
    from reportlab.pdfgen import canvas

    def reason(data: bytes) -> str:
        with pytest.raises(ExtractError) as e:
            extract_pdf(data, "x.pdf")
        return e.value.reason

    locked = make_pdf(tmp_path / "locked.pdf", bierce[:1], userPassword="secret", ownerPassword="owner")
    assert reason(locked.read_bytes()) == "password-protected"
    owner_only = make_pdf(tmp_path / "owner.pdf", bierce[:1], userPassword="", ownerPassword="owner")
    assert "Abacot" in extract_pdf(owner_only.read_bytes()).chapters[0].text  # opens without a password

    need_corpus()
    cover = tmp_path / "cover.jpg"
    shutil.copyfile(MOBY / "cover.jpg", cover)
    scan = canvas.Canvas(str(tmp_path / "scan.pdf"))
    for _ in range(3):
        scan.drawImage(str(cover), 50, 50, width=400, height=600)
        scan.showPage()
    scan.save()
    assert reason((tmp_path / "scan.pdf").read_bytes()) == "no-text"

    good = make_pdf(tmp_path / "good.pdf", bierce[:1]).read_bytes()
    assert reason(good[: len(good) // 3]) == "bad-pdf"
    assert reason(b"%PDF-1.7\n" + bytes(range(256)) * 4) == "bad-pdf"
    assert reason(b"<html>not a pdf</html>") == "not-a-pdf"
    assert reason(b"") == "empty-file"


# ---------------------------------------------------------------------------------------------
# AZW3 / MOBI


def test_azw3_calibre_book_reads_like_its_epub(tmp_path):
    book = extract_mobi(corpus_copy(MOBY_AZW3, tmp_path), "moby.azw3")
    assert book.title == "Moby-Dick" and book.authors == ["Herman Melville"] and book.language == "en"
    titles = [c.title for c in book.chapters]
    assert "Chapter 1. Loomings." in titles and "Chapter 135. The Chase.—Third Day." in titles
    assert not any("Contents" in t for t in titles)  # calibre's generated TOC pages are dropped
    loomings = book.chapters[titles.index("Chapter 1. Loomings.")]
    assert loomings.text.split("\n\n")[1].startswith("Call me Ishmael.")
    assert 130 < len(book.chapters) < 150
    assert 1_100_000 < sum(len(c.text) for c in book.chapters) < 1_300_000


def test_mobi_failures_have_specific_reasons(tmp_path):
    data = bytearray(corpus_copy(MOBY_AZW3, tmp_path))

    def reason(blob: bytes) -> str:
        with pytest.raises(ExtractError) as e:
            extract_mobi(bytes(blob), "x.azw3")
        return e.value.reason

    rec0 = int.from_bytes(data[78:82], "big")
    drm = bytearray(data)
    drm[rec0 + 12:rec0 + 14] = (2).to_bytes(2, "big")  # PalmDOC header: encryption type 2 (Mobipocket DRM)
    assert reason(drm) == "drm"
    assert reason(b"\xeaDRMION\xee" + bytes(100)) == "drm"
    assert reason(data[:70]) == "corrupt-mobi"
    assert reason(data[:rec0 + 400]) == "corrupt-mobi"
    assert reason(b"PK\x03\x04 an epub renamed .azw3" + bytes(100)) == "not-a-mobi"
    assert reason(b"") == "empty-file"


# ---------------------------------------------------------------------------------------------
# Library, format preference, and the whole pipeline


def test_readers_cover_every_readable_format():
    assert set(READERS) == set(library.READABLE_FORMATS)


def test_formats_preference_picks_the_file(tmp_path):
    need_corpus()
    books = {b.calibre_id: b for b in library.scan(CALIBRE, ("azw3", "epub", "txt"))}
    assert books[2].fmt == "azw3" and books[2].path.suffix == ".azw3"
    assert books[12].fmt == "txt" and books[12].skip_reason is None
    assert books[1].fmt == "epub"
    books = {b.calibre_id: b for b in library.scan(CALIBRE, ("epub", "djvu"))}
    assert books[2].fmt == "epub" and books[12].skip_reason == "no-readable-format"
    assert {b.calibre_id: b for b in library.scan(CALIBRE, ("djvu",))}[12].skip_reason == "no-readable-format"

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for name in ("Moby-Dick - Herman Melville.azw3", "Moby-Dick - Herman Melville.epub"):
        shutil.copyfile(MOBY / name, folder / name)
    shutil.copyfile(BIERCE, folder / "sub" / "bierce.txt")
    found = [b.path.name for b in library.scan(folder, ("azw3", "epub", "txt"))]
    assert found == ["Moby-Dick - Herman Melville.azw3", "bierce.txt"]
    assert [b.path.name for b in library.scan(folder)] == ["Moby-Dick - Herman Melville.epub"]


@pytest.mark.slow
def test_ingest_azw3_txt_and_paged_pdf_end_to_end(bierce, tmp_path):
    """Real CLI, minilm, Qdrant Edge: calibre's AZW3 book through extract and chunk (a dry run: its
    1.2 M characters would take minutes to embed on two cores), the TXT-only book and a folder of
    PDF/Markdown/HTML all the way into the store."""
    need_corpus()
    dry = tmp_path / "dry.json"
    proc = run_cli(*ingest_args(tmp_path / "dry-store", "--directory", CALIBRE, "--formats", "azw3,epub,txt",
                                "--book-id", "2", "--dry-run", "--report", dry))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (moby,) = json.loads(dry.read_text())["books"]
    assert moby["status"] == "done" and moby["path"].endswith(".azw3") and moby["chapters"] > 130
    assert moby["chunks"] > 1000 and any(s["chapter"].startswith("Chapter ") for s in moby["samples"])

    store = tmp_path / "store"
    report = tmp_path / "report.json"
    proc = run_cli(*ingest_args(store, "--directory", CALIBRE, "--formats", "azw3,epub,txt",
                                "--book-id", "12", "--report", report))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(report.read_text())
    assert out["books_done"] == 1 and out["books_failed"] == 0 and out["books_skipped"] == 0

    folder = tmp_path / "folder"
    folder.mkdir()
    make_pdf(folder / "bierce.pdf", bierce)
    md = "\n\n".join(f"# {t}\n\n" + "\n\n".join(p[:5]) for t, p in bierce)
    (folder / "bierce-notes.md").write_text(md, encoding="utf-8")
    (folder / "page.html").write_text("<h1>Solo</h1><p>" + escape(bierce[1][1][1]) + "</p>", encoding="utf-8")
    report2 = tmp_path / "report2.json"
    proc = run_cli(*ingest_args(store, "--directory", folder, "--formats", "pdf,md,html",
                                "--report", report2, "--no-prune"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(report2.read_text())["books_done"] == 3

    es = EdgeStore(store, "alexandria_minilm", None)
    try:
        payloads = [p for _, p in es.payloads()]
    finally:
        es.close()
    by_format: dict[str, list[dict]] = {}
    for p in payloads:
        by_format.setdefault(Path(p["source_path"]).suffix, []).append(p)
    assert set(by_format) == {".txt", ".pdf", ".md", ".html"}
    txt = by_format[".txt"]
    assert {p["chapter"] for p in txt} >= {"A", "B", "Z", "Author’s Preface"}
    assert {p["calibre_id"] for p in txt} == {12} and txt[0]["title"] == "The Devil's Dictionary"
    pdf = by_format[".pdf"]
    assert {p["chapter"] for p in pdf} == {"A", "B", "C"}
    assert all(1 <= p["page_start"] <= p["page_end"] for p in pdf)
    assert len({p["page_start"] for p in pdf}) > 3
    assert all("page_start" not in p for p in txt + by_format[".md"])
    assert {p["chapter"] for p in by_format[".html"]} == {"Solo"}
