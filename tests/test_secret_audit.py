"""The secrets audit (SPEC §9): provider API keys encrypted at rest, and no secret shown anywhere.

A provider's API key is stored as ``fernet:v1:`` + a Fernet token made with
the first key of ``CHATLEDGER_SECRET_KEY``; plain rows (MoFA's) still read
back, and a rotation re-encrypts. Then the audit: with a known database
password in the URL, a known API key in the database and a known secret key
in the environment, none of the three appears in any repr, str, error,
log record (DEBUG), CLI output, export file or dashboard page, nor the API
key in the database's own column or file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
import traceback
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from pydantic import SecretStr, ValidationError

import chatledger
from chatledger import AgentConfig, Provider, QueryFilter, sync
from chatledger.errors import ConstraintError, PersistenceError, SerializationError
from chatledger.stores.base import PersistenceStore
from chatledger.stores.memory import InMemoryStore
from chatledger.stores.schema import PROVIDER
from chatledger.stores.secret_box import (
    ENCRYPTED_PREFIX,
    SECRET_KEY_VARIABLE,
    SecretBox,
    configured_box,
    generate_key,
    reencrypt_api_keys,
)
from chatledger.stores.sql import Read, SqlStore, Write
from chatledger.stores.sqlite import SqliteStore
from chatledger.testing import make_agent, make_provider
from chatledger.testing.servers import empty_tables, execute
from chatledger.ui import create_app
from scratch_databases import SQL_BACKENDS
from ui_data import run_quiet_demo

PASSWORD = "pw-audit-5e1c9b7d"  # noqa: S105  (the database password that must never show)
API_KEY = "sk-audit-3f8a61d0c2e4"  # the provider API key that must never show
SECRET_KEY = generate_key()  # the key that encrypts it: a secret too
OLD_KEY = generate_key()
SECRETS = (PASSWORD, API_KEY, SECRET_KEY, OLD_KEY)
CHATLEDGER = Path(sys.executable).with_name("chatledger")


def assert_hidden(*shown: str | bytes) -> None:
    """No secret in any of ``shown``, as text or as bytes."""
    for text in shown:
        data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret[:6]}… shown"


def assert_error_hidden(error: BaseException) -> None:
    """Neither the error's str, its repr nor its formatted traceback (chain included) shows one."""
    assert_hidden(str(error), repr(error), "".join(traceback.format_exception(error)))


@pytest.fixture(autouse=True)
def secret_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with ``SECRET_KEY`` as the one key, unless it changes it."""
    monkeypatch.setenv(SECRET_KEY_VARIABLE, SECRET_KEY)
    return SECRET_KEY


def with_password(url: str) -> str:
    """``url`` with ``PASSWORD`` in its query, as libpq takes it (PostgreSQL here trusts)."""
    return urlunsplit(urlsplit(url)._replace(query=f"password={PASSWORD}"))


@pytest.fixture(params=SQL_BACKENDS)
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """Each SQL backend in turn, empty: an SQLite file, PostgreSQL, MariaDB."""
    if request.param == "sqlite":
        store: SqlStore = await SqliteStore.connect(tmp_path / "audit.db")
    else:
        url = request.getfixturevalue(
            f"{'postgres' if request.param == 'postgresql' else 'mysql'}_url"
        )
        opened = await chatledger.connect(url)
        assert isinstance(opened, SqlStore)
        store = opened
        await empty_tables(url)
    try:
        yield store
    finally:
        await store.close()


async def stored_api_keys(store: SqlStore) -> list[str]:
    """The ``api_key`` column as the database holds it, read past chatledger's decoding."""
    sql = store._dialect.sql("SELECT api_key FROM entity_provider ORDER BY provider_name")
    (rows,) = await store._db.read([Read(sql)])
    return [row[0] for row in rows]


