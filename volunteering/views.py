"""Pages for giving time and for organising it."""

from flask import Blueprint, render_template

from core.models import Role
from core.security import roles_required

volunteering_bp = Blueprint("volunteering", __name__, template_folder="templates")


@volunteering_bp.get("/activities")
@roles_required(Role.RESIDENT, Role.ORGANISER)
def activities():
    """How residents give time and earn credits."""
    return render_template("volunteering/activities.html")


@volunteering_bp.get("/organise")
@roles_required(Role.ORGANISER)
def organise():
    """The organiser's start page."""
    return render_template("volunteering/organise.html")


@volunteering_bp.get("/c/<token>")
@roles_required(Role.RESIDENT)
def scan(token: str):
    """Where a check-in QR code leads (placeholder until the scan page lands)."""
    return render_template("volunteering/activities.html")
