"""A redemption in one round trip on PostgreSQL: the till's usual case, done by the database.

``partners.operations.redeem`` is the redemption: it claims the code, checks the offer,
spends through ``rewards.operations.spend`` and records the redemption, about a dozen
statements. On PostgreSQL, ``POST /api/v1/redemptions`` first gives a till's usual request
(a fresh code, an offer on sale now, a resident who has the credits) to
``civic_redeem_at_once``, a function that does the same work in the same order, inside the
database, as one statement in autocommit mode: one round trip instead of fourteen. It also
checks the till's bearer token when the app did not look it up in this request
(``core.security.bearer_user``, ``recent_ok``).

It only ever does what ``redeem`` would do, and it only does it when every check passes.
Whenever ``redeem`` would refuse, explain, or answer a replay (an unknown, used or expired
code; the resident's own code; an offer that is paused, not on sale at this hour, limited
per resident or with a stock; no wallet, too few credits; a key used before), the function
returns no row and writes nothing, and ``redeem`` runs as usual and says why. A key or a
code that another till takes at the same instant makes the function's insert fail: the
statement is undone as a whole and ``redeem`` answers.

What it writes is what ``redeem`` and ``spend`` write, column for column (the test
``tests/partners/test_redeem_at_once.py`` compares the two): the code's ``used_at``; a
``spend`` transaction with the same idempotency key and request fingerprint; the wallet's
balance; the lots used, soonest expiring first, and their movements; the partner's
balance, updated last; the two entries with the balance after each and the same words;
the redemption. Locks are taken in ``redeem``'s order (the code, the wallet, then the
partner's account by its update), and each statement in the function reads what was
committed before it (a PL/pgSQL function is volatile: a fresh snapshot per statement),
so the lots are read after the wallet is locked, as ``spend`` reads them.

The ledger's own guards hold as for any other write: the deferred zero-sum trigger, the
append-only triggers and the non-negative CHECKs.
"""

from __future__ import annotations

from sqlalchemy import bindparam, event, select, text
from sqlalchemy.sql import column, func

from partners.models import Redemption

