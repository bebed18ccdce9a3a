"""The only code that writes the ledger. Other packages call these functions.

Every operation:

- takes whole, positive credit amounts (``int``) and an ``idempotency_key``: the same key
  with the same request returns the first transaction again and changes nothing; the same
  key with a different request raises ``IdempotencyConflict``;
- locks the accounts it takes credits from (in ``LOCK_ORDER``: wallets, pots, partners,
  the scheme's accounts; so two operations never wait on each other in a circle), *then*
  checks balances and lots, *then* writes: ``SELECT ... FOR UPDATE`` on PostgreSQL; on
  SQLite, which has no row locks, a no-op ``UPDATE`` takes the database's write lock first.
  An account the operation only credits (the partner of a spend, the issuance account of
  an earn, the expired and settled accounts) ranks after those and is locked only by its
  atomic balance update at the very end, so a busy partner's or the scheme's row is held
  for a moment, not for the whole request;
- refuses with a ``LedgerError`` (stable ``code``) before it has written anything;
- flushes but never commits: the caller commits once for the whole request, so a failure
  leaves nothing half-written (see STYLE.md).

Credits that expire first are used first. Credits past their expiry date cannot be spent or
given even before the expiry job has moved them to the expired account.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from flask import current_app
from sqlalchemy import (
    any_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from core.audit import record
from core.errors import ConflictError, DomainError, InvalidRequest
from core.extensions import db
from core.formatting import short_date
from core.models import User
from core.timeutil import utcnow
from rewards.models import (
    Account,
    AccountKind,
    CreditLot,
    Entry,
    LotMovement,
    Transaction,
    TransactionKind,
)

#: Default number of days credits stay valid after they are earned (SPEC: 12 months).
DEFAULT_CREDIT_VALIDITY_DAYS = 365
#: The largest amount one operation may move: a guard against typos, not a scheme rule.
MAX_AMOUNT = 1_000_000

SYSTEM_ACCOUNT_NAMES = {
    AccountKind.ISSUANCE: "Credits issued by the scheme",
    AccountKind.EXPIRED: "Expired credits",
    AccountKind.SETTLED: "Credits settled with partners",
}


class LedgerError(DomainError):
    """The ledger refused an operation; ``code`` is stable."""

    status = 422
    code = "ledger_error"


class InsufficientCredits(LedgerError):
    status = 422
    code = "insufficient_credits"


class IdempotencyConflict(LedgerError):
    status = 409
    code = "idempotency_conflict"


class InvalidAmount(LedgerError):
    status = 422
    code = "invalid_amount"


class InvalidIdempotencyKey(LedgerError):
    status = 400
    code = "invalid_idempotency_key"


class AlreadyReversed(LedgerError):
    status = 409
    code = "already_reversed"


class LotNotDue(LedgerError):
    status = 409
    code = "lot_not_due"


class InvalidRecipient(LedgerError):
    status = 422
    code = "invalid_recipient"


class ReasonRequired(LedgerError):
    status = 400
    code = "reason_required"


class AccountNotFound(LedgerError):
    status = 404
    code = "account_not_found"


class TransactionNotFound(LedgerError):
    status = 404
    code = "transaction_not_found"


class LotNotFound(LedgerError):
    status = 404
    code = "lot_not_found"


# --------------------------------------------------------------------------- accounts


def wallet_of(user_id: int) -> Account:
    """The resident's wallet, opened on first use."""
    account = find_wallet(user_id)
    if account is not None:
        return account
    name = db.session.execute(select(User.display_name).where(User.id == user_id)).scalar()
    if name is None:
        raise AccountNotFound("There is no such resident.")
    return _get_or_create(f"user:{user_id}", AccountKind.RESIDENT, name, user_id=user_id)


def find_wallet(user_id: int) -> Account | None:
    """The resident's wallet if they have one (never creates it)."""
    return db.session.execute(
        select(Account).where(Account.key == f"user:{user_id}")
    ).scalar_one_or_none()


def partner_account(partner_key: str, name: str) -> Account:
    """The ledger account of a partner business (``partner:12``), opened on first use."""
    if not partner_key or len(partner_key) > 100:
        raise LedgerError("A partner key is needed (up to 100 characters).", "invalid_key", 400)
    return _get_or_create(partner_key, AccountKind.PARTNER, name)


def community_pot(key: str, name: str, description: str = "") -> Account:
    """A community pot (``pot:food-bank``) residents can give credits to, opened on first use."""
    if not key.startswith("pot:") or len(key) > 100:
        raise LedgerError("A pot's key starts with 'pot:'.", "invalid_key", 400)
    return _get_or_create(key, AccountKind.POT, name, description=description)


def create_community_pot(name: str, description: str = "", *, actor_id: int | None) -> Account:
    """Open a new community pot (council); refused with ``pot_exists`` if the name is taken."""
    name = (name or "").strip()
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:90]
    if not slug:
        raise InvalidRequest("Give the pot a name.", {"name": ["Enter a name."]})
    key = f"pot:{slug}"
    if db.session.execute(select(Account.id).where(Account.key == key)).first():
        raise ConflictError(f"There is already a pot called {name}.", "pot_exists")
    pot = community_pot(key, name, description.strip())
    actor = db.session.get(User, actor_id) if actor_id else None
    record(actor, "ledger.pot_created", f"account:{pot.id}", details={"name": name})
    return pot


def system_account(kind: AccountKind) -> Account:
    """One of the scheme's own accounts: issuance, expired or settled."""
    return _get_or_create(_system_key(kind), kind, SYSTEM_ACCOUNT_NAMES[kind])


def _get_or_create(key: str, kind: AccountKind, name: str, **fields) -> Account:
    """Find the account by key or open it; safe when two requests open it at once."""
    query = select(Account).where(Account.key == key)
    account = db.session.execute(query).scalar_one_or_none()
    if account is None:
        # ON CONFLICT DO NOTHING: a concurrent opener's row wins and we read it back,
        # instead of failing the caller's whole transaction on the unique key.
        db.session.execute(
            _dialect_insert(Account)
            .values(key=key, kind=kind.value, name=name[:200], balance=0, **fields)
            .on_conflict_do_nothing()
        )
        account = db.session.execute(query).scalar_one()
    if account.kind != kind:
        raise LedgerError(f"The key {key} belongs to another kind of account.", "invalid_key", 400)
    return account


