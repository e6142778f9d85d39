"""The pages in a real browser (Playwright driving the system Chromium) against a real
`alexandria serve` over a library ingested with the real model."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

from tests.conftest import need_corpus
from tests.serve.conftest import SCRIPT_TEXT, SCRIPT_TITLE

pytestmark = pytest.mark.slow  # one ingest of the served library per session, a model per server


def shot(page, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    return path


def search(page, server, q: str, **params: str) -> None:
    page.goto(f"{server.url}/?" + urllib.parse.urlencode({"q": q, **params}))


def test_a_whaling_question_shows_the_whaling_book_first_with_the_words_marked(page, server):
    page.goto(server.url + "/")
    page.fill("#q", "Why did Captain Ahab hunt the white whale with harpoons?")
    page.click("form.search button[type=submit]")
    page.wait_for_selector("#results article.book")
    first = page.locator("#results article.book").first
    assert "A Short History of Whaling" in first.locator("h2.title").inner_text()
    marks = [m.lower() for m in first.locator(".passage mark").all_inner_texts()]
    assert any(m.startswith(("whal", "harpoon", "ahab", "hunt")) for m in marks), marks
    assert page.errors == []


def test_the_sample_library_search_shows_authors_chapter_score_and_calibre_id(page, server):
    search(page, server, "how did a toggling harpoon work?", top_k="5")
    book = page.locator("#results article.book").first
    assert book.locator("h2.title").inner_text() == "A Short History of Whaling"
    assert book.locator(".authors").inner_text() == "Ruth Ellery, Samuel J. Pratt"
    assert book.locator("a.calibre").get_attribute("href") == "calibre://show-book/_/1"
    hit = book.locator(".hit").first
    assert hit.locator(".chapter").inner_text() and float(hit.locator(".score").inner_text()) > 0.3
    hit.locator("button.more").click()  # the surrounding text, fetched on demand
    here = hit.locator(".context .here")
    here.wait_for()
    assert here.inner_text().strip() == hit.locator(".passage").inner_text().strip()
    assert hit.locator(".context p").count() >= 2  # the hit and a neighbour


def test_a_filter_narrows_the_results_to_that_author(page, server):
    search(page, server, "light", top_k="10")  # found in books of four authors
    before = set(page.locator("#results .authors").all_inner_texts())
    assert len(before) > 1
    page.select_option("#filter-author", "Hélène Dufresne")  # submits the form at once
    page.wait_for_url("**author=*")
    after = page.locator("#results .authors").all_inner_texts()
    assert after and set(after) == {"Hélène Dufresne"}
    assert page.locator("#filter-author").input_value() == "Hélène Dufresne"


def language_of(server, path_end: str) -> str:
    _, books = server.get("/api/books")
    return next(b["language"] for b in books if (b["path"] or "").endswith(path_end))


def test_a_hebrew_result_renders_right_to_left(page, server, tmp_path):
    need_corpus("a Hebrew book")
    search(page, server, "sailing in Israel", language=language_of(server, "israelsailing.epub"))
    passage = page.locator("#results .passage").first
    passage.wait_for()
    assert passage.evaluate("e => getComputedStyle(e).direction") == "rtl"
    assert any("\u0590" <= ch <= "\u05ff" for ch in passage.inner_text())
    box = passage.bounding_box()
    assert box["width"] > 200 and box["height"] > 10  # laid out, not collapsed
    shot(page, tmp_path, "hebrew-result")


def test_a_japanese_result_renders_in_a_cjk_font(page, server, tmp_path):
    need_corpus("a Japanese book")
    search(page, server, "日本語の文章", language=language_of(server, "mymedia_lite.epub"))
    passage = page.locator("#results .passage").first
    passage.wait_for()
    text = passage.inner_text()
    assert any("\u3040" <= ch <= "\u9fff" for ch in text)
    assert passage.evaluate("e => getComputedStyle(e).direction") == "ltr"
    assert page.evaluate("document.fonts.check('16px \"Noto Sans CJK JP\"', '日本語')")
    # A CJK character is laid out full width (about one em), as a CJK font draws it.
    width = passage.evaluate(r"""e => {
        const walk = document.createTreeWalker(e, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
            const i = n.data.search(/[\u3040-\u9fff]/);
            if (i >= 0) {
                const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
                return r.getBoundingClientRect().width / parseFloat(getComputedStyle(e).fontSize);
            }
        }
        return 0; }""")
    assert 0.9 < width < 1.1
    shot(page, tmp_path, "japanese-result")


def test_a_book_whose_text_holds_script_shows_it_as_text(page, server):
    search(page, server, "harbour tide tables for the pilots of the port", top_k="3")
    book = page.locator("#results article.book").first
    assert book.locator("h2.title").inner_text() == SCRIPT_TITLE
    assert "<script>window.__pwned = 1</script>" in book.locator(".passage").first.inner_text()
    book.locator("button.more").first.click()  # the JavaScript path too
    book.locator(".context .here").wait_for()
    assert SCRIPT_TEXT.split(" The tide")[0] in book.locator(".context .here").inner_text()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#results script, #results img").count() == 0
    assert page.errors == []
    response = page.goto(server.url + "/library")
    assert "script-src 'self'" in response.headers["content-security-policy"]  # no inline script
    row = page.locator("#books tbody tr", has_text="The Tides")
    assert row.locator("td[data-key=title]").inner_text() == SCRIPT_TITLE
    assert page.evaluate("window.__pwned") is None


def test_the_library_page_lists_the_failed_book_with_its_reason_and_sorts_and_filters(page, server,
                                                                                  tmp_path):
    page.goto(server.url + "/library")
    failed = page.locator("#books tbody tr[data-status=failed]")
    assert failed.count() == 1
    assert failed.locator("td[data-key=reason]").inner_text() == "not-a-zip"
    assert page.locator("#runs tbody tr").count() == 2
    assert page.locator("#live").is_hidden()  # nothing runs
    page.select_option("#status-filter", "failed")
    assert page.locator("#books tbody tr:visible").count() == 1
    page.select_option("#status-filter", "")
    page.fill("#book-filter", "whaling")
    assert page.locator("#books tbody tr:visible td[data-key=title]").all_inner_texts() == [
        "A Short History of Whaling"]
    page.fill("#book-filter", "")
    page.click("#books th[data-key=chunks]")
    page.click("#books th[data-key=chunks]")  # descending
    chunks = [int(c) for c in page.locator("#books tbody td[data-key=chunks]").all_inner_texts()]
    assert chunks == sorted(chunks, reverse=True)
    shot(page, tmp_path, "library-page")


def test_the_search_page_fits_a_phone(browser, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        search(page, server, "whale oil")
        page.locator("#results article.book").first.wait_for()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1
    finally:
        context.close()


def test_an_empty_question_on_the_page_shows_no_search_and_a_bad_one_an_error(page, server):
    page.goto(server.url + "/?q=+")
    assert page.locator("#results article").count() == 0 and page.locator("#error").count() == 0
    response = page.goto(server.url + "/?q=sea&top_k=1000")
    assert response.status == 400 and "top_k" in page.locator("#error").inner_text()
