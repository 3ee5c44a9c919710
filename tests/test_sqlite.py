"""What is specific to the SQLite backend: files, pragmas, URLs, migrations, locking."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import to_json

from chatledger import (
    CallSort,
    ChatSession,
    ConstraintError,
    LLMApiCall,
    LLMMessage,
    QueryFilter,
    RecordKind,
    SerializationError,
    SessionQuery,
    StoreConnectionError,
    TokenDetails,
    connect,
)
from chatledger.stores.paging import CALL_SORTS, Cursor
from chatledger.stores.queries import call_page, session_search, usage_statements
from chatledger.stores.schema import MIGRATIONS, SCHEMA_VERSION_TABLE
from chatledger.stores.sql import Read, Write, schema_version
from chatledger.stores.sqlite import SqliteDialect, SqliteStore, _open_database
from chatledger.testing import BASE_TIME, make_api_call, make_message, make_session


def _pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


async def test_file_database_uses_wal(tmp_path: Path) -> None:
    """A file database is switched to WAL so reads run beside a commit."""
    async with await SqliteStore.connect(f"sqlite:///{tmp_path}/a.db"):
        assert _pragma(tmp_path / "a.db", "journal_mode") == "wal"


@pytest.mark.parametrize(
    ("url", "expected"),
    [("sqlite:///{dir}/a.db", "full"), ("sqlite:///{dir}/a.db?synchronous=normal", "normal")],
)
async def test_synchronous_setting(tmp_path: Path, url: str, expected: str) -> None:
    """Commits are durable (FULL) unless the URL asks for NORMAL."""
    store = await SqliteStore.connect(url.format(dir=tmp_path))
    try:
        value = await store._db.read([Read("PRAGMA synchronous")])
        assert value[0][0][0] == {"full": 2, "normal": 1}[expected]
    finally:
        await store.close()


async def test_bad_synchronous_is_refused(tmp_path: Path) -> None:
    """An unknown synchronous level is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="synchronous"):
        await SqliteStore.connect(f"sqlite:///{tmp_path}/a.db?synchronous=sometimes")


async def test_missing_folder_is_a_connection_error(tmp_path: Path) -> None:
    """A path in a folder that does not exist says which folder."""
    with pytest.raises(StoreConnectionError, match="does not exist"):
        await SqliteStore.connect(f"sqlite:///{tmp_path}/nope/a.db")


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    """Opening a file that is not SQLite raises StoreConnectionError, not sqlite3's error."""
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(StoreConnectionError):
        await SqliteStore.connect(bogus)