# --------------------------------------------------------------------------- operations


def earn(
    resident_id: int,
    amount: int,
    *,
    idempotency_key: str,
    description: str,
    actor_id: int | None = None,
    source: str = "",
    expires_at: datetime | None = None,
) -> Transaction:
    """Issue ``amount`` new credits to the resident, in a new lot.

    The lot expires ``CREDIT_VALIDITY_DAYS`` (default 365) after now, unless ``expires_at``
    is given (imports, demo data, tests).
    """
    _check_amount(amount)
    _check_key(idempotency_key)
    request_hash = _fingerprint("earn", resident_id, amount, source, expires_at)
    wallet_key, issuance_key = f"user:{resident_id}", _system_key(AccountKind.ISSUANCE)
    locked = _lock_accounts(
        keys={wallet_key: lambda: wallet_of(resident_id)},
        later_keys={issuance_key: lambda: system_account(AccountKind.ISSUANCE)},
    )
    # A replay is answered by ``Posting.write``: its insert meets the key already there.
    wallet, issuance = locked[wallet_key], locked[issuance_key]
    now = utcnow()
    if expires_at is None:
        expires_at = now + timedelta(days=_validity_days())
    posting = Posting(TransactionKind.EARN, amount)
    posting.leg(issuance, -amount, f"issued to {wallet.name}")
    posting.leg(wallet, amount, f"for {description}" if description else "earned")
    posting.new_lot(wallet.id, amount, earned_at=now, expires_at=expires_at, source=source)
    return posting.write(
        idempotency_key,
        request_hash,
        description=description,
        actor_id=actor_id,
        source=source,
        now=now,
    )


def spend(
    resident_id: int,
    to_partner: int | str,
    amount: int,
    *,
    idempotency_key: str,
    description: str,
    actor_id: int | None = None,
    partner_name: str | None = None,
) -> Transaction:
    """Move ``amount`` from the resident's wallet to a partner, using lots that expire first.

    ``to_partner`` is the partner's ledger account id, or its key (``partner:12``):
    then it is read in the same round trip as the wallet's lock, and opened, named
    ``partner_name``, on the partner's first redemption.
    """
    _check_amount(amount)
    _check_key(idempotency_key)
    wallet_key = f"user:{resident_id}"
    # Only the wallet is locked up front: the partner's row is updated last, so one
    # partner's redemptions for different residents do not wait for each other.
    if isinstance(to_partner, str):
        key = to_partner
        opener = lambda: partner_account(key, partner_name or key)  # noqa: E731
        locked = _lock_accounts(keys={wallet_key: None}, later_keys={key: opener})
    else:
        locked = _lock_accounts(keys={wallet_key: None}, later_ids=[to_partner])
    partner = locked.get(to_partner)
    if partner is None or partner.kind != AccountKind.PARTNER:
        raise InvalidRecipient("Credits can only be spent with a partner.")
    request_hash = _fingerprint("spend", resident_id, partner.id, amount)
    wallet = locked.get(wallet_key)
    now = utcnow()
    posting = Posting(TransactionKind.SPEND, amount)
    try:
        if wallet is None:
            raise InsufficientCredits(f"You have no credits yet; this needs {amount}.")
        posting.consume_lots(wallet, amount, now)
    except InsufficientCredits:
        # The first answer to a replayed spend may have used the credits: answer it again.
        replay = _replay(idempotency_key, request_hash)
        if replay is not None:
            return replay
        raise
    # Otherwise a replay is answered by ``Posting.write``: its insert meets the key there.
    posting.leg(wallet, -amount, _words(f"at {partner.name}", description))
    posting.leg(partner, amount, description or "redemption")
    return posting.write(
        idempotency_key, request_hash, description=description, actor_id=actor_id, now=now
    )


def gift(
    from_resident_id: int,
    to_account_id: int,
    amount: int,
    *,
    idempotency_key: str,
    description: str = "",
    actor_id: int | None = None,
) -> Transaction:
    """Give credits to another resident's wallet or a community pot.

    The receiver gets lots with the giver's expiry dates: a gift never makes credits last
    longer.
    """
    _check_amount(amount)
    _check_key(idempotency_key)
    request_hash = _fingerprint("gift", from_resident_id, to_account_id, amount)
    wallet_key = f"user:{from_resident_id}"
    locked = _lock_accounts(keys={wallet_key: None}, ids=[to_account_id])
    wallet, receiver = locked.get(wallet_key), locked.get(to_account_id)
    if receiver is None or receiver.kind not in (AccountKind.RESIDENT, AccountKind.POT):
        raise InvalidRecipient("Credits can be given to another resident or a community pot.")
    if wallet is not None and receiver.id == wallet.id:
        raise InvalidRecipient("You cannot give credits to yourself.")
    replay = _replay(idempotency_key, request_hash)
    if replay is not None:
        return replay
    if wallet is None:
        raise InsufficientCredits(f"You have no credits yet; this needs {amount}.")
    now = utcnow()
    posting = Posting(TransactionKind.GIFT, amount)
    for lot, taken in posting.consume_lots(wallet, amount, now):
        posting.new_lot(
            receiver.id,
            taken,
            earned_at=lot.earned_at,
            expires_at=lot.expires_at,
            source="gift",
            parent_lot_id=lot.id,
        )
    posting.leg(wallet, -amount, _words(f"given to {receiver.name}", description))
    posting.leg(receiver, amount, _words(f"from {wallet.name}", description))
    return posting.write(
        idempotency_key, request_hash, description=description, actor_id=actor_id, now=now
    )


