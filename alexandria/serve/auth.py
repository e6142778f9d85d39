"""The API key, checked on every request when one is set: `Authorization: Bearer KEY`,
`X-API-Key: KEY`, or the cookie the login form sets (a keyed hash of the key, never the key)."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

COOKIE = "alexandria_session"
OPEN_PATHS = frozenset({"/login"})  # the form that takes the key
MAX_FORM_BYTES = 4096


def session_token(key: str) -> str:
    return hmac.new(key.encode(), b"alexandria-serve-session", hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    """Constant-time: how long it takes says nothing about how much of the key was right."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


class KeyCheck(BaseHTTPMiddleware):
    def __init__(self, app, key: str, login_page) -> None:
        super().__init__(app)
        self.key, self.token, self.login_page = key, session_token(key), login_page

    async def dispatch(self, request: Request, call_next) -> Response:
        if request.url.path == "/login":
            if request.method == "POST":
                return await self.log_in(request)
            return self.login_page(request)
        if same(presented_key(request), self.key) or same(request.cookies.get(COOKIE), self.token):
            return await call_next(request)
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            return JSONResponse({"error": "An API key is needed: send it as 'Authorization: Bearer "
                                          "KEY' or 'X-API-Key: KEY'."}, 401,
                                headers={"WWW-Authenticate": "Bearer"})
        return self.login_page(request)

    async def log_in(self, request: Request) -> Response:
        body = await request.body()
        form = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"))
        if not same((form.get("key") or [""])[0], self.key):
            return self.login_page(request, failed=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response