async def test_relative_and_absolute_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three slashes are relative to the working directory, four are absolute."""
    monkeypatch.chdir(tmp_path)
    async with await SqliteStore.connect("sqlite:///rel.db") as store:
        assert store.path == "rel.db"
    assert (tmp_path / "rel.db").exists()
    async with await SqliteStore.connect(f"sqlite:///{tmp_path}/abs.db") as store:
        assert store.path == f"{tmp_path}/abs.db"


async def test_data_survives_reopening(tmp_path: Path) -> None:
    """What one store committed, a new store on the same file reads back."""
    url = f"sqlite:///{tmp_path}/a.db"
    session = make_session()
    message = make_message(session)
    async with await SqliteStore.connect(url) as store:
        await store.create_session(session)
        await store.save_message(message)
    async with await SqliteStore.connect(url) as store:
        assert await store.get_message(message.id) == message


async def test_two_stores_on_one_file_never_see_locked(tmp_path: Path) -> None:
    """Two stores (two writer threads) on one file, 40 writers each: nothing is lost."""
    url = f"sqlite:///{tmp_path}/a.db"
    first, second = await SqliteStore.connect(url), await SqliteStore.connect(url)
    try:
        session = make_session()
        await first.create_session(session)
        messages = [make_message(session, text=f"m{i}") for i in range(80)]
        await asyncio.gather(
            *(
                (first if i % 2 else second).save_message(message)
                for i, message in enumerate(messages)
            )
        )
        assert await first.count_session_messages(session.id) == 80
    finally:
        await first.close()
        await second.close()


async def test_failed_write_in_a_group_does_not_undo_the_others(tmp_path: Path) -> None:
    """Group commit: a write that fails is rolled back alone; its neighbours commit."""
    async with await SqliteStore.connect(f"sqlite:///{tmp_path}/a.db") as store:
        session = make_session()
        await store.create_session(session)
        good = [make_message(session, text=f"ok{i}") for i in range(30)]
        orphan = make_message(make_session())  # its session was never created
        results = await asyncio.gather(
            *(store.save_message(m) for m in [*good[:15], orphan, *good[15:]]),
            return_exceptions=True,
        )
        assert [type(r) for r in results].count(ConstraintError) == 1
        assert [m.id for m in await store.get_session_messages(session.id)] == [m.id for m in good]


async def test_close_stops_every_thread(tmp_path: Path) -> None:
    """close() leaves none of the store's threads behind (others' threads may live on)."""
    before = set(threading.enumerate())
    store = await SqliteStore.connect(f"sqlite:///{tmp_path}/a.db")
    await store.get_session(make_session().id)
    started = [t for t in set(threading.enumerate()) - before if t.name.startswith("chatledger")]
    assert started  # the writer and readers, so the check below checks something
    await store.close()
    assert not [t for t in started if t.is_alive()]


async def _create_version_1(path: Path) -> None:
    """A database as the first schema version left it, with no later migration."""
    database = _open_database(str(path), "full", 5.0)
    dialect = database.dialect
    try:
        await database.write(
            [
                Write(dialect.version_table(SCHEMA_VERSION_TABLE)),
                *(Write(sql) for sql in MIGRATIONS[0].statements(dialect)),
                Write(
                    f"INSERT INTO {SCHEMA_VERSION_TABLE} VALUES (1, 'v1', "
                    "'2026-01-01T00:00:00.000000+00:00')"
                ),
            ]
        )
    finally:
        await database.close()


async def test_upgrade_from_the_first_version_keeps_every_row(tmp_path: Path) -> None:
    """A version-1 database with rows is upgraded in place; rows and token subsets survive."""
    path = tmp_path / "old.db"
    await _create_version_1(path)
    session = make_session()
    message = make_message(session)
    call = make_api_call(session, prompt_tokens=100, completion_tokens=50).with_token_details(
        TokenDetails(cached_tokens=40), TokenDetails(reasoning_tokens=20)
    )
    with sqlite3.connect(path) as conn:  # rows written the way version 1 stored them
        conn.execute(
            "INSERT INTO entity_chat_session VALUES (?,?,?,?,?,?,?,?)",
            (
                str(session.id),
                str(session.user_id),
                str(session.agent_id),
                str(session.tenant_id),
                None,
                "{}",
                session.create_time.isoformat(),
                session.update_time.isoformat(),
            ),
        )
        conn.execute(
            "INSERT INTO entity_llm_message VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                str(message.id),
                None,
                str(session.id),
                str(message.agent_id),
                str(message.user_id),
                str(message.tenant_id),
                "user",
                message.content.model_dump_json(),
                message.create_time.isoformat(timespec="microseconds"),
                message.update_time.isoformat(timespec="microseconds"),
            ),
        )
        row = json.loads(call.model_dump_json())
        columns = [
            "id", "chat_session_id", "agent_id", "user_id", "tenant_id", "request_message_id",
            "response_message_id", "model_name", "status", "prompt_tokens", "completion_tokens",
            "total_tokens", "prompt_tokens_details", "completion_tokens_details", "latency_ms",
            "create_time", "update_time",
        ]  # fmt: skip
        values = [json.dumps(row[c]) if c.endswith("_details") else row.get(c) for c in columns]
        values[-2:] = [
            call.create_time.isoformat(timespec="microseconds"),
            call.update_time.isoformat(timespec="microseconds"),
        ]
        conn.execute(
            f"INSERT INTO entity_llm_api_call ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})",
            values,
        )
    async with await SqliteStore.connect(path) as store:
        assert await schema_version(store._db) == MIGRATIONS[-1].version
        assert await store.get_message(message.id) == message
        assert await store.get_api_call(call.id) == call
        stats = await store.get_statistics(QueryFilter())
        assert (stats.total_cached_tokens, stats.total_reasoning_tokens) == (40, 20)
    async with await SqliteStore.connect(path) as store:  # running migrations again: a no-op
        assert await schema_version(store._db) == MIGRATIONS[-1].version
        assert await store.count_session_messages(session.id) == 1


async def test_connect_picks_sqlite_from_the_url(tmp_path: Path) -> None:
    """chatledger.connect hands sqlite:// URLs to SqliteStore."""
    store = await connect(f"sqlite:///{tmp_path}/a.db")
    try:
        assert store.backend_name == "sqlite"
        assert isinstance(store, SqliteStore)
    finally:
        await store.close()


