"""Fixtures for tests against the real PostgreSQL of the session (see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row


@pytest.fixture
def sql(database_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A plain autocommit connection of its own, for looking at (and poking) the database."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn
