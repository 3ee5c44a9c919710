"""The pages: overview, calls, a call, sessions, a session, live, and the export.

Each view reads its filters from the query string (:mod:`chatledger.ui.params`),
asks the store (aggregates and keyset pages only, never an unbounded read) and
renders a template. A request htmx makes for the results of a filter form
gets only the results (``HX-Target: results``); every other request gets the
whole page, so each view also works without JavaScript.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import parse_qs

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from chatledger.cli.export import ExportFormat, write_records
from chatledger.entities import (
    ApiCallStatus,
    CallPage,
    CallSort,
    LLMMessage,
    QueryFilter,
    UsageBucket,
    UsageStatistics,
)
from chatledger.stores.base import GroupKey, PersistenceStore
from chatledger.ui.conversation import conversation, pretty_json
from chatledger.ui.params import (
    CALL_FILTER_NAMES,
    RANGES,
    SESSION_FILTER_NAMES,
    Form,
    call_filter,
    call_sort,
    overview_range,
    session_query,
)
from chatledger.ui.security import csrf_matches
from chatledger.ui.series import bucket_starts, charts, choose_bucket, error_rate
from chatledger.ui.templating import query_string

__all__ = ["Dashboard", "error_page", "render"]

logger = logging.getLogger(__name__)

PAGE_SIZE: Final = 50
"""Rows per page of the calls and sessions tables."""
MESSAGE_PAGE: Final = 200
"""Messages per page of a conversation."""
LIVE_ROWS: Final = 50
"""How many of the newest calls the live view shows."""
BREAKDOWN_ROWS: Final = 15
"""Groups shown per breakdown table (those with the most calls)."""
_EXPORT_CHUNK: Final = 500
_BREAKDOWNS: Final[tuple[tuple[GroupKey, str, str], ...]] = (
    ("model", "Model", "model"),
    ("agent", "Agent", "agent"),
    ("user", "User", "user"),
    ("tenant", "Tenant", "tenant"),
    ("status", "Status", "status"),
)
# Column -> (the sort a click asks for first, the other direction).
SORTS: Final = {
    "time": (CallSort.NEWEST, CallSort.OLDEST),
    "tokens": (CallSort.TOKENS_DESC, CallSort.TOKENS_ASC),
    "cost": (CallSort.COST_DESC, CallSort.COST_ASC),
    "latency": (CallSort.LATENCY_DESC, CallSort.LATENCY_ASC),
}


@dataclass(frozen=True)
class Dashboard:
    """What every view needs: the store, the templates and how the server was started."""

    store: PersistenceStore
    env: Environment
    database: str  # the database's URL with its password masked, or the backend's name
    allow_delete: bool
    csrf_token: str


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A page (or, for htmx, a fragment) rendered with the context every page shares."""
    dashboard = _dashboard(request)
    shared = {
        "nav": "",
        "database": dashboard.database,
        "allow_delete": dashboard.allow_delete,
        "csrf_token": dashboard.csrf_token,
    }
    page = dashboard.env.get_template(template).render({**shared, **context})
    return HTMLResponse(page, status_code=status, headers={"Vary": "HX-Request", **(headers or {})})


def wants_results(request: Request) -> bool:
    """True for htmx's request of a filter form's results (not a history restore)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-history-restore-request") != "true"
        and request.headers.get("hx-target") == "results"
    )


def error_page(request: Request, status: int, title: str, text: str) -> HTMLResponse:
    """The error page: what went wrong, in the site's frame."""
    return render(request, "error.html", {"title": title, "text": text}, status=status)


def _parse_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


# --- overview ------------------------------------------------------------------------------


def _top(rows: list[UsageBucket]) -> tuple[list[UsageBucket], bool]:
    """The groups with the most calls first, the first :data:`BREAKDOWN_ROWS`, and whether more."""
    ordered = sorted(rows, key=lambda row: row.stats.total_calls, reverse=True)
    return ordered[:BREAKDOWN_ROWS], len(ordered) > BREAKDOWN_ROWS


