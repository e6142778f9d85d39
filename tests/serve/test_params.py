"""Search parameters are checked before any search: one plain sentence per mistake."""

from __future__ import annotations

import pytest

from alexandria.serve.library import Facets
from alexandria.serve.params import BadRequest, parse_search

FACETS = Facets(authors=["Ruth Ellery"], tags=["history"], language=["eng"], series=[])


@pytest.mark.parametrize("params, param, words", [
    ({"q": "  "}, "q", "empty"),
    ({"q": "x", "top_k": "0"}, "top_k", "from 1 to 100"),
    ({"q": "x", "top_k": "101"}, "top_k", "from 1 to 100"),
    ({"q": "x", "top_k": "ten"}, "top_k", "whole number"),
    ({"q": "x", "author": "Nobody"}, "author", "No stored book"),
    ({"q": "x", "language": "xx"}, "language", "No stored book"),
    ({"q": "x", "limit": "3"}, "limit", "Unknown parameter"),
    ({"q": "x", "with_parent": "maybe"}, "with_parent", "true or false"),
])
def test_a_bad_parameter_is_named_in_one_sentence(params, param, words):
    with pytest.raises(BadRequest) as e:
        parse_search(params, FACETS)
    assert e.value.param == param and words in str(e.value)
    assert e.value.to_dict()["error"].endswith(".")


def test_good_parameters_become_a_request():
    req = parse_search({"q": " the  sea ", "top_k": "7", "author": "Ruth Ellery", "tag": ""}, FACETS)
    assert (req.q, req.top_k, req.filters()) == ("the sea", 7, {"author": "Ruth Ellery"})


def test_the_bare_page_has_no_question_and_no_error():
    assert parse_search({}, FACETS, require_q=False) is None
