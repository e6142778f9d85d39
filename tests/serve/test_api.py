"""The JSON API of a real `alexandria serve` process: the same JSON as the commands' --json,
clear 4xx errors, and the API key when one is set."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.conftest import run_cli
from tests.serve.helpers import Server

pytestmark = pytest.mark.slow  # one ingest of the served library per session, a model per server


def cli_json(store, *args: str):
    proc = run_cli(*args, "--model", "minilm", "--device", "cpu", "--store", store, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("query, more", [
    ("how did a toggling harpoon work?", {"top_k": "3"}),
    ("bread and sourdough", {"top_k": "5", "language": "fra"}),
    ("the night sky", {"author": "Hélène Dufresne"}),
])
def test_the_api_search_answers_what_the_command_prints_with_json(server, served_store, query, more):
    status, api = server.get("/api/search?" + urllib.parse.urlencode({"q": query, **more}))
    assert status == 200, api
    flags = [a for k, v in more.items() for a in (f"--{k.replace('_', '-')}", v)]
    cli = cli_json(served_store, "search", query, *flags)
    assert api and [h["score"] for h in api] == pytest.approx([h["score"] for h in cli], abs=1e-5)
    assert [{k: v for k, v in h.items() if k != "score"} for h in api] == \
        [{k: v for k, v in h.items() if k != "score"} for h in cli]


def test_the_api_status_is_the_commands_status_plus_progress_and_runs(server, served_store):
    status, api = server.get("/api/status")
    assert status == 200
    cli = cli_json(served_store, "status")
    assert {k: v for k, v in api.items() if k not in ("progress", "runs")} == cli
    assert api["progress"] is None  # no ingest runs now
    assert [r["outcome"] for r in api["runs"]] == ["failed", "ok"]  # newest first


def test_the_api_lists_every_book_with_its_status_and_reason(server):
    status, books = server.get("/api/books")
    assert status == 200
    failed = [b for b in books if b["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "not-a-zip"
    done = [b for b in books if b["status"] == "done"]
    assert all(b["chunks"] > 0 and b["authors"] is not None for b in done)
    assert {"Ruth Ellery", "Samuel J. Pratt"} <= {a for b in done for a in b["authors"]}


@pytest.mark.parametrize("query, param, code", [
    ("q=", "q", 400),
    ("q=%20%20", "q", 400),
    ("q=sea&top_k=0", "top_k", 400),
    ("q=sea&top_k=1000", "top_k", 400),
    ("q=sea&top_k=many", "top_k", 400),
    ("q=sea&author=Nobody+At+All", "author", 400),
    ("q=sea&lang=en", "lang", 400),
])
def test_bad_search_parameters_get_a_4xx_with_one_sentence(server, query, param, code):
    status, body = server.get("/api/search?" + query)
    assert status == code and body["param"] == param and body["error"].endswith("."), body


def test_health_and_the_openapi_description(server):
    status, health = server.get("/api/health")
    assert status == 200 and health["ok"] and health["collection"] == "alexandria_minilm"
    status, schema = server.get("/openapi.json")
    assert status == 200 and "/api/search" in schema["paths"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def log_in(server: Server, key: str) -> tuple[int, str]:
    """POST the login form: its status and the cookie it sets."""
    body = urllib.parse.urlencode({"key": key}).encode()
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(server.url + "/login", data=body, timeout=60) as r:
            return r.status, r.headers.get("set-cookie") or ""
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("set-cookie") or ""


def test_with_a_key_every_request_needs_it(served_store, tmp_path):
    key = "correct-horse-battery-staple"
    s = Server(served_store, tmp_path / "serve.log", env={"ALEXANDRIA_SERVE_API_KEY": key})
    try:
        for path in ("/api/health", "/api/search?q=whale", "/api/status", "/library", "/"):
            status, _ = s.get(path)
            assert status == 401, path
        assert s.get("/api/health", {"X-API-Key": "wrong-key-wrong-key"})[0] == 401
        assert s.get("/api/health", {"Authorization": f"Bearer {key}x"})[0] == 401
        assert s.get("/api/health", {"Authorization": f"Bearer {key}"})[0] == 200
        status, hits = s.get("/api/search?q=whale+oil", {"X-API-Key": key})
        assert status == 200 and hits
        # The page takes the key once, in its form, and keeps a cookie that is not the key.
        assert log_in(s, "not-the-key")[0] == 401
        status, cookie = log_in(s, key)
        assert status == 303 and cookie.startswith("alexandria_session=") and key not in cookie
        page_status, page = s.get("/library", {"Cookie": cookie.split(";")[0]})
        assert page_status == 200 and "A Short History of Whaling" in page
    finally:
        s.stop()
