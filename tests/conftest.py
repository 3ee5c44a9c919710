"""Fixtures shared by the test modules: one scratch database per module and server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scratch_databases import mysql_database, postgres_database


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database this module has to itself."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def mysql_url() -> Iterator[str]:
    """The URL of a MariaDB/MySQL database this module has to itself."""
    with mysql_database() as url:
        yield url
