"""Residents' pages for their credits."""

from flask import Blueprint, current_app, render_template

from core.models import Role
from core.security import roles_required

rewards_bp = Blueprint("rewards", __name__, template_folder="templates")


@rewards_bp.get("/wallet")
@roles_required(Role.RESIDENT)
def wallet():
    """The resident's credits."""
    from flask_login import current_user

    balance_of = current_app.extensions.get("civic_credits.balance_of")
    balance = balance_of(current_user) if balance_of else 0
    return render_template("rewards/wallet.html", balance=balance)
