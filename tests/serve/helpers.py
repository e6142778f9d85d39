"""A real `alexandria serve` process on a free loopback port, and the system Chromium for
Playwright (its own browser download cannot work here: `apt-get install chromium` provides it)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`alexandria serve` in its own process; `get` answers (status, parsed JSON or text)."""

    def __init__(self, store: Path, log: Path, *more: str, env: dict | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alexandria", "serve", "--model", "minilm", "--device", "cpu",
             "--store", str(store), "--port", str(self.port), *more],
            cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
            stderr=log.open("w"), start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            assert self.proc.poll() is None, f"serve exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"serve never answered: {log.read_text()}"
            try:
                status, _ = self.get("/api/health", headers=dict(self.auth))
                if status in (200, 401):
                    return
            except OSError:
                pass
            time.sleep(0.3)

    auth: tuple = ()

    def get(self, path: str, headers: dict | None = None) -> tuple[int, object]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                status, body, kind = r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as e:
            status, body, kind = e.code, e.read(), e.headers.get("content-type", "")
        text = body.decode()
        return status, (json.loads(text) if kind.startswith("application/json") else text)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install -y chromium fonts-noto-cjk; .ci/run does)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the [test] extra)")
