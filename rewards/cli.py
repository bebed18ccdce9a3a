"""Operator commands of the ledger: ``flask --app wsgi ledger verify``."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

ledger_cli = AppGroup("ledger", help="The credits ledger.")


@ledger_cli.command("verify")
@click.option("--batch-size", default=10_000, show_default=True, help="Rows fetched at a time.")
def verify_command(batch_size: int) -> None:
    """Check every ledger invariant over the whole database; exit 1 naming each break."""
    from rewards.verify import verify_ledger

    report = verify_ledger(batch_size=batch_size, on_break=lambda b: click.echo(f"BREAK {b}"))
    click.echo(report.summary())
    if report.breaks:
        sys.exit(1)
