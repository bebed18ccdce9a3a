"""The JSON API of API.md: the Api object, the kernel's endpoints, and registration."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app, g
from flask.views import MethodView

from core import accounts, invitations
from core.apiframework import Api, ApiBlueprint, Id, RequestSchema, bearer_doc
from core.errors import ForbiddenError, InvalidRequest
from core.extensions import csrf, db, limiter
from core.models import ApiToken, Role, User
from core.security import api_auth
from core.signin_limits import account_limit, account_limit_key, failed_attempt, ip_limit

auth_blp = ApiBlueprint("auth", __name__, url_prefix="/api/v1", description="Sign-in tokens")
people_blp = ApiBlueprint("people", __name__, url_prefix="/api/v1", description="Residents and you")
invitations_blp = ApiBlueprint(
    "invitations",
    __name__,
    url_prefix="/api/v1",
    description="Invitations of people without an account to organise or to work for a partner",
)


class UserSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    email = ma.fields.Email(required=True)
    display_name = ma.fields.String(required=True)
    postcode = ma.fields.String()
    roles = ma.fields.Method("dump_roles", metadata={"type": "array", "items": {"type": "string"}})

    def dump_roles(self, user: User) -> list[str]:
        return sorted(role.value for role in user.roles)


class TokenRequestSchema(RequestSchema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(required=True, validate=ma.validate.Length(max=256))


class TokenResponseSchema(ma.Schema):
    token = ma.fields.String(required=True)
    expires_at = ma.fields.DateTime(required=True)
    user = ma.fields.Nested(UserSchema, required=True)


class RegisterSchema(RequestSchema):
    email = ma.fields.String(required=True, validate=ma.validate.Length(max=254))
    password = ma.fields.String(required=True, validate=ma.validate.Length(max=256))
    display_name = ma.fields.String(required=True, validate=ma.validate.Length(max=100))
    postcode = ma.fields.String(required=True, validate=ma.validate.Length(max=12))


class MeSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    email = ma.fields.Email(required=True)
    display_name = ma.fields.String(required=True)
    postcode = ma.fields.String()
    roles = ma.fields.List(ma.fields.String(), required=True)
    balance = ma.fields.Raw(
        allow_none=True, metadata={"type": "integer", "description": "Residents' balance"}
    )


@auth_blp.route("/auth/token")
class TokenResource(MethodView):
    @auth_blp.arguments(TokenRequestSchema)
    @auth_blp.response(200, TokenResponseSchema)
    @auth_blp.alt_response(401, description="invalid_credentials")
    @auth_blp.alt_response(429, description="rate_limited: too many failed attempts")
    @limiter.limit(ip_limit, deduct_when=failed_attempt)
    @limiter.limit(account_limit, key_func=account_limit_key, deduct_when=failed_attempt)
    def post(self, body):
        """Exchange an email and password for a bearer token."""
        try:
            user = accounts.authenticate(body["email"], body["password"])
        except Exception:
            g.signin_failed = True
            raise
        invitations.accept_pending_for(user)
        token, row = accounts.issue_api_token(user)
        db.session.commit()
        return {"token": token, "expires_at": row.expires_at, "user": user}

    @auth_blp.response(204)
    @auth_blp.doc(**bearer_doc())
    @api_auth()
    def delete(self):
        """Revoke the token this request is made with."""
        accounts.revoke_api_token(db.session.get(ApiToken, g.api_token_id))
        db.session.commit()
        return ""


@people_blp.route("/residents")
class ResidentsResource(MethodView):
    @people_blp.arguments(RegisterSchema)
    @people_blp.response(201, UserSchema)
    @people_blp.alt_response(409, description="email_taken")
    def post(self, body):
        """Register a resident account."""
        user = accounts.register_resident(**body)
        db.session.commit()
        return user


@people_blp.route("/me")
class MeResource(MethodView):
    @people_blp.response(200, MeSchema)
    @people_blp.doc(**bearer_doc("any user"))
    @api_auth()
    def get(self):
        """The signed-in user, their roles and, for residents, their balance."""
        user = g.api_user
        data = UserSchema().dump(user)
        data["balance"] = None
        if Role.RESIDENT in user.roles:
            data["balance"] = resident_balance(user)
        return data


class InviteRequestSchema(RequestSchema):
    """Invite someone by email to an organisation's organisers or a partner's staff."""

    email = ma.fields.String(required=True, validate=ma.validate.Length(max=254))


class InvitedMemberSchema(ma.Schema):
    """The answer to an invitation by email: added at once, or invited (no account yet).
    The feature's schema adds the id of what they joined."""

    user_id = ma.fields.Integer(allow_none=True)
    status = ma.fields.String(
        required=True,
        metadata={
            "enum": ["added", "invited"],
            "description": "invited: no account yet; a pending invitation was emailed",
        },
    )
    invitation_id = ma.fields.Integer(
        allow_none=True, metadata={"description": "The pending invitation (status invited)"}
    )


class InvitationSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    email = ma.fields.String(required=True)
    kind = ma.fields.String(
        required=True,
        metadata={"description": "organiser or partner_staff", "example": "organiser"},
    )
    target_id = ma.fields.Integer(
        required=True, metadata={"description": "The organisation's or partner's id"}
    )
    status = ma.fields.String(
        required=True, metadata={"enum": ["pending", "expired", "accepted", "revoked"]}
    )
    created_at = ma.fields.DateTime(required=True)
    expires_at = ma.fields.DateTime(required=True)


class InvitationListArgsSchema(ma.Schema):
    kind = ma.fields.String(required=True, validate=ma.validate.Length(max=20))
    target_id = Id(required=True, strict=False)


class InvitationListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(InvitationSchema), required=True)


class AcceptInvitationSchema(RequestSchema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))


INVITERS = (Role.ORGANISER, Role.PARTNER_STAFF)


@invitations_blp.route("/invitations")
class InvitationsResource(MethodView):
    @invitations_blp.arguments(InvitationListArgsSchema, location="query")
    @invitations_blp.response(200, InvitationListSchema)
    @invitations_blp.doc(**bearer_doc("organiser of that organisation", "partner staff of it"))
    @api_auth(*INVITERS)
    def get(self, args):
        """Pending invitations (expired ones too) of an organisation or a partner."""
        kind = invitations.KINDS.get(args["kind"])
        if kind is None:
            raise InvalidRequest("There is no such kind.", {"kind": ["Not a kind."]})
        if not kind.may_manage(g.api_user, args["target_id"]):
            raise ForbiddenError("You cannot see these invitations.", code="not_allowed")
        return {"items": invitations.pending_invitations(kind.name, args["target_id"])}


@invitations_blp.route("/invitations/<int:invitation_id>")
class InvitationResource(MethodView):
    @invitations_blp.response(204)
    @invitations_blp.alt_response(409, description="not_pending")
    @invitations_blp.doc(**bearer_doc("organiser of its organisation", "partner staff of it"))
    @api_auth(*INVITERS)
    def delete(self, invitation_id):
        """Revoke a pending invitation: its link stops working."""
        invitations.revoke(g.api_user, invitations.get_invitation(invitation_id))
        db.session.commit()
        return ""


@invitations_blp.route("/invitations/accept")
class AcceptInvitationResource(MethodView):
    @invitations_blp.arguments(AcceptInvitationSchema)
    @invitations_blp.response(200, InvitationSchema)
    @invitations_blp.alt_response(403, description="invitation_for_another_address")
    @invitations_blp.alt_response(404, description="invitation_invalid")
    @invitations_blp.alt_response(409, description="invitation_accepted")
    @invitations_blp.alt_response(410, description="invitation_expired, invitation_revoked")
    @invitations_blp.doc(**bearer_doc("any user"))
    @api_auth()
    def post(self, body):
        """Accept an invitation with the token of its emailed link (only its own address)."""
        invitation = invitations.invitation_from_token(body["token"])
        invitations.accept(invitation, g.api_user)
        db.session.commit()
        return invitation


def resident_balance(user: User):
    """The resident's balance, from the ledger when it is installed."""
    hook = current_app.extensions.get("civic_credits.balance_of")
    return hook(user) if hook else 0


def register_api(app) -> Api:
    """Create the Api, declare bearer auth, and register every package's API blueprint."""
    api = Api(app, spec_kwargs={"info": {"description": "Civic Credits JSON API (API.md)."}})
    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "POST /api/v1/auth/token"}
    )
    for blueprint in api_blueprints():
        api.register_blueprint(blueprint)
        csrf.exempt(blueprint)

    from core.security import authorise_api_request

    app.before_request(authorise_api_request)

    return api


def api_blueprints() -> list[ApiBlueprint]:
    """Every API blueprint of the app, kernel first."""
    from partners.api import partners_api, redemptions_api
    from partners.settlement_api import settlements_api
    from reports.api import reports_api
    from rewards.api import wallet_api
    from volunteering.api import volunteering_api

    return [
        auth_blp,
        people_blp,
        invitations_blp,
        wallet_api,
        volunteering_api,
        partners_api,
        redemptions_api,
        reports_api,
        settlements_api,
    ]