async def overview(request: Request) -> Response:
    """Totals, the charts over time and the breakdowns, for a range and filters."""
    store = _dashboard(request).store
    form, chosen, query = overview_range(request.query_params)
    context: dict[str, Any] = {
        "title": "Overview",
        "nav": "overview",
        "form": form,
        "ranges": list(RANGES),
        "statuses": [status.value for status in ApiCallStatus],
    }
    if not form.ok:
        return render(request, "overview.html", {**context, "stats": None}, status=400)
    start = chosen.start
    if start is None:  # "all": from the first call on
        first = await store.page_api_calls(query, sort=CallSort.OLDEST, limit=1)
        start = first.calls[0].create_time if first.calls else chosen.end - timedelta(days=7)
    bucket = choose_bucket(start, chosen.end)
    # All at once, so that the store reads what they share once and keeps its readers
    # busy; each breakdown asks for one more than shown: whether there are more, without
    # reading every user's group.
    found = await store.get_usage_breakdowns(
        query,
        [
            ((), None, None),
            ((), bucket, None),
            *(((key,), None, BREAKDOWN_ROWS + 1) for key, _, _ in _BREAKDOWNS),
        ],
    )
    stats = found[0][0].stats if found[0] else UsageStatistics()
    timeline: list[UsageBucket] = found[1]
    groups: list[list[UsageBucket]] = found[2:]
    breakdowns = []
    for (key, label, parameter), rows in zip(_BREAKDOWNS, groups, strict=True):
        shown, more = _top(rows)
        breakdowns.append(
            {"key": key, "label": label, "parameter": parameter, "rows": shown, "more": more}
        )
    link_values = {
        name: value
        for name, value in form.values.items()
        if name in ("tenant", "user", "agent", "model", "status")
    }
    if chosen.start is not None:
        link_values["since"] = chosen.start.strftime("%Y-%m-%dT%H:%M:%S")
    if chosen.preset == "custom":
        link_values["until"] = chosen.end.strftime("%Y-%m-%dT%H:%M:%S")
    context.update(
        stats=stats,
        error_rate=error_rate(stats),
        range=chosen,
        start=start,
        bucket=bucket,
        charts=charts(timeline, bucket_starts(start, chosen.end, bucket)),
        breakdowns=breakdowns,
        calls_filter=link_values,
    )
    return render(request, "overview.html", context)


# --- calls ---------------------------------------------------------------------------------


async def _call_page(
    store: PersistenceStore, query: QueryFilter, sort: CallSort, cursor: str | None, limit: int
) -> tuple[CallPage, str | None]:
    """A page of calls, or the first page and a notice when the cursor is damaged."""
    if cursor is None:
        return await store.page_api_calls(query, sort=sort, limit=limit), None
    try:
        return await store.page_api_calls(query, sort=sort, cursor=cursor, limit=limit), None
    except ValueError:
        notice = "That page link is damaged or was made for another order (bad cursor); "
        notice += "here is the first page."
        return await store.page_api_calls(query, sort=sort, limit=limit), notice


def _sort_links(values: Mapping[str, str], sort: CallSort) -> dict[str, dict[str, str | None]]:
    """Per sortable column: the query string its header links to and its aria-sort."""
    links: dict[str, dict[str, str | None]] = {}
    for column, (first, second) in SORTS.items():
        target = second if sort is first else first
        state = "descending" if sort is first else "ascending" if sort is second else None
        if column == "time" and sort is CallSort.NEWEST:
            state = "descending"
        target_value = None if target is CallSort.NEWEST else target.value
        links[column] = {
            "href": "/calls" + query_string({**values, "sort": target_value}),
            "aria_sort": state,
            "direction": "" if state is None else ("↓" if state == "descending" else "↑"),
        }
    return links


async def calls(request: Request) -> Response:
    """The calls table: filters, sortable headers, keyset pages; htmx gets the results only."""
    store = _dashboard(request).store
    params = request.query_params
    form, query = call_filter(params)
    sort = call_sort(params, form)
    cursor = params.get("cursor") or None
    status = 200
    page: CallPage | None = None
    notice = None
    if form.ok:
        page, notice = await _call_page(store, query, sort, cursor, PAGE_SIZE)
        if notice is not None:
            status = 400
    else:
        status = 400
    values = dict(form.values)
    if sort is not CallSort.NEWEST:
        values["sort"] = sort.value
    context = {
        "title": "Calls",
        "nav": "calls",
        "form": form,
        "values": values,
        "sort": sort,
        "sort_links": _sort_links(form.values, sort),
        "page": page,
        "notice": notice,
        "first_page": cursor is not None,
        "statuses": [s.value for s in ApiCallStatus],
        "filter_names": CALL_FILTER_NAMES,
    }
    template = "_calls_results.html" if wants_results(request) else "calls.html"
    return render(request, template, context, status=status)


async def call_detail(request: Request) -> Response:
    """One call: every field, and the messages it was asked with and answered."""
    store = _dashboard(request).store
    call_id = _parse_id(request.path_params["call_id"])
    if call_id is None:
        return error_page(request, 400, "Not a call id", "A call's address ends in its UUID.")
    call = await store.get_api_call(call_id)
    if call is None:
        return error_page(request, 404, "No such call", f"No call {call_id} in this database.")
    request_message, response_message = await asyncio.gather(
        store.get_message(call.request_message_id), store.get_message(call.response_message_id)
    )
    return render(
        request,
        "call.html",
        {
            "title": f"Call {call.model_name} {call.create_time:%Y-%m-%d %H:%M:%S}",
            "nav": "calls",
            "call": call,
            "request_message": request_message,
            "response_message": response_message,
            "pretty_json": pretty_json,
        },
    )


