"""The shared kernel: the app factory, configuration, extensions, accounts and roles.

It imports no feature package at module level; ``create_app`` registers them.
"""

from __future__ import annotations

from inspect import iscoroutinefunction
from pathlib import Path

from flask import Flask
from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, PrefixLoader


class CivicFlask(Flask):
    """Flask, remembering which hooks and views are plain functions.

    Flask asks ``inspect.iscoroutinefunction`` of every hook and view on every request
    (about twenty times per API call); the answer never changes for a function.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plain_functions: dict = {}

    def ensure_sync(self, func):
        key = getattr(func, "__func__", func)  # a method: its function, not each binding
        try:
            plain = self._plain_functions.get(key)
        except TypeError:  # unhashable: ask Flask
            return super().ensure_sync(func)
        if plain is None:
            plain = self._plain_functions[key] = not iscoroutinefunction(func)
        return func if plain else super().ensure_sync(func)


def create_app(test_config: dict | None = None) -> Flask:
    """Build the Civic Credits application."""
    app = CivicFlask(__name__, instance_relative_config=True)
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)

    from core.config import load_config

    load_config(app, test_config)
    register_extensions(app)
    register_settings(app)
    register_templates(app)
    register_request_guard(app)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    register_ledger(app)

    from core.celery_app import celery_init_app

    celery_init_app(app)
    return app


def register_extensions(app: Flask) -> None:
    """Bind the extension singletons to ``app``."""
    from core.extensions import (
        CookieSessionInterface,
        babel,
        csrf,
        db,
        limiter,
        login_manager,
        migrate,
    )

    app.session_interface = CookieSessionInterface()
    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    csrf.init_app(app)
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "en")
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Europe/London")
    babel.init_app(app)
    limiter.init_app(app)
    # Every limit here is a route's own (sign-in, codes at a till), checked by its
    # decorator. With no default or application-wide limits, the limiter's pass before
    # every request (it registers one) finds nothing to check: leave it out. (Configure
    # RATELIMIT_DEFAULT or RATELIMIT_APPLICATION and it stays.)
    if not app.config.get("RATELIMIT_DEFAULT") and not app.config.get("RATELIMIT_APPLICATION"):
        app.before_request_funcs[None].remove(limiter._check_request_limit)
    login_manager.init_app(app)
    login_manager.login_view = "core.sign_in"
    login_manager.login_message = "Sign in to see this page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "strong"

    from core.accounts import load_login_session

    login_manager.user_loader(load_login_session)


def register_settings(app: Flask) -> None:
    """Scheme settings saved by admins override the configured defaults (core.settings)."""
    from core.settings import init_app

    init_app(app)


def register_templates(app: Flask) -> None:
    """Jinja sees our templates and the GOV.UK Frontend macros."""
    app.jinja_loader = ChoiceLoader(
        [
            FileSystemLoader(str(Path(app.root_path) / "templates")),
            PrefixLoader(
                {
                    "govuk_frontend_jinja": PackageLoader("govuk_frontend_jinja"),
                    "govuk_frontend_wtf": PackageLoader("govuk_frontend_wtf"),
                }
            ),
        ]
    )
    from govuk_frontend_wtf.main import WTFormsHelpers

    WTFormsHelpers(app)
    from core.navigation import inject_layout

    app.context_processor(inject_layout)
    from core.formatting import register_filters

    register_filters(app)


def register_request_guard(app: Flask) -> None:
    """Bounded path ids and clean request bodies (core.request_guard), and the security
    headers (core.headers), before any blueprint's route is added."""
    from core import headers, request_guard

    request_guard.init_app(app)
    headers.init_app(app)


def register_blueprints(app: Flask) -> None:
    """Pages of each package, the JSON API and the health check."""
    from core.admin_views import admin_bp
    from core.api import register_api
    from core.health import health_bp
    from core.views import core_bp
    from partners.settlement_views import settlement_bp
    from partners.views import partners_bp
    from partners.webhooks import webhooks_bp
    from reports.views import reports_bp
    from rewards.expiry import expiry_bp
    from rewards.views import rewards_bp
    from volunteering.views import volunteering_bp

    app.register_blueprint(core_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(rewards_bp)
    app.register_blueprint(volunteering_bp)
    app.register_blueprint(partners_bp)
    app.register_blueprint(settlement_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(expiry_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(reports_bp)
    register_api(app)


def register_error_handlers(app: Flask) -> None:
    """Errors become API.md's JSON under /api/ and GOV.UK pages elsewhere."""
    from core.errors import register_error_handlers as register

    register(app)


def register_commands(app: Flask) -> None:
    """Operator commands (``flask --app wsgi ...``)."""
    from core.cli import register_cli
    from partners.settlement import partners_cli
    from rewards.expiry import credits_cli

    register_cli(app)
    app.cli.add_command(credits_cli)
    app.cli.add_command(partners_cli)


def register_ledger(app: Flask) -> None:
    """The credits ledger: its balance hook (/me, wallet), ``ledger`` commands, demo data."""
    import rewards.demo  # noqa: F401 - registers the ledger's @demo_loader
    from rewards.cli import ledger_cli
    from rewards.wallet import balance_of

    app.extensions["civic_credits.balance_of"] = balance_of
    app.cli.add_command(ledger_cli)