def expire_lot(
    lot_id: int, *, idempotency_key: str, now: datetime | None = None
) -> Transaction | None:
    """Move what is left of a lot past its expiry date to the expired account.

    Returns None, changing nothing, when the lot has nothing left. Raises ``LotNotDue``
    before its expiry date.
    """
    _check_key(idempotency_key)
    request_hash = _fingerprint("expire", lot_id)
    owner_id = db.session.execute(select(LOTS.c.account_id).where(LOTS.c.id == lot_id)).scalar()
    if owner_id is None:
        raise LotNotFound("There is no such credit lot.")
    expired_key = _system_key(AccountKind.EXPIRED)
    locked = _lock_accounts(
        ids=[owner_id], later_keys={expired_key: lambda: system_account(AccountKind.EXPIRED)}
    )
    replay = _replay(idempotency_key, request_hash)
    if replay is not None:
        return replay
    now = now or utcnow()
    lot = _lot_rows(LOTS.c.id == lot_id)[0]
    if lot.expires_at > now:
        raise LotNotDue(f"These credits are valid until {lot.expires_at:%Y-%m-%d %H:%M} UTC.")
    if lot.remaining == 0:
        return None
    amount, owner = lot.remaining, locked[owner_id]
    posting = Posting(TransactionKind.EXPIRE, amount)
    posting.change_lot(lot, -amount)
    posting.leg(owner, -amount, f"expired unused (earned {short_date(lot.earned_at)})")
    posting.leg(locked[expired_key], amount, f"expired from {owner.name}")
    return posting.write(
        idempotency_key, request_hash, description=f"credits expired on lot {lot_id}", now=now
    )


def settle(
    partner_account_id: int,
    amount: int,
    *,
    idempotency_key: str,
    description: str,
    actor_id: int | None = None,
) -> Transaction:
    """Move credits a partner took to the settled account once the council pays for them."""
    _check_amount(amount)
    _check_key(idempotency_key)
    request_hash = _fingerprint("settle", partner_account_id, amount)
    settled_key = _system_key(AccountKind.SETTLED)
    locked = _lock_accounts(
        ids=[partner_account_id],
        later_keys={settled_key: lambda: system_account(AccountKind.SETTLED)},
    )
    partner = locked.get(partner_account_id)
    if partner is None or partner.kind != AccountKind.PARTNER:
        raise AccountNotFound("There is no such partner account.")
    replay = _replay(idempotency_key, request_hash)
    if replay is not None:
        return replay
    posting = Posting(TransactionKind.SETTLE, amount)
    posting.leg(partner, -amount, _words("settled", description))
    posting.leg(locked[settled_key], amount, _words(f"from {partner.name}", description))
    return posting.write(idempotency_key, request_hash, description=description, actor_id=actor_id)


def reverse(
    transaction_id: int, *, reason: str, idempotency_key: str, actor_id: int | None
) -> Transaction:
    """Undo a transaction with a reversing one; the original is never changed.

    Lots are put back as they were: credits a spend or gift took return to the lots they
    came from (with their own expiry dates); credits an earn or gift created are taken back
    from the lots they went into, or, where those were used already, from the account's
    other lots, soonest expiring first. Refused with ``insufficient_credits`` when an account
    no longer holds the credits (a partner already settled, a resident already spent them).
    """
    _check_key(idempotency_key)
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired("Say why this transaction is being reversed.")
    original = db.session.get(Transaction, transaction_id)
    if original is None:
        raise TransactionNotFound("There is no such transaction.")
    request_hash = _fingerprint("reverse", transaction_id)
    legs = db.session.execute(
        select(ENTRIES.c.account_id, ENTRIES.c.amount)
        .where(ENTRIES.c.transaction_id == transaction_id)
        .order_by(ENTRIES.c.id)
    ).all()
    locked = _lock_accounts(ids=[account_id for account_id, _ in legs])
    replay = _replay(idempotency_key, request_hash)
    if replay is not None:
        return replay
    already = db.session.execute(
        select(TRANSACTIONS.c.id).where(TRANSACTIONS.c.reverses_id == transaction_id)
    ).scalar()
    if already is not None:
        raise AlreadyReversed(f"Transaction {transaction_id} was reversed already.")
    now = utcnow()
    posting = Posting(TransactionKind.REVERSE, original.amount)
    movements = db.session.execute(
        select(MOVEMENTS.c.lot_id, MOVEMENTS.c.amount)
        .where(MOVEMENTS.c.transaction_id == transaction_id)
        .order_by(MOVEMENTS.c.id)
    ).all()
    lots = {lot.id: lot for lot in _lot_rows(LOTS.c.id.in_({m[0] for m in movements}))}
    memo = f"corrected: {reason}"
    for account_id, amount in legs:
        posting.leg(locked[account_id], -amount, memo)
    for lot_id, amount in movements:
        lot = lots[lot_id]
        if amount < 0:
            posting.change_lot(lot, -amount)  # put back what was taken
        else:
            taken = min(posting.remaining(lot), amount)
            if taken:
                posting.change_lot(lot, -taken)
            if amount > taken:
                # The credits were used since: take the rest from the account's other lots.
                posting.consume_lots(
                    locked[lot.account_id], amount - taken, now, include_expired=True
                )
    reversal = posting.write(
        idempotency_key,
        request_hash,
        description=original.description,
        reason=reason,
        actor_id=actor_id,
        reverses_id=transaction_id,
        now=now,
    )
    if posting.created:
        actor = db.session.get(User, actor_id) if actor_id else None
        record(
            actor,
            "ledger.reversed",
            f"transaction:{transaction_id}",
            reason=reason,
            details={"reversal_id": reversal.id, "amount": original.amount},
        )
    return reversal


# --------------------------------------------------------------------------- expiry in bulk


def expiry_key(lot_id: int) -> str:
    """The idempotency key of a lot's expiry. A lot expires once; if that expiry is
    reversed (a correction), its next expiry takes ``expire:lot:<id>:again:<reversal id>``
    (see ``_expiry_keys``)."""
    return f"expire:lot:{lot_id}"


