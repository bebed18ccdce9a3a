"""Settlement pages: partners' statements and payout account, council's payments overview.

Views parse, call ``partners.settlement`` / ``partners.payments``, commit once, redirect.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime

import stripe
from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from core.errors import DomainError
from core.extensions import db
from core.models import Role
from core.security import roles_required
from core.timeutil import utcnow
from partners import operations
from partners.models import Partner, PayoutMethod, Redemption
from partners.payments import (
    connect_account,
    payment_file_csv,
    refresh_account,
    stripe_enabled,
)
from partners.settlement import (
    PaymentBatch,
    Settlement,
    SettlementRedemption,
    SettlementStatus,
    StripeConnectedAccount,
    budget_view,
    cancel_settlement,
    last_complete_period,
    mark_batch_paid,
    period_containing,
    retry_settlement,
    set_budget,
)

settlement_bp = Blueprint("settlement", __name__, template_folder="templates")

STAFF = (Role.PARTNER_STAFF,)
COUNCIL = (Role.COUNCIL, Role.ADMIN)


def partner_for(partner_id: int, *, council_may_view: bool = True) -> Partner:
    """The partner of the URL, if the signed-in person may see it (404/403 otherwise)."""
    partner = db.get_or_404(Partner, partner_id)
    if council_may_view and current_user.has_role(*COUNCIL):
        return partner
    if not operations.is_staff_of(current_user, partner.id):
        abort(403)
    return partner


def settlement_of(partner: Partner, settlement_id: int) -> Settlement:
    settlement = db.session.get(Settlement, settlement_id)
    if settlement is None or settlement.partner_id != partner.id:
        abort(404)
    return settlement


def redemptions_of(settlement: Settlement) -> list[Redemption]:
    return list(
        db.session.execute(
            select(Redemption)
            .join(SettlementRedemption, SettlementRedemption.redemption_id == Redemption.id)
            .where(SettlementRedemption.settlement_id == settlement.id)
            .order_by(Redemption.id)
        ).scalars()
    )


# --------------------------------------------------------------------------- partners


@settlement_bp.get("/business/<int:partner_id>/settlements")
@roles_required(*STAFF, *COUNCIL)
def statements(partner_id: int):
    """A partner's settlements, newest first: what was owed, and whether it was paid."""
    partner = partner_for(partner_id)
    rows = db.session.execute(
        select(Settlement)
        .where(Settlement.partner_id == partner.id)
        .order_by(Settlement.id.desc())
        .limit(200)
    ).scalars()
    totals = dict(
        db.session.execute(
            select(Settlement.status, func.sum(Settlement.amount_pence))
            .where(Settlement.partner_id == partner.id)
            .group_by(Settlement.status)
        ).all()
    )
    return render_template(
        "settlement/statements.html",
        partner=partner,
        rows=list(rows),
        totals=totals,
        is_staff=operations.is_staff_of(current_user, partner.id),
    )


@settlement_bp.get("/business/<int:partner_id>/settlements/<int:settlement_id>")
@roles_required(*STAFF, *COUNCIL)
def statement(partner_id: int, settlement_id: int):
    """One settlement and the redemptions it pays for."""
    partner = partner_for(partner_id)
    settlement = settlement_of(partner, settlement_id)
    return render_template(
        "settlement/statement.html",
        partner=partner,
        settlement=settlement,
        redemptions=redemptions_of(settlement),
        is_staff=operations.is_staff_of(current_user, partner.id),
    )


@settlement_bp.get("/business/<int:partner_id>/settlements/<int:settlement_id>.csv")
@roles_required(*STAFF, *COUNCIL)
def statement_csv(partner_id: int, settlement_id: int):
    """One settlement's redemptions as CSV."""
    from partners.views import csv_safe

    partner = partner_for(partner_id)
    settlement = settlement_of(partner, settlement_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        ["settlement_id", "redemption_id", "created_at", "offer", "credits", "rate_pence",
         "amount_pence", "settlement_status"]
    )  # fmt: skip
    for row in redemptions_of(settlement):
        writer.writerow(
            [
                settlement.id,
                row.id,
                row.created_at.isoformat(),
                csv_safe(row.description),
                row.credits,
                row.settlement_rate_pence,
                row.amount_pence,
                settlement.status,
            ]
        )
    name = f"settlement-{settlement.id}-partner-{partner.id}.csv"
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@settlement_bp.route("/business/<int:partner_id>/payouts", methods=["GET", "POST"])
@roles_required(*STAFF)
def payouts(partner_id: int):
    """Connect a Stripe payout account (Express onboarding), and see its status."""
    partner = partner_for(partner_id, council_may_view=False)
    error = None
    if request.method == "POST":
        if not stripe_enabled():
            abort(404)
        try:
            operations.set_payout_method(current_user, partner, PayoutMethod.STRIPE_CONNECT.value)
            url = connect_account(
                partner,
                refresh_url=url_for(".payouts", partner_id=partner.id, _external=True),
                return_url=url_for(".payouts", partner_id=partner.id, returned=1, _external=True),
            )
            db.session.commit()
            return redirect(url, code=303)
        except stripe.StripeError as failure:
            db.session.rollback()
            error = f"Stripe could not be reached or refused: {failure.user_message or failure}"
    elif request.args.get("returned") and stripe_enabled():
        try:
            refresh_account(partner.id)
            db.session.commit()
        except stripe.StripeError:
            db.session.rollback()
            error = "We could not check your account with Stripe just now. Try again later."
    account = db.session.execute(
        select(StripeConnectedAccount).where(StripeConnectedAccount.partner_id == partner.id)
    ).scalar()
    return render_template(
        "settlement/payouts.html",
        partner=partner,
        account=account,
        stripe_on=stripe_enabled(),
        error=error,
        is_staff=True,
    ), (502 if error else 200)


