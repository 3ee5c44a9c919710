"""Every SQL statement chatledger runs, written once for every dialect.

Statements are written with ``?`` placeholders and passed through the
dialect (``Dialect.sql``) once, when a store opens. Usage statistics are
assembled per call from the filter and grouping asked for; values always
travel as parameters, never inside the text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from chatledger.entities import ApiCallStatus, QueryFilter, SessionQuery
from chatledger.stores.base import RecordKind
from chatledger.stores.dialect import Dialect, TextProbe
from chatledger.stores.filtering import call_conditions
from chatledger.stores.paging import Cursor, SortSpec, like_pattern
from chatledger.stores.rollups import (
    PERIODS,
    RollupStatements,
    from_calls,
    seal_statements,
    unseal_statements,
    user_change_statements,
)
from chatledger.stores.schema import (
    AGENT,
    API_CALL,
    MESSAGE,
    PROVIDER,
    ROLLUP_DAILY,
    ROLLUP_HISTOGRAM,
    ROLLUP_HOURLY,
    SCHEMA_VERSION_TABLE,
    SEALED_PERIOD,
    SESSION,
    TOKEN_SUBSET_COLUMNS,
    Table,
)

__all__ = [
    "API_CALL_COLUMNS",
    "GROUP_COLUMNS",
    "PERCENTILES",
    "PERCENTILE_COLUMNS",
    "PERCENTS",
    "RECORD_SOURCES",
    "SEARCH_PROBE_LIMIT",
    "TOTALS_WIDTH",
    "ErasureStatements",
    "Erasing",
    "Queries",
    "RecordSource",
    "call_page",
    "erasure_statements",
    "filter_clause",
    "group_expressions",
    "percentile_statements",
    "record_filter",
    "session_search",
    "usage_statements",
    "usage_totals",
    "values_read",
    "values_statement",
    "without_value_may_match",
]

API_CALL_COLUMNS = API_CALL.column_names + tuple(c.name for c in TOKEN_SUBSET_COLUMNS)
"""The API-call table's columns: MoFA's, then the token subsets added in version 2."""

PERCENTILE_COLUMNS = ("latency_ms", "time_to_first_token_ms")
"""The columns every statistic gives percentiles of, in the order their figures come."""
PERCENTS = (50, 95, 99)
"""The percentiles of each of ``PERCENTILE_COLUMNS``, in percent."""
PERCENTILES = tuple(
    (f"p{percent}_{column}", column, percent)
    for column in PERCENTILE_COLUMNS
    for percent in PERCENTS
)
"""The percentiles of every statistic: field name, column and percent, in row order."""

GROUP_COLUMNS: dict[str, str] = {
    "model": "model_name",
    "agent": "agent_id",
    "user": "user_id",
    "tenant": "tenant_id",
    "session": "chat_session_id",
    "status": "status",
}


@dataclass(frozen=True, slots=True)
class RecordSource:
    """Where the records of one kind live, and which columns a filter reads there."""

    table: str
    columns: tuple[str, ...]
    session_column: str  # what the filter's session_id is compared with
    time_column: str  # what the filter's time range applies to


RECORD_SOURCES: dict[RecordKind, RecordSource] = {
    # A session's own id is its session; its time is its last activity.
    "sessions": RecordSource(SESSION.name, SESSION.column_names, "id", "update_time"),
    "messages": RecordSource(MESSAGE.name, MESSAGE.column_names, "chat_session_id", "create_time"),
    # MoFA's columns only: the token-subset columns repeat what the details hold.
    "api_calls": RecordSource(
        API_CALL.name, API_CALL.column_names, "chat_session_id", "create_time"
    ),
}
"""Each record kind's table, its columns as ``RowCodec``'s record builders read them, and
the columns a filter's session and time range compare with."""


# The sort columns a failed call has no value of (no price) or a zero of (no tokens).
_FAILED_LACK = frozenset({"total_price", "total_tokens"})


def _insert(table: Table, columns: Sequence[str] | None = None) -> str:
    names = columns or table.column_names
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def _select(table: Table, columns: Sequence[str] | None = None) -> str:
    return f"SELECT {', '.join(columns or table.column_names)} FROM {table.name}"


