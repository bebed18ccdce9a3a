"""Privacy: a resident downloads everything held about them, and closes their account."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date

from core.extensions import db
from core.models import AuditEntry, Role, User
from tests.conftest import post_form, sign_in
from tests.reports.history import build_known_history


def test_download_everything_as_json_and_csv(app, client, create_user):
    known = build_known_history(app, create_user)
    robin = known["robin"]
    sign_in(client, robin)
    assert client.get("/account/data").status_code == 200
    response = client.get("/account/data.json")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(response.get_data(as_text=True))
    assert data["account"][0]["email"] == "robin@example.org"
    assert data["account"][0]["postcode"] == "LS8 2HE"
    assert len(data["attendances"]) == 2
    assert [claim["credits"] for claim in data["claims"]] == [2, 2]
    assert [t["kind"] for t in data["wallet_transactions"]] == ["earn", "expire", "earn", "spend"]
    assert data["redemptions"][0]["partner"] == "Corner Café"
    archive = zipfile.ZipFile(io.BytesIO(client.get("/account/data.csv.zip").data))
    assert "wallet_transactions.csv" in archive.namelist()
    rows = list(csv.DictReader(io.StringIO(archive.read("claims.csv").decode())))
    assert [row["credits"] for row in rows] == ["2", "2"]


def test_closing_pseudonymises_and_the_ledger_still_verifies(app, client, create_user):
    from reports import queries
    from reports.queries import Period
    from rewards.verify import verify_ledger

    known = build_known_history(app, create_user)
    sam = known["sam"]
    period = Period.from_dates(date(2025, 1, 1), date(2026, 11, 1))
    with app.app_context():
        before = queries.summary(period).as_dict()
        db.session.remove()
    sign_in(client, sam)
    wrong = post_form(client, "/account/close", {"password": "not-my-password"})
    assert wrong.status_code == 400
    response = post_form(client, "/account/close", {"password": sam.password})
    assert response.status_code == 302
    assert client.get("/account").status_code == 302  # signed out
    with app.app_context():
        user = db.session.get(User, sam.id)
        assert user.closed_at is not None
        personal = {user.email, user.display_name, user.postcode, user.password_hash}
        for value in ("sam@example.org", "Sam", "LS8 2HE"):
            assert value not in personal
        assert user.email.endswith("@closed.invalid")
        from rewards.models import Account

        wallet = db.session.query(Account).filter_by(user_id=sam.id).one()
        assert wallet.name == "Closed account"
        assert db.session.query(AuditEntry).filter_by(action="account.closed").count() == 1
        report = verify_ledger()
        assert not report.breaks, report.breaks
        # The scheme's figures do not change when someone leaves.
        assert queries.summary(period).as_dict() == before
        db.session.remove()
    cli = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert cli.exit_code == 0, cli.output
    # Nobody can sign in as Sam again, with the old address or the new one.
    for email in (sam.email, f"closed-account-{sam.id}@closed.invalid"):
        refused = post_form(
            app.test_client(), "/sign-in", {"email": email, "password": sam.password}
        )
        assert refused.status_code == 401


def test_your_data_pages_need_sign_in(client, create_user):
    for path in ("/account/data", "/account/data.json", "/account/close"):
        assert client.get(path).status_code == 302
    sign_in(client, create_user(Role.COUNCIL))
    assert client.get("/account/data.json").status_code == 200