def expire_lots(lot_ids: list[int], now: datetime) -> dict[int, int]:
    """Expire what is left of the given lots, set-based; return {lot id: credits moved}.

    Writes exactly what ``expire_lot`` writes for each lot (one expire transaction with the
    lot's ``expiry_key`` and the same request hash, description and memos, two entries with
    ``balance_after``, a lot movement, the lot to 0, the balances), under the same rules:
    the owners' wallets and then the expired account are locked first (``LOCK_ORDER``;
    on SQLite the caller holds the write lock), lots are read under that lock, and a lot
    with nothing left, not due, or already expired under its key is left alone. Lot by lot
    through ``expire_lot`` costs about ten round trips per lot; this costs seven per batch.
    Flushes nothing of the ORM; the caller commits.

    On SQLite, in process, the rows are written by set-based statements from a temporary
    table of the batch (``_expire_lots_sqlite``): moving each row through Python would cost
    more than SQLite's own work.
    """
    connection = db.session.connection()
    postgres = connection.dialect.name == "postgresql"
    if not postgres:
        return _expire_lots_sqlite(connection, lot_ids, now)
    lots = connection.execute(
        select(LOTS.c.id, LOTS.c.account_id, LOTS.c.remaining, LOTS.c.earned_at, LOTS.c.expires_at)
        .where(_one_of(LOTS.c.id, lot_ids, postgres))
        .order_by(LOTS.c.id)
    ).all()
    expired_key = _system_key(AccountKind.EXPIRED)
    owner_ids = sorted({lot.account_id for lot in lots})
    lock = (
        select(ACCOUNTS.c.id, ACCOUNTS.c.key, ACCOUNTS.c.name, ACCOUNTS.c.balance)
        .where(or_(_one_of(ACCOUNTS.c.id, owner_ids, postgres), ACCOUNTS.c.key == expired_key))
        .order_by(*LOCK_ORDER)
    )
    accounts = {row.id: row for row in connection.execute(lock.with_for_update())}
    expired_account = next(row for row in accounts.values() if row.key == expired_key)
    candidates = [lot for lot in lots if lot.remaining > 0 and lot.expires_at <= now]
    keys = _expiry_keys(connection, [lot.id for lot in candidates], postgres)
    due = [lot for lot in candidates if lot.id in keys]
    if not due:
        return {}
    rows = [
        {
            "idempotency_key": keys[lot.id],
            "request_hash": _expiry_fingerprint(lot.id),
            "amount": lot.remaining,
            "description": f"credits expired on lot {lot.id}",
        }
        for lot in due
    ]
    write = _ExpiryWritesPostgres
    transaction_ids = write.transactions(connection, rows, now)
    balances = {account_id: row.balance for account_id, row in accounts.items()}
    entries, movements = [], []
    day = functools.lru_cache(maxsize=64)(short_date)  # most of a batch's lots share days
    for lot in due:
        transaction_id = transaction_ids[keys[lot.id]]
        owner = accounts[lot.account_id]
        balances[owner.id] -= lot.remaining
        balances[expired_account.id] += lot.remaining
        entries.append(
            (
                transaction_id,
                owner.id,
                -lot.remaining,
                balances[owner.id],
                f"expired unused (earned {day(lot.earned_at)})",
            )
        )
        entries.append(
            (
                transaction_id,
                expired_account.id,
                lot.remaining,
                balances[expired_account.id],
                f"expired from {owner.name}"[:500],
            )
        )
        movements.append((transaction_id, lot.id, -lot.remaining))
    changed = sorted(a for a in balances if balances[a] != accounts[a].balance)
    write.rest(
        connection,
        entries,
        movements,
        [lot.id for lot in due],
        [(account_id, balances[account_id]) for account_id in changed],
    )
    return {lot.id: lot.remaining for lot in due}


def _expiry_keys(connection, lot_ids: list[int], postgres: bool) -> dict[int, str]:
    """The key each lot's expiry is to be written under, for the lots not expired yet.

    Usually ``expire:lot:<id>``. A lot whose expiry was reversed has live credits again and
    its key taken: its next expiry is keyed by the reversal (``...:again:<reversal id>``),
    so a later run expires it once more, and only once. A key taken by an expiry that
    stands means the lot was expired already: it is left out.
    """
    keys = {lot_id: expiry_key(lot_id) for lot_id in lot_ids}
    while keys:
        taken = dict(
            connection.execute(
                select(TRANSACTIONS.c.idempotency_key, REVERSALS.c.id)
                .select_from(
                    TRANSACTIONS.outerjoin(REVERSALS, REVERSALS.c.reverses_id == TRANSACTIONS.c.id)
                )
                .where(_one_of(TRANSACTIONS.c.idempotency_key, list(keys.values()), postgres))
            ).all()
        )
        if not taken:
            break
        for lot_id, key in list(keys.items()):
            if key not in taken:
                continue
            if taken[key] is None:
                del keys[lot_id]  # expired, and that stands
            else:
                keys[lot_id] = f"{expiry_key(lot_id)}:again:{taken[key]}"
        if not any(key in taken for key in keys.values()):
            break
    return keys


def _expiry_fingerprint(lot_id: int) -> str:
    """``_fingerprint("expire", lot_id)``, without the JSON encoder (a million lots)."""
    return hashlib.sha256(f'["expire", {lot_id}]'.encode()).hexdigest()


def _one_of(column, values: list, postgres: bool):
    """``column IN (values)`` as one bound parameter, so the statement's text (and its
    compiled form) is the same whatever the batch: ``= ANY(array)`` on PostgreSQL, the
    values of a JSON array on SQLite."""
    if postgres:
        return column == any_(cast(bindparam(None, values), ARRAY(column.type)))
    listed = func.json_each(bindparam(None, json.dumps(values))).table_valued("value")
    return column.in_(select(listed.c.value))


