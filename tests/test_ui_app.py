"""The dashboard's pages over HTTP (httpx on the ASGI app): what they show, and what they refuse.

The store holds chatledger's own demo plus a week of history (``ui_data``),
once on SQLite and once copied into the in-memory store: every view renders
on both. Then the safety rules: escaping, the Content-Security-Policy and no
inline script, the token, loopback-only hosts, read-only, CSRF, bad input as
a 400 page, and no password shown.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from chatledger import (
    ChatSession,
    LLMApiCall,
    LLMMessage,
    QueryFilter,
    UsageBucket,
    UsageStatistics,
    connect,
    utc_now,
    uuid7,
)
from chatledger.cli import main as cli_main
from chatledger.cli.demo import run_demo
from chatledger.cli.export import _FIELDS
from chatledger.errors import QueryError
from chatledger.stores.base import Breakdown, PersistenceStore
from chatledger.stores.memory import InMemoryStore
from chatledger.ui import create_app
from chatledger.ui.params import overview_range
from chatledger.ui.security import CONTENT_SECURITY_POLICY
from ui_data import (
    HISTORY_SESSIONS,
    SCRIPT,
    SCRIPT_TITLE,
    History,
    add_history,
    run_quiet_demo,
)

BASE = "http://127.0.0.1"


# --- the data and the app ---------------------------------------------------------------


@dataclass(frozen=True)
class Demo:
    """The demo database on disk and what the history added to it."""

    url: str
    history: History


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """An SQLite file holding ``chatledger demo``'s run and a week of history."""
    url = f"sqlite:///{tmp_path_factory.mktemp('ui')}/demo.db"

    async def fill() -> History:
        await run_quiet_demo(url)
        async with await connect(url) as store:
            return await add_history(store, utc_now())

    return Demo(url, asyncio.run(fill()))


async def _copy_into_memory(url: str) -> InMemoryStore:
    """The in-memory store holding every record of the database at ``url``."""
    everything = QueryFilter()
    async with await connect(url) as source:
        sessions = [
            ChatSession.model_validate(record)
            async for chunk in source.export_records("sessions", everything)
            for record in chunk
        ]
        messages = [
            LLMMessage.model_validate(record)
            async for chunk in source.export_records("messages", everything)
            for record in chunk
        ]
        calls = [
            LLMApiCall.model_validate(record)
            async for chunk in source.export_records("api_calls", everything)
            for record in chunk
        ]
    store = InMemoryStore()
    await store.ingest_records(sessions, messages, calls)
    return store


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, demo: Demo) -> AsyncIterator[PersistenceStore]:
    """The demo data on SQLite, and the same records in the in-memory store."""
    opened = (
        await connect(demo.url) if request.param == "sqlite" else await _copy_into_memory(demo.url)
    )
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def sqlite_store(demo: Demo) -> AsyncIterator[PersistenceStore]:
    """The demo data on SQLite only, for the tests that are about the app, not the store."""
    async with await connect(demo.url) as opened:
        yield opened


def _client(store: PersistenceStore, **options: object) -> httpx.AsyncClient:
    app = create_app(store, **options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture
async def client(store: PersistenceStore) -> AsyncIterator[httpx.AsyncClient]:
    """The read-only dashboard over ``store``."""
    async with _client(store) as opened:
        yield opened


# --- reading pages ------------------------------------------------------------------------


class Page(HTMLParser):
    """The elements of a page, each as (tag, attributes), and its visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.text_parts: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        (self.scripts if self._in_script else self.text_parts).append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def links(self, pattern: str = "") -> list[str]:
        """The ``href`` of every link whose address matches ``pattern``."""
        found = [attrs.get("href") or "" for tag, attrs in self.elements if tag == "a"]
        return [href for href in found if re.search(pattern, href)]

    def rel_next(self) -> str | None:
        """The address of the ``rel="next"`` link, if any."""
        for tag, attrs in self.elements:
            if tag == "a" and attrs.get("rel") == "next":
                return attrs.get("href")
        return None


def _ids(html: str, kind: str) -> list[str]:
    """The ids of the calls or sessions a page links to, in order, without repeats."""
    return list(dict.fromkeys(re.findall(rf'href="/{kind}/([0-9a-f-]{{36}})"', html)))


def _call_rows(html: str) -> list[list[str]]:
    """The cells (as text) of each row of the calls table."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        rows.append([" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells])
    return rows


def _money(text: str) -> Decimal | None:
    return None if text == "\u2013" else Decimal(text.lstrip("$").replace(",", ""))


# --- every view renders -------------------------------------------------------------------