async def test_planner_statistics_are_refreshed_as_rows_arrive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes that could double the API-call table refresh SQLite's planner statistics."""
    monkeypatch.setattr("chatledger.stores.sqlite._ANALYZE_MIN_ROWS", 20)
    path = tmp_path / "a.db"

    def described() -> int | None:
        with sqlite3.connect(path) as conn:
            row = conn.execute(
                "SELECT stat FROM sqlite_stat1 WHERE idx = 'idx_api_call_status'"
            ).fetchone()
        return None if row is None else int(row[0].split()[0])

    async with await SqliteStore.connect(path) as store:
        await store.save_api_calls([make_api_call() for _ in range(25)])
        assert described() == 25
        await store.save_api_calls([make_api_call() for _ in range(10)])
        assert described() == 25  # 35 rows: not yet twice what was described
        await store.save_api_calls([make_api_call() for _ in range(20)])
        assert described() == 55


async def test_readers_plan_with_refreshed_statistics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the writer's ANALYZE, reader connections plan with the new statistics.

    SQLite connections keep the statistics they loaded. Every call here has the
    same model, so once statistics say so a model filter scans the table
    instead of walking the model index; readers must see that too.
    """
    monkeypatch.setattr("chatledger.stores.sqlite._ANALYZE_MIN_ROWS", 10**9)
    calls = [make_api_call() for _ in range(2000)]
    plan = Read(
        "EXPLAIN QUERY PLAN SELECT SUM(prompt_tokens) FROM entity_llm_api_call "
        "WHERE model_name = ?",
        (calls[0].model_name,),
    )
    async with await SqliteStore.connect(tmp_path / "a.db") as store:
        await store.save_api_calls(calls)
        for _ in range(4):  # every reader has loaded the schema, with no statistics
            (before,) = await store._db.read([plan])
            assert "idx_api_call_model" in str(before)
        monkeypatch.setattr("chatledger.stores.sqlite._ANALYZE_MIN_ROWS", 1)
        await store.save_api_call(make_api_call())  # the writer analyzes now
        for _ in range(4):
            (after,) = await store._db.read([plan])
            assert "idx_api_call_model" not in str(after)


async def test_stale_statistics_are_refreshed_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table loaded behind the store's back gets statistics when a store opens it."""
    monkeypatch.setattr("chatledger.stores.sqlite._ANALYZE_MIN_ROWS", 10**9)
    path = tmp_path / "a.db"
    async with await SqliteStore.connect(path) as store:
        await store.save_api_calls([make_api_call() for _ in range(30)])
    with sqlite3.connect(path) as conn:
        assert not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'"
        ).fetchone()
    monkeypatch.setattr("chatledger.stores.sqlite._ANALYZE_MIN_ROWS", 20)
    async with await SqliteStore.connect(path):
        pass
    with sqlite3.connect(path) as conn:
        (stat,) = conn.execute(
            "SELECT stat FROM sqlite_stat1 WHERE idx = 'idx_api_call_status'"
        ).fetchone()
    assert int(stat.split()[0]) == 30


