"""The dialect-free SQL layer: placeholders, DDL from the one schema, statements built once."""

from __future__ import annotations

from typing import ClassVar

import pytest

from chatledger.stores.dialect import Dialect
from chatledger.stores.mysql import MySqlDialect
from chatledger.stores.postgres import PostgresDialect
from chatledger.stores.queries import usage_statements
from chatledger.stores.schema import API_CALL, MESSAGE, V1_TABLES, Table
from chatledger.stores.sqlite import SqliteDialect


class _Numeric(Dialect):
    paramstyle: ClassVar[str] = "numeric"


class _Format(Dialect):
    paramstyle: ClassVar[str] = "format"


def test_placeholders_are_rewritten_per_driver() -> None:
    """`?` becomes `$1, $2…` for numeric drivers and `%s` (with `%` escaped) for format ones."""
    query = "SELECT a FROM t WHERE b = ? AND c LIKE 'x%' AND d = ?"
    assert SqliteDialect().sql(query) == query
    assert _Numeric().sql(query) == "SELECT a FROM t WHERE b = $1 AND c LIKE 'x%' AND d = $2"
    assert _Format().sql(query) == "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%' AND d = %s"


def test_ddl_keeps_mofa_names_and_constraints() -> None:
    """CREATE TABLE carries MoFA's table, columns, cascade and checks."""
    ddl = SqliteDialect().create_table(MESSAGE)
    assert ddl.startswith("CREATE TABLE IF NOT EXISTS entity_llm_message (")
    assert (
        "FOREIGN KEY (chat_session_id) REFERENCES entity_chat_session(id) ON DELETE CASCADE" in ddl
    )
    assert "CHECK (status IN (" in SqliteDialect().create_table(API_CALL)


@pytest.mark.parametrize("bucket", [None, "hour", "day", "week", "month"])
def test_usage_statements_bind_values_not_text(bucket: str | None) -> None:
    """Breakdown statements carry no filter value in their text: only placeholders."""
    where = " WHERE user_id = ? AND create_time >= ?"
    # SQLite: totals, then the values; PostgreSQL: one statement; MySQL: totals, histograms
    for dialect, count in (
        (SqliteDialect(), 2),
        (PostgresDialect(), 1),
        (MySqlDialect(mariadb=True), 3),
    ):
        statements = usage_statements(dialect, where, ("model", "user"), bucket)
        assert len(statements) == count
        for statement in statements:
            assert statement.count("?") + statement.count("$") + statement.count("%s") == 2
            assert "model_name AS g0, user_id AS g1" in statement
        assert "GROUP BY model_name, user_id" in statements[0]


@pytest.mark.parametrize("table", V1_TABLES, ids=lambda table: table.name)
def test_every_foreign_key_is_indexed(table: Table) -> None:
    """Each child key leads an index, so deleting a parent never scans the child table."""
    leading = {index.columns[0] for index in table.indexes}
    for key in table.foreign_keys:
        assert key.column in leading, f"{table.name}.{key.column} has no index"