async def test_every_view_renders_on_the_demo(
    client: httpx.AsyncClient, store: PersistenceStore
) -> None:
    """Overview (each range), calls (each order), a call, sessions, each session, live: all 200."""
    await _every_view_renders(client, store)


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
async def test_every_view_renders_on_a_database_server(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """The same pages, through the same store API, on PostgreSQL and MariaDB."""
    url = request.getfixturevalue(f"{'postgres' if backend == 'postgresql' else 'mysql'}_url")
    await run_quiet_demo(url)  # the module's own scratch database, created for it
    async with await connect(url) as server_store:
        await add_history(server_store, utc_now())
        async with _client(server_store, database_url=url) as client:
            await _every_view_renders(client, server_store)
            jacket = _ids((await client.get("/sessions?q=JACKET")).text, "sessions")
            assert len(jacket) == 1
            exported = await client.get("/calls/export?model=o3-mini")
            assert len(exported.text.splitlines()) == await server_store.count_records(
                "api_calls", QueryFilter(model_name="o3-mini")
            )


async def _every_view_renders(client: httpx.AsyncClient, store: PersistenceStore) -> None:
    total = (await store.get_statistics(QueryFilter())).total_calls
    for path in ("/", "/?range=24h", "/?range=30d", "/?range=all", "/?range=custom&since=3d"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "Overview" in response.text
    everything = Page((await client.get("/?range=all")).text)
    assert f"Calls {total:,}" in everything.text
    for sort in ("", "oldest", "cost_desc", "cost_asc", "latency_desc", "tokens_asc"):
        response = await client.get(f"/calls?sort={sort}")
        assert response.status_code == 200, sort
        assert len(_call_rows(response.text)) == 50
    calls_page = (await client.get("/calls")).text
    for call_id in _ids(calls_page, "calls")[:5]:
        response = await client.get(f"/calls/{call_id}")
        assert response.status_code == 200
        assert call_id in response.text
    sessions_page = (await client.get("/sessions")).text
    session_ids = _ids(sessions_page, "sessions")
    assert (
        len(session_ids) == 3 + HISTORY_SESSIONS + 1
    )  # the demo's, the history's, the escaping one
    for session_id in session_ids:
        response = await client.get(f"/sessions/{session_id}")
        assert response.status_code == 200
        assert "Conversation" in response.text
    for path in ("/live", "/live/feed"):
        response = await client.get(path)
        assert response.status_code == 200
        assert len(_call_rows(response.text)) == 50


async def test_the_overview_shows_totals_charts_tables_and_breakdowns(
    client: httpx.AsyncClient, store: PersistenceStore
) -> None:
    """Cards from get_statistics, six charts each with its table, five breakdowns with links."""
    stats = await store.get_statistics(QueryFilter(start_time=utc_now() - timedelta(days=8)))
    page = (await client.get("/")).text
    parsed = Page(page)
    assert f"Calls {stats.total_calls:,} {stats.success_count:,} succeeded" in parsed.text
    assert f"{stats.total_cached_tokens:,} cached" in parsed.text
    assert f"{stats.total_reasoning_tokens:,} reasoning" in parsed.text
    rate = round(100 * stats.failed_count / stats.total_calls, 2)
    assert f"Error rate {rate:.1f}% {stats.failed_count:,} failed" in parsed.text
    data = [
        json.loads(attrs["data-series"] or "")
        for _, attrs in parsed.elements
        if "data-series" in attrs
    ]
    assert [chart["title"] for chart in data] == [
        "Calls",
        "Tokens",
        "Cost",
        "Error rate",
        "Latency",
        "Time to first token",
    ]
    for chart in data:
        assert len(chart["x"]) in (7, 8)  # seven days of day buckets, the first one cut
        assert all(len(series["values"]) == len(chart["x"]) for series in chart["series"])
    calls_chart = data[0]
    assert sum(calls_chart["series"][0]["values"]) + sum(calls_chart["series"][1]["values"]) == (
        stats.total_calls
    )
    assert page.count("as a table</summary>") == 6
    for heading in ("By model", "By agent", "By user", "By tenant", "By status"):
        assert heading in parsed.text
    for model in ("gpt-4o-mini", "gpt-4o", "o3-mini"):
        assert parsed.links(rf"^/calls\?.*model={model}(&|$)"), model
    assert parsed.links(r"status=rate_limited")


@pytest.mark.parametrize(
    ("query", "bucket"),
    [("range=24h", "hour"), ("range=7d", "day"), ("since=200d", "week"), ("since=1200d", "month")],
)
async def test_the_bucket_follows_the_range(
    sqlite_store: PersistenceStore, query: str, bucket: str
) -> None:
    """Hour up to two days, day up to 90 days, week up to two years, month beyond."""
    async with _client(sqlite_store) as client:
        response = await client.get(f"/?{query}")
    assert response.status_code == 200
    assert f"UTC, by {bucket}." in Page(response.text).text


# --- calls: filters, order, pages, export ---------------------------------------------------


@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("model=o3-mini", lambda row: row[1] == "o3-mini"),
        ("status=rate_limited", lambda row: row[2].startswith("rate_limited")),
        ("error_code=server_error", lambda row: row[2] == "failed server_error"),
        (
            "min_cost=0.017&max_cost=0.0175",
            lambda row: Decimal("0.017") <= _money(row[4]) <= Decimal("0.0175"),
        ),  # type: ignore[operator]
        ("min_latency=1000", lambda row: row[5].endswith(" s")),
    ],
)
async def test_calls_filters_change_the_results(
    client: httpx.AsyncClient, store: PersistenceStore, query: str, check: object
) -> None:
    """Each filter of the form narrows the table to calls that match it, and only those."""
    response = await client.get(f"/calls?{query}")
    assert response.status_code == 200
    rows = _call_rows(response.text)
    assert rows, query
    assert all(check(row) for row in rows), rows  # type: ignore[operator]
    everything = _call_rows((await client.get("/calls")).text)
    assert len(rows) < len(everything) or not all(check(row) for row in everything)  # type: ignore[operator]


