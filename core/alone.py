"""One statement on its own: outside the request's transaction when it has not begun yet.

A PostgreSQL transaction costs two round trips of its own (``BEGIN`` and ``COMMIT``) on top
of its statements. A request whose work is one statement that is complete by itself (the
bearer-token lookup, a check-in's ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``) can run
it in autocommit mode instead: one round trip, the same atomicity (a single statement is
its own transaction), and what it wrote is committed when it answers.

That is only right while the request's session holds no database transaction: a statement
run beside an open transaction would not see what the transaction wrote, could wait on its
locks, and would not be undone with it. So when the session has begun one, or on SQLite
(where a round trip costs nothing and the file allows one writer), the statement runs on
the session's connection like any other.
"""

from __future__ import annotations

import re
from collections import namedtuple
from dataclasses import dataclass, field

from sqlalchemy import event

from core.extensions import db

#: ``session.info`` key set while the session has a database transaction in progress.
IN_TRANSACTION = "civic_in_db_transaction"


@event.listens_for(db.session, "after_begin")
def _began(session, transaction, connection) -> None:
    session.info[IN_TRANSACTION] = True


@event.listens_for(db.session, "after_transaction_end")
def _ended(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(IN_TRANSACTION, None)


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


def alone_possible() -> bool:
    """Would ``execute_alone`` run a statement on its own (committed by itself) now?"""
    return db.engine.dialect.name == "postgresql" and not db.session.info.get(IN_TRANSACTION)


def execute_alone(statement, params: dict) -> list:
    """Run ``statement`` and return its rows (named tuples).

    On PostgreSQL, while the session has no database transaction, the statement runs on a
    pooled connection in autocommit mode through the driver itself (compiled once; its
    columns come back as the driver reads them, which for the plain column types these
    statements use is what the ORM would give). Otherwise it runs inside the session's
    transaction.
    """
    if not alone_possible():
        return db.session.connection().execute(statement, params).all()
    engine = db.engine
    prepared = _prepared(statement, engine.dialect)
    connection = engine.raw_connection()
    try:
        driver = connection.driver_connection
        driver.autocommit = True
        try:
            with driver.cursor() as cursor:
                cursor.execute(prepared.sql, {**prepared.defaults, **params})
                return prepared.rows(cursor)
        finally:
            driver.autocommit = False
    finally:
        connection.close()