EXPIRY_SQLITE = {
    "lock": "UPDATE ledger_accounts SET balance = balance WHERE key = 'scheme:expired'",
    "table": "CREATE TEMP TABLE IF NOT EXISTS expiry_due (lot_id INTEGER PRIMARY KEY,"
    " account_id INTEGER, amount INTEGER, tx_key TEXT, request_hash TEXT, memo TEXT)",
    "index": "CREATE INDEX IF NOT EXISTS temp.expiry_due_account ON expiry_due (account_id)",
    "clear": "DELETE FROM temp.expiry_due",
    "lots": "SELECT id, account_id, remaining, substr(earned_at, 1, 10) FROM credit_lots"
    " WHERE id IN (SELECT value FROM json_each(?)) AND remaining > 0 AND expires_at <= ?"
    " ORDER BY id",
    "due": "INSERT INTO temp.expiry_due VALUES (?, ?, ?, ?, ?, ?)",
}
#: The batch's writes, in order, from ``temp.expiry_due`` (parameters: now, the kind).
EXPIRY_SQLITE_WRITES = [
    "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount, created_at,"
    " description, reason, source, actor_id, reverses_id)"
    " SELECT :kind, tx_key, request_hash, amount, :now,"
    " 'credits expired on lot ' || lot_id, NULL, '', NULL, NULL"
    " FROM temp.expiry_due ORDER BY lot_id",
    # Each owner's entries in lot order, its running balance falling lot by lot.
    "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)"
    " SELECT t.id, d.account_id, -d.amount,"
    " a.balance - SUM(d.amount) OVER (PARTITION BY d.account_id ORDER BY d.lot_id), d.memo"
    " FROM temp.expiry_due d JOIN ledger_transactions t ON t.idempotency_key = d.tx_key"
    " JOIN ledger_accounts a ON a.id = d.account_id ORDER BY d.lot_id",
    "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)"
    " SELECT t.id, x.id, d.amount, x.balance + SUM(d.amount) OVER (ORDER BY d.lot_id),"
    " substr('expired from ' || a.name, 1, 500)"
    " FROM temp.expiry_due d JOIN ledger_transactions t ON t.idempotency_key = d.tx_key"
    " JOIN ledger_accounts a ON a.id = d.account_id"
    " JOIN ledger_accounts x ON x.key = 'scheme:expired' ORDER BY d.lot_id",
    "INSERT INTO credit_lot_movements (transaction_id, lot_id, amount)"
    " SELECT t.id, d.lot_id, -d.amount"
    " FROM temp.expiry_due d JOIN ledger_transactions t ON t.idempotency_key = d.tx_key"
    " ORDER BY d.lot_id",
    "UPDATE credit_lots SET remaining = 0 WHERE id IN (SELECT lot_id FROM temp.expiry_due)",
    "UPDATE ledger_accounts SET balance = balance - (SELECT SUM(amount) FROM temp.expiry_due d"
    " WHERE d.account_id = ledger_accounts.id)"
    " WHERE id IN (SELECT account_id FROM temp.expiry_due)",
    "UPDATE ledger_accounts SET balance = balance + (SELECT SUM(amount) FROM temp.expiry_due)"
    " WHERE key = 'scheme:expired'",
]


def _expire_lots_sqlite(connection, lot_ids: list[int], now: datetime) -> dict[int, int]:
    """``expire_lots`` on SQLite: the same rows, written set-based through the DB-API."""
    convert = TRANSACTIONS.c.created_at.type.bind_processor(connection.dialect)
    now_text = convert(now) if convert else now
    cursor = connection.connection.driver_connection.cursor()
    # The database's write lock first (if the caller has not taken it): what we read is
    # what we write.
    cursor.execute(EXPIRY_SQLITE["lock"])
    cursor.execute(EXPIRY_SQLITE["lots"], (json.dumps(lot_ids), now_text))
    lots = cursor.fetchall()
    keys = _expiry_keys(connection, [lot[0] for lot in lots], postgres=False)
    day = functools.lru_cache(maxsize=64)(lambda text: short_date(date.fromisoformat(text)))
    due = [
        (
            lot_id,
            account_id,
            remaining,
            keys[lot_id],
            _expiry_fingerprint(lot_id),
            f"expired unused (earned {day(earned)})",
        )
        for lot_id, account_id, remaining, earned in lots
        if lot_id in keys
    ]
    if not due:
        return {}
    cursor.execute(EXPIRY_SQLITE["table"])
    cursor.execute(EXPIRY_SQLITE["index"])
    cursor.execute(EXPIRY_SQLITE["clear"])
    cursor.executemany(EXPIRY_SQLITE["due"], due)
    for statement in EXPIRY_SQLITE_WRITES:
        cursor.execute(statement, {"now": now_text, "kind": TransactionKind.EXPIRE.value})
    cursor.execute(EXPIRY_SQLITE["clear"])
    return {lot[0]: lot[2] for lot in due}


class _ExpiryWritesPostgres:
    """A batch's writes as a few statements over arrays (``unnest``), on PostgreSQL.

    A statement's text stays the same whatever the batch size, so the driver and the
    server parse it once, instead of a VALUES list with thousands of placeholders.
    """

    TRANSACTIONS = text(
        "INSERT INTO ledger_transactions (kind, idempotency_key, request_hash, amount,"
        " created_at, description, reason, source, actor_id, reverses_id)"
        " SELECT :kind, k, h, a, :now, d, NULL, '', NULL, NULL"
        " FROM unnest(CAST(:keys AS text[]), CAST(:hashes AS text[]),"
        " CAST(:amounts AS bigint[]), CAST(:descriptions AS text[])) AS t(k, h, a, d)"
        " RETURNING id, idempotency_key"
    )
    ENTRIES = text(
        "INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)"
        " SELECT * FROM unnest(CAST(:tx AS integer[]), CAST(:accounts AS integer[]),"
        " CAST(:amounts AS bigint[]), CAST(:after AS bigint[]), CAST(:memos AS text[]))"
    )
    MOVEMENTS = text(
        "INSERT INTO credit_lot_movements (transaction_id, lot_id, amount)"
        " SELECT * FROM unnest(CAST(:tx AS integer[]), CAST(:lots AS integer[]),"
        " CAST(:amounts AS bigint[]))"
    )
    LOTS = text("UPDATE credit_lots SET remaining = 0 WHERE id = ANY(CAST(:ids AS integer[]))")
    BALANCES = text(
        "UPDATE ledger_accounts AS a SET balance = u.balance"
        " FROM unnest(CAST(:ids AS integer[]), CAST(:balances AS bigint[])) AS u(id, balance)"
        " WHERE a.id = u.id"
    )

    @classmethod
    def transactions(cls, connection, rows: list[dict], now: datetime) -> dict[str, int]:
        inserted = connection.execute(
            cls.TRANSACTIONS,
            {
                "kind": TransactionKind.EXPIRE.value,
                "now": now,
                "keys": [r["idempotency_key"] for r in rows],
                "hashes": [r["request_hash"] for r in rows],
                "amounts": [r["amount"] for r in rows],
                "descriptions": [r["description"] for r in rows],
            },
        ).all()
        return {key: transaction_id for transaction_id, key in inserted}

    @classmethod
    def rest(cls, connection, entries, movements, lot_ids, balances) -> None:
        tx, accounts, amounts, after, memos = (
            list(column) for column in zip(*entries, strict=True)
        )
        connection.execute(
            cls.ENTRIES,
            {"tx": tx, "accounts": accounts, "amounts": amounts, "after": after, "memos": memos},
        )
        tx, lots, amounts = (list(column) for column in zip(*movements, strict=True))
        connection.execute(cls.MOVEMENTS, {"tx": tx, "lots": lots, "amounts": amounts})
        connection.execute(cls.LOTS, {"ids": lot_ids})
        ids, values = (list(column) for column in zip(*balances, strict=True))
        connection.execute(cls.BALANCES, {"ids": ids, "balances": values})


