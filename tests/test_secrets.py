"""Secrets in database URLs: never in a repr, str, error, traceback or CLI output (SPEC §9).

A password may come in a URL's user information (``user:pw@host``) or in its
query (``?password=pw``, libpq's form), and other query parameters may hold
secrets too (``sslpassword``, ``token``, ``api_key``). Wherever chatledger
shows a URL or a server address it shows ``***`` instead, and a driver
exception that echoes one is not chained to the error a caller sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

import chatledger
from chatledger.errors import StoreConnectionError
from chatledger.stores import postgres
from chatledger.stores.mysql import MySqlStore
from chatledger.stores.postgres import PostgresStore
from chatledger.stores.urls import ServerAddress, redact

SECRET = "hunter2"  # noqa: S105  (a password that must never be shown)
CHATLEDGER = Path(sys.executable).with_name("chatledger")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:hunter2@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db?password=hunter2", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u@h/db?sslmode=require&sslpassword=hunter2&application_name=x",
            "postgresql://u@h/db?sslmode=require&sslpassword=***&application_name=x",
        ),
        ("mysql://u@h/db?passwd=hunter2", "mysql://u@h/db?passwd=***"),
        ("mysql://u@h/db?pass=hunter2&PWD=hunter2", "mysql://u@h/db?pass=***&PWD=***"),
        (
            "postgresql://u@h/db?api_key=hunter2;token=hunter2",
            "postgresql://u@h/db?api_key=***;token=***",
        ),
        (
            "postgresql://u@h/db?x=1&auth_token=hunter2#frag",
            "postgresql://u@h/db?x=1&auth_token=***#frag",
        ),
        ("postgresql://u:hun@ter2@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:hun/ter2@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:hun?ter2@h/db?password=hunter2", "postgresql://u:***@h/db?password=***"),
        ("postgresql://h/db?password=hunter2@x", "postgresql://h/db?password=***"),
        ("postgresql://u@h:5432/db?sslmode=require", "postgresql://u@h:5432/db?sslmode=require"),
        ("sqlite:///ledger.db", "sqlite:///ledger.db"),
        ("host=h user=u password=hunter2 dbname=d", "host=h user=u password=*** dbname=d"),
    ],
)
def test_redact_hides_every_password(url: str, shown: str) -> None:
    """The user information's password and secret-looking query values become ``***``."""
    assert redact(url) == shown
    assert SECRET not in redact(url)


def test_server_address_keeps_the_password_out_of_sight() -> None:
    """A password from the query is the driver's, never in the address's repr or str."""
    url = "postgresql://u@127.0.0.1:1/x?password=hunter2&sslpassword=hunter2&sslmode=disable"
    address = ServerAddress.parse(url, ("postgresql",), 5432)
    assert address.password == SECRET
    assert address.options == {"sslmode": "disable"}
    for shown in (repr(address), str(address), f"{address!r}"):
        assert SECRET not in shown
        assert "127.0.0.1" in shown
    assert address.scrub(f"login with {SECRET} failed") == "login with *** failed"


def _refused_url(url: str) -> str:
    """``url`` on port 1 of its host, where nothing listens, with the secret in its query."""
    parts = urlsplit(url)
    netloc = f"{parts.username}@{parts.hostname}:1"
    return urlunsplit(parts._replace(netloc=netloc, query=f"password={SECRET}&sslmode=disable"))


def _assert_hidden(error: BaseException) -> None:
    """No trace of the secret anywhere a user could see the error."""
    formatted = "".join(traceback.format_exception(error))
    for shown in (str(error), repr(error), formatted):
        assert SECRET not in shown


