"""Invitations for people who have no account yet: pending memberships kept by email.

Design:
- An organiser (or a member of a partner's staff) adds someone by email. When the address
  already has an account, the feature package makes them a member at once, as before. When
  it has none, the package calls ``invite``: an ``Invitation`` row keeps what is granted
  (its ``kind`` and the ``target_id`` of the organisation or partner) for the lower-cased
  address, and an email with a link goes through the outbox.
- The invitation is accepted when a person registers with that address (web form or
  ``POST /api/v1/residents``), signs in with it (web or ``POST /api/v1/auth/token``), or
  follows the emailed link and confirms while signed in (whatever their address: the link
  is a secret sent to the invited mailbox). Accepting is a guarded ``UPDATE ... WHERE
  accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now``, so it happens once even
  when two requests race; then the package's ``add_member`` makes the membership and grants
  the role, and both are audited.
- The link's token is the invitation id signed with SECRET_KEY (itsdangerous, own salt):
  unguessable, nothing secret stored, and sending the invitation again sends the same link.
  Expiry and revocation are read from the row, so a revoked link stops working at once.
- At most one pending (not accepted, not revoked) invitation exists per address, kind and
  target: a partial unique index holds it, and inviting again renews the pending one
  (new expiry, email sent again) instead of adding a second.
- Feature packages describe their kinds with ``register_kind`` (the kernel imports none
  of them): who may manage a target's invitations, its name and page, and how to make an
  invited person a member.
- ``purge_ended_invitations`` (beat, nightly) deletes invitations that expired, were revoked
  or were accepted more than INVITATION_RETENTION_DAYS ago: an address that never
  registered is not kept for ever (the audit trail keeps the history).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, url_for
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import ForeignKey, Index, Integer, String, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.audit import record
from core.errors import DomainError, ForbiddenError, NotFoundError
from core.extensions import db
from core.mail import queue_email
from core.models import Role, RoleMembership, User
from core.timeutil import UTCDateTime, utcnow

LINK_SALT = "civic-credits.core.invitation.v1"
#: Pending = neither accepted nor revoked (an expired one is still pending until purged).
PENDING_SQL = "accepted_at IS NULL AND revoked_at IS NULL"


class Invitation(db.Model):
    """A membership offered to an email address that had no account."""

    __tablename__ = "invitations"
    __table_args__ = (
        Index(
            "uq_invitations_pending",
            "email",
            "kind",
            "target_id",
            unique=True,
            sqlite_where=text(PENDING_SQL),
            postgresql_where=text(PENDING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The invited address, lower-cased (``core.accounts.normalise_email``).
    email: Mapped[str] = mapped_column(String(254))
    #: What is granted: a registered kind, e.g. ``organiser`` or ``partner_staff``.
    kind: Mapped[str] = mapped_column(String(20))
    #: The organisation or partner the membership is of (its table depends on ``kind``).
    target_id: Mapped[int] = mapped_column(Integer)
    #: Who invited (the role is granted in their name), when, and until when it works.
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: When it was accepted, and by which account (set once, by a guarded UPDATE).
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    #: When it was revoked, and by whom.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    invited_by: Mapped[User | None] = relationship(foreign_keys=[invited_by_id])

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None

    @property
    def is_usable(self) -> bool:
        """Pending and not expired: it can still be accepted."""
        return self.is_pending and self.expires_at > utcnow()

    @property
    def status(self) -> str:
        """``pending``, ``expired``, ``accepted`` or ``revoked``."""
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "pending" if self.expires_at > utcnow() else "expired"


@dataclass(frozen=True)
class InvitationKind:
    """What one kind of invitation grants, told by the feature package that owns it."""

    #: The stored ``Invitation.kind``.
    name: str
    #: The role a member of the target holds (for display; ``add_member`` grants it).
    role: Role
    #: ``"help organise {target}'s volunteering"``: what the invited person is asked to do.
    offer: str
    #: ``"an organiser of {target}"``: what they are once they accept.
    becomes: str
    #: The target's name, or None when it does not exist.
    target_name: Callable[[int], str | None]
    #: Whether a user may invite to, and revoke invitations of, the target.
    may_manage: Callable[[User, int], bool]
    #: Make ``user`` a member of the invitation's target (idempotent; grants roles it needs).
    add_member: Callable[[Invitation, User], None]
    #: The endpoint of the target's page and the name of its id argument there.
    page_endpoint: str
    page_argument: str

    def target_url(self, target_id: int) -> str:
        return url_for(self.page_endpoint, **{self.page_argument: target_id})


#: kind name -> its description; filled by feature packages at import (``register_kind``).
KINDS: dict[str, InvitationKind] = {}


def register_kind(kind: InvitationKind) -> InvitationKind:
    """Make a kind of invitation known (feature packages call this when imported)."""
    KINDS[kind.name] = kind
    return kind


def kind_of(invitation: Invitation) -> InvitationKind:
    return KINDS[invitation.kind]


class InvitationError(DomainError):
    """An invitation link or action was refused."""


# --- settings and tokens ----------------------------------------------------------------


def validity() -> timedelta:
    """How long an invitation works (INVITATION_VALIDITY_DAYS)."""
    return timedelta(days=int(current_app.config["INVITATION_VALIDITY_DAYS"]))


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt=LINK_SALT)


def token_for(invitation: Invitation) -> str:
    """The secret in the emailed link: the invitation id, signed."""
    return _serializer().dumps(invitation.id)


def invitation_from_token(token: str) -> Invitation:
    """The invitation a link's token names; ``invitation_invalid`` (404) if none."""
    try:
        invitation_id = _serializer().loads(token or "")
    except BadSignature:
        invitation_id = None
    invitation = db.session.get(Invitation, invitation_id) if type(invitation_id) is int else None
    if invitation is None:
        raise NotFoundError(
            "This invitation link is not right. Check you copied all of it.",
            code="invitation_invalid",
        )
    return invitation