async def test_percentiles_use_the_latency_index_only_when_unfiltered(tmp_path: Path) -> None:
    """Unfiltered, the latency histogram walks its index; filtered, it must not.

    Walking the latency index under a filter fetches every call to test it
    (seconds at a million calls), so the plan is pinned here.
    """
    path = tmp_path / "a.db"
    async with await SqliteStore.connect(path):
        pass
    dialect = SqliteDialect()
    with sqlite3.connect(path) as conn:

        def plan(where: str, params: tuple[object, ...]) -> str:
            percentiles = usage_statements(dialect, where, (), None)[1]  # latency_ms
            return str(conn.execute(f"EXPLAIN QUERY PLAN {percentiles}", params).fetchall())

        assert "idx_api_call_latency_order" in plan("", ())
        assert "idx_api_call_latency_order" not in plan(" WHERE create_time >= ?", ("2026",))
        assert "idx_api_call_latency_order" not in plan(" WHERE model_name = ?", ("gpt-4o",))


async def test_dashboard_pages_walk_their_indexes(tmp_path: Path) -> None:
    """Each page of calls walks the index of its order, and a session search its age index.

    A page that sorts instead reads every matching call (0.3 s a page at a
    million calls); one that walks the price index for failed calls, which
    have no price, reads all of it.
    """
    path = tmp_path / "a.db"
    async with await SqliteStore.connect(path):
        pass
    dialect = SqliteDialect()
    moment, ident = datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=1)
    with sqlite3.connect(path) as conn:

        def plan(sql: str, params: Sequence[object]) -> str:
            return str(conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())

        for sort, index in (
            (CallSort.COST_DESC, "idx_api_call_price"),
            (CallSort.COST_ASC, "idx_api_call_price"),
            (CallSort.TOKENS_DESC, "idx_api_call_tokens"),
            (CallSort.LATENCY_ASC, "idx_api_call_latency_order"),
        ):
            value = Decimal(1) if sort in (CallSort.COST_DESC, CallSort.COST_ASC) else 1
            for cursor in (None, Cursor(value, moment, ident)):
                shown = plan(
                    *call_page(
                        dialect,
                        QueryFilter(),
                        CALL_SORTS[sort],
                        valued=True,
                        after=cursor,
                        limit=51,
                    )
                )
                assert index in shown, (sort, shown)
                assert "TEMP B-TREE" not in shown, (sort, shown)
        failed = QueryFilter().with_error_code("server_error")
        shown = plan(
            *call_page(
                dialect, failed, CALL_SORTS[CallSort.COST_DESC], valued=True, after=None, limit=51
            )
        )
        assert "idx_api_call_price" not in shown
        assert "idx_api_call_error_code" in shown
        for query in (SessionQuery(), SessionQuery(text="report")):
            shown = plan(*session_search(dialect, query, None, 51))
            assert "idx_chat_session_create_time" in shown
            assert "TEMP B-TREE" not in shown


def test_time_text_is_reshaped_exactly_as_pydantic_writes_the_time() -> None:
    """The export's shortcut for stored time text gives the entity's JSON time, in every form.

    chatledger writes ``…00.000000+00:00``; MoFA writes ``…00Z`` (whole
    seconds) or ``…00.000000Z``; anything else takes the parse. Whole seconds
    lose their fraction in pydantic's JSON, other microseconds keep six digits.
    """
    rng = random.Random(7)
    moments = [
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 670_000, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        *(
            datetime(2025, 1, 1, tzinfo=UTC)
            + timedelta(
                seconds=rng.randint(0, 10**8), microseconds=rng.choice([0, rng.randint(0, 999_999)])
            )
            for _ in range(500)
        ),
    ]
    dialect = SqliteDialect()
    for moment in moments:
        expected = to_json(moment).decode().strip('"')
        micro = moment.isoformat(timespec="microseconds")
        forms = [
            micro,  # as chatledger writes it
            micro.replace("+00:00", "Z"),  # MoFA, with microseconds
            moment.isoformat(timespec="seconds").replace("+00:00", "Z"),  # MoFA, whole seconds
            moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            moment.isoformat(),  # no fraction when it is zero
            moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
            micro.replace("T", " "),
        ]
        for text in forms:
            exact = datetime.fromisoformat(text).astimezone(UTC)
            assert dialect.record_time(text) == to_json(exact).decode().strip('"'), text
        assert dialect.record_time(micro) == expected


def _assert_exports_as(record: dict[str, Any], entity: BaseModel) -> None:
    assert record == entity.model_dump(mode="json")
    assert list(record) == list(entity.model_dump(mode="json"))
    assert to_json(record) == entity.model_dump_json().encode()