async def write_plain_row(store: SqlStore, provider: Provider, api_key: str) -> None:
    """Store ``provider`` with ``api_key`` in plain text, as MoFA writes it."""
    row = list(store._rows.provider(provider.model_copy(update={"api_key": SecretStr("")})))
    row[PROVIDER.column_names.index("api_key")] = api_key
    await store._upsert(store._q.upsert_provider, row)


# --- the box ------------------------------------------------------------------------------


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    """Rotation's premise: an old key's token opens with "new,old"; new tokens use the new key."""
    old, both = SecretBox(OLD_KEY), SecretBox(f" {SECRET_KEY} , {OLD_KEY} ,")
    token = old.encrypt(API_KEY)
    assert token.startswith(ENCRYPTED_PREFIX)
    assert API_KEY not in token
    assert both.decrypt(token) == API_KEY
    assert not both.is_current(token)
    fresh = both.encrypt(API_KEY)
    assert both.is_current(fresh)
    assert SecretBox(SECRET_KEY).decrypt(fresh) == API_KEY
    assert old.decrypt(fresh) is None
    assert both.key_count == 2


def test_a_box_never_shows_its_keys() -> None:
    """The repr counts keys; a bad key is named by position, never quoted."""
    box = SecretBox([SECRET_KEY, OLD_KEY])
    assert repr(box) == "<SecretBox 2 keys>"
    assert_hidden(repr(box), str(box))
    not_a_key = f"{PASSWORD}-not-base64!"
    with pytest.raises(ValueError, match="key 2 of 2 is not a Fernet key") as caught:
        SecretBox(f"{SECRET_KEY},{not_a_key}")
    assert_error_hidden(caught.value)
    assert not_a_key not in "".join(traceback.format_exception(caught.value))
    with pytest.raises(ValueError, match="no key given"):
        SecretBox(" , ")


def test_the_variable_is_read_at_each_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset or blank: no box; a bad value: SerializationError naming the variable, not it."""
    assert isinstance(configured_box(), SecretBox)
    monkeypatch.setenv(SECRET_KEY_VARIABLE, "  ")
    assert configured_box() is None
    monkeypatch.delenv(SECRET_KEY_VARIABLE)
    assert configured_box() is None
    monkeypatch.setenv(SECRET_KEY_VARIABLE, PASSWORD)
    with pytest.raises(
        SerializationError, match=f"{SECRET_KEY_VARIABLE}: the key is not"
    ) as caught:
        configured_box()
    assert_error_hidden(caught.value)


def test_the_package_is_named_when_cryptography_is_missing() -> None:
    """Without cryptography, using a key says which pip install brings it."""
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from chatledger.stores.secret_box import SecretBox\n"
        "SecretBox('x')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "pip install cryptography" in done.stderr


# --- every backend: encrypted without a key set, equal with one --------------------------------


def made_key(path: Path) -> tuple[str, int] | None:
    """The key in chatledger's own key file and the file's permission bits; None if none."""
    if not path.exists():
        return None
    return path.read_text().strip(), path.stat().st_mode & 0o777


async def test_without_a_secret_key_chatledger_makes_its_own(
    any_store: PersistenceStore, monkeypatch: pytest.MonkeyPatch, secret_key_file: Path
) -> None:
    """No CHATLEDGER_SECRET_KEY: a key of chatledger's own, in a file its owner alone reads."""
    monkeypatch.delenv(SECRET_KEY_VARIABLE)
    assert made_key(secret_key_file) is None
    provider = make_provider(api_key=API_KEY)
    await any_store.save_provider(provider)
    assert await any_store.get_provider(provider.id) == provider
    made = made_key(secret_key_file)
    if isinstance(any_store, InMemoryStore):  # nothing at rest: no key needed
        assert made is None
        return
    assert made is not None
    own_key, mode = made
    assert mode == 0o600
    assert isinstance(any_store, SqlStore)
    (token,) = await stored_api_keys(any_store)
    assert SecretBox(own_key).decrypt(token) == API_KEY
    monkeypatch.setenv(SECRET_KEY_VARIABLE, own_key)
    assert await any_store.get_provider(provider.id) == provider  # the same key, set by hand
    assert own_key not in repr(any_store)