# --------------------------------------------------------------------------- internals
# The hot path uses Core statements on the tables (cached compiled SQL, plain rows): the
# ORM's unit of work costs more Python than the database work of a whole operation.

ACCOUNTS = Account.__table__
TRANSACTIONS = Transaction.__table__
REVERSALS = TRANSACTIONS.alias("reversals")
ENTRIES = Entry.__table__
LOTS = CreditLot.__table__
MOVEMENTS = LotMovement.__table__


@dataclass
class LockedAccount:
    """An account row as read under its lock."""

    id: int
    key: str
    kind: str
    name: str
    balance: int
    #: Read without a lock: only credited, its balance updated atomically at the end.
    later: bool = False


class Locked(dict):
    """Locked accounts, found by id and by key."""


@dataclass
class LotRow:
    """A lot as read under its account's lock (plain values, not a session object)."""

    id: int
    account_id: int
    amount: int
    remaining: int
    earned_at: datetime
    expires_at: datetime


#: Lots read at first when spending (see ``Posting.consume_lots``).
FEW_LOTS = 8


LOT_COLUMNS = (
    LOTS.c.id,
    LOTS.c.account_id,
    LOTS.c.amount,
    LOTS.c.remaining,
    LOTS.c.earned_at,
    LOTS.c.expires_at,
)
_LIVE_LOTS = (
    select(*LOT_COLUMNS)
    .where(LOTS.c.account_id == bindparam("account_id"), LOTS.c.remaining > 0)
    .order_by(LOTS.c.expires_at, LOTS.c.id)
)
#: Live lots of an account, soonest expiring first: (unexpired only?, limited?) -> query.
LIVE_LOTS = {
    (True, True): _LIVE_LOTS.where(LOTS.c.expires_at > bindparam("now")).limit(bindparam("limit")),
    (True, False): _LIVE_LOTS.where(LOTS.c.expires_at > bindparam("now")),
    (False, True): _LIVE_LOTS.limit(bindparam("limit")),
    (False, False): _LIVE_LOTS,
}


def _lot_rows(condition) -> list[LotRow]:
    query = select(*LOT_COLUMNS).where(condition).order_by(LOTS.c.expires_at, LOTS.c.id)
    return [LotRow(*row) for row in db.session.connection().execute(query).all()]


def _live_lots(account_id: int, now: datetime, unexpired: bool, limit: int | None):
    query = LIVE_LOTS[(unexpired, limit is not None)]
    params = {"account_id": account_id, "now": now, "limit": limit}
    return [LotRow(*row) for row in db.session.connection().execute(query, params).all()]