class Queries:
    """The fixed statements of one dialect, rewritten for its driver once."""

    def __init__(self, dialect: Dialect) -> None:
        """Build every statement for ``dialect``."""
        q = dialect.sql
        message, call, session = _select(MESSAGE), _select(API_CALL, API_CALL_COLUMNS), SESSION
        provider, agent = _select(PROVIDER), _select(AGENT)

        self.record_migration = q(
            f"INSERT INTO {SCHEMA_VERSION_TABLE} (version, description, applied_at) "
            "VALUES (?, ?, ?)"
        )
        self.schema_version = f"SELECT MAX(version) FROM {SCHEMA_VERSION_TABLE}"

        self.insert_message = q(_insert(MESSAGE))
        self.bulk_messages = (MESSAGE.name, MESSAGE.column_names)
        # Moves forward only: a late-arriving older message never winds the clock back.
        touch = f"UPDATE {SESSION.name} SET update_time = ? WHERE id = ? AND update_time < ?"
        self.touch_session = q(touch)
        # Both in one statement where the dialect can: one round trip, no BEGIN/COMMIT.
        fused = dialect.update_then_insert(touch, _insert(MESSAGE))
        self.touch_and_insert_message = None if fused is None else q(fused)
        self.get_message = q(f"{message} WHERE id = ?")
        self.session_messages = q(f"{message} WHERE chat_session_id = ? ORDER BY create_time, id")
        self.session_messages_page = q(
            f"{message} WHERE chat_session_id = ? ORDER BY create_time, id LIMIT ? OFFSET ?"
        )
        self.recent_messages = q(
            f"{message} WHERE chat_session_id = ? ORDER BY create_time DESC, id DESC LIMIT ?"
        )
        self.delete_message = q(f"DELETE FROM {MESSAGE.name} WHERE id = ?")
        self.delete_session_messages = q(f"DELETE FROM {MESSAGE.name} WHERE chat_session_id = ?")
        self.count_messages = q(f"SELECT COUNT(*) FROM {MESSAGE.name} WHERE chat_session_id = ?")

        self.insert_call = q(_insert(API_CALL, API_CALL_COLUMNS))
        self.bulk_calls = (API_CALL.name, API_CALL_COLUMNS)
        self.get_call = q(f"{call} WHERE id = ?")
        self.delete_call = q(f"DELETE FROM {API_CALL.name} WHERE id = ?")
        # The rollups: what a write of calls adds, what a delete subtracts (before it runs,
        # from the same rows), and the rows a prune leaves with no call.
        self.rollups = RollupStatements.of(dialect)
        self.unseal_period, self.unseal_all = unseal_statements(dialect)
        self.sealed_periods = q(f"SELECT period, period_start FROM {SEALED_PERIOD.name}")
        # Whether any call lies in a range (the rest of a day a read widens through).
        self.call_between = q(
            f"SELECT 1 FROM {API_CALL.name} WHERE create_time >= ? AND create_time < ? LIMIT 1"
        )
        self.rollup_days = q(
            f"SELECT DISTINCT day_start FROM {ROLLUP_DAILY.name} WHERE dimension = ''"
        )
        self.seal_period = {period.name: seal_statements(dialect, period) for period in PERIODS}
        self.subtract_call = from_calls(dialect, "id = ?", sign="-")
        self.subtract_before = from_calls(dialect, "create_time < ?", sign="-")
        self.prune_rollups = [
            q(f"DELETE FROM {table.name} WHERE {time} < ? AND calls = 0")
            for table, time in (
                (ROLLUP_HOURLY, "hour_start"),
                (ROLLUP_DAILY, "day_start"),
                (ROLLUP_HISTOGRAM, "day_start"),
            )
        ]
        self.cleanup_calls = q(f"DELETE FROM {API_CALL.name} WHERE create_time < ?")
        self.next_call_time = q(
            f"SELECT MIN(create_time) FROM {API_CALL.name} WHERE create_time >= ?"
        )

        self.insert_session = q(_insert(session))
        self.bulk_sessions = (session.name, session.column_names)
        self.get_session = q(f"{_select(session)} WHERE id = ?")
        self.user_sessions = q(
            f"{_select(session)} WHERE user_id = ? ORDER BY update_time DESC, id DESC"
        )
        assignments = ", ".join(f"{name} = ?" for name in session.column_names[1:])
        self.update_session = q(f"UPDATE {session.name} SET {assignments} WHERE id = ?")
        self.delete_session = q(f"DELETE FROM {session.name} WHERE id = ?")
        # Messages first, as delete_session does: MoFA's SQLite tables have no cascade.
        # The doomed sessions stay locked to the end, so a message saved to one of them
        # meanwhile waits, then fails, instead of keeping it alive without its history.
        self.cleanup_session_messages = q(
            f"DELETE FROM {MESSAGE.name} WHERE chat_session_id IN "
            f"(SELECT id FROM {session.name} WHERE update_time < ?{dialect.lock_rows})"
        )
        self.cleanup_sessions = q(f"DELETE FROM {session.name} WHERE update_time < ?")

        self.get_provider = q(f"{provider} WHERE id = ?")
        self.provider_by_name = q(f"{provider} WHERE tenant_id = ? AND provider_name = ?")
        self.list_providers = q(f"{provider} WHERE tenant_id = ? ORDER BY provider_name, id")
        self.enabled_providers = q(
            f"{provider} WHERE tenant_id = ? AND enabled = ? ORDER BY provider_name, id"
        )
        self.upsert_provider = [(q(sql), order) for sql, order in dialect.upsert(PROVIDER)]
        self.delete_provider = q(f"DELETE FROM {PROVIDER.name} WHERE id = ?")
        # MoFA's own SQLite tables have no foreign keys, so the cascade is spelled out.
        self.delete_provider_agents = q(f"DELETE FROM {AGENT.name} WHERE provider_id = ?")

        self.get_agent = q(f"{agent} WHERE id = ?")
        self.agent_by_code = q(f"{agent} WHERE agent_code = ?")
        self.agent_by_code_and_tenant = q(f"{agent} WHERE tenant_id = ? AND agent_code = ?")
        self.list_agents = q(f"{agent} WHERE tenant_id = ? ORDER BY agent_order, agent_code")
        self.active_agents = q(
            f"{agent} WHERE tenant_id = ? AND agent_status = ? ORDER BY agent_order, agent_code"
        )
        self.upsert_agent = [(q(sql), order) for sql, order in dialect.upsert(AGENT)]
        self.delete_agent = q(f"DELETE FROM {AGENT.name} WHERE id = ?")

        self._api_calls_page = call + "{where} ORDER BY create_time DESC, id DESC LIMIT ? OFFSET ?"
        self._sessions_page = (
            _select(session) + "{where} ORDER BY update_time DESC, id DESC LIMIT ? OFFSET ?"
        )
        self._dialect = dialect
        self._id_statements: dict[tuple[str, int], str] = {}  # by template and id count

    def _with_ids(self, template: str, count: int) -> str:
        """``template`` with ``{ids}`` tested against ``count`` ids (0: an id array), built once."""
        key = (template, count)
        sql = self._id_statements.get(key)
        if sql is None:
            ids = "= ANY(?)" if count == 0 else f"IN ({', '.join('?' * count)})"
            sql = self._id_statements[key] = self._dialect.sql(template.format(ids=ids))
        return sql

    def stored_ids(self, table: str, count: int) -> str:
        """The ids ``table`` holds of ``count`` asked for (one array parameter, if bound so)."""
        count = 0 if self._dialect.id_arrays else count
        return self._with_ids(f"SELECT id FROM {table} WHERE id {{ids}}", count)

    def calls_for_messages(self, count: int) -> str:
        """Calls whose response or request message is one of ``count`` ids (0: an id array)."""
        return self._with_ids(
            f"{_select(API_CALL, API_CALL_COLUMNS)} WHERE response_message_id {{ids}} "
            "OR request_message_id {ids}",
            count,
        )

    def messages_per_session(self, count: int) -> str:
        """Each of ``count`` sessions' (0: an id array's) message count, sessions with any."""
        return self._with_ids(
            f"SELECT chat_session_id, COUNT(*) FROM {MESSAGE.name} "
            "WHERE chat_session_id {ids} GROUP BY chat_session_id",
            count,
        )

    def api_calls_page(self, where: str) -> str:
        """API calls matching ``where``, newest first, one page (limit, offset follow)."""
        return self._dialect.sql(self._api_calls_page.format(where=where))

    def sessions_page(self, where: str) -> str:
        """Sessions matching ``where``, most recently active first (limit, offset follow)."""
        return self._dialect.sql(self._sessions_page.format(where=where))

    def count_records(self, kind: RecordKind, where: str) -> str:
        """How many records of ``kind`` match ``where``."""
        return self._dialect.sql(f"SELECT COUNT(*) FROM {RECORD_SOURCES[kind].table}{where}")

    def export_chunk(self, kind: RecordKind, where: str) -> str:
        """One chunk of an export: records matching ``where``, by id, then a LIMIT.

        ``where`` ends with the keyset condition (``id > ?``) from the second
        chunk on. Ordering by the primary key lets every chunk start where the
        last ended by an index seek, where an OFFSET would re-read every row
        before it.
        """
        source = RECORD_SOURCES[kind]
        return self._dialect.sql(
            f"{_select_columns(source)} FROM {source.table}{where} ORDER BY id LIMIT ?"
        )