def test_a_key_file_that_cannot_be_made_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A key file under a file (not a directory): SerializationError naming the variable."""
    monkeypatch.delenv(SECRET_KEY_VARIABLE)
    (tmp_path / "plain").write_text("x")
    monkeypatch.setenv("CHATLEDGER_SECRET_KEY_FILE", str(tmp_path / "plain" / "secret.key"))
    for create in (False, True):
        with pytest.raises(SerializationError, match=f"plain/secret.key.*{SECRET_KEY_VARIABLE}"):
            configured_box(create=create)


async def test_an_empty_api_key_needs_no_secret_key(
    any_store: PersistenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty key hides nothing: stored and read back with no key configured."""
    monkeypatch.delenv(SECRET_KEY_VARIABLE)
    provider = make_provider(api_key="")
    await any_store.save_provider(provider)
    assert await any_store.get_provider(provider.id) == provider


async def test_a_rotation_lets_the_old_key_go(
    any_store: PersistenceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saved under the old key; "new,old" and a re-encryption; then the new key alone reads it."""
    monkeypatch.setenv(SECRET_KEY_VARIABLE, OLD_KEY)
    provider = make_provider(api_key=API_KEY)
    empty = make_provider(tenant_id=provider.tenant_id, name="keyless", api_key="")
    await any_store.save_provider(provider)
    await any_store.save_provider(empty)
    monkeypatch.setenv(SECRET_KEY_VARIABLE, f"{SECRET_KEY},{OLD_KEY}")
    at_rest = not isinstance(any_store, InMemoryStore)
    assert await reencrypt_api_keys(any_store) == (1 if at_rest else 0)
    assert await reencrypt_api_keys(any_store) == 0  # all current: nothing to rewrite
    monkeypatch.setenv(SECRET_KEY_VARIABLE, SECRET_KEY)
    assert await any_store.list_providers(provider.tenant_id) == [empty, provider]


# --- SQL backends: what the column holds ---------------------------------------------------


async def test_the_column_holds_a_token_never_the_key(sql_store: SqlStore) -> None:
    """``SELECT api_key`` gives ``fernet:v1:…``, which the key opens; the entity reads back."""
    provider = make_provider(api_key=API_KEY)
    await sql_store.save_provider(provider)
    (stored,) = await stored_api_keys(sql_store)
    assert stored.startswith(ENCRYPTED_PREFIX)
    assert_hidden(stored)
    assert SecretBox(SECRET_KEY).decrypt(stored) == API_KEY
    assert await sql_store.get_provider(provider.id) == provider
    agent = make_agent(provider)
    await sql_store.save_agent(agent)
    config = await sql_store.get_agent_with_provider(agent.id)
    assert config is not None
    assert config.provider.api_key.get_secret_value() == API_KEY


@pytest.mark.server
@pytest.mark.parametrize("kind", ["postgres", "mysql"])
async def test_the_server_column_holds_no_plain_key(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Read by another client (the driver, as MoFA would), the column holds only the token."""
    url = request.getfixturevalue(f"{kind}_url")
    provider = make_provider(api_key=API_KEY)
    async with await chatledger.connect(url) as store:
        await empty_tables(url)
        await store.save_provider(provider)
    rows = await execute(url, "SELECT api_key FROM entity_provider")
    (stored,) = [row[0] for row in rows]
    assert stored.startswith(ENCRYPTED_PREFIX)
    assert_hidden(stored)


def _file_bytes(directory: Path) -> list[bytes]:
    """The bytes of every file in ``directory``: the database, its WAL and shared memory."""
    return [path.read_bytes() for path in directory.iterdir()]


async def test_the_sqlite_file_holds_no_plain_key(tmp_path: Path) -> None:
    """No byte of the database file, its journal or its WAL holds the key, nor the secret key."""
    path = tmp_path / "ledger.db"
    provider = make_provider(api_key=API_KEY)
    async with await SqliteStore.connect(path) as store:
        await store.save_provider(provider)
        await store.save_agent(make_agent(provider))
        assert_hidden(*_file_bytes(tmp_path))
    assert_hidden(*_file_bytes(tmp_path))
    with sqlite3.connect(path) as plain:
        (stored,) = plain.execute("SELECT api_key FROM entity_provider").fetchone()
    plain.close()
    assert stored.startswith(ENCRYPTED_PREFIX)


async def test_plain_rows_read_back_and_a_rotation_encrypts_them(sql_store: SqlStore) -> None:
    """A key MoFA stored in plain text reads as it is; encrypt_plain=False keeps it plain."""
    provider = make_provider(api_key=API_KEY)
    await write_plain_row(sql_store, provider, API_KEY)
    assert await stored_api_keys(sql_store) == [API_KEY]
    assert await sql_store.get_provider(provider.id) == provider
    assert await reencrypt_api_keys(sql_store, encrypt_plain=False) == 0
    assert await stored_api_keys(sql_store) == [API_KEY]
    assert await reencrypt_api_keys(sql_store) == 1
    (stored,) = await stored_api_keys(sql_store)
    assert stored.startswith(ENCRYPTED_PREFIX)
    assert await sql_store.get_provider(provider.id) == provider


async def test_a_wrong_or_missing_key_is_named_never_shown(
    sql_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a token no configured key opens: SerializationError naming the variable; no token."""
    provider = make_provider(api_key=API_KEY)
    await sql_store.save_provider(provider)
    (token,) = await stored_api_keys(sql_store)
    monkeypatch.setenv(SECRET_KEY_VARIABLE, OLD_KEY)
    with pytest.raises(SerializationError, match=f"{SECRET_KEY_VARIABLE} does not hold") as wrong:
        await sql_store.get_provider(provider.id)
    monkeypatch.delenv(SECRET_KEY_VARIABLE)
    unset = f"neither {SECRET_KEY_VARIABLE} is set"
    with pytest.raises(SerializationError, match=unset) as missing:
        await sql_store.list_providers(provider.tenant_id)
    with pytest.raises(SerializationError, match="no key to encrypt"):
        await reencrypt_api_keys(sql_store)
    for error in (wrong.value, missing.value):
        assert_error_hidden(error)
        assert token.removeprefix(ENCRYPTED_PREFIX) not in "".join(
            traceback.format_exception(error)
        )
        assert str(provider.id) in str(error)


async def test_a_row_that_cannot_be_read_does_not_quote_its_key(sql_store: SqlStore) -> None:
    """A plain row pydantic refuses (an empty name): the error names the row, not the key."""
    provider = make_provider(api_key=API_KEY)
    await write_plain_row(sql_store, provider, API_KEY)
    await sql_store._write(
        Write(sql_store._dialect.sql("UPDATE entity_provider SET provider_name = ''"))
    )
    with pytest.raises(SerializationError, match="Provider cannot be read") as caught:
        await sql_store.get_provider(provider.id)
    assert_error_hidden(caught.value)


# --- the audit ------------------------------------------------------------------------------


def test_no_entity_shows_the_api_key() -> None:
    """Provider and AgentConfig: repr, str, format, JSON and a validation error all hide the key."""
    provider = make_provider(api_key=API_KEY)
    config = AgentConfig(provider=provider, agent=make_agent(provider))
    for entity in (provider, config):
        assert_hidden(
            repr(entity),
            str(entity),
            f"{entity!r} {entity}",
            entity.model_dump_json(),
            repr(entity.model_dump()),
            str(entity.model_dump(mode="json")),
        )
    with pytest.raises(ValidationError) as caught:
        Provider.model_validate({**provider.model_dump(), "api_key": API_KEY, "enabled": "maybe"})
    assert_error_hidden(caught.value)
    with pytest.raises(ValidationError) as caught:
        AgentConfig.model_validate({"provider": {"api_key": API_KEY}, "agent": {}})
    assert_error_hidden(caught.value)


async def test_a_refused_write_never_shows_the_api_key(any_store: PersistenceStore) -> None:
    """A provider's name taken (ConstraintError), a NUL in its key: no key in either error."""
    provider = make_provider(api_key=API_KEY)
    await any_store.save_provider(provider)
    clash = make_provider(tenant_id=provider.tenant_id, api_key=API_KEY)
    with pytest.raises(ConstraintError) as refused:
        await any_store.save_provider(clash)
    assert_error_hidden(refused.value)
    with pytest.raises(SerializationError) as bad:
        await any_store.save_provider(make_provider(api_key=f"{API_KEY}\x00"))
    assert_error_hidden(bad.value)
    assert_hidden(repr(any_store), str(any_store))


@pytest.mark.server
async def test_a_store_on_a_password_url_never_shows_it(postgres_url: str) -> None:
    """The store's repr and a refused connection's error hide the URL's password."""
    async with await chatledger.connect(with_password(postgres_url)) as store:
        assert_hidden(repr(store), str(store))
    refused = urlunsplit(urlsplit(with_password(postgres_url))._replace(netloc="u@127.0.0.1:1"))
    with pytest.raises(PersistenceError) as caught:
        await chatledger.connect(refused)
    assert_error_hidden(caught.value)


@pytest.mark.server
def test_the_sync_facade_never_shows_a_secret(postgres_url: str) -> None:
    """``chatledger.sync.connect`` on a password URL: its repr, and a provider saved and read."""
    with sync.connect(with_password(postgres_url)) as store:
        provider = make_provider(api_key=API_KEY)
        store.save_provider(provider)
        found = store.get_provider(provider.id)
        assert found == provider
        assert_hidden(repr(store), str(store), repr(store.store), repr(found))
        store.delete_provider(provider.id)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.server)]
)
async def test_no_log_record_shows_a_secret(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every record at DEBUG of a demo run, provider saves and reads, errors and a rotation."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/logged.db"
    else:
        url = with_password(request.getfixturevalue("postgres_url"))
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(SECRET_KEY_VARIABLE, f"{SECRET_KEY},{OLD_KEY}")
    await run_quiet_demo(url)
    async with await chatledger.connect(url) as store:
        provider = make_provider(api_key=API_KEY)
        await store.save_provider(provider)
        await store.save_agent(agent := make_agent(provider))
        assert await store.get_agent_by_code_with_provider(agent.agent_code) is not None
        with pytest.raises(ConstraintError):
            await store.save_provider(make_provider(tenant_id=provider.tenant_id, api_key=API_KEY))
        await reencrypt_api_keys(store, SecretBox([OLD_KEY, SECRET_KEY]))
        monkeypatch.setenv(SECRET_KEY_VARIABLE, SECRET_KEY)
        with pytest.raises(SerializationError):
            await store.get_provider(provider.id)
        await store.delete_provider(provider.id)
    assert caplog.records  # the run logged something, so the check below checks something
    for record in caplog.records:
        assert_hidden(record.getMessage(), repr(record.args), record.exc_text or "")
    assert_hidden(caplog.text)


# --- the command line, its exports and the dashboard ------------------------------------------


@dataclass(frozen=True)
class Audited:
    """A database holding the demo's records and a provider with ``API_KEY``."""

    url: str
    session_id: uuid.UUID


async def _fill(url: str) -> Audited:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_KEY_VARIABLE, SECRET_KEY)
        await run_quiet_demo(url)
        async with await chatledger.connect(url) as store:
            provider = make_provider(api_key=API_KEY)
            await store.save_provider(provider)
            await store.save_agent(make_agent(provider))
            sessions = await store.list_sessions(QueryFilter(limit=1))
    return Audited(url, sessions[0].id)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)]
)
def audited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Audited:
    """The demo and a provider, on SQLite and on PostgreSQL (reached with a password in its URL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('audit')}/audit.db"
    else:
        url = with_password(request.getfixturevalue("postgres_url"))
    return asyncio.run(_fill(url))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "CHATLEDGER_DATABASE_URL"}
    environment.update(NO_COLOR="1", COLUMNS="200", **{SECRET_KEY_VARIABLE: SECRET_KEY})
    return subprocess.run(
        [str(CHATLEDGER), *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_no_command_shows_a_secret(audited: Audited, tmp_path: Path) -> None:
    """Each command's stdout and stderr, and each export file, the key set in the environment."""
    db = ["--db", audited.url]
    session = str(audited.session_id)
    commands = [
        ["db", "status"],
        ["db", "status", "--json"],
        ["db", "upgrade"],
        ["db", "rebuild-rollups"],
        ["sessions"],
        ["sessions", "--json"],
        ["show", "latest"],
        ["show", session, "--json"],
        ["stats"],
        ["stats", "--by", "model,agent", "--json"],
        ["calls"],
        ["calls", "--json"],
        ["export", "sessions", "-o", "sessions.jsonl"],
        ["export", "messages", "--format", "csv", "-o", "messages.csv"],
        ["export", "api-calls", "-o", "calls.jsonl"],
        ["export", "api-calls", "--format", "csv", "-o", "-"],
        ["prune", "--before", "36500d", "--dry-run"],
        ["spool", "status"],
        ["demo"],
    ]
    for command in commands:
        done = _cli(*command, *db, cwd=tmp_path)
        assert done.returncode == 0, (command, done.stderr)
        assert_hidden(done.stdout, done.stderr)
    exported = sorted(tmp_path.iterdir())
    assert [p.name for p in exported] == ["calls.jsonl", "messages.csv", "sessions.jsonl"]
    for path in exported:
        assert path.stat().st_size > 0
        assert_hidden(path.read_bytes())