async def test_calls_of_a_session_and_a_time_range(client: httpx.AsyncClient, demo: Demo) -> None:
    """The session filter shows that session's calls; a range in the past shows older calls only."""
    session_id = demo.history.script_session
    rows = _call_rows((await client.get(f"/calls?session={session_id}")).text)
    assert len(rows) == 2
    old = _call_rows((await client.get("/calls?until=6d&sort=newest")).text)
    assert old
    assert all(
        row[0] < (utc_now() - timedelta(days=6)).strftime("%Y-%m-%d %H:%M:%S") for row in old
    )


async def test_sort_headers_change_the_order_and_say_so(client: httpx.AsyncClient) -> None:
    """A sorted column's header links to the other direction and carries aria-sort."""
    page = (await client.get("/calls?sort=cost_desc&model=gpt-4o")).text
    costs = [_money(row[4]) for row in _call_rows(page)]
    priced = [cost for cost in costs if cost is not None]
    assert priced == sorted(priced, reverse=True)
    assert costs[: len(priced)] == priced  # unpriced calls come last
    assert re.search(
        r'<th scope="col" class="num" aria-sort="descending">'
        r'<a href="/calls\?model=gpt-4o&amp;sort=cost_asc"',
        page,
    )
    ascending = (await client.get("/calls?sort=cost_asc&model=gpt-4o")).text
    priced_up = [c for c in (_money(row[4]) for row in _call_rows(ascending)) if c is not None]
    assert priced_up == sorted(priced_up)
    assert 'aria-sort="ascending"' in ascending
    newest = Page((await client.get("/calls")).text)
    assert newest.links(r"^/calls\?sort=oldest$")  # the time header flips the default order


async def test_keyset_pages_cover_every_call_once(
    client: httpx.AsyncClient, store: PersistenceStore
) -> None:
    """Following "Next page" from the first page visits every call exactly once, in order."""
    total = (await store.get_statistics(QueryFilter())).total_calls
    for sort in ("newest", "latency_desc"):
        seen: list[str] = []
        address: str | None = f"/calls?sort={sort}"
        while address is not None:
            response = await client.get(address.replace("&amp;", "&"))
            assert response.status_code == 200
            seen.extend(_ids(response.text.split("<tbody>", 1)[1], "calls"))
            address = Page(response.text).rel_next()
        assert len(seen) == total
        assert len(set(seen)) == total


