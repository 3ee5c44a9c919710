"""How the ledger talks to ClickHouse: one small interface, two implementations.

- :class:`ChdbClient`: chdb's engine inside this process, on a directory of
  its own (``chdb:///path/to/dir``), for tests and embedded use.
- :class:`ConnectClient`: a ClickHouse server over HTTP through
  clickhouse-connect (``clickhouse://user:password@host:8123/database``).

Both send the same SQL: values travel as server-side parameters
(``{name:Type}``), results come back as ``JSONCompactEachRow`` and rows go in
as ``JSONEachRow`` with an ``insert_deduplication_token``. Each runs its
blocking driver on a thread of its own, so the event loop never waits on
ClickHouse, and any event loop may await it. Driver errors are translated
here, at the boundary: an unreachable server is a
:class:`~chatledger.errors.StoreConnectionError`, anything else ClickHouse
refuses a :class:`~chatledger.errors.QueryError`; neither ever shows the
password.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from chatledger.errors import PersistenceError, QueryError, StoreConnectionError
from chatledger.stores.server import import_driver
from chatledger.stores.urls import ServerAddress, redact, shown_cause

__all__ = [
    "DEFAULT_DATABASE",
    "ChdbClient",
    "ClickHouseClient",
    "ConnectClient",
    "deduplication_setting",
    "open_client",
]

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "chatledger"
"""The database the ledger's tables live in when the URL names none."""

_T = TypeVar("_T")
_RESULT_FORMAT = "JSONCompactEachRow"
_HTTP_PORT = 8123
_HTTPS_PORT = 8443
_SERVER_SCHEMES = ("clickhouse", "clickhouses", "http", "https")
_HTTP_THREADS = 4  # requests in flight at once (clickhouse-connect's pool holds 8)
_CONNECT_TIMEOUT = 10  # seconds to reach a server
_QUERY_TIMEOUT = 120  # seconds one statement may take before the server is taken as gone
_URL_FORMS = "chdb:///path/to/dir, chdb:// (in memory) or clickhouse://user:password@host:8123/db"
# ClickHouse error codes that mean "cannot get in" rather than "the statement failed".
_LOGIN_CODES = frozenset({192, 193, 194, 195, 516})  # unknown user, wrong password, …


@runtime_checkable
class ClickHouseClient(Protocol):
    """What the ledger needs of ClickHouse; every method may be awaited from any event loop."""

    @property
    def location(self) -> str:
        """Where the data lives, for logs and errors (never a password)."""
        ...

    @property
    def database(self) -> str:
        """The database holding the ledger's tables."""
        ...

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """The rows of a SELECT, each a list of JSON values (64-bit integers as text)."""
        ...

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, INSERT … SELECT, DELETE)."""
        ...

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, token: str
    ) -> None:
        """Insert ``rows`` (JSON-ready dicts) once: a repeat with the same ``token`` is dropped."""
        ...

    async def close(self) -> None:
        """Release the connection and the worker thread; safe to call twice."""
        ...


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(
        json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in rows
    )


def _parse_rows(text: str | bytes) -> list[list[Any]]:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def deduplication_setting(token: str) -> str:
    """``SETTINGS insert_deduplication_token = '…'`` for an INSERT, ``token`` checked first."""
    if not token.isalnum():  # a digest of ids, never text from outside: keep it a plain literal
        raise ValueError(f"a deduplication token must be alphanumeric, not {token!r}")
    return f"SETTINGS insert_deduplication_token = '{token}'"


class _Worker:
    """Threads that run a blocking driver's calls, awaited from any loop (one: in order)."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._closed = False

    async def run(self, call: Callable[[], _T]) -> _T:
        if self._closed:
            raise StoreConnectionError("the ClickHouse client is closed; open a new ledger")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def stop(self, last: Callable[[], None]) -> None:
        if self._closed:
            return
        try:
            await self.run(last)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)


# --- chdb, in-process -------------------------------------------------------------------


def _chdb_literal(value: Any) -> Any:
    """A parameter value as chdb takes it: scalars as they are, a sequence as an array literal."""
    if isinstance(value, list | tuple):
        quoted = (
            "'" + str(item).replace("\\", "\\\\").replace("'", "\\'") + "'"
            if isinstance(item, str)
            else str(item)
            for item in value
        )
        return "[" + ",".join(quoted) + "]"
    return value