def invitation_url(invitation: Invitation) -> str:
    return url_for("core.invitation", invitation_token=token_for(invitation), _external=True)


# --- inviting and revoking --------------------------------------------------------------


def invite(actor: User, kind_name: str, target_id: int, email: str) -> Invitation:
    """Invite an address with no account to the target, or renew its pending invitation.

    The caller has checked that the address has no account (with one, a package adds the
    member at once). ``not_allowed`` (403) unless ``actor`` may manage the target.
    Flushes and queues the email; never commits.
    """
    from core.accounts import normalise_email

    kind = KINDS[kind_name]
    if not kind.may_manage(actor, target_id):
        raise ForbiddenError("You cannot invite people to this.", code="not_allowed")
    address = normalise_email(email)
    expires_at = utcnow() + validity()
    invitation = _pending(address, kind_name, target_id)
    renewed = invitation is not None
    if invitation is None:
        invitation = Invitation(
            email=address,
            kind=kind_name,
            target_id=target_id,
            invited_by_id=actor.id,
            expires_at=expires_at,
        )
        try:
            with db.session.begin_nested():
                db.session.add(invitation)
        except IntegrityError:
            # Someone invited the same address at the same moment: renew theirs instead.
            invitation = _pending(address, kind_name, target_id)
            if invitation is None:
                raise
            renewed = True
    # Renewing: the latest inviter is the one the role is granted in the name of.
    invitation.invited_by_id = actor.id
    invitation.expires_at = expires_at
    db.session.flush()
    record(
        actor,
        "invitation.renewed" if renewed else "invitation.created",
        f"invitation:{invitation.id}",
        details={"kind": kind_name, "target_id": target_id, "email": address},
    )
    target = kind.target_name(target_id) or "the scheme"
    scheme = current_app.config["SCHEME_NAME"]
    queue_email(
        address,
        f"{actor.display_name} invites you to {kind.offer.format(target=target)}",
        f"{actor.display_name} would like you to {kind.offer.format(target=target)} on "
        f"{scheme}.\n\n"
        "To accept, create an account with this email address:\n"
        f"{url_for('core.register', invitation=token_for(invitation), _external=True)}\n\n"
        "or sign in if you already have one. This link shows the invitation:\n"
        f"{invitation_url(invitation)}\n\n"
        f"The invitation works until {invitation.expires_at:%d %B %Y}. If you were not "
        "expecting it, you can ignore this email.",
    )
    return invitation