def _insert(conn: sqlite3.Connection, table: str, rows: Sequence[dict[str, Any]]) -> None:
    for row in rows:
        conn.execute(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )


async def test_rows_written_mofa_style_export_as_their_entities(tmp_path: Path) -> None:
    """Rows another writer left (``Z`` times, whole seconds, nulls and omissions in JSON,
    an upper-case id) export exactly as the entities chatledger reads from them dump."""
    path = tmp_path / "mofa.db"
    async with await SqliteStore.connect(path):
        pass  # the schema
    ids = [str(uuid.uuid4()) for _ in range(12)]
    session, user, agent, tenant = ids[:4]
    messages = ids[4:8]
    with sqlite3.connect(path) as conn:
        _insert(
            conn,
            "entity_chat_session",
            [
                {
                    "id": session, "user_id": user, "agent_id": agent, "tenant_id": tenant,
                    "title": None, "metadata": None, "create_time": "2025-03-14T09:26:53Z",
                    "update_time": "2025-03-14T09:26:57Z",
                },
                {
                    "id": ids[8].upper(), "user_id": user, "agent_id": agent, "tenant_id": tenant,
                    "title": "From MoFA", "metadata": '{"channel": "cli", "n": 1}',
                    "create_time": "2025-03-14T09:26:53.670Z",
                    "update_time": "2025-03-14T11:26:53.000000+02:00",
                },
            ],
        )  # fmt: skip
        contents = [
            '{"text": "You are a weather bot.", "tool_calls": null, "tool_result": null}',
            '{"tool_calls": [{"arguments": {"city": "Paris"}, "name": "get_weather", '
            '"id": "call_1"}]}',
            '{"tool_result": {"content": "18°C", "tool_call_id": "call_1"}}',
            '{"lang": "fr", "text": "Il fait 18°C."}',
        ]
        _insert(
            conn,
            "entity_llm_message",
            [
                {
                    "id": message, "parent_message_id": None if i == 0 else messages[i - 1],
                    "chat_session_id": session, "agent_id": agent, "user_id": user,
                    "tenant_id": tenant, "role": ["system", "assistant", "tool", "assistant"][i],
                    "content": content, "create_time": f"2025-03-14T09:26:5{i}Z",
                    "update_time": f"2025-03-14T09:26:5{i}.000000Z",
                }
                for i, (message, content) in enumerate(zip(messages, contents, strict=True))
            ],
        )  # fmt: skip
        call = {
            "chat_session_id": session, "agent_id": agent, "user_id": user, "tenant_id": tenant,
            "request_message_id": messages[0], "response_message_id": messages[1],
            "model_name": "gpt-4o", "status": "success", "prompt_tokens": 120,
            "completion_tokens": 30, "total_tokens": 150, "create_time": "2025-03-14T09:26:54Z",
            "update_time": "2025-03-14T09:26:55.250000Z",
        }  # fmt: skip
        _insert(
            conn,
            "entity_llm_api_call",
            [
                {
                    **call, "id": ids[9],
                    "prompt_tokens_details": '{"reasoning_tokens": null, "cached_tokens": 100}',
                    "completion_tokens_details": '{"reasoning_tokens": 10}',
                    "total_price": 0.0012345678,
                    "price_details": '{"output_price": 0.0003345678, "input_price": 1}',
                    "latency_ms": 850, "time_to_first_token_ms": 210, "tokens_per_second": 35.29,
                    "api_response_id": "chatcmpl-abc",
                },
                {
                    **call, "id": ids[10], "status": "rate_limited",
                    "error_message": "Rate limit reached", "error_code": "429",
                    "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0,
                    "response_message_id": "00000000-0000-0000-0000-000000000000",
                    "prompt_tokens_details": "null",
                    "price_details": '{"currency": "EUR", "tier": "batch"}',
                },
            ],
        )  # fmt: skip
    async with await SqliteStore.connect(path) as store:
        # read back by listing: the upper-case id cannot be looked up by its value
        entities: dict[RecordKind, list[ChatSession | LLMMessage | LLMApiCall]] = {
            "sessions": list(await store.list_sessions(QueryFilter())),
            "messages": list(await store.get_session_messages(uuid.UUID(session))),
            "api_calls": list(await store.query_api_calls(QueryFilter())),
        }
        for kind, expected in entities.items():
            chunks = [chunk async for chunk in store.export_records(kind, QueryFilter())]
            records = {record["id"]: record for chunk in chunks for record in chunk}
            assert len(records) == len(expected) > 1, kind
            for entity in expected:
                _assert_exports_as(records[str(entity.id)], entity)


