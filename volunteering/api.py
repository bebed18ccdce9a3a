"""Volunteering's JSON API (API.md): organisations, activities, sessions, check-in, claims.

Views are thin: parse, authorise, call ``volunteering.operations``, commit once, answer.
"""

from __future__ import annotations

import marshmallow as ma
from flask import g
from flask.views import MethodView
from sqlalchemy import select

from core.api import InvitedMemberSchema, InviteRequestSchema
from core.apiframework import (
    MAX_INT,
    ApiBlueprint,
    Id,
    PageArgsSchema,
    RequestSchema,
    bearer_doc,
    paginate,
)
from core.errors import ForbiddenError
from core.extensions import db
from core.invitations import Invitation
from core.models import Role
from core.qrcodes import qr_svg
from core.security import api_auth
from volunteering import operations as ops
from volunteering import tokens
from volunteering.models import (
    Activity,
    Attendance,
    AttendanceSource,
    Claim,
    Organisation,
    OrganisationMember,
    VolunteeringSession,
)

volunteering_api = ApiBlueprint(
    "volunteering_api",
    __name__,
    url_prefix="/api/v1",
    description="Organisations, activities, sessions, check-in and claims",
)

COUNCIL = (Role.COUNCIL, Role.ADMIN)


# --- schemas -----------------------------------------------------------------------------


class OrganisationSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    description = ma.fields.String()
    status = ma.fields.String(required=True)
    decision_reason = ma.fields.String(allow_none=True)
    created_at = ma.fields.DateTime()


class OrganisationListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(OrganisationSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class OrganisationCreateSchema(RequestSchema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=5000))


class VolunteeringReasonSchema(RequestSchema):
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=1000))


class VolunteeringStatusSchema(ma.Schema):
    id = ma.fields.Integer()
    status = ma.fields.String(required=True)


class OrganisationMemberSchema(InvitedMemberSchema):
    organisation_id = ma.fields.Integer(required=True)


class ActivitySchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    organisation_id = ma.fields.Integer(required=True)
    organisation_name = ma.fields.Function(lambda a: a.organisation.name)
    title = ma.fields.String(required=True)
    description = ma.fields.String()
    category = ma.fields.String()
    location = ma.fields.String()
    ward = ma.fields.String()
    credits_per_hour = ma.fields.Integer()
    capacity = ma.fields.Integer(allow_none=True)
    status = ma.fields.String(required=True)
    decision_reason = ma.fields.String(allow_none=True)


class ActivityListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ActivitySchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class ActivityQuerySchema(PageArgsSchema):
    status = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(["pending", "approved", "rejected"])
    )
    category = ma.fields.String(load_default=None, validate=ma.validate.Length(max=60))
    ward = ma.fields.String(load_default=None, validate=ma.validate.Length(max=80))
    q = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200))


class ActivityCreateSchema(RequestSchema):
    organisation_id = Id(required=True)
    title = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    description = ma.fields.String(load_default="", validate=ma.validate.Length(max=5000))
    category = ma.fields.String(required=True, validate=ma.validate.Length(max=60))
    credits_per_hour = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(min=1, max=10)
    )
    location = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    ward = ma.fields.String(load_default=None, validate=ma.validate.Length(max=80))
    capacity = ma.fields.Integer(
        load_default=None,
        allow_none=True,
        strict=True,
        validate=ma.validate.Range(min=1, max=MAX_INT),
    )


class SessionCreateSchema(RequestSchema):
    starts_at = ma.fields.AwareDateTime(required=True)
    ends_at = ma.fields.AwareDateTime(required=True)


class SessionSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    activity_id = ma.fields.Integer(required=True)
    starts_at = ma.fields.DateTime(required=True)
    ends_at = ma.fields.DateTime(required=True)
    cancelled_at = ma.fields.DateTime(allow_none=True)


class SessionListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SessionSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class CheckinCodeSchema(ma.Schema):
    token = ma.fields.String(required=True)
    url = ma.fields.String(required=True)
    qr_svg = ma.fields.String(required=True)
    expires_at = ma.fields.DateTime(required=True)


class CheckinRequestSchema(RequestSchema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))
    nonce = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))