def _select_columns(source: RecordSource) -> str:
    return f"SELECT {', '.join(source.columns)}"


def filter_clause(
    query: QueryFilter,
    dialect: Dialect,
    *extra: str,
    session_column: str = "chat_session_id",
    time_column: str = "create_time",
    name: Callable[[str], str] = str,
) -> tuple[str, list[Any]]:
    """`` WHERE …`` for the API calls ``query`` selects (``""`` for all), and its parameters.

    ``extra`` conditions are added last, so their parameters follow these;
    ``name`` spells each filtered column (see ``Dialect.keyset_filter``).
    Cost and latency bounds are inclusive, and a call without a price or a
    latency meets none (a comparison with NULL is never true).
    """
    clauses: list[str] = []
    params: list[Any] = []
    columns = {"chat_session_id": session_column, "create_time": time_column}
    encode: dict[str, Callable[[Any], Any]] = {
        "id": dialect.encode_uuid,
        "text": lambda value: value.value if isinstance(value, Enum) else value,
        "time": dialect.encode_time,
        "money": dialect.encode_money,
        "number": int,
    }
    for condition in call_conditions(query):
        column = columns.get(condition.field, condition.field)
        clauses.append(f"{name(column)} {condition.operator} ?")
        params.append(encode[condition.kind](condition.value))
    clauses.extend(extra)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def record_filter(
    kind: RecordKind,
    query: QueryFilter,
    dialect: Dialect,
    *extra: str,
    name: Callable[[str], str] = str,
) -> tuple[str, list[Any]]:
    """`` WHERE …`` for the records of ``kind`` that ``query`` selects, and its parameters.

    The caller has checked the filter (``check_record_query``): only API
    calls have a status, a model, an error code, a price and a latency.
    """
    source = RECORD_SOURCES[kind]
    return filter_clause(
        query,
        dialect,
        *extra,
        session_column=source.session_column,
        time_column=source.time_column,
        name=name,
    )


