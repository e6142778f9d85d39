"""The search parameters of a request, checked: one plain sentence per mistake, for a 400."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alexandria.serve.library import Facets

MAX_TOP_K = 100
MAX_QUERY_CHARS = 2000
FILTERS = {"author": "authors", "tag": "tags", "language": "language", "series": "series"}
SEARCH_PARAMS = frozenset({"q", "top_k", "with_parent", *FILTERS})


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), **({"param": self.param} if self.param else {})}


@dataclass
class SearchRequest:
    q: str
    top_k: int = 5
    author: str | None = None
    tag: str | None = None
    language: str | None = None
    series: str | None = None
    with_parent: bool = False

    def filters(self) -> dict[str, str]:
        return {k: v for k in FILTERS if (v := getattr(self, k))}


def parse_search(params: dict[str, str], facets: Facets, allowed: frozenset[str] = SEARCH_PARAMS,
                 require_q: bool = True) -> SearchRequest | None:
    """A SearchRequest from query parameters; None when there is no question (the bare page)."""
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise BadRequest(f"Unknown parameter {unknown[0]!r}; use "
                         f"{', '.join(sorted(SEARCH_PARAMS))}.", unknown[0])
    q = " ".join((params.get("q") or "").split())
    if not q:
        if require_q:
            raise BadRequest("The question is empty: give it as q=...", "q")
        return None
    if len(q) > MAX_QUERY_CHARS:
        raise BadRequest(f"The question is longer than {MAX_QUERY_CHARS} characters.", "q")
    top_k = params.get("top_k") or "5"
    try:
        k = int(top_k)
    except ValueError:
        raise BadRequest(f"top_k must be a whole number from 1 to {MAX_TOP_K}, not {top_k!r}.",
                         "top_k") from None
    if not 1 <= k <= MAX_TOP_K:
        raise BadRequest(f"top_k must be from 1 to {MAX_TOP_K}, not {k}.", "top_k")
    with_parent = (params.get("with_parent") or "false").lower()
    if with_parent not in ("1", "0", "true", "false"):
        raise BadRequest(f"with_parent must be true or false, not {with_parent!r}.", "with_parent")
    out = SearchRequest(q=q, top_k=k, with_parent=with_parent in ("1", "true"))
    for name, facet in FILTERS.items():
        value = (params.get(name) or "").strip()
        if not value:
            continue
        if value not in facets.values(facet):
            raise BadRequest(f"No stored book has {name} {value!r}.", name)
        setattr(out, name, value)
    return out