class CheckinResponseSchema(ma.Schema):
    attendance_id = ma.fields.Integer(required=True)
    state = ma.fields.String(required=True, metadata={"enum": ["checked_in", "checked_out"]})
    minutes = ma.fields.Integer()
    credits = ma.fields.Integer()
    claim_status = ma.fields.String(allow_none=True)


class ClaimSummarySchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True)
    minutes = ma.fields.Integer(required=True)
    credits = ma.fields.Integer(required=True)


class AttendanceCreateSchema(RequestSchema):
    resident_id = Id(load_default=None)
    card_token = ma.fields.String(load_default=None, validate=ma.validate.Length(max=500))
    checked_in_at = ma.fields.AwareDateTime(required=True)
    checked_out_at = ma.fields.AwareDateTime(load_default=None, allow_none=True)
    idempotency_key = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))

    @ma.validates_schema
    def one_resident(self, data, **kwargs):
        if bool(data.get("resident_id")) == bool(data.get("card_token")):
            raise ma.ValidationError("Give resident_id or card_token, not both.", "resident_id")


class AttendanceSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    session_id = ma.fields.Integer(required=True)
    resident_id = ma.fields.Integer(required=True)
    checked_in_at = ma.fields.DateTime(required=True)
    checked_out_at = ma.fields.DateTime(allow_none=True)
    source = ma.fields.String()
    claim = ma.fields.Nested(ClaimSummarySchema, allow_none=True)


class AttendanceListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AttendanceSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class ClaimSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    attendance_id = ma.fields.Integer(required=True)
    session_id = ma.fields.Integer(required=True)
    resident_id = ma.fields.Integer(required=True)
    minutes = ma.fields.Integer(required=True)
    credits = ma.fields.Integer(required=True)
    status = ma.fields.String(required=True)
    flags = ma.fields.List(ma.fields.String(), required=True)
    decision_reason = ma.fields.String(allow_none=True)
    transaction_id = ma.fields.Integer(allow_none=True)


class ClaimListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ClaimSchema), required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)


class ClaimQuerySchema(PageArgsSchema):
    status = ma.fields.String(
        load_default="pending", validate=ma.validate.OneOf(["pending", "approved", "rejected"])
    )
    flag = ma.fields.String(load_default=None, validate=ma.validate.OneOf(ops.CLAIM_FLAGS))
    organisation_id = Id(load_default=None, strict=False)


# --- helpers -----------------------------------------------------------------------------


def paginate_oldest_first(query, model, args) -> dict:
    """API.md's page of ``query``, oldest first (see ``core.apiframework.paginate``)."""
    return paginate(query, model.id, args["limit"], args["cursor"], newest_first=False)


# --- organisations -----------------------------------------------------------------------


@volunteering_api.route("/organisations")
class OrganisationsResource(MethodView):
    @volunteering_api.arguments(PageArgsSchema, location="query")
    @volunteering_api.response(200, OrganisationListSchema)
    @volunteering_api.doc(**bearer_doc("organiser", "council"))
    @api_auth(Role.ORGANISER, *COUNCIL)
    def get(self, args):
        """Organisations: mine (organisers); all of them (council staff)."""
        user = g.api_user
        query = select(Organisation)
        if not user.has_role(*COUNCIL):
            query = query.where(
                Organisation.id.in_(
                    select(OrganisationMember.organisation_id).where(
                        OrganisationMember.user_id == user.id
                    )
                )
            )
        return paginate_oldest_first(query, Organisation, args)

    @volunteering_api.arguments(OrganisationCreateSchema)
    @volunteering_api.response(201, OrganisationSchema)
    @volunteering_api.doc(**bearer_doc("organiser"))
    @api_auth(Role.ORGANISER)
    def post(self, body):
        """Propose an organisation; council staff approve it."""
        organisation = ops.propose_organisation(g.api_user, body["name"], body["description"])
        db.session.commit()
        return organisation


def _organisation_decision(organisation_id: int, decide, *args):
    organisation = ops.get_organisation(organisation_id)
    decide(g.api_user, organisation, *args)
    db.session.commit()
    return organisation