async def test_htmx_gets_only_the_results(client: httpx.AsyncClient) -> None:
    """An htmx request for #results gets the results fragment; a history restore the whole page."""
    headers = {"HX-Request": "true", "HX-Target": "results"}
    fragment = await client.get("/calls?model=gpt-4o", headers=headers)
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<div id="results"')
    assert "<html" not in fragment.text
    assert fragment.headers["vary"] == "HX-Request"
    sessions = await client.get("/sessions?q=lisbon", headers=headers)
    assert sessions.text.lstrip().startswith('<div id="results"')
    restore = await client.get(
        "/calls?model=gpt-4o", headers={**headers, "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.text


async def test_export_streams_the_filtered_calls(
    client: httpx.AsyncClient, store: PersistenceStore
) -> None:
    """JSON lines and CSV of exactly the filtered calls, as the CLI's exporter writes them."""
    expected = await store.count_records("api_calls", QueryFilter(model_name="gpt-4o"))
    jsonl = await client.get("/calls/export?format=jsonl&model=gpt-4o")
    assert jsonl.status_code == 200
    assert jsonl.headers["content-type"] == "application/x-ndjson"
    assert 'filename="chatledger-api-calls.jsonl"' in jsonl.headers["content-disposition"]
    records = [json.loads(line) for line in jsonl.text.splitlines()]
    assert len(records) == expected > 0
    assert {record["model_name"] for record in records} == {"gpt-4o"}
    exported = await client.get("/calls/export?format=csv&status=rate_limited")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert tuple(rows[0]) == _FIELDS["api_calls"]
    limited = await store.count_records("api_calls", QueryFilter(status="rate_limited"))
    assert len(rows) - 1 == limited > 0
    everything = await client.get("/calls/export")
    assert (
        len(everything.text.splitlines()) == (await store.get_statistics(QueryFilter())).total_calls
    )


# --- sessions and a conversation --------------------------------------------------------------


async def test_sessions_search_titles_and_message_text(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    """Searching finds sessions by title and by what their messages say, newest first."""
    by_title = Page((await client.get("/sessions?q=LISBON")).text)
    assert "A weekend in Lisbon" in by_title.text
    assert "Support ticket" not in by_title.text
    by_message = _ids((await client.get("/sessions?q=jacket")).text, "sessions")
    assert len(by_message) == 1  # "Will I need a jacket…" is in the packing session only
    assert "Packing for the weather" in (await client.get(f"/sessions/{by_message[0]}")).text
    literal = await client.get("/sessions?q=%25")
    assert literal.status_code == 200
    assert "No sessions match." in literal.text  # % is a character, not a wildcard
    history = _ids((await client.get("/sessions?q=support+ticket")).text, "sessions")
    assert len(history) == HISTORY_SESSIONS
    agent = (await client.get(f"/sessions?agent={uuid.UUID(int=7)}")).text
    assert "No sessions match." in agent


async def test_a_conversation_shows_tool_calls_results_and_each_call_under_its_reply(
    client: httpx.AsyncClient,
) -> None:
    """The packing session: the tool call and its result, each API call inline, the 429 too."""
    (session_id,) = _ids((await client.get("/sessions?q=jacket")).text, "sessions")
    page = (await client.get(f"/sessions/{session_id}")).text
    text = Page(page).text
    assert "tool call get_weather" in text
    assert '"city": "Lisbon"' in text
    assert "tool result" in text
    assert '"high_c": 19' in text
    messages = re.split(r'<li id="m-', page)[1:]
    assert len(messages) == 5
    asked, answered = messages[1], messages[3]
    assert "tool call" in asked
    assert "gpt-4o-mini call" in asked
    assert "gpt-4o-mini call" in answered
    assert "19°C" in answered
    assert "rate_limited" in messages[4]
    assert "rate_limit_exceeded" in messages[4]
    assert "TTFT" in answered
    assert "latency" in answered


async def test_a_branch_is_shown_as_one(client: httpx.AsyncClient, demo: Demo) -> None:
    """A reply to an earlier message than the one before it says it branches, and from where."""
    page = (await client.get(f"/sessions/{demo.history.script_session}")).text
    branch = page.split(f'<li id="m-{demo.history.branch_message}"', 1)[1].split("</li>", 1)[0]
    assert "branch" in branch
    assert "alternative 2 of 2" in branch
    assert re.search(r'replies to <a href="#m-[0-9a-f-]{36}">', branch)


async def test_sessions_and_messages_page(tmp_path: Path) -> None:
    """55 sessions make two pages of sessions; 205 messages make two pages of a conversation."""
    store = InMemoryStore()
    user, agent = uuid7(), uuid7()
    start = utc_now() - timedelta(days=1)
    sessions = []
    for number in range(55):
        when = start + timedelta(minutes=number)
        session = ChatSession(
            id=uuid7(), user_id=user, agent_id=agent, tenant_id=uuid7(),
            title=f"session {number}", create_time=when, update_time=when,
        )  # fmt: skip
        sessions.append(session)
        await store.create_session(session)
    long = sessions[0]
    messages = [
        LLMMessage(
            id=uuid7(),
            chat_session_id=long.id,
            agent_id=agent,
            user_id=user,
            tenant_id=long.tenant_id,
            role="user" if n % 2 == 0 else "assistant",
            content={"text": f"message {n}"},
            create_time=start + timedelta(seconds=n),
            update_time=start + timedelta(seconds=n),
        )
        for n in range(205)
    ]
    await store.save_messages(messages)
    async with _client(store) as client:
        first = await client.get("/sessions")
        next_page = Page(first.text).rel_next()
        assert next_page is not None
        second = await client.get(next_page.replace("&amp;", "&"))
        first_ids, second_ids = _ids(first.text, "sessions"), _ids(second.text, "sessions")
        assert (len(first_ids), len(second_ids)) == (50, 5)
        assert set(first_ids).isdisjoint(second_ids)
        assert Page(second.text).rel_next() is None
        assert "session 54" in first.text  # newest first
        conversation = await client.get(f"/sessions/{long.id}")
        assert conversation.text.count('<li id="m-') == 200
        later = await client.get(f"/sessions/{long.id}?page=2")
        assert later.text.count('<li id="m-') == 5
        assert "message 204" in later.text
        assert "Messages 201\u2013205 of 205" in later.text
        assert (await client.get(f"/sessions/{long.id}?page=3")).status_code == 404
    await store.close()


# --- live ----------------------------------------------------------------------------------


async def test_the_live_feed_answers_204_until_a_call_arrives(
    client: httpx.AsyncClient, store: PersistenceStore, demo: Demo
) -> None:
    """The feed the page polls is empty (204) while nothing changes; a new call is marked new."""
    page = Page((await client.get("/live")).text)
    (feed,) = [attrs["hx-get"] for tag, attrs in page.elements if "data-live-feed" in attrs]
    assert feed is not None
    assert (await client.get(feed)).status_code == 204
    template = await store.get_api_call(
        uuid.UUID(_ids((await client.get("/calls")).text, "calls")[0])
    )
    assert template is not None
    arrived = LLMApiCall.model_validate(
        {
            **dict(template),
            "id": uuid7(),
            "model_name": "live-model",
            "create_time": utc_now(),
            "update_time": utc_now(),
        }
    )
    await store.save_api_call(arrived)
    fresh = await client.get(feed)
    assert fresh.status_code == 200
    assert f'<tr id="live-{arrived.id}" class="new">' in fresh.text
    assert fresh.text.count('class="new"') == 1
    again = Page(fresh.text)
    (next_feed,) = [attrs["hx-get"] for tag, attrs in again.elements if "data-live-feed" in attrs]
    assert (await client.get(next_feed)).status_code == 204  # type: ignore[arg-type]
    await store.delete_api_call(arrived.id)


# --- safety ------------------------------------------------------------------------------


async def test_a_script_in_a_message_or_title_is_shown_as_text(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    """``<script>`` in a message and markup in a title are escaped on every page that shows them."""
    pages = [
        (await client.get(f"/sessions/{demo.history.script_session}")).text,
        (await client.get("/sessions")).text,
        (await client.get("/sessions?q=%3Cscript%3E")).text,
    ]
    for page in pages:
        assert "<script>alert(1)" not in page
        assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]
    assert SCRIPT in Page(pages[0]).text
    assert SCRIPT_TITLE in Page(pages[0]).text
    assert SCRIPT_TITLE in Page(pages[1]).text
    assert len(_ids(pages[2], "sessions")) == 1  # searching for the markup finds it, as text


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    """CSP without unsafe-inline, nosniff, no referrer, no framing: on pages, errors and files."""
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    for path in ("/", "/calls", "/nowhere", "/calls?cursor=bad", "/static/app.js", "/live/feed"):
        response = await client.get(path)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"


async def test_pages_hold_no_inline_script_style_or_handler(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    """What the CSP would block is not there: every script comes from a file."""
    paths = ["/", "/calls", "/sessions", "/live", f"/sessions/{demo.history.script_session}"]
    for path in paths:
        page = Page((await client.get(path)).text)
        for tag, attrs in page.elements:
            assert "style" not in attrs, (path, tag)
            assert not [name for name in attrs if name.startswith("on")], (path, tag, attrs)
            assert tag != "style", path
            if tag == "script":
                assert (attrs.get("src") or "").startswith("/static/"), attrs
            for name in ("href", "src", "action", "hx-get"):
                assert not (attrs.get(name) or "").lower().startswith("javascript:"), attrs


async def test_static_files_are_served_with_their_licences(client: httpx.AsyncClient) -> None:
    """htmx, uPlot and the pages' own script and style are served from the package."""
    for path in (
        "/static/vendor/htmx/htmx.min.js",
        "/static/vendor/htmx/LICENSE",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/uPlot.min.css",
        "/static/vendor/uplot/LICENSE",
        "/static/app.js",
        "/static/app.css",
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert len(response.content) > 100
    assert (await client.get("/static/nothing.js")).status_code == 404


async def test_a_token_is_required_when_set(sqlite_store: PersistenceStore) -> None:
    """No token: 401; the bearer header or the cookie ?token= sets: in; a wrong token: 401."""
    token = "a-long-random-token-4b1d"  # noqa: S105  (the test's own token)
    async with _client(sqlite_store, token=token) as client:
        for path in ("/", "/calls", "/static/app.js", "/calls/export"):
            refused = await client.get(path)
            assert refused.status_code == 401, path
            assert token not in refused.text
        assert (
            await client.get("/", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200
        assert (await client.get("/", headers={"Authorization": "Bearer wrong"})).status_code == 401
        assert (await client.get("/?token=wrong")).status_code == 401
        landed = await client.get(f"/calls?model=gpt-4o&token={token}")
        assert landed.status_code == 303
        assert landed.headers["location"] == "/calls?model=gpt-4o"  # the token leaves the URL
        cookie = landed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert token not in cookie
        assert (await client.get("/calls?model=gpt-4o")).status_code == 200  # the cookie is kept
        client.cookies.clear()
        assert (await client.get("/calls")).status_code == 401
        # With a token the host is not limited to loopback names.
        remote = await client.get(
            "/", headers={"Host": "dashboard.internal", "Authorization": f"Bearer {token}"}
        )
        assert remote.status_code == 200


async def test_without_a_token_only_loopback_hosts_are_answered(
    sqlite_store: PersistenceStore,
) -> None:
    """A page elsewhere that points its name at 127.0.0.1 (DNS rebinding) is refused."""
    async with _client(sqlite_store) as client:
        for host in ("localhost:8765", "127.0.0.1:8765", "[::1]:8765", "127.0.0.2"):
            assert (await client.get("/", headers={"Host": host})).status_code == 200, host
        for host in ("evil.example", "evil.example:8765", "10.0.0.5:8765"):
            assert (await client.get("/", headers={"Host": host})).status_code == 400, host


async def test_read_only_refuses_every_state_change(
    sqlite_store: PersistenceStore, demo: Demo
) -> None:
    """Without --allow-delete: no delete button, and POST, PUT, DELETE are 403; nothing changes."""
    target = demo.history.history_sessions[0]
    async with _client(sqlite_store) as client:
        page = (await client.get(f"/sessions/{target}")).text
        assert "/delete" not in page
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = await client.request(method, f"/sessions/{target}/delete")
            assert response.status_code == 403, method
            assert "read-only" in response.text
    assert await sqlite_store.get_session(target) is not None


async def test_deleting_a_session_needs_the_csrf_token(tmp_path: Path, demo: Demo) -> None:
    """With --allow-delete: a form without its CSRF token or from another origin is refused."""
    store = await _copy_into_memory(demo.url)
    target = demo.history.history_sessions[1]
    calls_before = await store.count_records("api_calls", QueryFilter(session_id=target))
    async with _client(store, allow_delete=True) as client:
        page = (await client.get(f"/sessions/{target}")).text
        (token,) = re.findall(r'name="csrf_token" value="([^"]+)"', page)
        action = f"/sessions/{target}/delete"
        assert action in page
        assert (await client.post(action)).status_code == 403
        assert (await client.post(action, data={"csrf_token": "forged"})).status_code == 403
        foreign = await client.post(
            action, data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
        )
        assert foreign.status_code == 403
        assert await store.get_session(target) is not None
        done = await client.post(action, data={"csrf_token": token}, headers={"Origin": BASE})
        assert done.status_code == 303
        assert done.headers["location"] == "/sessions?deleted=1"
        assert await store.get_session(target) is None
        assert (
            await store.count_records("api_calls", QueryFilter(session_id=target)) == calls_before
        )
        assert (await client.post(action, data={"csrf_token": token})).status_code == 404
        assert "The session was deleted." in (await client.get("/sessions?deleted=1")).text
    await store.close()


async def test_the_database_password_is_never_shown(sqlite_store: PersistenceStore) -> None:
    """The header shows the database URL with its password masked, on every page."""
    url = "postgresql://ledger:hunter2-secret@db.example:5432/app?sslmode=require&password=also-secret"
    async with _client(sqlite_store, database_url=url) as client:
        for path in ("/", "/calls", "/sessions", "/live", "/nowhere", "/calls?since=bad"):
            page = (await client.get(path)).text
            assert "hunter2" not in page, path
            assert "also-secret" not in page, path
            assert "postgresql://ledger:***@db.example:5432/app" in page


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/calls?cursor=not-a-cursor", "bad cursor"),
        ("/calls?since=yesterday", "not a time"),
        ("/calls?until=2026-13-45", "not a time"),
        ("/calls?since=2d&until=3d", "must be after"),
        ("/calls?min_cost=abc", "not an amount"),
        ("/calls?max_latency=-5", "not a whole number"),
        ("/calls?min_cost=5&max_cost=1", "must not be below"),
        ("/calls?status=exploded", "not a status"),
        ("/calls?sort=sideways", "not an order"),
        ("/calls?agent=not-a-uuid", "not an id"),
        ("/calls?model=" + "x" * 300, "at most 200 characters"),
        ("/calls?since=99999-01-01", "not a time"),
        ("/sessions?cursor=%00%01", "bad cursor"),
        ("/sessions?since=soon", "not a time"),
        ("/?range=forever", "not a range"),
        ("/?range=custom&since=5d&until=9d", "must be after"),
        ("/calls/not-a-uuid", "Not a call id"),
        ("/sessions/not-a-uuid", "Not a session id"),
        ("/sessions/01970000-0000-7000-8000-00000000d3e0?page=0", "Bad page"),
        ("/calls/export?format=xml", "Unknown format"),
        ("/calls/export?since=never", "Bad filter"),
        ("/live?status=bogus", "not a status"),
    ],
)
async def test_bad_input_is_a_400_page(
    sqlite_store: PersistenceStore, path: str, says: str
) -> None:
    """A damaged cursor, a bad date, number, status, order or id: a 400 page, never a 500."""
    async with _client(sqlite_store) as client:
        response = await client.get(path)
    assert response.status_code == 400, response.text[:2000]
    assert says in response.text


async def test_a_cursor_of_another_order_shows_the_first_page(client: httpx.AsyncClient) -> None:
    """A cursor made for one order, used with another, is refused and the first page is shown."""
    cursor = re.search(r"cursor=([^\"&]+)", (await client.get("/calls?sort=cost_desc")).text)
    assert cursor is not None
    response = await client.get(f"/calls?sort=latency_asc&cursor={cursor.group(1)}")
    assert response.status_code == 400
    assert "bad cursor" in response.text
    assert len(_call_rows(response.text)) == 50


async def test_unknown_things_are_404_pages(client: httpx.AsyncClient) -> None:
    """An unknown call, session or address is a 404 page in the site's frame."""
    for path in (f"/calls/{uuid7()}", f"/sessions/{uuid7()}", "/nowhere"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert 'class="skip-link"' in response.text


# --- the command ---------------------------------------------------------------------------


def test_a_public_host_without_a_token_refuses_to_start(
    demo: Demo, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--host 0.0.0.0 without --token (or $CHATLEDGER_UI_TOKEN) exits 2 with a clear line."""
    monkeypatch.delenv("CHATLEDGER_UI_TOKEN", raising=False)
    public = "0.0.0.0"  # noqa: S104  (refused: that is the test)
    assert cli_main(["ui", "--db", demo.url, "--host", public]) == 2
    error = capsys.readouterr().err
    assert "give it a token" in error
    assert "--token" in error
    assert cli_main(["ui", "--db", demo.url, "--host", public, "--token", " "]) == 2
    assert "the token is empty" in capsys.readouterr().err


def test_the_command_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """``chatledger ui --help`` names every option and shows examples, the token among them."""
    with pytest.raises(SystemExit) as exited:
        cli_main(["ui", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--db", "--host", "--port", "--open", "--allow-delete", "--token"):
        assert option in out
    assert "examples:" in out
    assert "CHATLEDGER_UI_TOKEN" in out.split("examples:")[1]


def test_a_missing_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An SQLite file that does not exist is refused, not created."""
    missing = tmp_path / "nothing.db"
    assert cli_main(["ui", "--db", f"sqlite:///{missing}", "--port", "0"]) == 1
    assert "no database at" in capsys.readouterr().err
    assert not missing.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_command_serves_until_interrupted(demo: Demo) -> None:
    """``chatledger ui`` says where it listens (not the token), serves, and stops on Ctrl+C."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "chatledger",
        "ui",
        "--db",
        demo.url,
        "--port",
        str(port),
        "--token",
        "tok-123456",
    ]
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        assert f"at http://127.0.0.1:{port}/?token=YOUR_TOKEN" in line, line
        assert "tok-123456" not in line
        response = httpx.get(
            f"http://127.0.0.1:{port}/calls", headers={"Authorization": "Bearer tok-123456"}
        )
        assert response.status_code == 200
        assert "gpt-4o-mini" in response.text
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        rest = process.stderr.read()
        assert "Traceback" not in rest, rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_the_extra_is_named_when_starlette_is_missing() -> None:
    """Without the ui extra, importing chatledger.ui says which pip install brings it."""
    code = "import sys; sys.modules['starlette'] = None; import chatledger.ui"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "pip install 'chatledger[ui]'" in result.stderr


def test_the_demo_ends_with_the_command_that_opens_its_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``chatledger demo``'s last line is the ``chatledger ui --db URL`` that shows its data."""
    url = f"sqlite:///{tmp_path}/demo.db"
    asyncio.run(run_demo(url))
    out = capsys.readouterr().out.rstrip()
    # one shell command, folded after "ui" when the line would pass 80 columns
    command = out.split("Or open the dashboard (pip install 'chatledger[ui]'):\n")[-1]
    assert " ".join(command.replace("\\\n", " ").split()) == f"chatledger ui --db {url}"


class _BrokenStore(InMemoryStore):
    """A store whose statistics fail: as a database would (PersistenceError), or as a bug would."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def get_statistics(self, query: QueryFilter) -> UsageStatistics:
        raise self.error

    async def get_usage_breakdowns(
        self, query: QueryFilter, breakdowns: Sequence[Breakdown]
    ) -> list[list[UsageBucket]]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "says"),
    [
        (QueryError("the database is locked; try again"), 503, "the database is locked"),
        (RuntimeError("a bug with a secret-looking detail"), 500, "Something went wrong"),
    ],
)
async def test_a_failing_store_is_an_error_page_with_the_headers(
    error: Exception, status: int, says: str
) -> None:
    """A store error is a 503 saying what failed; anything else a 500 that shows no detail."""
    store = _BrokenStore(error)
    async with _client(store) as client:
        response = await client.get("/")
        assert response.status_code == status
        assert says in response.text
        assert "secret-looking" not in response.text
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert (await client.get("/calls")).status_code == 200  # the other pages still work
    await store.close()


@pytest.mark.parametrize(
    ("preset", "start"),
    [
        ("24h", datetime(2026, 11, 29, 11, tzinfo=UTC)),
        ("7d", datetime(2026, 11, 23, tzinfo=UTC)),
        ("30d", datetime(2026, 10, 31, tzinfo=UTC)),
        ("all", None),
    ],
)
def test_a_preset_range_is_whole_hours_up_to_the_end_of_this_one(
    preset: str, start: datetime | None
) -> None:
    """Presets end at the next hour boundary and ranges of days start at midnight (rollups)."""
    now = datetime(2026, 11, 30, 10, 17, 5, tzinfo=UTC)
    _, chosen, query = overview_range({"range": preset}, now=now)
    end = datetime(2026, 11, 30, 11, tzinfo=UTC)
    assert (chosen.end, query.end_time) == (end, end)
    assert query.start_time == chosen.start == start
    on_the_hour = overview_range({"range": preset}, now=end)[1]
    assert on_the_hour.end == end  # an hour already whole is not pushed on


async def test_the_server_seals_complete_periods_and_survives_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While it serves, the dashboard seals complete periods; a store that fails is only logged."""
    from chatledger.stores.rollups import sealable_periods
    from chatledger.stores.sql import Read
    from chatledger.stores.sqlite import SqliteStore
    from chatledger.testing import make_api_call
    from chatledger.ui.server import _keep_periods_sealed

    store = await SqliteStore.connect(f"sqlite:///{tmp_path}/sealed.db")
    called = utc_now() - timedelta(days=100)
    await store.save_api_call(make_api_call(create_time=called))
    expected = len(sealable_periods([called], frozenset(), utc_now()))
    assert expected == 2  # the call's month and week
    sealing = asyncio.create_task(_keep_periods_sealed(store))
    try:
        for _ in range(500):
            (rows,) = await store._db.read(
                [Read("SELECT COUNT(*) FROM chatledger_usage_sealed_period")]
            )
            if rows[0][0] == expected:
                break
            await asyncio.sleep(0.02)
        assert rows[0][0] == expected
        assert await store.seal_periods() == 0
    finally:
        sealing.cancel()
        await store.close()
    broken = asyncio.create_task(_keep_periods_sealed(store))  # closed: every call fails
    await asyncio.sleep(0.05)
    assert not broken.done()
    broken.cancel()
    assert "could not seal complete months and weeks" in caplog.text
