"""Operator commands: ``flask --app wsgi demo load``, ``users create-admin``..."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from core.config import is_production
from core.extensions import db

demo_cli = AppGroup("demo", help="Demo data for trying the scheme out.")
users_cli = AppGroup("users", help="People and their roles.")


@demo_cli.command("load")
def demo_load() -> None:
    """Create the demo logins and data of API.md (idempotent; refused in production)."""
    if is_production(current_app):
        raise click.ClickException(
            "Refusing to load demo data: CIVIC_CREDITS_ENV is production. "
            "Demo logins have a published password."
        )
    from core.demo import DEMO_PASSWORD, load_demo_data

    users = load_demo_data()
    db.session.commit()
    click.echo(f"Demo data loaded. Logins (password {DEMO_PASSWORD!r}):")
    for email, user in users.items():
        click.echo(f"  {email:<24} {', '.join(sorted(r.label for r in user.roles))}")


@users_cli.command("create-admin")
@click.option("--email", required=True)
@click.option("--name", "display_name", required=True)
@click.option("--postcode", required=True)
@click.password_option()
def create_admin(email: str, display_name: str, postcode: str, password: str) -> None:
    """Create a council admin (the first one of a new deployment)."""
    from core import accounts
    from core.errors import DomainError
    from core.models import Role, RoleMembership

    try:
        user = accounts.register_resident(email, password, display_name, postcode)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    user.memberships.extend(
        [RoleMembership(role=Role.ADMIN.value), RoleMembership(role=Role.COUNCIL.value)]
    )
    db.session.commit()
    click.echo(f"Council admin {user.email} created.")


def register_cli(app) -> None:
    """Add the operator command groups to ``app``."""
    app.cli.add_command(demo_cli)
    app.cli.add_command(users_cli)
