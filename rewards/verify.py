"""``ledger verify``: every ledger invariant of SPEC.md, checked over the whole database.

Each check is one set-based query that returns only the rows that break an invariant, read
through a server-side cursor in batches: the database does the adding up, and the memory
this process uses does not grow with the size of the ledger. All checks read one snapshot
(REPEATABLE READ on PostgreSQL), so a busy ledger does not produce false alarms.

Other packages can add checks of their own (a redemption settled at most once...) with
``@ledger_check``; each yields one sentence per break.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import text

from core.extensions import db

Check = Callable[..., Iterator[str]]
#: (name, check) in the order they run.
LEDGER_CHECKS: list[tuple[str, Check]] = []
#: Breaks kept in the report for the summary; all are streamed to ``on_break``.
KEPT_BREAKS = 1000


def ledger_check(name: str):
    """Register a check: a function of (connection, batch_size) yielding one line per break."""

    def register(function: Check) -> Check:
        LEDGER_CHECKS.append((name, function))
        return function

    return register


@dataclass
class Report:
    """What ``verify_ledger`` found."""

    checks: list[str] = field(default_factory=list)
    breaks: list[str] = field(default_factory=list)
    break_count: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        sizes = ", ".join(f"{count:,} {name}" for name, count in self.counts.items())
        head = f"Checked {len(self.checks)} invariants over {sizes} in {self.seconds:.1f}s."
        if not self.break_count:
            return head + " Every invariant holds."
        return head + f" {self.break_count} break(s) found."


def verify_ledger(
    *, batch_size: int = 10_000, on_break: Callable[[str], None] | None = None
) -> Report:
    """Run every check; return the report (breaks also go to ``on_break`` as found)."""
    started = time.monotonic()
    report = Report()
    engine = db.engine
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as connection:
        for table in ("ledger_accounts", "ledger_transactions", "ledger_entries", "credit_lots"):
            count = connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()  # noqa: S608
            report.counts[table.removeprefix("ledger_").replace("_", " ")] = int(count)
        for name, check in LEDGER_CHECKS:
            report.checks.append(name)
            for problem in check(connection, batch_size):
                report.break_count += 1
                if len(report.breaks) < KEPT_BREAKS:
                    report.breaks.append(problem)
                if on_break is not None:
                    on_break(problem)
        connection.rollback()
    report.seconds = time.monotonic() - started
    return report


def stream(connection, sql: str, batch_size: int, **params):
    """Rows of ``sql`` fetched ``batch_size`` at a time through a server-side cursor."""
    result = connection.execution_options(stream_results=True, yield_per=batch_size).execute(
        text(sql), params
    )
    yield from result


@ledger_check("every transaction's entries sum to zero and match its amount")
def unbalanced_transactions(connection, batch_size):
    sql = """
        SELECT e.transaction_id, SUM(e.amount) AS total,
               SUM(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) AS credited, t.amount
          FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
         GROUP BY e.transaction_id, t.amount
        HAVING SUM(e.amount) <> 0
            OR SUM(CASE WHEN e.amount > 0 THEN e.amount ELSE 0 END) <> t.amount
    """
    for transaction_id, total, credited, amount in stream(connection, sql, batch_size):
        if total:
            yield f"transaction {transaction_id}: its entries sum to {total}, not 0"
        else:
            yield f"transaction {transaction_id}: moves {credited} credits but records {amount}"


@ledger_check("every transaction has entries")
def empty_transactions(connection, batch_size):
    sql = """
        SELECT t.id FROM ledger_transactions t
         WHERE NOT EXISTS (SELECT 1 FROM ledger_entries e WHERE e.transaction_id = t.id)
    """
    for (transaction_id,) in stream(connection, sql, batch_size):
        yield f"transaction {transaction_id}: has no entries"


@ledger_check("every account's balance equals the sum of its entries")
def balances_match_entries(connection, batch_size):
    sql = """
        SELECT a.id, a.key, a.balance, COALESCE(s.total, 0)
          FROM ledger_accounts a
          LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM ledger_entries
                      GROUP BY account_id) s ON s.account_id = a.id
         WHERE a.balance <> COALESCE(s.total, 0)
    """
    for account_id, key, balance, total in stream(connection, sql, batch_size):
        yield f"account {account_id} ({key}): balance {balance} but its entries sum to {total}"


@ledger_check("no balance is negative (except the scheme's issuance account)")
def negative_balances(connection, batch_size):
    sql = "SELECT id, key, balance FROM ledger_accounts WHERE balance < 0 AND kind <> 'issuance'"
    for account_id, key, balance in stream(connection, sql, batch_size):
        yield f"account {account_id} ({key}): balance is negative ({balance})"


@ledger_check("every entry's balance_after follows from the entries before it")
def running_balances(connection, batch_size):
    sql = """
        SELECT id, account_id, balance_after, running FROM (
            SELECT id, account_id, balance_after,
                   SUM(amount) OVER (PARTITION BY account_id ORDER BY id
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running
              FROM ledger_entries) r
         WHERE balance_after <> running
    """
    for entry_id, account_id, balance_after, running in stream(connection, sql, batch_size):
        yield (
            f"entry {entry_id} (account {account_id}): balance_after {balance_after} "
            f"but the entries up to it sum to {running}"
        )


@ledger_check("wallets' and pots' balances equal the sum of their lots' remainders")
def balances_match_lots(connection, batch_size):
    sql = """
        SELECT a.id, a.key, a.balance, COALESCE(l.total, 0)
          FROM ledger_accounts a
          LEFT JOIN (SELECT account_id, SUM(remaining) AS total FROM credit_lots
                      GROUP BY account_id) l ON l.account_id = a.id
         WHERE (a.kind IN ('resident', 'pot') AND a.balance <> COALESCE(l.total, 0))
            OR (a.kind NOT IN ('resident', 'pot') AND COALESCE(l.total, 0) <> 0)
    """
    for account_id, key, balance, total in stream(connection, sql, batch_size):
        yield f"account {account_id} ({key}): balance {balance} but its lots hold {total}"


@ledger_check("no lot is over-consumed: remaining is between 0 and its amount")
def lots_in_range(connection, batch_size):
    sql = """
        SELECT id, account_id, amount, remaining FROM credit_lots
         WHERE remaining < 0 OR remaining > amount OR amount <= 0
    """
    for lot_id, account_id, amount, remaining in stream(connection, sql, batch_size):
        yield f"lot {lot_id} (account {account_id}): {remaining} remaining of {amount}"


@ledger_check("every lot's remainder equals the sum of its movements")
def lots_match_movements(connection, batch_size):
    sql = """
        SELECT l.id, l.remaining, COALESCE(m.total, 0)
          FROM credit_lots l
          LEFT JOIN (SELECT lot_id, SUM(amount) AS total FROM credit_lot_movements
                      GROUP BY lot_id) m ON m.lot_id = l.id
         WHERE l.remaining <> COALESCE(m.total, 0)
    """
    for lot_id, remaining, total in stream(connection, sql, batch_size):
        yield f"lot {lot_id}: {remaining} remaining but its movements add up to {total}"


@ledger_check("each transaction changes lots by as much as it changes their accounts")
def movements_match_entries(connection, batch_size):
    # One grouping over both sides (UNION ALL), not a FULL JOIN of two groupings, which
    # SQLite can only answer with a nested loop.
    sql = """
        SELECT transaction_id, account_id, SUM(entries), SUM(lots) FROM (
            SELECT e.transaction_id, e.account_id, e.amount AS entries, 0 AS lots
              FROM ledger_entries e JOIN ledger_accounts a ON a.id = e.account_id
             WHERE a.kind IN ('resident', 'pot')
            UNION ALL
            SELECT mv.transaction_id, l.account_id, 0, mv.amount
              FROM credit_lot_movements mv JOIN credit_lots l ON l.id = mv.lot_id
        ) changes
         GROUP BY transaction_id, account_id
        HAVING SUM(entries) <> SUM(lots)
    """
    for transaction_id, account_id, entries, lots in stream(connection, sql, batch_size):
        yield (
            f"transaction {transaction_id}: account {account_id} changed by {entries} "
            f"but its lots by {lots}"
        )