@volunteering_api.route("/organisations/<int:organisation_id>/approve")
class OrganisationApprove(MethodView):
    @volunteering_api.response(200, VolunteeringStatusSchema)
    @volunteering_api.alt_response(409, description="not_pending")
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def post(self, organisation_id):
        """Approve a pending (or reinstate a suspended) organisation."""
        return _organisation_decision(organisation_id, ops.approve_organisation)


@volunteering_api.route("/organisations/<int:organisation_id>/reject")
class OrganisationReject(MethodView):
    @volunteering_api.arguments(VolunteeringReasonSchema)
    @volunteering_api.response(200, VolunteeringStatusSchema)
    @volunteering_api.alt_response(409, description="not_pending")
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def post(self, body, organisation_id):
        """Reject a pending organisation with a reason."""
        return _organisation_decision(organisation_id, ops.reject_organisation, body["reason"])


@volunteering_api.route("/organisations/<int:organisation_id>/suspend")
class OrganisationSuspend(MethodView):
    @volunteering_api.arguments(VolunteeringReasonSchema)
    @volunteering_api.response(200, VolunteeringStatusSchema)
    @volunteering_api.alt_response(409, description="not_pending")
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def post(self, body, organisation_id):
        """Suspend an approved organisation with a reason."""
        return _organisation_decision(organisation_id, ops.suspend_organisation, body["reason"])


@volunteering_api.route("/organisations/<int:organisation_id>/organisers")
class OrganisationOrganisers(MethodView):
    @volunteering_api.arguments(InviteRequestSchema)
    @volunteering_api.response(201, OrganisationMemberSchema)
    @volunteering_api.alt_response(
        202, schema=OrganisationMemberSchema, description="no account yet: invitation emailed"
    )
    @volunteering_api.doc(**bearer_doc("organiser of that organisation"))
    @api_auth(Role.ORGANISER)
    def post(self, body, organisation_id):
        """Add another person as an organiser by email (or email them an invitation)."""
        organisation = ops.get_organisation(organisation_id)
        member = ops.invite_organiser(g.api_user, organisation, body["email"])
        db.session.commit()
        if isinstance(member, Invitation):
            return {
                "organisation_id": organisation.id,
                "user_id": None,
                "status": "invited",
                "invitation_id": member.id,
            }, 202
        return {"organisation_id": organisation.id, "user_id": member.user_id, "status": "added"}


# --- activities --------------------------------------------------------------------------


@volunteering_api.route("/activities")
class ActivitiesResource(MethodView):
    @volunteering_api.arguments(ActivityQuerySchema, location="query")
    @volunteering_api.response(200, ActivityListSchema)
    @volunteering_api.doc(**bearer_doc("any user"))
    @api_auth()
    def get(self, args):
        """Approved activities; organisers also see their own, council staff see all."""
        query = ops.visible_activities(g.api_user, args.get("status"))
        if args.get("category"):
            query = query.where(Activity.category == args["category"])
        if args.get("ward"):
            query = query.where(Activity.ward == args["ward"])
        if args.get("q"):
            query = query.where(Activity.title.ilike(f"%{args['q']}%"))
        return paginate_oldest_first(query, Activity, args)

    @volunteering_api.arguments(ActivityCreateSchema)
    @volunteering_api.response(201, ActivitySchema)
    @volunteering_api.alt_response(409, description="organisation_not_approved")
    @volunteering_api.doc(**bearer_doc("organiser of an approved organisation"))
    @api_auth(Role.ORGANISER)
    def post(self, body):
        """Propose an activity for council approval."""
        organisation = ops.get_organisation(body.pop("organisation_id"))
        activity = ops.propose_activity(g.api_user, organisation, **body)
        db.session.commit()
        return activity


@volunteering_api.route("/activities/<int:activity_id>")
class ActivityResource(MethodView):
    @volunteering_api.response(200, ActivitySchema)
    @volunteering_api.doc(**bearer_doc("any user"))
    @api_auth()
    def get(self, activity_id):
        """One activity (approved ones, or your own, or any for council staff)."""
        return visible_activity(activity_id)


