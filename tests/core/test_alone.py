"""``core.alone.execute_alone``: on its own when the request has no transaction, else inside it."""

from sqlalchemy import bindparam, func, insert, select, text

from core.alone import alone_possible, execute_alone
from core.extensions import db
from core.models import Role, RoleMembership, User
from core.security import BEARER_QUERY, token_digest

INSERT_USER = (
    insert(User.__table__)
    .values(
        email=bindparam("email"),
        password_hash="-",
        display_name="Alone",
        postcode="LS8 2HE",
        created_at=func.now(),
    )
    .returning(User.__table__.c.id, User.__table__.c.email)
)
COUNT_USERS = select(func.count()).select_from(User.__table__)


def test_without_a_transaction_a_write_commits_by_itself(app, postgres_required):
    with app.app_context():
        rows = execute_alone(INSERT_USER, {"email": "alone@example.org"})
        assert rows[0].email == "alone@example.org"
        assert alone_possible()  # still no transaction at the server
        db.session.rollback()  # nothing of the session's to undo: the row stays
    with app.app_context():
        assert db.session.scalar(COUNT_USERS) == 1


def test_inside_an_open_transaction_it_sees_and_is_undone_with_it(app, create_user):
    with app.app_context():
        db.session.execute(text("SELECT 1"))  # the session has begun a transaction
        assert not alone_possible()
        execute_alone(INSERT_USER, {"email": "inside@example.org"})
        assert db.session.scalar(COUNT_USERS) == 1
        db.session.rollback()
        assert alone_possible() == (db.engine.dialect.name == "postgresql")
    with app.app_context():
        assert db.session.scalar(COUNT_USERS) == 0


def test_unwritten_changes_in_the_session_keep_it_inside_the_transaction(app, create_user):
    resident = create_user(Role.RESIDENT)
    with app.app_context():
        db.session.add(RoleMembership(user_id=resident.id, role=Role.ORGANISER.value))
        assert not alone_possible()
        execute_alone(INSERT_USER, {"email": "pending@example.org"})
        db.session.rollback()
    with app.app_context():
        assert db.session.scalar(COUNT_USERS) == 1  # only the resident


def test_it_reads_what_the_session_wrote_but_did_not_commit(app, create_user):
    """A bearer lookup after an uncommitted change sees the change (same transaction)."""
    from core.models import ApiToken
    from core.timeutil import utcnow

    resident = create_user(Role.RESIDENT)
    with app.app_context():
        db.session.add(
            ApiToken(
                token_digest=token_digest("secret"),
                user_id=resident.id,
                created_at=utcnow(),
                expires_at=utcnow().replace(year=utcnow().year + 1),
            )
        )
        db.session.add(RoleMembership(user_id=resident.id, role=Role.ORGANISER.value))
        db.session.flush()
        rows = execute_alone(BEARER_QUERY, {"digest": token_digest("secret")})
        assert [row.id for row in rows] == [resident.id]
        assert sorted(rows[0].roles.split(",")) == ["organiser", "resident"]
        db.session.rollback()


def test_rows_are_named_like_the_statement_columns(app, create_user, postgres_required):
    """The driver path (PostgreSQL, no transaction) answers rows with the columns' names."""
    from core.models import ApiToken
    from core.timeutil import utcnow

    resident = create_user(Role.RESIDENT)
    with app.app_context():
        db.session.add(
            ApiToken(
                token_digest=token_digest("named"),
                user_id=resident.id,
                created_at=utcnow(),
                expires_at=utcnow().replace(year=utcnow().year + 1),
            )
        )
        db.session.commit()
    with app.app_context():
        assert alone_possible()
        rows = execute_alone(BEARER_QUERY, {"digest": token_digest("named")})
        (row,) = rows
        assert row.id == resident.id and row.roles == "resident"
        assert row.expires_at.tzinfo is not None and row.revoked_at is None
        assert execute_alone(BEARER_QUERY, {"digest": token_digest("other")}) == []
