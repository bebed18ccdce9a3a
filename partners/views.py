"""Pages for spending credits and for partner businesses."""

from flask import Blueprint, render_template

from core.models import Role
from core.security import roles_required

partners_bp = Blueprint("partners", __name__, template_folder="templates")


@partners_bp.get("/offers")
@roles_required(Role.RESIDENT, Role.PARTNER_STAFF)
def offers():
    """Where and how residents spend credits."""
    return render_template("partners/offers.html")


@partners_bp.get("/business")
@roles_required(Role.PARTNER_STAFF)
def business():
    """The partner staff's start page."""
    return render_template("partners/business.html")
