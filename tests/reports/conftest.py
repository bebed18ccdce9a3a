"""Fixtures of the administration tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def forget_saved_settings(request):
    """After a test that saved scheme settings, every process is back on the defaults."""
    yield
    if "app" not in request.fixturenames:
        return
    from core import settings
    from core.extensions import db
    from core.models import SchemeSetting

    app = request.getfixturevalue("app")
    with app.app_context():
        db.session.execute(db.delete(SchemeSetting))
        db.session.commit()
        settings.refresh(app, force=True)
        db.session.remove()
