"""Make docs/search-page.png: the sample library ingested with minilm, `alexandria serve` over it,
and the search page of one question, photographed by the system Chromium through Playwright.

    .venv/bin/python scripts/search_page_screenshot.py [OUT.png]
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTION = "how did a toggling harpoon work?"


def cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "alexandria", *args], cwd=REPO, **kw)


def main() -> None:
    from playwright.sync_api import sync_playwright

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "search-page.png"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        lib, store = Path(tmp) / "sample-library", Path(tmp) / "store"
        model = ["--model", "minilm", "--device", "cpu", "--store", str(store)]
        assert cli("sample-library", str(lib), stdout=subprocess.DEVNULL).wait() == 0
        assert cli("ingest", "--directory", str(lib), *model, "--log-dir", f"{tmp}/logs",
                   "--quiet").wait() == 0
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = cli("serve", *model, "--port", str(port), start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    urllib.request.urlopen(url + "/api/health", timeout=5)
                    break
                except OSError:
                    time.sleep(0.2)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": 1000, "height": 760})
                page.goto(url + "/?" + urllib.parse.urlencode({"q": QUESTION, "top_k": "5"}))
                page.locator("#results article.book").first.wait_for()
                page.screenshot(path=str(out))
                browser.close()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
            time.sleep(3)  # the store's owner process closes the shard and leaves a grace later
    print(out)


if __name__ == "__main__":
    main()