class Posting:
    """A transaction being assembled: legs, lot changes and new lots, written in one go."""

    def __init__(self, kind: TransactionKind, amount: int):
        self.kind = kind
        self.amount = amount
        self.legs: list[tuple[LockedAccount, int, str]] = []
        self.lot_changes: dict[int, tuple[LotRow, int]] = {}
        self.new_lots: list[dict] = []
        #: Set by ``write`` when it wrote a new transaction (not when it found a replay).
        self.created = False

    def leg(self, account: LockedAccount, amount: int, memo: str) -> None:
        """Add ``amount`` (signed) to ``account``."""
        self.legs.append((account, amount, memo[:500]))

    def remaining(self, lot: LotRow) -> int:
        """What is left in ``lot`` after the changes made so far."""
        return lot.remaining + self.lot_changes.get(lot.id, (lot, 0))[1]

    def change_lot(self, lot: LotRow, delta: int) -> None:
        current = self.lot_changes.get(lot.id, (lot, 0))[1]
        self.lot_changes[lot.id] = (lot, current + delta)

    def new_lot(self, account_id: int, amount: int, **fields) -> None:
        self.new_lots.append({"account_id": account_id, "amount": amount, **fields})

    def consume_lots(
        self,
        account: LockedAccount,
        amount: int,
        now: datetime,
        *,
        include_expired: bool = False,
    ) -> list[tuple[LotRow, int]]:
        """Take ``amount`` from the account's lots, soonest expiring first."""
        unexpired = not include_expired
        # Most spends need one or two lots: read the first few, and all only when needed.
        lots = _live_lots(account.id, now, unexpired, FEW_LOTS)
        if len(lots) == FEW_LOTS and sum(self.remaining(lot) for lot in lots) < amount:
            lots = _live_lots(account.id, now, unexpired, None)
        available = sum(self.remaining(lot) for lot in lots)
        if available < amount:
            raise InsufficientCredits(_shortfall_message(account, available, amount))
        taken: list[tuple[LotRow, int]] = []
        still_needed = amount
        for lot in lots:
            take = min(self.remaining(lot), still_needed)
            if take <= 0:
                continue
            self.change_lot(lot, -take)
            taken.append((lot, take))
            still_needed -= take
            if not still_needed:
                break
        return taken

    def write(
        self, idempotency_key: str, request_hash: str, *, now: datetime | None = None, **fields
    ) -> Transaction:
        """Insert the transaction, its entries and lot changes; return the transaction.

        The accounts read "later" (see ``_lock_accounts``) are updated last, with one atomic
        ``balance = balance + change ... RETURNING balance`` each, so their rows are locked
        only for the end of the transaction; their entries' ``balance_after`` comes from it.
        """
        now = now or utcnow()
        balances: dict[int, int] = {}
        changes: dict[int, int] = {}
        for account, amount, _memo in self.legs:
            if account.later:
                if amount < 0 and account.kind != AccountKind.ISSUANCE:
                    raise LedgerError("Only credits can be posted to an account read later.")
                changes[account.id] = changes.get(account.id, 0) + amount
            else:
                balances[account.id] = balances.get(account.id, account.balance) + amount
        for account, _amount, _memo in self.legs:
            if account.later or account.kind == AccountKind.ISSUANCE:
                continue
            if balances[account.id] < 0:
                needed = account.balance - balances[account.id]
                raise InsufficientCredits(_shortfall_message(account, account.balance, needed))
        connection = db.session.connection()
        values = {
            "kind": self.kind.value,
            "idempotency_key": idempotency_key,
            "request_hash": request_hash,
            "amount": self.amount,
            "created_at": now,
            "description": "",
            "reason": None,
            "source": "",
            "actor_id": None,
            "reverses_id": None,
            **fields,
        }
        transaction_id = connection.execute(_insert_transaction(connection), values).scalar()
        if transaction_id is None:
            # Someone committed this key (or a reversal of the same transaction) while we
            # waited for the lock on other accounts: answer as they did.
            replay = _replay(idempotency_key, request_hash)
            if replay is not None:
                return replay
            raise AlreadyReversed(f"Transaction {fields.get('reverses_id')} was reversed already.")
        self.created = True
        if balances:
            _set_values(connection, ACCOUNTS, "balance", balances)
        movements = []
        changed = [(lot, delta) for lot, delta in self.lot_changes.values() if delta]
        if changed:
            remainders = {lot.id: lot.remaining + delta for lot, delta in changed}
            _set_values(connection, LOTS, "remaining", remainders)
            movements += [{"lot_id": lot.id, "amount": delta} for lot, delta in changed]
        for lot in self.new_lots:
            row = {"remaining": lot["amount"], "created_by_id": transaction_id, **lot}
            lot_id = connection.execute(INSERT_LOT, row).scalar()
            movements.append({"lot_id": lot_id, "amount": lot["amount"]})
        if movements:
            connection.execute(
                insert(MOVEMENTS),
                [{"transaction_id": transaction_id, **movement} for movement in movements],
            )
        # Last: the accounts only credited. Their balance before this transaction is what
        # the atomic update returns less this transaction's change.
        later_balance = {
            account_id: connection.execute(
                ADD_TO_BALANCE, {"account_id": account_id, "change": change}
            ).scalar_one()
            - change
            for account_id, change in changes.items()
        }
        entry_rows = []
        for account, amount, memo in self.legs:
            if account.later:
                later_balance[account.id] += amount
                account.balance = later_balance[account.id]
            else:
                account.balance += amount
            entry_rows.append(
                {
                    "transaction_id": transaction_id,
                    "account_id": account.id,
                    "amount": amount,
                    "balance_after": account.balance,
                    "memo": memo,
                }
            )
        connection.execute(insert(ENTRIES), entry_rows)
        _forget_cached(Account, [*balances, *changes], "balance")
        _forget_cached(CreditLot, [lot.id for lot, _ in changed], "remaining")
        transaction = Transaction(id=transaction_id, **values)
        make_transient_to_detached(transaction)
        db.session.add(transaction)
        return transaction


def _lock_accounts(
    *,
    keys: dict[str, Callable[[], object] | None] | None = None,
    ids: Iterable[int] = (),
    later_keys: dict[str, Callable[[], object] | None] | None = None,
    later_ids: Iterable[int] = (),
) -> Locked:
    """Lock the accounts named by ``keys`` and ``ids`` (in ``LOCK_ORDER``) and read them,
    and read without a lock those named by ``later_keys`` and ``later_ids``.

    An account read "later" is one the operation only credits (or the issuance account,
    which may go below zero): nothing about it needs checking, so its row is locked only by
    the atomic balance update at the end of ``Posting.write``. Every such account ranks
    after every account locked up front (``LOCK_ORDER``), so locks are always taken in one
    order and two operations never wait on each other in a circle.

    The key dicts map each key to a function opening that account when it does not exist
    yet (or None: leave it missing). Returns the accounts by id and by key.
    """
    keys, later_keys = keys or {}, later_keys or {}
    ids, later_ids = list(ids), list(later_ids)
    locked = _lock_rows(list(keys), ids, list(later_keys), later_ids)
    openers = {**keys, **later_keys}
    missing = [key for key, opener in openers.items() if key not in locked and opener]
    if missing:
        for key in missing:
            openers[key]()
        locked = _lock_rows(list(keys), ids, list(later_keys), later_ids)
    return locked


def lock_wallets(resident_ids: Iterable[int]) -> None:
    """Lock these residents' wallets now, for a caller about to run several operations in
    one database transaction (a bulk approval): taking every wallet first keeps the lock
    order when the first operation has already updated a scheme account."""
    keys = sorted({f"user:{resident_id}" for resident_id in resident_ids})
    if keys:
        _lock_rows(keys, [], [], [])


#: The one order accounts are locked in: residents' wallets, then pots, then partners,
#: then the scheme's own accounts; by id within each.
LOCK_RANK = case(
    {AccountKind.RESIDENT.value: 0, AccountKind.POT.value: 1, AccountKind.PARTNER.value: 2},
    value=ACCOUNTS.c.kind,
    else_=3,
)
LOCK_ORDER = (LOCK_RANK, ACCOUNTS.c.id)
LOCK_COLUMNS = (ACCOUNTS.c.id, ACCOUNTS.c.key, ACCOUNTS.c.kind, ACCOUNTS.c.name, ACCOUNTS.c.balance)
_LOCK_STATEMENTS: dict[tuple, object] = {}


def _account_condition(by_keys: bool, by_ids: bool, prefix: str = ""):
    conditions = []
    if by_keys:
        conditions.append(ACCOUNTS.c.key.in_(bindparam(f"{prefix}keys", expanding=True)))
    if by_ids:
        conditions.append(ACCOUNTS.c.id.in_(bindparam(f"{prefix}ids", expanding=True)))
    return or_(*conditions)


