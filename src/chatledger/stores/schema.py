"""The one schema definition: MoFA's tables and columns, and the versioned migrations.

Tables are described once, in dialect-free terms; each dialect turns them
into DDL. Migrations are an ordered list; a version table records which have
run, so running them again is a no-op and an old database is upgraded in
place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from chatledger.stores.statistics import BUCKET_LOWS

if TYPE_CHECKING:
    from chatledger.stores.dialect import Dialect

__all__ = [
    "API_CALL",
    "MESSAGE",
    "MIGRATIONS",
    "PROVIDER",
    "AGENT",
    "DASHBOARD_INDEXES",
    "HISTOGRAM_BUCKET",
    "HISTOGRAM_COUNTS",
    "ROLLUP_DAILY",
    "ROLLUP_HISTOGRAM",
    "ROLLUP_HOURLY",
    "ROLLUP_SUM_COLUMNS",
    "ROLLUP_TABLES",
    "SEALED_PERIOD",
    "SESSION",
    "SCHEMA_VERSION_TABLE",
    "Column",
    "ColumnType",
    "ForeignKey",
    "Index",
    "Migration",
    "Table",
]

SCHEMA_VERSION_TABLE = "chatledger_schema_version"


class ColumnType(Enum):
    """Dialect-free column types; each dialect maps them to its own."""

    UUID = "uuid"
    TEXT = "text"
    SHORT_TEXT = "short_text"  # bounded, so MySQL can index it
    JSON = "json"
    TIME = "time"
    INT = "int"
    FLOAT = "float"
    MONEY = "money"
    MONEY_SUM = "money_sum"  # a sum of money: exact (an integer of whole amounts on SQLite)
    COUNT = "count"  # a small count, 32 bits (its sums stay integers on PostgreSQL)
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class Column:
    """A column: name, type, nullability and, for short text, its length."""

    name: str
    type: ColumnType
    nullable: bool = False
    length: int = 255
    default: str | None = None  # a literal SQL default, the same in every dialect


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A reference from ``column`` to ``table(id)``."""

    column: str
    table: str
    on_delete: str  # "CASCADE" or "SET NULL"


@dataclass(frozen=True, slots=True)
class Index:
    """A secondary index; a column name ending in `` DESC`` sorts descending.

    ``where`` makes it partial where the dialect can (a condition on the
    row); a dialect without partial indexes indexes every row.
    """

    name: str
    columns: tuple[str, ...]
    where: str | None = None


