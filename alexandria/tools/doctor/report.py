"""The doctor's rows and the plumbing every check uses: one line per problem, no secrets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

STATUSES = ("ok", "warn", "fail", "info")
GIB = float(1 << 30)

@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail" | "info"
    detail: str


def one_line(text: object) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    return line if len(line) <= 240 else line[:237] + "..."


def error_text(e: BaseException) -> str:
    text = one_line(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def guarded(name: str, section: Callable[[], list[Check]]) -> list[Check]:
    try:
        return section()
    except Exception as e:
        return [Check(name, "fail", error_text(e))]


def scrub(check: Check, api_key: str | None) -> Check:
    """The API key never reaches the screen, a log or cron mail, whatever an error message quoted."""
    detail = one_line(check.detail)
    if api_key:
        detail = detail.replace(api_key, "***")
    return Check(check.name, check.status, detail)


def safe_url(url: str) -> str:
    """Drop user:password@ from a URL before it is shown."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    return urlunsplit(parts)


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