def call_page(
    dialect: Dialect,
    query: QueryFilter,
    spec: SortSpec,
    *,
    valued: bool,
    after: Cursor | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """One step of a page of API calls in ``spec``'s order, and its parameters.

    With ``valued``, the calls that have the sort's value, ordered by it,
    then create_time and id; otherwise the calls without it (or, for a time
    order, every call), by create_time and id. ``after`` is the last row
    read, in this step's part of the order, or None to start the part.
    Each step is one walk of an index on its order columns.
    """
    descending, column = spec.descending, spec.column
    if valued and column is not None:
        # Failed calls have no price and no tokens: walking the price or token index
        # for them reads nearly all of it before the page fills (1 to 3 s at a million
        # calls, on PostgreSQL and SQLite alike), where their own index and a sort of
        # what it finds take milliseconds. The planner cannot know; the filter says.
        failed = query.error_code is not None or query.status not in (None, ApiCallStatus.SUCCESS)
        key = dialect.unindexed(column) if failed and column in _FAILED_LACK else column
        keys = [key, "create_time", "id"]
        extra = [f"{column} IS NOT NULL"] if spec.nullable else []
    else:
        keys = ["create_time", "id"]
        extra = [] if column is None else [f"{column} IS NULL"]
    bounds: list[Any] = []
    if after is not None:
        extra.append(dialect.keyset_after(keys, descending=descending))
        if len(keys) == 3:
            money = column == "total_price"
            bounds.append(dialect.encode_money(after.value) if money else after.value)
        bounds += [dialect.encode_time(after.create_time), dialect.encode_uuid(after.id)]
    where, params = filter_clause(query, dialect, *extra)
    direction = " DESC" if descending else ""
    order = ", ".join(f"{key}{direction}" for key in keys)
    sql = f"{_select(API_CALL, API_CALL_COLUMNS)}{where} ORDER BY {order} LIMIT ?"
    return dialect.sql(sql), [*params, *bounds, limit]


def without_value_may_match(query: QueryFilter, spec: SortSpec) -> bool:
    """Whether a page reads the calls without ``spec``'s value (its second step).

    A time order's one step is that one (no call lacks a create_time); a
    bound on the sort's own column (a cost range when sorting by cost)
    matches no call without a value, so that step is skipped.
    """
    if spec.column is None:
        return True
    if not spec.nullable:
        return False
    bounds = {
        "total_price": (query.min_cost, query.max_cost),
        "latency_ms": (query.min_latency_ms, query.max_latency_ms),
    }.get(spec.column, ())
    return all(bound is None for bound in bounds)


SEARCH_PROBE_LIMIT = 10_000
"""Candidate messages from a text index past which a session search walks sessions instead.

A text that many messages hold fills a page from the newest sessions (the
walk stops early); gathering every session that holds it would read them all
(0.5 s for a word in 250,000 of a million messages, against 10 ms to walk)."""


def session_search(
    dialect: Dialect, query: SessionQuery, after: Cursor | None, limit: int
) -> tuple[str, list[Any]]:
    """A page of the sessions ``query`` selects, newest first, and its parameters.

    The text matches the title or the text of any of the session's messages.
    Sessions are walked newest first through the session index, each tested,
    until the page is full; how a session's messages are tested depends on
    how common the text is and on the dialect's text index
    (``Dialect.text_probe``):

    - With an index (SQLite's FTS5 trigram table, PostgreSQL's pg_trgm GIN
      index) and a text of three characters or more, the index lists up to
      ``SEARCH_PROBE_LIMIT`` + 1 candidate messages first. When it finds no
      more than the limit, the sessions of those that do contain the text
      are gathered once and a walked session is looked up among them: a
      text one session holds takes milliseconds instead of reading every
      message. When it finds more, the text is common: the walk asks each
      session's messages as below, and the page fills early. SQLite's
      candidates include every message its writer has not indexed yet
      (``SqliteStore.index_pending_text``): a backlog never hides a match,
      and one of more than the limit makes the search walk.
    - Otherwise (no index, a shorter text, MySQL, whose FULLTEXT indexes
      words rather than substrings), each walked session's messages are
      asked as a scalar subquery, since PostgreSQL turns an EXISTS into one
      scan of every message matching the text, hashed (1 s at a million
      messages, however soon the page fills). A text that matches nothing
      then reads every message of the sessions in range.

    Either way the match is the dialect's ``contains`` on the stored text:
    an index only narrows which messages are asked, so the results are the
    same with and without one.
    """
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("tenant_id", query.tenant_id),
        ("user_id", query.user_id),
        ("agent_id", query.agent_id),
    ):
        if value is not None:
            clauses.append(f"s.{column} = ?")
            params.append(dialect.encode_uuid(value))
    if query.start_time is not None:
        clauses.append("s.create_time >= ?")
        params.append(dialect.encode_time(query.start_time))
    if query.end_time is not None:
        clauses.append("s.create_time < ?")
        params.append(dialect.encode_time(query.end_time))
    if after is not None:
        clauses.append(dialect.keyset_after(["s.create_time", "s.id"], descending=True))
        params += [dialect.encode_time(after.create_time), dialect.encode_uuid(after.id)]
    text = query.text
    if text is None:
        return _session_search_sql(dialect, tuple(clauses), False, None), [*params, limit]
    probe = dialect.text_probe()
    if probe is not None and len(text) < probe.shortest:
        probe = None
    pattern = like_pattern(text)
    sql = _session_search_sql(dialect, tuple(clauses), True, probe)
    if probe is None:
        return sql, [*params, pattern, pattern, limit]
    recheck = [pattern] if probe.rechecks else []
    return sql, [probe.value(text), *params, pattern, *recheck, pattern, limit]


