"""What keeps the dashboard safe: the token, read-only by default, CSRF, and strict headers.

:class:`Guard` is ASGI middleware in front of every route (static files too):

- With a token, a request must carry it: ``Authorization: Bearer TOKEN``, or
  the cookie set after one visit with ``?token=TOKEN`` (then redirected to
  the same URL without it, so the token does not stay in history or logs).
- Without a token the dashboard answers only to a loopback ``Host``
  (``localhost``, ``127.0.0.1``, ``[::1]``): a web page elsewhere cannot
  reach it by pointing its own name at 127.0.0.1 (DNS rebinding).
- Anything but GET and HEAD is refused with 403 unless the dashboard was
  started with ``allow_delete``; a POST must then come from this origin and
  carry the CSRF token the page put in its form (:func:`csrf_matches`).
- Every response gets a Content-Security-Policy without ``'unsafe-inline'``
  (the pages' script and style are static files), ``nosniff``, no referrer
  and no framing.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging
import secrets
from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Final
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import URL, Headers, QueryParams
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "COOKIE",
    "Guard",
    "csrf_matches",
    "is_loopback",
    "new_secret",
]

logger = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
COOKIE: Final = "chatledger_ui"
"""The cookie that proves a browser gave the token once."""
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})


def new_secret() -> str:
    """A random secret for one server process (CSRF tokens derive from it)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the token itself is not stored."""
    return hmac.new(token.encode(), b"chatledger ui cookie", hashlib.sha256).hexdigest()


def csrf_matches(expected: str, given: str | None) -> bool:
    """True when a form's CSRF token is the one this server handed out."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _page(status: int, title: str, text: str) -> Response:
    """A small page of our own words, for a request refused before any view runs."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · chatledger</title>"
        '<link rel="stylesheet" href="/static/app.css"></head>'
        f'<body><main id="main" class="refused"><h1>{html.escape(title)}</h1>'
        f"<p>{html.escape(text)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=status)


class Guard:
    """ASGI middleware: token, host, method and headers (see the module's docstring)."""

    def __init__(self, app: ASGIApp, *, token: str | None, allow_delete: bool) -> None:
        """Guard ``app``; ``token`` None means loopback only."""
        self.app = app
        self.token = token
        self.allow_delete = allow_delete

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what must be refused; add the security headers to every response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in {header for header, _ in _HEADERS}
                ]
                message = {**message, "headers": [*headers, *_HEADERS]}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_headers(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception:
            if started:  # too late for an error page: the response is under way
                raise
            # Answered here, inside the guard, so the error page has the headers too.
            logger.exception("the dashboard failed on %s", scope.get("path"))
            failure = _page(500, "Something went wrong", "The dashboard failed; see its log.")
            await failure(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        """The response that refuses this request, or None to let it through."""
        headers = Headers(scope=scope)
        method = scope["method"]
        if self.token is None:
            host = urlsplit("//" + headers.get("host", "")).hostname or ""
            if not is_loopback(host):
                logger.warning("refused a request for host %r: not a loopback name", host)
                return _page(
                    400,
                    "Unexpected host",
                    "This dashboard answers on localhost only. Start it with --token to "
                    "serve it under another name.",
                )
        else:
            refused = self._check_token(scope, headers, method, self.token)
            if refused is not None:
                return refused
        if method not in _SAFE_METHODS:
            if not self.allow_delete:
                return _page(
                    403,
                    "Read-only",
                    "This dashboard is read-only. Start it with --allow-delete to delete sessions.",
                )
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != headers.get("host"):
                return _page(403, "Cross-origin request", "Requests from other sites are refused.")
        return None

    def _check_token(
        self, scope: Scope, headers: Headers, method: str, token: str
    ) -> Response | None:
        cookie_value = _cookie_value(token)
        authorization = headers.get("authorization", "")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
        cookie = _cookies(headers).get(COOKIE)
        if cookie is not None and hmac.compare_digest(cookie.encode(), cookie_value.encode()):
            return None
        url = URL(scope=scope)
        query = QueryParams(scope.get("query_string", b""))
        offered = query.get("token")
        if (
            method in _SAFE_METHODS
            and offered is not None
            and hmac.compare_digest(offered.encode(), token.encode())
        ):
            rest = [(k, v) for k, v in query.multi_items() if k != "token"]
            target = url.path + (f"?{urlencode(rest)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, cookie_value, httponly=True, samesite="strict", path="/")
            return response
        return _page(
            401,
            "Token required",
            "This dashboard needs its token: open the address it printed when it started "
            "(it ends in ?token=...), or send 'Authorization: Bearer TOKEN'.",
        )


def _cookies(headers: Headers) -> Mapping[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except CookieError:  # a malformed cookie header is no cookie, not a crash
        return {}
    return {name: morsel.value for name, morsel in jar.items()}