FUNCTION_SQL = r"""
CREATE OR REPLACE FUNCTION civic_redeem_at_once(
    p_staff_id integer,
    p_offer_id integer,
    p_code_digest text,
    p_till_key text,
    p_till_key_hash text,
    p_now timestamptz,
    p_local_date date,
    p_local_weekday text,
    p_local_time time,
    p_token_digest text
) RETURNS TABLE (
    redemption_id integer,
    transaction_id integer,
    code_id integer,
    resident_id integer,
    display_name text,
    partner_id integer,
    credits integer,
    settlement_rate_pence integer,
    description text
) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_offer record;
    v_code record;
    v_wallet record;
    v_partner record;
    v_lot record;
    v_needed bigint;
    v_take bigint;
    v_lots integer[] := '{}';
    v_takes bigint[] := '{}';
    v_description text;
    v_transaction integer;
    v_wallet_after bigint;
    v_partner_after bigint;
    v_redemption integer;
BEGIN
    -- The till's bearer token, when the app has not looked it up in this request: valid,
    -- its user the member of staff, not suspended, and holding the partner staff role.
    IF p_token_digest IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_digest = p_token_digest AND t.user_id = p_staff_id
           AND t.revoked_at IS NULL AND t.expires_at > p_now AND u.suspended_at IS NULL
           AND EXISTS (SELECT 1 FROM role_memberships r
                        WHERE r.user_id = u.id AND r.role = 'partner_staff')
    ) THEN
        RETURN;
    END IF;

    -- The offer, on sale now at an approved partner this member of staff works for.
    -- Limits per resident and stock are left to redeem (they need counting under a lock).
    SELECT o.id, o.partner_id, o.title, o.credit_cost, p.name, p.settlement_rate_pence
      INTO v_offer
      FROM offers o JOIN partners p ON p.id = o.partner_id
     WHERE o.id = p_offer_id
       AND p.status = 'approved'
       AND o.status = 'active'
       AND (o.valid_from IS NULL OR p_local_date >= o.valid_from)
       AND (o.valid_until IS NULL OR p_local_date <= o.valid_until)
       AND strpos(o.days, p_local_weekday) > 0
       AND (o.available_from IS NULL OR o.available_until IS NULL OR
            CASE WHEN o.available_from < o.available_until
                 THEN p_local_time >= o.available_from AND p_local_time < o.available_until
                 ELSE p_local_time >= o.available_from OR p_local_time < o.available_until
            END)
       AND o.limit_per_resident IS NULL
       AND o.stock_remaining IS NULL
       AND EXISTS (SELECT 1 FROM partner_memberships m
                    WHERE m.partner_id = o.partner_id AND m.user_id = p_staff_id);
    IF NOT FOUND THEN
        RETURN;
    END IF;

    -- The code, unused and unexpired, locked (a second till waits, then finds it used).
    SELECT rc.id, rc.resident_id, u.display_name
      INTO v_code
      FROM redemption_codes rc JOIN users u ON u.id = rc.resident_id
     WHERE rc.code_digest = p_code_digest AND rc.used_at IS NULL AND rc.expires_at > p_now
       FOR UPDATE OF rc;
    IF NOT FOUND OR v_code.resident_id = p_staff_id THEN
        RETURN;
    END IF;

    -- The wallet, locked; the partner's account, read (its row is locked by the update).
    SELECT a.id, a.balance INTO v_wallet
      FROM ledger_accounts a WHERE a.key = 'user:' || v_code.resident_id
       FOR UPDATE;
    IF NOT FOUND OR v_wallet.balance < v_offer.credit_cost THEN
        RETURN;
    END IF;
    SELECT a.id, a.name, a.kind INTO v_partner
      FROM ledger_accounts a WHERE a.key = 'partner:' || v_offer.partner_id;
    IF NOT FOUND OR v_partner.kind <> 'partner' THEN
        RETURN;
    END IF;

    -- Lots that expire first are used first.
    v_needed := v_offer.credit_cost;
    FOR v_lot IN
        SELECT l.id, l.remaining FROM credit_lots l
         WHERE l.account_id = v_wallet.id AND l.remaining > 0 AND l.expires_at > p_now
         ORDER BY l.expires_at, l.id
    LOOP
        v_take := least(v_lot.remaining, v_needed);
        v_lots := v_lots || v_lot.id;
        v_takes := v_takes || v_take;
        v_needed := v_needed - v_take;
        EXIT WHEN v_needed = 0;
    END LOOP;
    IF v_needed > 0 THEN
        RETURN;
    END IF;

    v_description := v_offer.name || ': ' || v_offer.title;
    UPDATE redemption_codes SET used_at = p_now WHERE id = v_code.id;
    INSERT INTO ledger_transactions (
        kind, idempotency_key, request_hash, amount, created_at, description, reason,
        source, actor_id, reverses_id
    ) VALUES (
        'spend',
        'redemption:' || v_offer.partner_id || ':' || p_till_key_hash,
        encode(sha256(convert_to(format('["spend", %s, %s, %s]',
            v_code.resident_id, v_partner.id, v_offer.credit_cost), 'UTF8')), 'hex'),
        v_offer.credit_cost, p_now, v_description, NULL, '', p_staff_id, NULL
    ) RETURNING id INTO v_transaction;
    UPDATE ledger_accounts SET balance = v_wallet.balance - v_offer.credit_cost
     WHERE id = v_wallet.id
    RETURNING balance INTO v_wallet_after;
    UPDATE credit_lots l SET remaining = l.remaining - t.take
      FROM unnest(v_lots, v_takes) AS t(lot_id, take)
     WHERE l.id = t.lot_id;
    INSERT INTO credit_lot_movements (transaction_id, lot_id, amount)
    SELECT v_transaction, t.lot_id, -t.take
      FROM unnest(v_lots, v_takes) WITH ORDINALITY AS t(lot_id, take, n)
     ORDER BY t.n;
    UPDATE ledger_accounts SET balance = balance + v_offer.credit_cost
     WHERE id = v_partner.id
    RETURNING balance INTO v_partner_after;
    INSERT INTO ledger_entries (transaction_id, account_id, amount, balance_after, memo)
    VALUES
        (v_transaction, v_wallet.id, -v_offer.credit_cost, v_wallet_after,
         left('at ' || v_partner.name || ': ' || btrim(v_description, E' \t\n\r\f\v'), 500)),
        (v_transaction, v_partner.id, v_offer.credit_cost, v_partner_after,
         left(v_description, 500));
    INSERT INTO redemptions (
        partner_id, offer_id, resident_id, code_id, staff_id, idempotency_key, credits,
        settlement_rate_pence, description, transaction_id, status, created_at
    ) VALUES (
        v_offer.partner_id, v_offer.id, v_code.resident_id, v_code.id, p_staff_id, p_till_key,
        v_offer.credit_cost, v_offer.settlement_rate_pence, v_description, v_transaction,
        'completed', p_now
    ) RETURNING id INTO v_redemption;
    RETURN QUERY SELECT v_redemption, v_transaction, v_code.id, v_code.resident_id,
        v_code.display_name::text, v_offer.partner_id, v_offer.credit_cost,
        v_offer.settlement_rate_pence, v_description;
END
$$;
"""

DROP_SQL = "DROP FUNCTION IF EXISTS civic_redeem_at_once"

#: The call, as a statement ``core.alone.execute_alone`` runs (built once).
CALL = select(
    *(
        column(name)
        for name in (
            "redemption_id",
            "transaction_id",
            "code_id",
            "resident_id",
            "display_name",
            "partner_id",
            "credits",
            "settlement_rate_pence",
            "description",
        )
    )
).select_from(
    func.civic_redeem_at_once(
        bindparam("staff_id"),
        bindparam("offer_id"),
        bindparam("code_digest"),
        bindparam("till_key"),
        bindparam("till_key_hash"),
        bindparam("now"),
        bindparam("local_date"),
        bindparam("local_weekday"),
        bindparam("local_time"),
        bindparam("token_digest"),
    ).alias("redeemed")
)


@event.listens_for(Redemption.__table__, "after_create")
def install_function(target, connection, **kw) -> None:
    """Create the function on PostgreSQL (for ``create_all``; the migration does the same)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(FUNCTION_SQL))