@functools.lru_cache(maxsize=256)
def _session_search_sql(
    dialect: Dialect, clauses: tuple[str, ...], text: bool, probe: TextProbe | None
) -> str:
    """The statement of ``session_search`` for one combination of conditions, built once."""
    if text:
        scan = (
            f"(SELECT 1 FROM {MESSAGE.name} m WHERE m.chat_session_id = s.id "
            f"AND {dialect.contains(dialect.json_text('m.content', 'text'))} LIMIT 1) IS NOT NULL"
        )
        if probe is None:
            matched = scan
        else:
            # CASE, not OR: only it promises the order of evaluation, so the probe runs
            # only where the index exists. A subquery of its own, uncorrelated, is
            # evaluated once, where the condition alone was asked again for each session.
            indexed = (
                f"(SELECT CASE WHEN {probe.ready} THEN "
                f"(SELECT COUNT(*) FROM probe) <= {SEARCH_PROBE_LIMIT} END)"
            )
            matched = f"CASE WHEN {indexed} THEN s.id IN ({probe.sessions}) ELSE {scan} END"
        clauses = (*clauses, f"({dialect.contains('s.title')} OR {matched})")
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    columns = ", ".join(f"s.{name}" for name in SESSION.column_names)
    head = (
        ""
        if probe is None
        else f"WITH probe AS MATERIALIZED ({probe.candidates} LIMIT {SEARCH_PROBE_LIMIT + 1}) "
    )
    return dialect.sql(
        f"{head}SELECT {columns} FROM {SESSION.name} s{where} "
        "ORDER BY s.create_time DESC, s.id DESC LIMIT ?"
    )


