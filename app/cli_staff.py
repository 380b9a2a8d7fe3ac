"""Staff account commands: create, set a password, disable, list (`flask --app app staff ...`)."""

from __future__ import annotations

import secrets
import sys

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.orm import Session, sessionmaker

from app.db import read_only, unit_of_work
from app.domain.errors import DomainError
from app.services import staff

staff_group = AppGroup("staff", help="Staff accounts for the pickup screen.")


def _factory() -> sessionmaker[Session]:
    return current_app.extensions["session_factory"]  # type: ignore[no-any-return]


def _refused(exc: DomainError) -> click.ClickException:
    errors = exc.details.get("errors") or []
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors if isinstance(e, dict))
    return click.ClickException(detail or exc.message)


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password read from stdin (its first line), or a new random one (and that it is new)."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise click.ClickException("no password on stdin")
        return line, False
    return secrets.token_urlsafe(18), True


@staff_group.command("create")
@click.argument("username")
@click.option("--name", "display_name", required=True, help="The name shown on the screen")
@click.option("--location", "locations", multiple=True, required=True, help="A store code (repeatable)")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of generating one")
def staff_create(username: str, display_name: str, locations: tuple[str, ...], password_stdin: bool) -> None:
    """Create an account; a generated password is printed once, alone on the last line."""
    password, generated = _password(password_stdin)
    try:
        with unit_of_work(_factory()) as session:
            user = staff.create_user(
                session,
                username=username,
                display_name=display_name,
                password=password,
                location_codes=locations,
            )
    except DomainError as exc:
        raise _refused(exc) from exc
    click.echo(f"created staff user {user.username} ({', '.join(user.locations)})")
    if generated:
        click.echo(password)


@staff_group.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of generating one")
def staff_set_password(username: str, password_stdin: bool) -> None:
    """Set a new password (ending the account's sessions); a generated one is printed last."""
    password, generated = _password(password_stdin)
    try:
        with unit_of_work(_factory()) as session:
            staff.update_user(session, username, {"password": password})
    except DomainError as exc:
        raise _refused(exc) from exc
    click.echo(f"new password set for {username}; its sessions have ended")
    if generated:
        click.echo(password)


@staff_group.command("disable")
@click.argument("username")
def staff_disable(username: str) -> None:
    """Disable an account: it can no longer sign in, and its sessions end now."""
    try:
        with unit_of_work(_factory()) as session:
            staff.update_user(session, username, {"active": False})
    except DomainError as exc:
        raise _refused(exc) from exc
    click.echo(f"disabled {username}")


@staff_group.command("list")
def staff_list() -> None:
    """List accounts: user name, state, stores, name."""
    with read_only(_factory()) as session:
        for user in staff.list_users(session):
            state = "active" if user.active else "disabled"
            click.echo(f"{user.username}\t{state}\t{','.join(user.locations)}\t{user.display_name}")