async def test_export_chunk_queries_walk_the_primary_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each export chunk walks the id index and sorts nothing, whatever the filter.

    With a filter index in reach, SQLite would read and sort every match again
    for each chunk (46 s for 288,000 of a million calls, 0.8 s by the id).
    """
    path = tmp_path / "plan.db"
    store = await SqliteStore.connect(path)
    user, session = uuid.uuid4(), make_session()
    await store.create_session(session)
    await store.save_messages([make_message(session, f"{i}") for i in range(40)])
    await store.save_api_calls(
        [
            make_api_call(
                session if i % 2 else None,
                user_id=user if i % 3 else uuid.uuid4(),
                create_time=BASE_TIME + timedelta(minutes=i),
            )
            for i in range(300)
        ]
    )
    reads: list[Read] = []
    read = store._db.read

    async def spy(batch: Sequence[Read]) -> list[list[Any]]:
        reads.extend(batch)
        return await read(batch)

    monkeypatch.setattr(store._db, "read", spy)
    hour = QueryFilter().time_range(BASE_TIME, BASE_TIME + timedelta(hours=1))
    exports: list[tuple[RecordKind, QueryFilter]] = [
        ("api_calls", QueryFilter()),
        ("api_calls", QueryFilter().user(user)),
        ("api_calls", hour),
        ("api_calls", QueryFilter().with_status("success").model("gpt-4o").session(session.id)),
        ("messages", QueryFilter().session(session.id).tenant(session.tenant_id)),
        ("messages", hour),
        ("sessions", QueryFilter().user(session.user_id).time_range(BASE_TIME, None)),
    ]
    for kind, query in exports:
        async for _ in store.export_records(kind, query, chunk_size=25):
            pass
    await store.close()
    assert len(reads) > 20
    with sqlite3.connect(path) as conn:
        conn.execute("ANALYZE")

        def plan(sql: str, params: Sequence[Any]) -> str:
            return " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))

        for chunk in reads:
            steps = plan(chunk.sql, chunk.params)
            assert "USING INDEX sqlite_autoindex_" in steps, steps
            assert "TEMP B-TREE" not in steps, steps
        by_user = next(r for r in reads if "+user_id" in r.sql)
        # the control: the same chunk, its filter index allowed, sorts
        assert "TEMP B-TREE" in plan(by_user.sql.replace("+user_id", "user_id"), by_user.params)


async def test_a_row_that_cannot_be_exported_is_named(tmp_path: Path) -> None:
    """A row whose JSON or time is unreadable stops the export with SerializationError naming it."""
    path = tmp_path / "bad.db"
    async with await SqliteStore.connect(path) as store:
        session = make_session()
        await store.create_session(session)
        good, bad = make_message(session), make_message(session)
        await store.save_messages([good, bad])
    for column, value in (("content", "{not json"), ("create_time", "yesterday")):
        with sqlite3.connect(path) as conn:
            conn.execute(
                f"UPDATE entity_llm_message SET {column} = ? WHERE id = ?", (value, str(bad.id))
            )
        async with await SqliteStore.connect(path) as store:
            with pytest.raises(SerializationError, match=str(bad.id)):
                async for _ in store.export_records("messages", QueryFilter()):
                    pass
            assert await store.count_records("messages", QueryFilter()) == 2
        with sqlite3.connect(path) as conn:  # mend it for the next column
            conn.execute(
                "UPDATE entity_llm_message SET content = ?, create_time = ? WHERE id = ?",
                (bad.content.model_dump_json(), bad.create_time.isoformat(), str(bad.id)),
            )