def usage_totals(dialect: Dialect) -> tuple[str, ...]:
    """The sums of a usage statistic over API-call rows, in ``UsageTotals.from_sums`` order.

    The cost comes as the dialect's two parts (``Dialect.cost_parts``), each
    summed, so that SQLite's sum is exact and equals its rollups'.
    """
    money, units = dialect.cost_parts("total_price")
    return (
        "COUNT(*)",
        *(
            f"SUM(CASE WHEN status = '{status.value}' THEN 1 ELSE 0 END)"
            for status in ApiCallStatus
        ),
        "SUM(total_tokens)",
        "SUM(prompt_tokens)",
        "SUM(completion_tokens)",
        f"SUM({money})",
        f"SUM({units})",
        "COUNT(total_price)",
        # sums and counts, not AVG: MySQL rounds AVG of integers to four decimals
        "SUM(latency_ms)",
        "COUNT(latency_ms)",
        "SUM(tokens_per_second)",
        "COUNT(tokens_per_second)",
        "SUM(time_to_first_token_ms)",
        "COUNT(time_to_first_token_ms)",
        "SUM(cached_tokens)",
        "SUM(reasoning_tokens)",
        "SUM(cache_write_tokens)",
    )


TOTALS_WIDTH = 21
"""How many sums a usage statistic's row starts with (``usage_totals``)."""


def values_read(dialect: Dialect, where: str, keys: Sequence[str], bucket: str | None) -> bool:
    """Whether ``usage_statements`` reads the values behind the percentiles (its second)."""
    narrowed = bool(where or keys or bucket is not None)
    aggregates = dialect.percentile_aggregates(PERCENTILE_COLUMNS[0], list(PERCENTS))
    return narrowed and aggregates is None and dialect.percentiles_from_values


def usage_statements(
    dialect: Dialect, where: str, keys: Sequence[str], bucket: str | None
) -> list[str]:
    """The statements of a usage breakdown: its totals, then its percentiles.

    Each returns the group values first (``keys`` in order, then the bucket
    start). When a filter or a grouping narrows the calls:

    - with an ordered-set percentile aggregate, one statement returns the
      totals and then every percentile;
    - where the dialect says so (``percentiles_from_values``), a second
      statement returns each matching call's ``PERCENTILE_COLUMNS`` values,
      whose percentiles the caller computes (``statistics.percentile``).

    Otherwise the totals are one statement and the percentiles of each of
    ``PERCENTILE_COLUMNS`` one more, from a histogram, which the caller
    joins on the group values. Percentiles interpolate linearly between the
    closest ranks, as PostgreSQL's ``percentile_cont`` does.
    """
    groups = group_expressions(dialect, keys, bucket)
    selected = "".join(f"{expr} AS g{i}, " for i, expr in enumerate(groups))
    group_by = f" GROUP BY {', '.join(groups)}" if groups else ""
    totals = ", ".join(usage_totals(dialect))

    aggregates = [
        dialect.percentile_aggregates(column, list(PERCENTS)) for column in PERCENTILE_COLUMNS
    ]
    narrowed = bool(where or groups)
    if narrowed and all(figures is not None for figures in aggregates):
        # Sorting the matching values, or each group's, costs less than a histogram
        # of them, and shares the totals' scan (all-time by model and day at a
        # million calls: 1.3 s, against 6.2 s by histograms); over a whole table in
        # one group the sort would spill (below).
        figures = ", ".join(figure for column in aggregates for figure in column or ())
        one = f"SELECT {selected}{totals}, {figures} FROM {API_CALL.name}{where}"
        return [dialect.sql(one + group_by)]
    totals_sql = f"SELECT {selected}{totals} FROM {API_CALL.name}{where}{group_by}"
    if values_read(dialect, where, keys, bucket):
        # The values themselves, for the caller to sort (statistics.percentile):
        # one pass over the matching calls instead of one per histogram, and
        # Python's sort instead of two sorts per histogram in the database.
        return [dialect.sql(totals_sql), values_statement(dialect, where, groups)]
    return [
        dialect.sql(totals_sql),
        *(
            dialect.sql(_histogram_percentiles(dialect, column, where, groups, selected))
            for column in PERCENTILE_COLUMNS
        ),
    ]


