"""Store settings from the command line: click-and-collect on or off, pick and hold times, the
reminder, opening hours, transit time and the not-found policy, validated by the API's schema."""

from __future__ import annotations

import re
from typing import Any

import click
import orjson
from flask import current_app
from flask.cli import AppGroup
from pydantic import ValidationError

from app.db import read_only, transaction
from app.domain.errors import DomainError
from app.schemas import LocationUpdate
from app.services import catalog
from app.services.pickup import bins

stores_group = AppGroup("stores", help="Store pickup settings and bin hints.")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_hours_text(text: str) -> dict[str, list[list[str]]]:
    """"mon-fri 09:00-17:30; sat 10:00-16:00" as opening hours (a day not named is closed)."""
    hours: dict[str, list[list[str]]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        m = re.fullmatch(r"([a-z]{3})(?:-([a-z]{3}))?\s+(\d\d:\d\d)-(\d\d:\d\d)", part.lower())
        if not m or m.group(1) not in _DAYS or (m.group(2) and m.group(2) not in _DAYS):
            raise click.BadParameter(f"{part!r}: write e.g. 'mon-fri 09:00-17:30; sat 10:00-16:00'")
        first = _DAYS.index(m.group(1))
        last = _DAYS.index(m.group(2)) if m.group(2) else first
        for day in _DAYS[first : last + 1]:
            hours.setdefault(day, []).append([m.group(3), m.group(4)])
    return hours


@stores_group.command("set")
@click.argument("code")
@click.option("--pickup/--no-pickup", default=None, help="Offer click-and-collect here.")
@click.option("--pick-minutes", type=int, help="Minutes of open store time to pick an order.")
@click.option("--hold-hours", type=int, help="Hours a ready pickup is held before it expires.")
@click.option("--reminder-hours", type=int, help="Hours before the deadline the reminder goes (0: none).")
@click.option("--transfer-hours", type=int, help="Transit time of a transfer into this store.")
@click.option("--timezone", help="IANA time zone of the opening hours, e.g. Europe/London.")
@click.option("--hours", "hours_text", help="Opening hours: 'mon-fri 09:00-17:30; sat 10:00-16:00'.")
@click.option("--always-open", is_flag=True, help="No opening hours (promises ignore the clock).")
@click.option("--not-found", type=click.Choice(["reroute", "cancel"]), help="What a line not found becomes.")
def stores_set(code: str, hours_text: str | None, always_open: bool, **options: Any) -> None:
    """Change a store's pickup settings; prints the store as the API shows it."""
    names = {"hold_hours": "pickup_hold_hours", "reminder_hours": "pickup_reminder_hours",
             "not_found": "not_found_policy"}  # fmt: skip
    data = {names.get(k, k): v for k, v in options.items() if v is not None}
    if hours_text and always_open:
        raise click.UsageError("--hours and --always-open exclude each other")
    if hours_text:
        data["opening_hours"] = parse_hours_text(hours_text)
    if always_open:
        data["opening_hours"] = None
    try:
        update = LocationUpdate.model_validate(data)
    except ValidationError as exc:
        faults = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)]
        raise click.ClickException("refused, nothing changed:\n" + "\n".join(faults)) from exc
    try:
        view = transaction(
            current_app.extensions["session_factory"],
            lambda s: catalog.update_location(s, code, update.model_dump(exclude_unset=True)),
        )
    except DomainError as exc:
        raise click.ClickException(_said(exc)) from exc
    _echo(view)


@stores_group.command("show")
@click.argument("code")
def stores_show(code: str) -> None:
    """A store's pickup settings."""
    try:
        with read_only(current_app.extensions["session_factory"]) as session:
            view = catalog.show_location(session, code)
    except DomainError as exc:
        raise click.ClickException(_said(exc)) from exc
    _echo(view)


@stores_group.command("bin")
@click.argument("code")
@click.argument("sku")
@click.argument("bin_", metavar="BIN", required=False)
def stores_bin(code: str, sku: str, bin_: str | None) -> None:
    """Where SKU is kept at store CODE (shown on the pick list); without BIN, forget it."""
    try:
        transaction(current_app.extensions["session_factory"], lambda s: bins.set_bins(s, code, [(sku, bin_)]))
    except DomainError as exc:
        raise click.ClickException(_said(exc)) from exc
    click.echo(f"{code} {sku}: {bin_ or 'no bin'}")


def _echo(view: Any) -> None:
    """One setting a line, values as JSON."""
    keys = ("code", "pickup", "pick_minutes", "pickup_hold_hours", "pickup_reminder_hours", "transfer_hours",
            "timezone", "opening_hours", "not_found_policy")  # fmt: skip
    for k in keys:
        click.echo(f"{k}: {orjson.dumps(getattr(view, k)).decode()}")


def _said(exc: DomainError) -> str:
    faults = [f"{e['field']}: {e['message']}" for e in exc.details.get("errors", [])]
    return "; ".join([exc.message, *faults])