class ChdbClient:
    """ClickHouse's engine in this process (chdb), on the directory ``path`` (None: in memory).

    chdb runs one data directory per process: a second client on another
    directory fails while the first is open (StoreConnectionError); more
    clients on the same directory are fine.
    """

    def __init__(self, path: str | None = None, database: str = DEFAULT_DATABASE) -> None:
        """Open chdb on ``path`` (a directory; None keeps the data in memory)."""
        import_driver("chdb", "clickhouse", "ClickHouse (chdb)")
        from chdb import session as chdb_session

        session_type: Any = chdb_session.Session  # (chdb's constructor is not annotated)

        self._path = path
        self._database = database
        self._worker = _Worker("chatledger-chdb")
        try:
            self._session: Any = session_type(path if path is not None else ":memory:")
        except Exception as exc:  # chdb raises RuntimeError for everything
            self._worker._executor.shutdown(wait=False)
            raise StoreConnectionError(
                f"chdb cannot open {self.location}: {exc} (chdb serves one directory per "
                "process: close the client on the other directory, or use the same one)"
            ) from exc

    @property
    def location(self) -> str:
        """``chdb:<directory>``, or ``chdb:memory``."""
        return f"chdb:{self._path if self._path is not None else 'memory'}/{self._database}"

    @property
    def database(self) -> str:
        """The database holding the ledger's tables."""
        return self._database

    def __repr__(self) -> str:
        """Where the client keeps its data."""
        return f"<ChdbClient {self.location}>"

    def _run_sql(self, sql: str, parameters: Mapping[str, Any] | None, fmt: str) -> Any:
        params = {name: _chdb_literal(value) for name, value in (parameters or {}).items()}
        try:
            return self._session.query(sql, fmt, params=params or None)
        except Exception as exc:  # chdb's ChdbError is a RuntimeError, whatever went wrong
            raise QueryError(f"ClickHouse (chdb) refused a statement: {exc}") from exc

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """The rows of a SELECT, each a list of JSON values."""
        result = await self._worker.run(lambda: self._run_sql(sql, parameters, _RESULT_FORMAT))
        return _parse_rows(result.bytes() if hasattr(result, "bytes") else str(result))

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows."""
        await self._worker.run(lambda: self._run_sql(sql, parameters, "CSV"))

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, token: str
    ) -> None:
        """Insert ``rows`` once per ``token``."""
        if not rows:
            return
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) {deduplication_setting(token)} "
            f"FORMAT JSONEachRow\n{_json_rows(rows)}"
        )
        await self._worker.run(lambda: self._run_sql(sql, None, "CSV"))

    async def close(self) -> None:
        """Close the chdb session; safe to call twice."""
        await self._worker.stop(self._session.close)


# --- a server, through clickhouse-connect ---------------------------------------------------


class ConnectClient:
    """A ClickHouse server through a clickhouse-connect client (HTTP).

    Made by :func:`open_client` from a URL, or around a client of one's own
    (``clickhouse_connect.get_client(...)``): any client of that library
    works, its in-process chdb interface included.
    """

    def __init__(
        self, client: Any, address: ServerAddress | None = None, *, database: str | None = None
    ) -> None:
        """Send statements through ``client``, the ledger's tables in ``database``.

        ``address`` says where the client points, for errors; ``database``
        defaults to the address's, else ``chatledger``.
        """
        self._client = client
        self._address = address
        named = database or (address.database if address is not None else None)
        self._database = named or DEFAULT_DATABASE
        # Several at once: a hung request (until its timeout) must not hold up the others.
        self._worker = _Worker("chatledger-clickhouse", _HTTP_THREADS)

    @classmethod
    def connect(cls, url: str) -> ConnectClient:
        """Connect to the server ``clickhouse://user:password@host:8123/database`` names."""
        address = _server_address(url)
        module = import_driver("clickhouse_connect", "clickhouse", "ClickHouse")
        secure = address.scheme in ("clickhouses", "https") or address.options.get(
            "secure", ""
        ).lower() in ("1", "true", "yes")
        try:
            client = module.get_client(
                host=address.host,
                port=address.port,
                username=address.user or "default",
                password=address.password or "",
                secure=secure,  # (no database: the ledger's may not exist yet; names are qualified)
                connect_timeout=_CONNECT_TIMEOUT,
                send_receive_timeout=_QUERY_TIMEOUT,
                autogenerate_session_id=False,  # concurrent queries must not share a session
            )
        except Exception as exc:  # noqa: BLE001  (mapped to chatledger's error below)
            raise _mapped(exc, address, connecting=True) from shown_cause(exc, address)
        return cls(client, address)

    @property
    def location(self) -> str:
        """``user@host:port/database``, or what the client says of itself."""
        if self._address is not None:
            return self._address.location
        return f"clickhouse-connect:{type(self._client).__name__}/{self._database}"

    @property
    def database(self) -> str:
        """The database holding the ledger's tables."""
        return self._database

    def __repr__(self) -> str:
        """Where the client points (never the password)."""
        return f"<ConnectClient {self.location}>"

    def _call(self, run: Callable[[], _T]) -> _T:
        try:
            return run()
        except Exception as exc:
            if self._address is None:
                raise _mapped(exc, None) from exc
            raise _mapped(exc, self._address) from shown_cause(exc, self._address)

    async def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[list[Any]]:
        """The rows of a SELECT, each a list of JSON values."""
        raw = await self._worker.run(
            lambda: self._call(
                lambda: self._client.raw_query(
                    sql, parameters=dict(parameters or {}), fmt=_RESULT_FORMAT
                )
            )
        )
        return _parse_rows(raw)

    async def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows."""
        await self._worker.run(
            lambda: self._call(lambda: self._client.command(sql, parameters=dict(parameters or {})))
        )

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], *, token: str
    ) -> None:
        """Insert ``rows`` once per ``token``."""
        if not rows:
            return
        deduplication_setting(
            token
        )  # the same check as chdb's, though the token travels as a setting
        block = _json_rows(rows).encode("utf-8")
        await self._worker.run(
            lambda: self._call(
                lambda: self._client.raw_insert(
                    table,
                    list(columns),
                    block,
                    settings={"insert_deduplication_token": token},
                    fmt="JSONEachRow",
                )
            )
        )

    async def close(self) -> None:
        """Close the HTTP connections; safe to call twice."""
        await self._worker.stop(self._client.close)


def _server_address(url: str) -> ServerAddress:
    parts = urlsplit(url)
    default = _HTTPS_PORT if parts.scheme.lower() in ("clickhouses", "https") else _HTTP_PORT
    if not parts.path.strip("/"):  # no database named: the ledger's own
        url = urlunsplit(parts._replace(path=f"/{DEFAULT_DATABASE}"))
    return ServerAddress.parse(url, _SERVER_SCHEMES, default)


def _error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    text = str(exc)
    marker = "Code: "
    if marker in text:
        digits = text.split(marker, 1)[1].split(".", 1)[0].strip()
        if digits.isdigit():
            return int(digits)
    return None


def _mapped(
    exc: BaseException, address: ServerAddress | None, *, connecting: bool = False
) -> PersistenceError:
    """The chatledger error for a clickhouse-connect failure, its text scrubbed of secrets."""
    if isinstance(exc, PersistenceError):
        return exc
    text = str(exc) if address is None else address.scrub(str(exc))
    where = "ClickHouse" if address is None else f"ClickHouse at {address}"
    code = _error_code(exc)
    unreachable = _is_network_error(exc)
    if unreachable or code in _LOGIN_CODES or connecting:
        hint = (
            " (is ClickHouse running and reachable there?)"
            if unreachable
            else " (check the user and password)"
            if code in _LOGIN_CODES
            else ""
        )
        return StoreConnectionError(f"cannot use {where}{hint}: {text}")
    return QueryError(f"{where} refused a statement: {text}")


def _is_network_error(exc: BaseException) -> bool:
    try:
        from clickhouse_connect.driver.exceptions import OperationalError
    except ImportError:  # (clickhouse-connect missing: nothing it raised can be here)
        return False
    return isinstance(exc, OperationalError | OSError)


def open_client(url: str) -> ClickHouseClient:
    """The client a URL names: ``chdb:///dir``, ``chdb://`` or ``clickhouse://…``.

    ``?database=name`` picks chdb's database (``chatledger`` by default); a
    server URL names it in its path.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "chdb":
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        database = options.get("database", DEFAULT_DATABASE)
        path = unquote(parts.path) or None
        if parts.netloc and parts.netloc not in ("memory", ""):
            raise ValueError(
                f"{redact(url)!r}: a chdb URL names a directory after three slashes, "
                "e.g. chdb:///var/lib/chatledger/clickhouse"
            )
        return ChdbClient(None if path in (None, "/:memory:", ":memory:") else path, database)
    if scheme in _SERVER_SCHEMES:
        return ConnectClient.connect(url)
    raise ValueError(f"not a ClickHouse URL: {redact(url)!r}; use one of: {_URL_FORMS}")