# --------------------------------------------------------------------------- council


def period_from_form() -> datetime:
    """The period end named by the form (ISO), or the last complete period's end."""
    raw = request.values.get("period_end", "")
    if raw:
        try:
            value = datetime.fromisoformat(raw)
        except ValueError:
            abort(400)
        if value.tzinfo is None:
            abort(400)
        return value
    return last_complete_period(utcnow())[1]


@settlement_bp.get("/council/settlements")
@roles_required(*COUNCIL)
def council_settlements():
    """What was paid, what waits (budget), what failed, and the payment files."""
    now = utcnow()
    totals = {
        status: (int(count), int(amount or 0))
        for status, count, amount in db.session.execute(
            select(Settlement.status, func.count(), func.sum(Settlement.amount_pence)).group_by(
                Settlement.status
            )
        ).all()
    }
    periods = [last_complete_period(now)[1], period_containing(now)[1]]
    budgets = [budget_view(end) for end in periods]
    held = db.session.execute(
        select(Settlement)
        .where(
            Settlement.status == SettlementStatus.PENDING.value, Settlement.hold_reason.is_not(None)
        )
        .order_by(Settlement.id)
        .limit(200)
    ).scalars()
    failed = db.session.execute(
        select(Settlement)
        .where(Settlement.status == SettlementStatus.FAILED.value)
        .order_by(Settlement.id)
        .limit(200)
    ).scalars()
    batches = db.session.execute(
        select(PaymentBatch).order_by(PaymentBatch.id.desc()).limit(50)
    ).scalars()
    payout_problems = db.session.execute(
        select(Partner.name, StripeConnectedAccount.last_payout_failure)
        .join(StripeConnectedAccount, StripeConnectedAccount.partner_id == Partner.id)
        .where(StripeConnectedAccount.last_payout_failure.is_not(None))
        .order_by(Partner.name)
    ).all()
    return render_template(
        "settlement/council.html",
        totals=totals,
        statuses=list(SettlementStatus),
        budgets=budgets,
        held=list(held),
        failed=list(failed),
        batches=list(batches),
        payout_problems=payout_problems,
    )


@settlement_bp.post("/council/settlements/budget")
@roles_required(*COUNCIL)
def council_budget():
    """Set a period's budget in pounds (blank = the default); releases what now fits."""
    period_end = period_from_form()
    raw = (request.form.get("amount_gbp") or "").strip()
    try:
        amount = None if not raw else int(round(float(raw) * 100))
        released = set_budget(current_user, period_end, amount)
        db.session.commit()
    except (ValueError, DomainError) as error:
        db.session.rollback()
        flash(getattr(error, "message", "Enter the budget in pounds, like 2500.00"), "error")
        return redirect(url_for(".council_settlements"))
    flash(f"Budget saved. {len(released)} settlements released for payment.", "success")
    return redirect(url_for(".council_settlements"))


@settlement_bp.get("/council/settlements/batches/<int:batch_id>.csv")
@roles_required(*COUNCIL)
def batch_csv(batch_id: int):
    """A payment file for the council's finance system."""
    batch = db.get_or_404(PaymentBatch, batch_id)
    return Response(
        payment_file_csv(batch),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="payment-file-{batch.id}.csv"'},
    )


@settlement_bp.post("/council/settlements/batches/<int:batch_id>/paid")
@roles_required(*COUNCIL)
def batch_paid(batch_id: int):
    """Council marks a payment file paid (finance has made the payments)."""
    try:
        mark_batch_paid(current_user, batch_id, request.form.get("reference", ""))
        db.session.commit()
        flash(f"Payment file {batch_id} marked paid.", "success")
    except DomainError as error:
        db.session.rollback()
        if error.status == 404:
            abort(404)
        flash(error.message, "error")
    return redirect(url_for(".council_settlements"))


@settlement_bp.post("/council/settlements/<int:settlement_id>/<any(retry, cancel):action>")
@roles_required(*COUNCIL)
def settlement_action(settlement_id: int, action: str):
    """Retry a failed payment now, or cancel an unpaid settlement (with a reason)."""
    settlement = db.get_or_404(Settlement, settlement_id)
    try:
        if action == "retry":
            retry_settlement(current_user, settlement)
        else:
            cancel_settlement(current_user, settlement, request.form.get("reason", ""))
        db.session.commit()
        flash(f"Settlement {settlement_id}: {action} done.", "success")
    except DomainError as error:
        db.session.rollback()
        flash(error.message, "error")
    return redirect(url_for(".council_settlements"))