@dataclass(frozen=True, slots=True)
class Table:
    """A table, with ``id`` as its primary key unless it names another."""

    name: str
    columns: tuple[Column, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    checks: tuple[str, ...] = ()
    indexes: tuple[Index, ...] = ()
    primary_key: tuple[str, ...] = ("id",)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The names of the columns, in order."""
        return tuple(column.name for column in self.columns)


def _c(name: str, kind: ColumnType, *, nullable: bool = False, **kwargs: object) -> Column:
    return Column(name, kind, nullable, **kwargs)  # type: ignore[arg-type]


U, T, S, J, TM, INT, F, M, B, MS = (
    ColumnType.UUID,
    ColumnType.TEXT,
    ColumnType.SHORT_TEXT,
    ColumnType.JSON,
    ColumnType.TIME,
    ColumnType.INT,
    ColumnType.FLOAT,
    ColumnType.MONEY,
    ColumnType.BOOL,
    ColumnType.MONEY_SUM,
)

SESSION = Table(
    "entity_chat_session",
    (
        _c("id", U),
        _c("user_id", U),
        _c("agent_id", U),
        _c("tenant_id", U),
        _c("title", S, nullable=True),
        _c("metadata", J, nullable=True),
        _c("create_time", TM),
        _c("update_time", TM),
    ),
    indexes=(
        Index("idx_chat_session_user", ("user_id",)),
        Index("idx_chat_session_agent", ("agent_id",)),
        Index("idx_chat_session_tenant", ("tenant_id",)),
        Index("idx_chat_session_update_time", ("update_time DESC",)),
    ),
)

MESSAGE = Table(
    "entity_llm_message",
    (
        _c("id", U),
        _c("parent_message_id", U, nullable=True),
        _c("chat_session_id", U),
        _c("agent_id", U),
        _c("user_id", U),
        _c("tenant_id", U),
        _c("role", S, length=20),
        _c("content", J),
        _c("create_time", TM),
        _c("update_time", TM),
    ),
    foreign_keys=(
        ForeignKey("chat_session_id", "entity_chat_session", "CASCADE"),
        ForeignKey("parent_message_id", "entity_llm_message", "SET NULL"),
    ),
    # Only what chatledger reads by: MoFA's user, agent and create_time indexes cost
    # 2.4x on batch inserts and serve no query. The parent index is what keeps a
    # delete from scanning the table for children to set NULL (4 s per 100 rows at
    # 200,000 messages without it).
    indexes=(
        Index("idx_llm_message_session", ("chat_session_id", "create_time")),
        Index("idx_llm_message_parent", ("parent_message_id",)),
    ),
)

API_CALL = Table(
    "entity_llm_api_call",
    (
        _c("id", U),
        _c("chat_session_id", U),
        _c("agent_id", U),
        _c("user_id", U),
        _c("tenant_id", U),
        _c("request_message_id", U),
        _c("response_message_id", U),
        _c("model_name", S, length=100),
        _c("status", S, length=20, default="'success'"),
        _c("error_message", T, nullable=True),
        _c("error_code", S, nullable=True, length=50),
        _c("prompt_tokens", INT, default="0"),
        _c("completion_tokens", INT, default="0"),
        _c("total_tokens", INT, default="0"),
        _c("prompt_tokens_details", J, nullable=True),
        _c("completion_tokens_details", J, nullable=True),
        _c("total_price", M, nullable=True),
        _c("price_details", J, nullable=True),
        _c("latency_ms", INT, nullable=True),
        _c("time_to_first_token_ms", INT, nullable=True),
        _c("tokens_per_second", F, nullable=True),
        _c("api_response_id", S, nullable=True),
        _c("create_time", TM),
        _c("update_time", TM),
    ),
    checks=(
        "status IN ('success', 'failed', 'timeout', 'rate_limited', 'cancelled')",
        "prompt_tokens >= 0 AND completion_tokens >= 0 AND total_tokens >= 0",
    ),
    indexes=(
        Index("idx_api_call_session", ("chat_session_id", "create_time DESC")),
        Index("idx_api_call_user", ("user_id", "create_time DESC")),
        Index("idx_api_call_agent", ("agent_id", "create_time DESC")),
        Index("idx_api_call_status", ("status", "create_time DESC")),
        Index("idx_api_call_model", ("model_name", "create_time DESC")),
        Index("idx_api_call_time", ("create_time DESC",)),
        Index("idx_api_call_tenant", ("tenant_id", "create_time DESC")),
    ),
)

PROVIDER = Table(
    "entity_provider",
    (
        _c("id", U),
        _c("tenant_id", U),
        _c("provider_name", S),
        _c("provider_type", S),
        _c("api_base", T),
        _c("api_key", T),
        _c("enabled", B, default="TRUE"),
        _c("create_time", TM),
        _c("update_time", TM),
    ),
    unique=(("tenant_id", "provider_name"),),
    indexes=(
        Index("idx_entity_provider_tenant", ("tenant_id",)),
        Index("idx_entity_provider_enabled", ("enabled",)),
    ),
)

AGENT = Table(
    "entity_agent",
    (
        _c("id", U),
        _c("tenant_id", U),
        _c("agent_code", S),
        _c("agent_name", S),
        _c("agent_order", INT, default="0"),
        _c("agent_status", B, default="TRUE"),
        _c("context_limit", INT, nullable=True),
        _c("custom_params", J, nullable=True),
        _c("max_completion_tokens", INT, nullable=True),
        _c("model_name", S),
        _c("provider_id", U),
        _c("response_format", S, nullable=True),
        _c("system_prompt", T),
        _c("temperature", F, nullable=True),
        _c("stream", B, nullable=True),
        _c("thinking", J, nullable=True),
        _c("create_time", TM),
        _c("update_time", TM),
    ),
    foreign_keys=(ForeignKey("provider_id", "entity_provider", "CASCADE"),),
    unique=(("agent_code",),),
    indexes=(
        Index("idx_entity_agent_tenant", ("tenant_id",)),
        Index("idx_entity_agent_order", ("agent_order",)),
        Index("idx_entity_agent_provider", ("provider_id",)),
    ),
)

V1_TABLES = (SESSION, MESSAGE, API_CALL, PROVIDER, AGENT)

# Added in version 2: token subsets as columns, so statistics sum them without
# parsing JSON per row. Version-1 rows are backfilled from their JSON details.
# Version 4 adds cache-write tokens the same way, for the rollups to sum.
TOKEN_SUBSET_COLUMNS = (
    Column("cached_tokens", ColumnType.INT, nullable=True),
    Column("reasoning_tokens", ColumnType.INT, nullable=True),
    Column("cache_write_tokens", ColumnType.INT, nullable=True),
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: a description and the statements that reach it."""

    version: int
    description: str
    statements: Callable[[Dialect], list[str]] = field(repr=False)


def _initial_tables(dialect: Dialect) -> list[str]:
    statements: list[str] = []
    for table in V1_TABLES:
        statements.append(dialect.create_table(table))
        statements.extend(dialect.create_index(table, index) for index in table.indexes)
    return statements


def _token_subset_columns(dialect: Dialect) -> list[str]:
    statements = [dialect.add_column(API_CALL, column) for column in TOKEN_SUBSET_COLUMNS[:2]]
    for column, details in (
        ("cached_tokens", "prompt_tokens_details"),
        ("reasoning_tokens", "completion_tokens_details"),
    ):
        statements.append(
            f"UPDATE {API_CALL.name} SET {column} = "
            f"{dialect.json_int(details, column)} WHERE {details} IS NOT NULL"
        )
    # Latency percentiles read a histogram of latency_ms; the index turns it into a walk.
    statements.append(
        dialect.create_index(API_CALL, Index("idx_api_call_latency", ("latency_ms",)))
    )
    return statements


# Added in version 3, for the dashboard's pages at a million calls (each measured
# at 1M calls; writes pay for each index, so only what a page needs):
# - the cost and token sorts walk an index on (sort value, create_time, id), which
#   ends each page's ties in keyset order (a sort of every call otherwise:
#   0.3 s a page on SQLite);
# - an error code is rare: the calls of one are found by their own index, which
#   holds only calls that have one (partial where the database can);
# - sessions are searched newest first: an index on (create_time, id) lets a search
#   stop at its page instead of testing every session;
# - the latency index gains create_time and id, which replaces it: with them it serves
#   a whole latency order, and SQLite then walks it for a filtered page (2 ms) where
#   it sorted the filter's matches (0.14 s for a tenant's 100,000 calls).
DASHBOARD_INDEXES: tuple[tuple[Table, Index], ...] = (
    (API_CALL, Index("idx_api_call_price", ("total_price", "create_time", "id"))),
    (API_CALL, Index("idx_api_call_latency_order", ("latency_ms", "create_time", "id"))),
    (API_CALL, Index("idx_api_call_tokens", ("total_tokens", "create_time", "id"))),
    (
        API_CALL,
        Index("idx_api_call_error_code", ("error_code", "create_time"), "error_code IS NOT NULL"),
    ),
    (SESSION, Index("idx_chat_session_create_time", ("create_time", "id"))),
)


def _dashboard_indexes(dialect: Dialect) -> list[str]:
    return [
        *(dialect.create_index(table, index) for table, index in DASHBOARD_INDEXES),
        dialect.drop_index(API_CALL, "idx_api_call_latency"),  # the order index covers it
    ]


# Added in version 4: the usage rollups (see ``stores/rollups.py``), kept up to date in
# the transaction of every write of API calls; statistics read them instead of the calls
# whenever a filter allows.
ROLLUP_SUM_COLUMNS = (
    _c("calls", INT, default="0"),
    _c("prompt_tokens", INT, default="0"),
    _c("completion_tokens", INT, default="0"),
    _c("total_tokens", INT, default="0"),
    _c("cached_tokens", INT, default="0"),
    _c("cache_write_tokens", INT, default="0"),
    _c("reasoning_tokens", INT, default="0"),
    _c("priced_calls", INT, default="0"),
    # the exact cost: a money sum, plus 1e-10 units (SQLite's REAL prices split in two)
    _c("cost", MS, default="0"),
    _c("cost_units", INT, default="0"),
    _c("latency_sum", INT, default="0"),
    _c("latency_count", INT, default="0"),
    _c("ttft_sum", INT, default="0"),
    _c("ttft_count", INT, default="0"),
    _c("tps_sum", F, default="0"),
    _c("tps_count", INT, default="0"),
)
"""What each rollup row sums over its calls, in the order rollup writes bind them."""

ROLLUP_HOURLY = Table(
    "chatledger_usage_hourly",
    (
        _c("hour_start", TM),
        _c("tenant_id", U),
        _c("user_id", U),
        _c("agent_id", U),
        _c("model_name", S, length=100),
        _c("status", S, length=20),
        *ROLLUP_SUM_COLUMNS,
    ),
    primary_key=("hour_start", "tenant_id", "user_id", "agent_id", "model_name", "status"),
)
"""Usage per UTC hour, tenant, user, agent, model and status."""

ROLLUP_DAILY = Table(
    "chatledger_usage_daily",
    (
        _c("dimension", S, length=10),
        _c("dimension_value", S, length=100),
        _c("status", S, length=20),
        _c("day_start", TM),
        *ROLLUP_SUM_COLUMNS,
    ),
    # by day first: a breakdown reads a range of days of one dimension; a filter on one
    # value (a tenant's statistics) reads by the index
    primary_key=("dimension", "day_start", "dimension_value", "status"),
    indexes=(Index("idx_usage_daily_value", ("dimension", "dimension_value", "day_start")),),
)
"""Usage per UTC day and status, overall (dimension '') and per tenant, user, agent, model."""

HISTOGRAM_COUNTS = tuple(f"b{bucket}" for bucket in range(len(BUCKET_LOWS)))
"""A histogram row's count columns, one per bucket of ``statistics.BUCKET_LOWS``."""

ROLLUP_HISTOGRAM = Table(
    "chatledger_usage_histogram",
    (
        _c("dimension", S, length=10),
        _c("dimension_value", S, length=100),
        _c("status", S, length=20),
        _c("day_start", TM),
        _c("metric", INT),
        _c("calls", INT, default="0"),
        # One column per bucket, not one row: a day of a tenant's latencies is one row
        # that SUM()s with the others, where a row per bucket made 40 times as many rows
        # to read (264,000 for 90 days of 40 tenants; 0.9 s to group on SQLite).
        *(_c(name, ColumnType.COUNT, default="0") for name in HISTOGRAM_COUNTS),
    ),
    primary_key=("dimension", "day_start", "dimension_value", "status", "metric"),
    indexes=(Index("idx_usage_histogram_value", ("dimension", "dimension_value", "day_start")),),
)
"""Latency and time-to-first-token histograms per UTC day and status, overall and per
tenant, agent and model: per metric, the calls (``calls``) and their count per bucket."""

HISTOGRAM_BUCKET = Table(
    "chatledger_histogram_bucket",
    (_c("low", INT), _c("bucket", INT)),
    primary_key=("low",),
)
"""Where each histogram bucket starts, so SQL finds a value's bucket as Python does."""

ROLLUP_TABLES = (ROLLUP_HOURLY, ROLLUP_DAILY, ROLLUP_HISTOGRAM)

# Added in version 8: complete months and weeks whose daily rows are also summed into
# period rows (in the daily and histogram tables, under dimension "M:" or "W:" + the
# dimension), so that a long range reads a row per value and period, not per day: at a
# million calls over 90 days a breakdown of every user since the start read 180,000 daily
# rows (50 ms on SQLite) and of every agent 42,000 histogram rows of 123 counts (40 ms).
# See "sealed periods" in ``stores/rollups.py``.
SEALED_PERIOD = Table(
    "chatledger_usage_sealed_period",
    (_c("period", S, length=10), _c("period_start", TM)),
    primary_key=("period", "period_start"),
)
"""The UTC months and weeks whose period rows hold exactly what their days' rows hold."""

# What calls_for_messages reads by: the calls that asked or answered a message.
MESSAGE_CALL_INDEXES = (
    Index("idx_api_call_response", ("response_message_id",)),
    Index("idx_api_call_request", ("request_message_id",)),
)


def _rollup_tables(dialect: Dialect) -> list[str]:
    subset = TOKEN_SUBSET_COLUMNS[2]
    return [
        dialect.add_column(API_CALL, subset),
        *(dialect.create_index(API_CALL, index) for index in MESSAGE_CALL_INDEXES),
        *(dialect.create_table(table) for table in (*ROLLUP_TABLES, HISTOGRAM_BUCKET)),
        *(dialect.create_index(table, index) for table in ROLLUP_TABLES for index in table.indexes),
    ]


# Apart from the tables (version 4): MySQL commits each DDL statement, and the rest of its
# transaction would then commit statement by statement, where the backfill must commit
# with the record of its version or not at all (two processes migrating at once would
# otherwise both add every call).
def _rollup_backfill(dialect: Dialect) -> list[str]:
    # imported here: the rollup statements are built from these tables
    from chatledger.stores.rollups import bucket_rows, rebuild_statements

    subset = TOKEN_SUBSET_COLUMNS[2]
    return [
        f"UPDATE {API_CALL.name} SET {subset.name} = "
        f"{dialect.json_int('prompt_tokens_details', subset.name)} "
        "WHERE prompt_tokens_details IS NOT NULL",
        # Emptied first: a process migrating at the same time waits for this one's end,
        # then counts again what this one counted, and then finds the version recorded.
        *(f"DELETE FROM {table.name}" for table in (*ROLLUP_TABLES, HISTOGRAM_BUCKET)),
        f"INSERT INTO {HISTOGRAM_BUCKET.name} (low, bucket) VALUES {bucket_rows()}",
        *rebuild_statements(dialect, None),
    ]


# Version 6 once built an index of the messages' text for the dashboard's session search,
# which without one reads every message of every session when its page does not fill (1 to
# 1.5 s for a text one session holds, at a million messages). It builds nothing now, and is
# kept, empty, so that every database numbers its versions alike: SQLite's FTS5 trigram
# index comes with version 7 (built here, kept by triggers, it halved batch writes);
# PostgreSQL's pg_trgm index only on request (``PostgresStore.create_text_index``: built
# here, it halved single saves); MySQL, whose FULLTEXT indexes words, not substrings, has
# none.
def _text_search_index(dialect: Dialect) -> list[str]:
    return []


# Added in version 7: SQLite's text index no longer indexed in the write's own transaction
# (~50 us of a CPU per message, half the batch write rate) but from a table of pending
# messages that the triggers fill and the store's writer thread drains while it is idle, as
# PostgreSQL's GIN fastupdate pending list; a search also reads the pending messages, so
# it finds what a scan finds whatever the backlog. Nothing on other dialects. See
# ``Dialect.text_search_backlog``.
def _text_search_backlog(dialect: Dialect) -> list[str]:
    return dialect.text_search_backlog(MESSAGE)


def _sealed_periods(dialect: Dialect) -> list[str]:
    return [dialect.create_table(SEALED_PERIOD)]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "MoFA's five tables and their indexes", _initial_tables),
    Migration(
        2,
        "token subsets as columns, and a latency index, on entity_llm_api_call",
        _token_subset_columns,
    ),
    Migration(
        3,
        "indexes for the dashboard: calls by price, tokens, latency and error code; "
        "sessions by age",
        _dashboard_indexes,
    ),
    Migration(
        4,
        "usage rollup tables (hourly, daily, histograms); cache-write tokens as a column; "
        "calls by request and response message",
        _rollup_tables,
    ),
    Migration(5, "usage rollups backfilled from the API calls", _rollup_backfill),
    Migration(
        6,
        "nothing now (message text is indexed by version 7 on SQLite, on request on PostgreSQL)",
        _text_search_index,
    ),
    Migration(
        7,
        "message text indexed in the background from a table of pending messages (SQLite)",
        _text_search_backlog,
    ),
    Migration(
        8,
        "complete months and weeks of usage rollups summed into rows of their own",
        _sealed_periods,
    ),
)