def visible_activity(activity_id: int) -> Activity:
    """The activity if the caller may see it: 404 when missing, 403 when not theirs."""
    activity = db.session.execute(
        ops.visible_activities(g.api_user).where(Activity.id == activity_id)
    ).scalar_one_or_none()
    if activity is None:
        ops.get_activity(activity_id)
        raise ForbiddenError("This activity is not yours to see.", code="forbidden")
    return activity


@volunteering_api.route("/activities/<int:activity_id>/approve")
class ActivityApprove(MethodView):
    @volunteering_api.response(200, VolunteeringStatusSchema)
    @volunteering_api.alt_response(409, description="not_pending")
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def post(self, activity_id):
        """Approve a pending activity."""
        activity = ops.approve_activity(g.api_user, ops.get_activity(activity_id))
        db.session.commit()
        return activity


@volunteering_api.route("/activities/<int:activity_id>/reject")
class ActivityReject(MethodView):
    @volunteering_api.arguments(VolunteeringReasonSchema)
    @volunteering_api.response(200, VolunteeringStatusSchema)
    @volunteering_api.alt_response(409, description="not_pending")
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def post(self, body, activity_id):
        """Reject a pending activity with a reason."""
        activity = ops.reject_activity(g.api_user, ops.get_activity(activity_id), body["reason"])
        db.session.commit()
        return activity


@volunteering_api.route("/activities/<int:activity_id>/sessions")
class ActivitySessions(MethodView):
    @volunteering_api.arguments(PageArgsSchema, location="query")
    @volunteering_api.response(200, SessionListSchema)
    @volunteering_api.doc(**bearer_doc("any user"))
    @api_auth()
    def get(self, args, activity_id):
        """The sessions of an activity you may see."""
        visible_activity(activity_id)
        query = select(VolunteeringSession).where(VolunteeringSession.activity_id == activity_id)
        return paginate_oldest_first(query, VolunteeringSession, args)

    @volunteering_api.arguments(SessionCreateSchema)
    @volunteering_api.response(201, SessionSchema)
    @volunteering_api.alt_response(409, description="activity_not_approved")
    @volunteering_api.doc(**bearer_doc("organiser of the activity"))
    @api_auth(Role.ORGANISER)
    def post(self, body, activity_id):
        """Schedule a session of an approved activity (it may lie in the past)."""
        activity = ops.get_activity(activity_id)
        session = ops.schedule_session(g.api_user, activity, body["starts_at"], body["ends_at"])
        db.session.commit()
        return session


# --- sessions, check-in and attendance ---------------------------------------------------


@volunteering_api.route("/sessions/<int:session_id>/checkin-code")
class CheckinCode(MethodView):
    @volunteering_api.response(200, CheckinCodeSchema)
    @volunteering_api.doc(**bearer_doc("organiser of the session"))
    @api_auth(Role.ORGANISER)
    def get(self, session_id):
        """The session's current rotating check-in code, as a token, a URL and a QR image."""
        session = ops.organised_session(g.api_user, session_id)
        return checkin_code(session)


def checkin_code(session: VolunteeringSession) -> dict:
    token, expires_at = tokens.rotating_token(session.id)
    url = ops.checkin_url(token)
    return {
        "token": token,
        "url": url,
        "qr_svg": qr_svg(url, title=f"Check-in code for {session.activity.title}"),
        "expires_at": expires_at,
    }


@volunteering_api.route("/sessions/<int:session_id>/cancel")
class SessionCancel(MethodView):
    @volunteering_api.response(200, SessionSchema)
    @volunteering_api.alt_response(409, description="session_cancelled, session_closed")
    @volunteering_api.doc(**bearer_doc("organiser of the session"))
    @api_auth(Role.ORGANISER)
    def post(self, session_id):
        """Cancel a session that has not ended; residents signed up are emailed."""
        session = ops.cancel_session(g.api_user, ops.get_session(session_id))
        db.session.commit()
        return session


@volunteering_api.route("/sessions/<int:session_id>/signup")
class SessionSignupResource(MethodView):
    @volunteering_api.response(201, SessionSchema)
    @volunteering_api.alt_response(409, description="session_full")
    @volunteering_api.doc(**bearer_doc("resident"))
    @api_auth(Role.RESIDENT)
    def post(self, session_id):
        """Sign up to a session (within the activity's capacity)."""
        session = ops.get_session(session_id)
        ops.sign_up(g.api_user, session)
        db.session.commit()
        return session

    @volunteering_api.response(204)
    @volunteering_api.doc(**bearer_doc("resident"))
    @api_auth(Role.RESIDENT)
    def delete(self, session_id):
        """Cancel your place."""
        ops.cancel_signup(g.api_user, ops.get_session(session_id))
        db.session.commit()
        return ""


