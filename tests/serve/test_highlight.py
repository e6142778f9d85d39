"""The query's words marked in a passage, as segments the template escapes one by one."""

from __future__ import annotations

from alexandria.serve.highlight import segments, terms


def marked(text: str, query: str) -> list[str]:
    return [t for t, m in segments(text, query) if m]


def test_the_query_words_and_their_forms_are_marked_but_not_stopwords():
    text = "The whalers hunted whales; a whaling ship carried harpoons to the whale."
    assert marked(text, "how did whaling work with a harpoon?") == [
        "whalers", "whales", "whaling", "harpoons", "whale"]
    assert "".join(t for t, _ in segments(text, "whaling")) == text  # nothing lost or added


def test_markup_in_a_passage_stays_plain_text_in_the_segments():
    text = "<script>alert('whale')</script>"
    assert "".join(t for t, _ in segments(text, "whale")) == text
    assert marked(text, "whale") == ["whale"]


def test_unspaced_scripts_are_marked_by_pairs_of_characters():
    assert "日本" in terms("日本語")
    assert marked("これは日本の本です", "日本語") == ["日本"]


def test_a_query_of_stopwords_marks_nothing():
    assert segments("the and of", "the of") == [("the and of", False)]