def group_expressions(dialect: Dialect, keys: Sequence[str], bucket: str | None) -> list[str]:
    """What API-call rows are grouped by: the ``keys``' columns, then the bucket's start."""
    groups = [GROUP_COLUMNS[key] for key in keys]
    if bucket is not None:
        groups.append(dialect.bucket_start("create_time", bucket))
    return groups


def percentile_statements(
    dialect: Dialect, where: str, keys: Sequence[str], bucket: str | None
) -> list[tuple[str, str]]:
    """The percentiles alone of the API calls ``where`` selects, per group: (kind, statement).

    Each statement returns the group values first. Its kind says what
    follows them: ``"figures"`` every percentile (an ordered-set aggregate),
    ``"values"`` each call's ``PERCENTILE_COLUMNS`` values (for the caller to
    sort), or ``"column0"``, ``"column1"``: one column's percentiles, from a
    histogram in the database. The rollups take exact percentiles from here.
    """
    groups = group_expressions(dialect, keys, bucket)
    selected = "".join(f"{expr} AS g{i}, " for i, expr in enumerate(groups))
    group_by = f" GROUP BY {', '.join(groups)}" if groups else ""
    aggregates = [
        dialect.percentile_aggregates(column, list(PERCENTS)) for column in PERCENTILE_COLUMNS
    ]
    if all(figures is not None for figures in aggregates):
        figures = ", ".join(figure for column in aggregates for figure in column or ())
        sql = f"SELECT {selected}{figures} FROM {API_CALL.name}{where}{group_by}"
        return [("figures", dialect.sql(sql))]
    if dialect.percentiles_from_values:
        return [("values", values_statement(dialect, where, groups))]
    return [
        (
            f"column{position}",
            dialect.sql(_histogram_percentiles(dialect, column, where, groups, selected)),
        )
        for position, column in enumerate(PERCENTILE_COLUMNS)
    ]


def values_statement(dialect: Dialect, where: str, groups: Sequence[str]) -> str:
    """Each selected call's group values, then its ``PERCENTILE_COLUMNS`` values."""
    selected = "".join(f"{expr} AS g{i}, " for i, expr in enumerate(groups))
    either = " OR ".join(f"{column} IS NOT NULL" for column in PERCENTILE_COLUMNS)
    present = f"{where} AND ({either})" if where else f" WHERE {either}"
    return dialect.sql(
        f"SELECT {selected}{', '.join(PERCENTILE_COLUMNS)} FROM {API_CALL.name}{present}"
    )


def _histogram_percentiles(
    dialect: Dialect, column: str, where: str, groups: Sequence[str], selected: str
) -> str:
    """``column``'s percentiles per group, from a histogram of its values.

    One row per distinct value (far fewer than calls), a running count over
    it, and the values at the two ranks around each percentile's position.
    An index on the column makes the histogram a walk. Unfiltered, the
    histogram walks that index. Filtered, that walk would fetch every call to
    test the filter (2 s at a million calls, even when 1% of them match), so
    the dialect keeps the planner off that index.
    """
    value = dialect.unindexed(column) if where else column
    present = f"{where} AND {value} IS NOT NULL" if where else f" WHERE {value} IS NOT NULL"
    keys_out = "".join(f"g{i}, " for i in range(len(groups)))
    partition = f"PARTITION BY {keys_out.rstrip(', ')} " if groups else ""
    figures = []
    for percent in PERCENTS:
        # the 0-based position (n - 1) * p / 100, split into a whole rank and a fraction
        low = dialect.intdiv(f"(n - 1) * {percent}", "100")
        fraction = (
            f"(((MAX(n) - 1) * {percent} - "
            f"{dialect.intdiv(f'(MAX(n) - 1) * {percent}', '100')} * 100) / 100.0)"
        )
        figures.append(
            f"MIN(CASE WHEN upto >= {low} + 1 THEN v END) * (1 - {fraction}) + "
            f"COALESCE(MIN(CASE WHEN upto >= {low} + 2 THEN v END), 0) * {fraction}"
        )
    return (
        f"SELECT {keys_out}{', '.join(figures)} FROM ("
        f"SELECT {keys_out}v, {dialect.as_integer(f'SUM(c) OVER ({partition}ORDER BY v)')} "
        f"AS upto, {dialect.as_integer(f'SUM(c) OVER ({partition.strip()})')} AS n FROM ("
        f"SELECT {selected}{value} AS v, COUNT(*) AS c FROM {API_CALL.name}{present} "
        f"GROUP BY {', '.join([*groups, value])}) histogram) running"
        f"{' GROUP BY ' + keys_out.rstrip(', ') if groups else ''}"
    )