def _pending(address: str, kind_name: str, target_id: int) -> Invitation | None:
    return db.session.execute(
        select(Invitation).where(
            Invitation.email == address,
            Invitation.kind == kind_name,
            Invitation.target_id == target_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    ).scalar_one_or_none()


def get_invitation(invitation_id: int) -> Invitation:
    invitation = db.session.get(Invitation, invitation_id)
    if invitation is None or invitation.kind not in KINDS:
        raise NotFoundError("There is no such invitation.", code="not_found")
    return invitation


def revoke(actor: User, invitation: Invitation) -> Invitation:
    """Withdraw a pending invitation; its link stops working at once.

    ``not_allowed`` (403) unless ``actor`` may manage its target; ``not_pending`` (409)
    when it was already accepted or revoked.
    """
    if not kind_of(invitation).may_manage(actor, invitation.target_id):
        raise ForbiddenError("You cannot revoke this invitation.", code="not_allowed")
    now = utcnow()
    done = db.session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, text(PENDING_SQL))
        .values(revoked_at=now, revoked_by_id=actor.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not done:
        raise InvitationError(
            "This invitation was already accepted or revoked.", code="not_pending", status=409
        )
    db.session.refresh(invitation)
    record(
        actor,
        "invitation.revoked",
        f"invitation:{invitation.id}",
        details={"kind": invitation.kind, "target_id": invitation.target_id},
    )
    return invitation


def pending_invitations(kind_name: str, target_id: int) -> list[Invitation]:
    """The target's invitations not accepted or revoked (expired ones too), newest first."""
    return list(
        db.session.execute(
            select(Invitation)
            .where(
                Invitation.kind == kind_name,
                Invitation.target_id == target_id,
                text(PENDING_SQL),
            )
            .order_by(Invitation.id.desc())
        ).scalars()
    )


# --- accepting --------------------------------------------------------------------------


def accept(invitation: Invitation, user: User) -> Invitation:
    """``user`` accepts the invitation: they become a member of its target.

    Only the invited address may accept (``invitation_for_another_address``, 403).
    ``invitation_expired`` (410), ``invitation_revoked`` (410) or ``invitation_accepted``
    (409) when it can no longer be accepted; accepting twice as the same person is a no-op.
    """
    if (user.email or "").strip().lower() != invitation.email:
        # A forwarded or leaked link must not make a stranger an organiser or till staff.
        raise InvitationError(
            f"This invitation was sent to {invitation.email}. Sign in with that address to "
            f"accept it, or ask for an invitation to {user.email}.",
            "invitation_for_another_address",
            403,
        )
    now = utcnow()
    taken = db.session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, text(PENDING_SQL), Invitation.expires_at > now)
        .values(accepted_at=now, accepted_by_id=user.id)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.refresh(invitation)
    if not taken:
        if invitation.accepted_by_id == user.id:
            return invitation
        if invitation.accepted_at is not None:
            raise InvitationError(
                "This invitation has already been accepted.", "invitation_accepted", 409
            )
        if invitation.revoked_at is not None:
            raise InvitationError(
                "This invitation was withdrawn. Ask the person who invited you to send another.",
                "invitation_revoked",
                410,
            )
        raise InvitationError(
            "This invitation has expired. Ask the person who invited you to send another.",
            "invitation_expired",
            410,
        )
    kind = kind_of(invitation)
    kind.add_member(invitation, user)
    inviter = invitation.invited_by
    if inviter is not None and inviter.closed_at is None and inviter.id != user.id:
        target = kind.target_name(invitation.target_id) or "the scheme"
        queue_email(
            inviter.email,
            f"{user.display_name} accepted your invitation",
            f"{user.display_name} ({invitation.email}) accepted your invitation and is now "
            f"{kind.becomes.format(target=target)} on Civic Credits.",
        )
    record(
        user,
        "invitation.accepted",
        f"invitation:{invitation.id}",
        details={
            "kind": invitation.kind,
            "target_id": invitation.target_id,
            "user_id": user.id,
        },
    )
    db.session.flush()
    return invitation