def _export_source(
    store: PersistenceStore, query: QueryFilter, fmt: ExportFormat
) -> AsyncIterator[bytes]:
    """The export's bytes as the CLI's exporter writes them, a chunk of records at a time.

    ``write_records`` writes each chunk before it asks for the next, so the
    chunks it is handed are relayed through a small queue: the client reads
    one chunk while the next is being read from the store, and a slow client
    holds the export back instead of filling memory.
    """
    sink = io.BytesIO()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=2)

    def take() -> bytes:
        data = sink.getvalue()
        sink.seek(0)
        sink.truncate()
        return data

    async def chunks() -> AsyncIterator[list[dict[str, Any]]]:
        async for records in store.export_records("api_calls", query, chunk_size=_EXPORT_CHUNK):
            yield records
            await queue.put(take())  # write_records has written this chunk by now

    async def produce() -> None:
        try:
            await write_records(chunks(), "api_calls", fmt, sink)
            await queue.put(take())
        finally:
            # The end mark, unless the reader went away (then the export was cancelled
            # and nobody would take it from a full queue).
            current = asyncio.current_task()
            if current is None or not current.cancelling():
                await queue.put(None)

    async def relay() -> AsyncIterator[bytes]:
        task = asyncio.create_task(produce())
        try:
            while (data := await queue.get()) is not None:
                if data:
                    yield data
            await task  # an error of the export surfaces here
        finally:
            task.cancel()

    return relay()


async def export_calls(request: Request) -> Response:
    """The filtered calls as JSON lines or CSV, streamed (the CLI's exporter)."""
    store = _dashboard(request).store
    form, query = call_filter(request.query_params)
    fmt = request.query_params.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        return error_page(request, 400, "Unknown format", "Export as format=jsonl or format=csv.")
    if not form.ok:
        problems = "; ".join(f"{name}: {text}" for name, text in form.errors.items())
        return error_page(request, 400, "Bad filter", problems)
    media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
    return StreamingResponse(
        _export_source(store, query, fmt),  # type: ignore[arg-type]  # checked above
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="chatledger-api-calls.{fmt}"'},
    )


# --- sessions ------------------------------------------------------------------------------


async def sessions(request: Request) -> Response:
    """Sessions, newest first: search by title and content, filters, keyset pages."""
    store = _dashboard(request).store
    params = request.query_params
    form, query = session_query(params)
    cursor = params.get("cursor") or None
    status = 200
    notice = None
    found: list[tuple[Any, int]] = []
    next_cursor = None
    if form.ok:
        try:
            page = await store.search_sessions(query, cursor=cursor, limit=PAGE_SIZE)
        except ValueError:
            if cursor is None:
                raise
            notice = "That page link is damaged (bad cursor); here is the first page."
            status = 400
            page = await store.search_sessions(query, limit=PAGE_SIZE)
        counts = await store.count_messages_by_session([s.id for s in page.sessions])
        found = [(session, counts.get(session.id, 0)) for session in page.sessions]
        next_cursor = page.next_cursor
    else:
        status = 400
    if params.get("deleted"):
        notice = "The session was deleted."
    context = {
        "title": "Sessions",
        "nav": "sessions",
        "form": form,
        "values": form.values,
        "found": found,
        "next_cursor": next_cursor,
        "notice": notice,
        "first_page": cursor is not None,
        "filter_names": SESSION_FILTER_NAMES,
    }
    template = "_sessions_results.html" if wants_results(request) else "sessions.html"
    return render(request, template, context, status=status)