# --- erasure (issue 14) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Erasing:
    """One statement of an erasure: it binds the nil UUID ``nils`` times, then the erased id."""

    sql: str
    ids: int = 1
    nils: int = 0


@dataclass(frozen=True, slots=True)
class ErasureStatements:
    """What erasing one user's or one tenant's records runs, and what a dry run counts.

    ``count_*`` read what the deletes and the update would touch, under the
    same conditions. The writes run in this order, in one transaction:
    ``delete_messages`` (the subject's own, and every one of its sessions,
    those locked first as ``cleanup_session_messages`` does),
    ``delete_sessions``, ``rollups`` (the calls moved to the nil user in the
    rollups, before they change), ``anonymise_calls``, then for a tenant
    ``delete_agents`` (its own, and those its providers serve) and
    ``delete_providers``.
    """

    count_sessions: Erasing
    count_messages: Erasing
    count_calls: Erasing
    delete_messages: Erasing
    delete_sessions: Erasing
    rollups: tuple[Erasing, ...]
    anonymise_calls: Erasing
    count_agents: Erasing | None = None
    count_providers: Erasing | None = None
    delete_agents: Erasing | None = None
    delete_providers: Erasing | None = None


@functools.lru_cache(maxsize=16)
def erasure_statements(dialect: Dialect, column: str) -> ErasureStatements:
    """The statements erasing the records whose ``column`` (user_id or tenant_id) is one id."""
    q = dialect.sql
    own = f" WHERE {column} = ?"

    def messages(lock: str) -> str:
        return (
            f"{own} OR chat_session_id IN (SELECT id FROM {SESSION.name} WHERE {column} = ?{lock})"
        )

    subtract, add, emptied = user_change_statements(dialect, f"{column} = ?")
    statements = ErasureStatements(
        count_sessions=Erasing(q(f"SELECT COUNT(*) FROM {SESSION.name}{own}")),
        count_messages=Erasing(q(f"SELECT COUNT(*) FROM {MESSAGE.name}{messages('')}"), ids=2),
        count_calls=Erasing(q(f"SELECT COUNT(*) FROM {API_CALL.name}{own}")),
        delete_messages=Erasing(
            q(f"DELETE FROM {MESSAGE.name}{messages(dialect.lock_rows)}"), ids=2
        ),
        delete_sessions=Erasing(q(f"DELETE FROM {SESSION.name}{own}")),
        rollups=(
            Erasing(unseal_statements(dialect)[1], ids=0),  # the periods of their calls change
            *(Erasing(sql) for sql in subtract),
            *(Erasing(sql, nils=1) for sql in add),
            *(Erasing(sql) for sql in emptied),
        ),
        anonymise_calls=Erasing(
            q(
                f"UPDATE {API_CALL.name} SET user_id = ?, chat_session_id = ?, "
                "request_message_id = ?, response_message_id = ?, error_message = NULL, "
                f"api_response_id = NULL{own}"
            ),
            nils=4,
        ),
    )
    if column != "tenant_id":
        return statements
    served = (
        " WHERE tenant_id = ? OR provider_id IN "
        f"(SELECT id FROM {PROVIDER.name} WHERE tenant_id = ?)"
    )
    return replace(
        statements,
        count_agents=Erasing(q(f"SELECT COUNT(*) FROM {AGENT.name}{served}"), ids=2),
        count_providers=Erasing(q(f"SELECT COUNT(*) FROM {PROVIDER.name}{own}")),
        delete_agents=Erasing(q(f"DELETE FROM {AGENT.name}{served}"), ids=2),
        delete_providers=Erasing(q(f"DELETE FROM {PROVIDER.name}{own}")),
    )