@volunteering_api.route("/checkins")
class Checkins(MethodView):
    @volunteering_api.arguments(CheckinRequestSchema)
    @volunteering_api.response(201, CheckinResponseSchema)
    @volunteering_api.alt_response(200, schema=CheckinResponseSchema, description="checked out")
    @volunteering_api.alt_response(400, description="token_invalid")
    @volunteering_api.alt_response(422, description="token_expired, session_not_open")
    @volunteering_api.doc(**bearer_doc("resident"))
    @api_auth(Role.RESIDENT)
    def post(self, body):
        """Check in with a scanned session code (201), or out the second time (200)."""
        result = ops.check_in_with_token(g.api_user, body["token"], body["nonce"])
        answer = result.as_dict()
        db.session.commit()
        return answer, 201 if result.state == "checked_in" else 200


@volunteering_api.route("/sessions/<int:session_id>/attendances")
class SessionAttendances(MethodView):
    @volunteering_api.arguments(PageArgsSchema, location="query")
    @volunteering_api.response(200, AttendanceListSchema)
    @volunteering_api.doc(**bearer_doc("organiser of the session"))
    @api_auth(Role.ORGANISER)
    def get(self, args, session_id):
        """Who attended the session."""
        ops.organised_session(g.api_user, session_id)
        query = select(Attendance).where(Attendance.session_id == session_id)
        return paginate_oldest_first(query, Attendance, args)

    @volunteering_api.arguments(AttendanceCreateSchema)
    @volunteering_api.response(201, AttendanceSchema)
    @volunteering_api.alt_response(409, description="idempotency_conflict, attendance_exists")
    @volunteering_api.doc(**bearer_doc("organiser of the session"))
    @api_auth(Role.ORGANISER)
    def post(self, body, session_id):
        """Add attendance by hand or by a resident's card; its claim waits for approval."""
        session = ops.organised_session(g.api_user, session_id)
        attendance = ops.add_attendance(g.api_user, session, source=AttendanceSource.MANUAL, **body)
        db.session.commit()
        return attendance


# --- claims ------------------------------------------------------------------------------


@volunteering_api.route("/claims")
class Claims(MethodView):
    @volunteering_api.arguments(ClaimQuerySchema, location="query")
    @volunteering_api.response(200, ClaimListSchema)
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def get(self, args):
        """The approval queue (``?status=pending``), with optional filters."""
        query = select(Claim).where(Claim.status == args["status"])
        if args.get("organisation_id"):
            query = query.where(
                Claim.session_id.in_(
                    select(VolunteeringSession.id)
                    .join(Activity)
                    .where(Activity.organisation_id == args["organisation_id"])
                )
            )
        if args.get("flag"):
            query = ops.claims_flagged(query, args["flag"])
        return paginate_oldest_first(query, Claim, args)


@volunteering_api.route("/claims/<int:claim_id>/approve")
class ClaimApprove(MethodView):
    @volunteering_api.response(200, ClaimSchema)
    @volunteering_api.alt_response(409, description="not_pending")
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def post(self, claim_id):
        """Approve a claim: posts the earn transaction once."""
        claim = ops.approve_claim(g.api_user, claim_id)
        db.session.commit()
        return claim


@volunteering_api.route("/claims/<int:claim_id>/reject")
class ClaimReject(MethodView):
    @volunteering_api.arguments(VolunteeringReasonSchema)
    @volunteering_api.response(200, ClaimSchema)
    @volunteering_api.alt_response(409, description="not_pending")
    @volunteering_api.doc(**bearer_doc("council"))
    @api_auth(*COUNCIL)
    def post(self, body, claim_id):
        """Reject a claim with a reason."""
        claim = ops.reject_claim(g.api_user, claim_id, body["reason"])
        db.session.commit()
        return claim