def _lock_statement(dialect: str, shape: tuple[bool, bool, bool, bool]):
    """The locking read, built once per dialect and shape (which of the four lists are
    non-empty): hot path. Rows come back with a last column saying "read, not locked"."""
    if (dialect, shape) in _LOCK_STATEMENTS:
        return _LOCK_STATEMENTS[(dialect, shape)]
    by_keys, by_ids, later_by_keys, later_by_ids = shape
    now_condition = (by_keys or by_ids) and _account_condition(by_keys, by_ids)
    later_condition = (later_by_keys or later_by_ids) and _account_condition(
        later_by_keys, later_by_ids, "later_"
    )
    if dialect == "sqlite":
        # SQLite has no row locks: this no-op write takes the database's write lock now,
        # so no one else can change a balance between our check and our write.
        conditions = [c for c in (now_condition, later_condition) if c is not None]
        later = later_condition if later_condition is not None else literal(False)
        statement = (
            update(ACCOUNTS)
            .where(or_(*conditions))
            .values(balance=ACCOUNTS.c.balance)
            .returning(*LOCK_COLUMNS, later)
        )
    else:
        parts = []
        if now_condition is not None:
            locked = (
                select(*LOCK_COLUMNS, literal(False).label("later"))
                .where(now_condition)
                .order_by(*LOCK_ORDER)
                .with_for_update()
            )
            parts.append(select(locked.cte("locked")))
        if later_condition is not None:
            parts.append(select(*LOCK_COLUMNS, literal(True).label("later")).where(later_condition))
        statement = parts[0] if len(parts) == 1 else union_all(*parts)
    _LOCK_STATEMENTS[(dialect, shape)] = statement
    return statement


def _lock_rows(keys: list[str], ids: list[int], later_keys: list[str], later_ids: list[int]):
    db.session.flush()  # the caller's pending rows first, so our statements see them
    connection = db.session.connection()
    shape = (bool(keys), bool(ids), bool(later_keys), bool(later_ids))
    statement = _lock_statement(connection.dialect.name, shape)
    params = {"keys": keys, "ids": ids, "later_keys": later_keys, "later_ids": later_ids}
    locked = Locked()
    for *columns, later in connection.execute(statement, params).all():
        account = LockedAccount(*columns, later=bool(later))
        locked[account.id] = locked[account.key] = account
    return locked


def _forget_cached(model, ids: Iterable[int], attribute: str) -> None:
    """Expire a changed attribute of objects the session holds, so they reload it."""
    identity_map = db.session.identity_map
    for row_id in ids:
        instance = identity_map.get(identity_key(model, row_id))
        if instance is not None:
            db.session.expire(instance, [attribute])


def _replay(idempotency_key: str, request_hash: str) -> Transaction | None:
    """The transaction already made with this key, if the request is the same one."""
    row = (
        db.session.connection().execute(REPLAY_QUERY, {"idempotency_key": idempotency_key}).first()
    )
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise IdempotencyConflict(
            "This idempotency key was used for a different request. Use a new key."
        )
    return db.session.get(Transaction, row.id)


_SET_BY_ID: dict[tuple, object] = {}


def _set_values(connection, table, column: str, values: dict[int, int]) -> None:
    """Set ``column`` of each row id in ``values``: hot path, so a statement built once per
    table and column, run for each row (psycopg pipelines an executemany: one round trip)."""
    key = (table.name, column)
    if key not in _SET_BY_ID:
        _SET_BY_ID[key] = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({column: bindparam("new_value")})
        )
    rows = [{"row_id": row_id, "new_value": value} for row_id, value in values.items()]
    connection.execute(_SET_BY_ID[key], rows[0] if len(rows) == 1 else rows)


#: An account only credited, updated atomically at the end of a posting (built once).
ADD_TO_BALANCE = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.id == bindparam("account_id"))
    .values(balance=ACCOUNTS.c.balance + bindparam("change"))
    .returning(ACCOUNTS.c.balance)
)
#: A new lot, its id returned (built once: hot path).
INSERT_LOT = insert(LOTS).returning(LOTS.c.id)
REPLAY_QUERY = select(TRANSACTIONS.c.id, TRANSACTIONS.c.request_hash).where(
    TRANSACTIONS.c.idempotency_key == bindparam("idempotency_key")
)
_INSERT_TRANSACTION: dict[str, object] = {}


def _insert_transaction(connection):
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id, built once per database dialect."""
    name = connection.dialect.name
    if name not in _INSERT_TRANSACTION:
        insert_for = postgresql.insert if name == "postgresql" else sqlite.insert
        _INSERT_TRANSACTION[name] = (
            insert_for(TRANSACTIONS).on_conflict_do_nothing().returning(TRANSACTIONS.c.id)
        )
    return _INSERT_TRANSACTION[name]


def _system_key(kind: AccountKind) -> str:
    return f"scheme:{kind.value}"


def _fingerprint(*request) -> str:
    """A stable digest of what was asked (description and actor are not part of it)."""
    text = json.dumps(
        [value.isoformat() if isinstance(value, datetime) else value for value in request]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _check_amount(amount) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmount("Credit amounts are whole numbers.")
    if amount <= 0:
        raise InvalidAmount("The amount must be at least 1 credit.")
    if amount > MAX_AMOUNT:
        raise InvalidAmount(f"The amount must be at most {MAX_AMOUNT:,} credits.")


def _check_key(key) -> None:
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise InvalidIdempotencyKey("An idempotency key (1 to 255 characters) is needed.")


def _validity_days() -> int:
    return int(current_app.config.get("CREDIT_VALIDITY_DAYS", DEFAULT_CREDIT_VALIDITY_DAYS))


def _words(lead: str, description: str) -> str:
    """``lead``, then the caller's description after a colon when there is one."""
    description = (description or "").strip()
    return f"{lead}: {description}" if description else lead


def _shortfall_message(account, available: int, needed: int) -> str:
    if account.kind == AccountKind.RESIDENT:
        return f"Not enough credits: you have {available} to use and this needs {needed}."
    return f"Not enough credits: {account.name} holds {available} and this needs {needed}."


def _dialect_insert(model):
    """INSERT with ON CONFLICT support for the database in use."""
    if db.session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