@pytest.mark.server
def test_a_refused_command_never_shows_the_password(tmp_path: Path) -> None:
    """Commands on a refused port, and an import from one: one line naming the host, no password."""
    refused = f"postgresql://u@127.0.0.1:1/x?password={PASSWORD}"
    for command in (
        ["sessions", "--db", refused],
        ["export", "api-calls", "--db", refused, "-o", "out.jsonl"],
        ["import", "langchain-sql", refused, "--db", f"sqlite:///{tmp_path}/into.db"],
    ):
        done = _cli(*command, cwd=tmp_path)
        assert done.returncode != 0, command
        assert "Traceback" not in done.stderr
        assert_hidden(done.stdout, done.stderr)


async def test_no_dashboard_page_shows_a_secret(audited: Audited) -> None:
    """Every page, its JSON and CSV twins, a 404 and a 400: neither body nor headers show one."""
    async with await chatledger.connect(audited.url) as store:
        app = create_app(store, database_url=audited.url)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            call = (await store.query_api_calls(QueryFilter(limit=1)))[0]
            paths = [
                "/",
                "/?range=all",
                "/calls",
                "/calls?sort=cost_desc",
                f"/calls/{call.id}",
                "/calls/export",
                "/sessions",
                f"/sessions/{audited.session_id}",
                "/sessions?q=Lisbon",
                "/live",
                "/live/feed",
                f"/calls/{uuid.uuid4()}",
                "/calls?since=not-a-time",
            ]
            statuses = set()
            for path in paths:
                response = await client.get(path)
                statuses.add(response.status_code)
                assert_hidden(response.text, str(response.headers))
    assert statuses == {200, 400, 404}