async def session_detail(request: Request) -> Response:
    """A session's conversation, a page of messages at a time, each call under its reply."""
    store = _dashboard(request).store
    session_id = _parse_id(request.path_params["session_id"])
    if session_id is None:
        return error_page(request, 400, "Not a session id", "A session's address ends in its UUID.")
    page_text = request.query_params.get("page", "1")
    if not page_text.isdigit() or not 1 <= int(page_text) <= 10**9:
        return error_page(request, 400, "Bad page", "page must be a whole number from 1.")
    page_number = int(page_text)
    session, total = await asyncio.gather(
        store.get_session(session_id), store.count_session_messages(session_id)
    )
    if session is None:
        return error_page(
            request, 404, "No such session", f"No session {session_id} in this database."
        )
    first = (page_number - 1) * MESSAGE_PAGE
    # And the message before the page: whether its first message starts a branch.
    offset = max(0, first - 1)
    window = await store.get_session_messages_paginated(
        session_id, offset, MESSAGE_PAGE + (1 if first else 0)
    )
    before: LLMMessage | None = window[0] if first and window else None
    messages = window[1:] if first else window
    # Each call is shown under its reply (or its request, when it failed): the page's calls
    # are those whose reply or request is on it.
    calls_found, stats = await asyncio.gather(
        store.calls_for_messages([message.id for message in messages]),
        store.get_statistics(QueryFilter(session_id=session_id)),
    )
    entries = conversation(messages, calls_found, before=None if before is None else before.id)
    pages = max(1, -(-total // MESSAGE_PAGE))
    return render(
        request,
        "session.html",
        {
            "title": session.title or "Untitled session",
            "nav": "sessions",
            "session": session,
            "entries": entries,
            "stats": stats,
            "total": total,
            "page_number": page_number,
            "pages": pages,
            "first_index": first,
            "pretty_json": pretty_json,
        },
        status=200 if messages or page_number == 1 else 404,
    )


_MAX_FORM: Final = 4096  # the delete form holds one token; anything longer is not it


async def _form_field(request: Request, name: str) -> str | None:
    """One field of a small url-encoded form body (no multipart parser needed for it)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            return None
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
    found = values.get(name)
    return found[0] if found else None


async def delete_session(request: Request) -> Response:
    """Delete a session and its messages (the calls stay): only with --allow-delete and CSRF."""
    dashboard = _dashboard(request)
    if not dashboard.allow_delete:  # the guard refuses it first; this is the second lock
        return error_page(request, 403, "Read-only", "This dashboard is read-only.")
    session_id = _parse_id(request.path_params["session_id"])
    if session_id is None:
        return error_page(request, 400, "Not a session id", "A session's address ends in its UUID.")
    token = await _form_field(request, "csrf_token")
    if not csrf_matches(dashboard.csrf_token, token):
        return error_page(
            request,
            403,
            "Form expired",
            "The form's CSRF token is missing or wrong; reload the page.",
        )
    deleted = await dashboard.store.delete_session(session_id)
    if not deleted:
        return error_page(
            request, 404, "No such session", f"No session {session_id} in this database."
        )
    logger.info("deleted session %s from the dashboard", session_id)
    return RedirectResponse("/sessions?deleted=1", status_code=303)


# --- live ----------------------------------------------------------------------------------


def _fingerprint(page: CallPage) -> str:
    digest = hashlib.sha256()
    for call in page.calls:
        digest.update(call.id.bytes)
        digest.update(call.status.value.encode())
    return digest.hexdigest()[:16]


LIVE_FILTER_NAMES: Final = ("tenant", "user", "agent", "model", "status")


async def _live_context(request: Request) -> tuple[Form, dict[str, Any]]:
    store = _dashboard(request).store
    params = request.query_params
    form, query = call_filter({k: v for k, v in params.items() if k in LIVE_FILTER_NAMES})
    if not form.ok:
        return form, {"page": None, "fingerprint": "", "new_ids": set(), "top": ""}
    page = await store.page_api_calls(query, sort=CallSort.NEWEST, limit=LIVE_ROWS)
    seen_top = params.get("top", "")
    new_ids: set[uuid.UUID] = set()
    if seen_top:  # the rows above the one that was on top last time are new
        for call in page.calls:
            if str(call.id) == seen_top:
                break
            new_ids.add(call.id)
        else:
            new_ids = set()  # the old top row is gone (filtered or deleted): mark nothing
    return form, {
        "page": page,
        "fingerprint": _fingerprint(page),
        "new_ids": new_ids,
        "top": str(page.calls[0].id) if page.calls else "",
    }


async def live(request: Request) -> Response:
    """The newest calls; the page asks for changes every two seconds (htmx polling)."""
    form, context = await _live_context(request)
    return render(
        request,
        "live.html",
        {
            "title": "Live",
            "nav": "live",
            "form": form,
            "values": form.values,
            "statuses": [s.value for s in ApiCallStatus],
            **context,
        },
        status=200 if form.ok else 400,
    )


async def live_feed(request: Request) -> Response:
    """The live table again, or 204 (htmx swaps nothing) when no call changed since ``shown``."""
    form, context = await _live_context(request)
    if not form.ok:
        return Response(status_code=400)
    if context["fingerprint"] == request.query_params.get("shown"):
        return Response(status_code=204)
    return render(request, "_live_feed.html", {"values": form.values, **context})
