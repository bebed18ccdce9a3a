"""One statement on its own: committed by itself when the request's transaction has not begun.

A PostgreSQL transaction costs two round trips of its own (``BEGIN`` and ``COMMIT``) on top
of its statements. A request whose work is one statement that is complete by itself (the
bearer-token lookup, a check-in's ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, a
till's redemption in ``partners.redeem_at_once``) can run it in autocommit mode instead:
one round trip, the same atomicity (a single statement is its own transaction), and what
it wrote is committed when it answers.

That is only right while nothing else of the request is under way in the database: a
statement run beside an open transaction would not see what the transaction wrote, could
wait on its locks, and would not be undone with it. So the statement runs alone only when
the session's connection has not started a transaction at the server (psycopg sends
``BEGIN`` with the first statement of one) and the session holds no unwritten changes;
otherwise, and on SQLite (where a round trip costs nothing), it runs inside the session's
transaction like any other statement.

It runs on the session's own connection (one connection per request, however the
request's statements run), through the driver, compiled once: for the plain column types
these statements use, the driver's values are what SQLAlchemy would give.
"""

from __future__ import annotations

import re
from collections import namedtuple
from dataclasses import dataclass, field

from psycopg.pq import TransactionStatus

from core.extensions import db


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled once for PostgreSQL: its SQL and its fixed parameters."""

    sql: str
    defaults: dict
    row_type: list = field(default_factory=list)  # the named tuple of its rows, once known

    def rows(self, cursor) -> list:
        if not self.row_type:
            names = [column.name for column in cursor.description or ()]
            self.row_type.append(namedtuple("Row", names, rename=True))
        make = self.row_type[0]._make
        return [make(row) for row in cursor.fetchall()]


_PREPARED: dict = {}
POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


def _prepared(statement, dialect) -> _Prepared:
    key = (statement, dialect.driver)
    prepared = _PREPARED.get(key)
    if prepared is None:
        compiled = statement.compile(dialect=dialect)
        defaults = {k: v for k, v in compiled.params.items() if v is not None}
        if any(isinstance(v, list | tuple) for v in defaults.values()):  # pragma: no cover
            raise ValueError("execute_alone takes statements without IN lists")
        # A value SQLAlchemy renders at execution time (a literal such as a separator) is
        # sent as an ordinary parameter instead.
        sql = POSTCOMPILE.sub(r"%(\1)s", compiled.string)
        prepared = _PREPARED[key] = _Prepared(sql, defaults)
    return prepared


def _idle_driver_connection():
    """The session's psycopg connection when a statement may run on it alone, else None."""
    if db.engine.dialect.name != "postgresql":
        return None
    session = db.session
    if session.new or session.dirty or session.deleted:
        return None
    driver = session.connection().connection.driver_connection
    return driver if driver.info.transaction_status == TransactionStatus.IDLE else None


def alone_possible() -> bool:
    """Would ``execute_alone`` run a statement on its own (committed by itself) now?"""
    return _idle_driver_connection() is not None


def execute_alone(statement, params: dict, *, only_alone: bool = False) -> list | None:
    """Run ``statement`` and return its rows (named tuples): on its own, committed by
    itself, when the request's transaction has not begun (PostgreSQL); else inside it, or,
    with ``only_alone``, not at all (None)."""
    driver = _idle_driver_connection()
    if driver is None:
        if only_alone:
            return None
        return db.session.connection().execute(statement, params).all()
    prepared = _prepared(statement, db.engine.dialect)
    driver.autocommit = True
    try:
        with driver.cursor() as cursor:
            cursor.execute(prepared.sql, {**prepared.defaults, **params})
            return prepared.rows(cursor)
    finally:
        driver.autocommit = False