@pytest.mark.server
@pytest.mark.parametrize("kind", ["postgres", "mysql"])
async def test_refused_connection_never_shows_the_query_password(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Connection refused: the error names host and port, chains the driver's error, hides the password."""  # noqa: E501
    url = _refused_url(request.getfixturevalue(f"{kind}_url"))
    with pytest.raises(StoreConnectionError) as caught:
        await chatledger.connect(url)
    error = caught.value
    assert "127.0.0.1:1" in str(error)
    _assert_hidden(error)
    assert error.__cause__ is not None  # nothing secret in it, so it is kept
    formatted = "".join(traceback.format_exception(error))
    assert type(error.__cause__).__name__ in formatted
    assert "direct cause" in formatted


@pytest.mark.server
@pytest.mark.parametrize("kind", ["postgres", "mysql"])
async def test_store_repr_never_shows_the_password(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """An open server store shows where it is, never the password of its URL."""
    url = request.getfixturevalue(f"{kind}_url")
    parts = urlsplit(url)
    if kind == "postgres":  # trust authentication: the password is not checked
        url = urlunsplit(parts._replace(query=f"password={SECRET}"))
        store = await chatledger.connect(url)
        try:
            assert SECRET not in repr(store)
            assert SECRET not in str(store)
            assert f"{parts.hostname}:{parts.port}" in repr(store)
        finally:
            await store.close()
        assert "closed" in repr(store)
        return
    # MariaDB checks it: a wrong password is a refused login, which must not show it
    with pytest.raises(StoreConnectionError, match="refused the login") as caught:
        await chatledger.connect(urlunsplit(parts._replace(query=f"password={SECRET}")))
    _assert_hidden(caught.value)


async def test_a_driver_error_that_echoes_the_password_is_not_chained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver exception holding the password: scrubbed text, and raised as ``from None``."""

    async def echoing_pool(dsn: str, **_: Any) -> None:
        raise OSError(f"could not connect to {dsn}")

    asyncpg = pytest.importorskip("asyncpg")
    monkeypatch.setattr(asyncpg, "create_pool", echoing_pool)
    url = f"postgresql://u@127.0.0.1:1/x?password={SECRET}"
    with pytest.raises(StoreConnectionError) as caught:
        await PostgresStore.connect(url)
    error = caught.value
    assert "***" in str(error)
    _assert_hidden(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


def test_map_error_scrubs_every_secret_of_the_address() -> None:
    """Each secret of the URL (password, sslpassword) is scrubbed from a driver's text."""
    asyncpg = pytest.importorskip("asyncpg")
    address = ServerAddress.parse(
        f"postgresql://u:{SECRET}@h/db?sslpassword=s3cr3t-key", ("postgresql",), 5432
    )
    error = postgres.map_error(asyncpg, OSError(f"{SECRET} and s3cr3t-key"), address)
    assert SECRET not in str(error)
    assert "s3cr3t-key" not in str(error)


@pytest.mark.parametrize("store", [MySqlStore, PostgresStore])
async def test_a_bad_url_never_shows_the_password(store: Any) -> None:
    """A URL the parser refuses is quoted redacted."""
    scheme = "mysql" if store is MySqlStore else "postgresql"
    for url in (f"{scheme}://u:{SECRET}@h:99999/db", f"{scheme}://u@h/?password={SECRET}"):
        with pytest.raises(ValueError) as caught:  # noqa: PT011  (the message is checked)
            await store.connect(url)
        _assert_hidden(caught.value)


async def test_an_unknown_scheme_never_shows_query_secrets() -> None:
    """A URL of no known backend is quoted redacted by connect()."""
    with pytest.raises(ValueError, match="cannot tell the backend") as caught:
        await chatledger.connect(f"oracle://u@h/db?password={SECRET}")
    _assert_hidden(caught.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"}
    environment.update(NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        [str(CHATLEDGER), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


@pytest.mark.server
@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_cli_db_status_never_shows_the_password(scheme: str) -> None:
    """``chatledger --db '…?password=hunter2' db status`` on a refused port: one line, no secret."""
    done = _cli("--db", f"{scheme}://u@127.0.0.1:1/x?password={SECRET}", "db", "status")
    assert done.returncode == 1
    assert "127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.server
def test_cli_db_status_shows_the_url_redacted(postgres_url: str) -> None:
    """A database that opens is named in ``db status`` with its query password hidden."""
    url = urlunsplit(urlsplit(postgres_url)._replace(query=f"password={SECRET}"))
    done = _cli("--db", url, "db", "status", "--json")
    assert done.returncode == 0, done.stderr
    assert "password=***" in done.stdout
    assert SECRET not in done.stdout + done.stderr