def accept_pending_for(user: User) -> list[Invitation]:
    """Accept every usable invitation to ``user``'s address (on registering or signing in).

    Cheap when there are none: one indexed query.
    """
    if user.closed_at is not None or not user.is_active:
        return []
    found = db.session.execute(
        select(Invitation)
        .where(
            Invitation.email == user.email,
            text(PENDING_SQL),
            Invitation.expires_at > utcnow(),
        )
        .order_by(Invitation.id)
    ).scalars()
    accepted = []
    for invitation in list(found):
        if invitation.kind not in KINDS:
            continue
        try:
            accepted.append(accept(invitation, user))
        except InvitationError:
            continue  # revoked or taken by a concurrent request meanwhile
    return accepted


def accepted_by(user: User) -> list[Invitation]:
    """The invitations ``user`` has accepted, oldest first."""
    return list(
        db.session.execute(
            select(Invitation).where(Invitation.accepted_by_id == user.id).order_by(Invitation.id)
        ).scalars()
    )


def describe_acceptance(invitation: Invitation) -> str:
    """``You are now an organiser of Roundhay Friends.``"""
    kind = kind_of(invitation)
    target = kind.target_name(invitation.target_id) or "the scheme"
    return f"You are now {kind.becomes.format(target=target)}."


def ensure_role(user: User, role: Role, invitation: Invitation) -> None:
    """Give ``user`` the role the invitation needs, in the inviter's name (audited).

    The person is present (registering, signing in or accepting), so their sessions are
    kept, unlike ``core.accounts.grant_role``, which acts on someone else.
    """
    if role in user.roles:
        return
    user.memberships.append(RoleMembership(role=role.value, granted_by_id=invitation.invited_by_id))
    db.session.flush()
    actor = db.session.get(User, invitation.invited_by_id) if invitation.invited_by_id else None
    record(
        actor,
        "role.granted",
        f"user:{user.id}",
        details={"role": role.value, "invitation_id": invitation.id},
    )


# --- housekeeping -----------------------------------------------------------------------


def purge_ended_invitations(older_than: timedelta | None = None, batch_size: int = 1000) -> int:
    """Delete invitations that ended (expired, revoked, accepted) over ``older_than`` ago.

    Deletes in batches of ``batch_size``, committing each, so a large backlog never holds
    locks for long; safe to run twice or stop halfway. Returns how many were deleted.
    """
    if older_than is None:
        older_than = timedelta(days=int(current_app.config["INVITATION_RETENTION_DAYS"]))
    cutoff = utcnow() - older_than
    ended = or_(
        Invitation.expires_at < cutoff,
        Invitation.revoked_at < cutoff,
        Invitation.accepted_at < cutoff,
    )
    removed = 0
    while True:
        ids = list(
            db.session.execute(
                select(Invitation.id).where(ended).order_by(Invitation.id).limit(batch_size)
            ).scalars()
        )
        if not ids:
            break
        db.session.execute(Invitation.__table__.delete().where(Invitation.__table__.c.id.in_(ids)))
        db.session.commit()
        removed += len(ids)
        if len(ids) < batch_size:
            break
    return removed
