"""What `alexandria serve` needs to start, and the rule that keeps it safe by default."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from alexandria.errors import UsageError
from alexandria.query.search import SearchOptions

KEY_ENV = "ALEXANDRIA_SERVE_API_KEY"


@dataclass
class ServeOptions:
    search: SearchOptions = field(default_factory=SearchOptions)
    host: str = "127.0.0.1"
    port: int = 8765
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or reported


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Anything that listens beyond this machine needs a key: refused in one sentence otherwise."""
    if not is_loopback(host) and not api_key:
        raise UsageError(
            f"Serving on {host} makes the library reachable from other machines; give an API key "
            f"with --api-key or {KEY_ENV}, or bind to 127.0.0.1.")
    if api_key is not None and len(api_key) < 8:
        raise UsageError("The API key is too short: use at least 8 characters.")


def key_from_env() -> str | None:
    return os.environ.get(KEY_ENV) or None
