"""Database URLs: how one is shown anywhere, what a server's says about it, an SQLite path.

:func:`redact` is how a URL is shown anywhere (errors, logs, the command
line, the dashboard): its password, and any secret-looking query parameter
(``?password=…``, ``sslpassword``, ``token``, ``api_key``, …), replaced by
``***``. :class:`ServerAddress` is what error messages may say about where a
database server is: host, port, database and user, never the password.
:func:`parse_sqlite_url` reads ``sqlite:///path`` URLs.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import parse_qsl, unquote, urlsplit

from chatledger.errors import PersistenceError

__all__ = [
    "ServerAddress",
    "is_secret_parameter",
    "parse_sqlite_url",
    "redact",
    "shown_cause",
]

_SECRET_NAMES = frozenset({"pass", "pwd", "auth"})
_SECRET_PARTS = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "credential",
)
# ``name=value`` in a URL's query (or a key=value connection string), value to the next
# separator.
_PARAMETER = re.compile(r"(?:^|(?<=[?&;\s]))([^=?&;#\s]+)=([^&;#\s]*)")


def is_secret_parameter(name: str) -> bool:
    """Whether a URL query parameter called ``name`` may hold a secret (``sslpassword``)."""
    lowered = unquote(name).lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a database server is, as error messages may name it (never the password).

    The password, from the URL's user information or its ``?password=``
    parameter, is kept for the driver but out of ``repr`` and ``str``;
    ``options`` holds the other query parameters, secret-looking ones left
    out. ``secrets`` are the texts an error message must never show.
    """

    scheme: str
    host: str
    port: int
    database: str
    user: str
    password: str | None = field(repr=False)
    options: dict[str, str]
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def parse(cls, url: str, schemes: Sequence[str], default_port: int) -> Self:
        """Split ``scheme://user:password@host:port/database?options``."""
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0].lower()
        if scheme not in schemes:
            raise ValueError(
                f"not a {schemes[0]} URL: {redact(url)!r} "
                f"(expected {schemes[0]}://user:password@host:{default_port}/database)"
            )
        try:
            port = parts.port or default_port
        except ValueError as exc:  # its text quotes only the port
            raise ValueError(f"bad port in {redact(url)!r}: {exc}") from None
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise ValueError(f"{redact(url)!r} names no database; add /database_name to it")
        query = parse_qsl(parts.query)
        secrets = [value for name, value in query if is_secret_parameter(name) and value]
        password = None if parts.password is None else unquote(parts.password)
        if password:
            secrets.insert(0, password)
        if password is None:  # libpq's form: postgresql://user@host/db?password=...
            password = next((value for name, value in query if name == "password"), None)
        return cls(
            scheme=scheme,
            host=unquote(parts.hostname or "localhost"),
            port=port,
            database=database,
            user=unquote(parts.username or ""),
            password=password,
            options={name: value for name, value in query if not is_secret_parameter(name)},
            secrets=tuple(dict.fromkeys(secrets)),
        )

    @property
    def location(self) -> str:
        """``user@host:port/database``: the database, however the URL spells it (no password)."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}/{self.database}"

    def __str__(self) -> str:
        """``host:port/database`` (as ``user``)."""
        who = f" as {self.user!r}" if self.user else ""
        return f"{self.host}:{self.port}/{self.database}{who}"

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this address replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def shown_by(self, exc: BaseException) -> bool:
        """Whether ``exc``, its chain or its traceback would show a secret of this address."""
        return any(_shows(exc, secret) for secret in self.secrets)


def _shows(exc: BaseException, secret: str) -> bool:
    """Whether ``secret`` appears anywhere a traceback of ``exc`` would print."""
    if not secret:
        return False
    return any(secret in line for line in traceback.format_exception(exc))


def shown_cause(exc: BaseException, address: ServerAddress) -> BaseException | None:
    """What a chatledger error mapped from ``exc`` may name as its cause.

    ``raise mapped from shown_cause(exc, address)``: ``exc`` itself, or None
    when its text, chain or traceback would show a secret of ``address`` (a
    driver may echo its connection arguments), so a traceback ends at the
    chatledger error. An error that is chatledger's already keeps its own cause.
    """
    if isinstance(exc, PersistenceError):
        return exc.__cause__
    return None if address.shown_by(exc) else exc


def redact(url: str) -> str:
    """``url`` with its password and every secret-looking query parameter replaced by ``***``.

    ``scheme://user:***@host/db?sslmode=require&password=***``. A URL no
    parser would accept is hidden too: a password holding ``/``, ``@`` or
    ``?`` unencoded is hidden whole. Text without ``://`` (a path, a
    ``key=value`` connection string) has its secret-looking values hidden.
    """
    if "://" not in url:
        return _PARAMETER.sub(_hide_value, url)
    scheme, rest = url.split("://", 1)
    at = _userinfo_end(rest)
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:***{rest[at:]}"
            at = len(user) + len(":***")
    mark = rest.find("?", at + 1)  # the query starts after the user information
    if mark >= 0:
        rest = rest[:mark] + _PARAMETER.sub(_hide_value, rest[mark:])
    return f"{scheme}://{rest}"


def _userinfo_end(rest: str) -> int:
    """Where the user information ends (its ``@``) in a URL after ``://``; -1 without one."""
    query = rest.find("?")
    at = rest.rfind("@", 0, len(rest) if query < 0 else query)
    if at >= 0:
        return at
    # '?' inside an unencoded password (u:pa?ss@host/db): the user information runs to the
    # first '@', unless a query parameter comes before it (host/db?password=a@b).
    first = rest.find("@")
    return first if first >= 0 and "=" not in rest[:first] else -1


def _hide_value(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    return f"{name}=***" if value and is_secret_parameter(name) else match.group(0)


def parse_sqlite_url(url: str) -> tuple[str | None, dict[str, str]]:
    """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``sqlite:///:memory:``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ValueError(f"not an SQLite URL: {url!r} (expected sqlite:///path/to.db)")
    path = unquote(parts.path)
    if parts.netloc:
        raise ValueError(f"SQLite URL {url!r} has a host; use three slashes: sqlite:///path/to.db")
    path = path[1:] if path.startswith("/") else path
    options = dict(parse_qsl(parts.query))
    if path in ("", ":memory:"):
        return None, options
    return path, options
