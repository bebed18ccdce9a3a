"""Residents' pages for their credits, and council's community pots."""

from __future__ import annotations

import secrets

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import select

from core.errors import DomainError
from core.extensions import db
from core.models import Role, User
from core.security import roles_required
from rewards import operations as ops
from rewards.forms import TO_PERSON, GiftForm, PotForm
from rewards.models import Account, AccountKind
from rewards.wallet import community_pots, history, live_lots, next_expiry

rewards_bp = Blueprint("rewards", __name__, template_folder="templates")

#: History lines shown on one page of the wallet.
HISTORY_PAGE = 20


@rewards_bp.get("/wallet")
@roles_required(Role.RESIDENT)
def wallet():
    """The resident's credits: balance, when they expire, and what happened to them."""
    before = request.args.get("before", type=int)
    if request.args.get("before") and before is None:
        abort(404)
    account = ops.find_wallet(current_user.id)
    lots, items, next_cursor = [], [], None
    if account is not None:
        lots = live_lots(account.id)
        items, next_cursor = history(account.id, limit=HISTORY_PAGE, before=before)
    soonest, soonest_amount = next_expiry(lots)
    return render_template(
        "rewards/wallet.html",
        balance=account.balance if account else 0,
        lots=lots,
        items=items,
        next_cursor=next_cursor,
        paged=before is not None,
        soonest=soonest,
        soonest_amount=soonest_amount,
    )


@rewards_bp.route("/wallet/give", methods=["GET", "POST"])
@roles_required(Role.RESIDENT)
def give():
    """Give credits to another resident or a community pot."""
    form = GiftForm()
    pots = community_pots()
    form.to.choices = [(TO_PERSON, "Another resident")] + [
        (f"pot:{pot.id}", pot.name) for pot in pots
    ]
    if request.method == "GET":
        form.idempotency_key.data = secrets.token_urlsafe(16)
        form.to.data = request.args.get("to") or TO_PERSON
    elif form.validate_on_submit():
        receiver = gift_receiver(form)
        if receiver is not None:
            try:
                ops.gift(
                    current_user.id,
                    receiver.id,
                    form.amount.data,
                    idempotency_key=f"gift:{current_user.id}:{form.idempotency_key.data}",
                    description=(form.message.data or "").strip(),
                    actor_id=current_user.id,
                )
            except DomainError as error:
                db.session.rollback()
                form.amount.errors = list(form.amount.errors) + [error.message]
            else:
                db.session.commit()
                credits = "credit" if form.amount.data == 1 else "credits"
                flash(f"You gave {form.amount.data} {credits} to {receiver.name}.", "success")
                return redirect(url_for("rewards.wallet"))
    balance = ops.find_wallet(current_user.id)
    status = 400 if form.errors else 200
    return render_template(
        "rewards/give.html", form=form, balance=balance.balance if balance else 0
    ), status


def gift_receiver(form: GiftForm) -> Account | None:
    """The wallet or pot the form names, or None with the error on the form."""
    if form.to.data == TO_PERSON:
        email = (form.email.data or "").strip().lower()
        if not email:
            form.email.errors = list(form.email.errors) + ["Enter their email address"]
            return None
        user = db.session.execute(select(User).where(User.email == email)).scalar_one_or_none()
        if user is None or not user.is_active or Role.RESIDENT not in user.roles:
            form.email.errors = list(form.email.errors) + [
                "No resident has that email address. Check it and try again"
            ]
            return None
        if user.id == current_user.id:
            form.email.errors = list(form.email.errors) + ["You cannot give credits to yourself"]
            return None
        return ops.wallet_of(user.id)
    pot_id = form.to.data.removeprefix("pot:")
    pot = db.session.get(Account, int(pot_id)) if pot_id.isdigit() else None
    if pot is None or pot.kind != AccountKind.POT:
        form.to.errors = list(form.to.errors) + ["Select who you want to give credits to"]
        return None
    return pot


@rewards_bp.route("/council/pots", methods=["GET", "POST"])
@roles_required(Role.COUNCIL, Role.ADMIN)
def pots():
    """Community pots: what residents have given, and opening a new one."""
    form = PotForm()
    if form.validate_on_submit():
        try:
            pot = ops.create_community_pot(
                form.name.data, form.description.data or "", actor_id=current_user.id
            )
        except DomainError as error:
            db.session.rollback()
            form.name.errors = list(form.name.errors) + [error.message]
        else:
            db.session.commit()
            flash(f"The pot {pot.name} is open for gifts.", "success")
            return redirect(url_for("rewards.pots"))
    status = 400 if form.errors else 200
    return render_template("rewards/pots.html", form=form, pots=community_pots()), status
