"""Operator commands: `flask --app app <group> <command>`."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.orm import Session, sessionmaker

from app.db import read_only, unit_of_work
from app.domain.errors import DomainError
from app.services import keys as key_service
from app.services import ledger as ledger_service

ROOT = Path(__file__).resolve().parent.parent


def _factory() -> sessionmaker[Session]:
    return current_app.extensions["session_factory"]  # type: ignore[no-any-return]


def alembic_config(database_url: str):  # type: ignore[no-untyped-def]
    """Alembic's config pointed at this project's migrations and the app's database."""
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


db_group = AppGroup("db", help="Database schema migrations.")


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to a revision (default: head)."""
    from alembic import command

    url = current_app.config["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)
    click.echo(f"database at {revision}")


@db_group.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from alembic import command

    command.check(alembic_config(current_app.config["DATABASE_URL"]))


keys_group = AppGroup("keys", help="API keys.")


@keys_group.command("create")
@click.option("--role", type=click.Choice(key_service.ROLES), required=True)
@click.option("--location", "locations", multiple=True, help="Staff: a location code (repeatable)")
@click.option("--name", default=None, help="What the key is for")
def keys_create(role: str, locations: tuple[str, ...], name: str | None) -> None:
    """Create a key; the key is printed once, alone on the last line."""
    try:
        with unit_of_work(_factory()) as session:
            key, plain = key_service.create_key(
                session, role=role, name=name or f"{role} key", locations=locations
            )
            key_id = key.id
    except DomainError as exc:
        raise click.ClickException(f"{exc.message} {exc.details or ''}".strip()) from exc
    click.echo(f"created key {key_id} ({role}{' ' + ','.join(locations) if locations else ''})")
    click.echo(plain)


@keys_group.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    with read_only(_factory()) as session:
        for k in key_service.list_keys(session):
            state = "revoked" if k.revoked_at else "active"
            locs = ",".join(loc.code for loc in k.locations)
            click.echo(f"{k.id}\t{k.role}\t{state}\t{k.prefix}\t{locs}\t{k.name}")


@keys_group.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke a key by id."""
    try:
        with unit_of_work(_factory()) as session:
            key_service.revoke(session, key_id)
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"revoked key {key_id}")


ledger_group = AppGroup("ledger", help="Check and repair the stock-level projection.")


def _print_mismatches(mismatches: list[ledger_service.Mismatch]) -> None:
    for m in mismatches:
        click.echo(
            f"sku_id={m.sku_id} location_id={m.location_id} "
            f"projection=(on_hand={m.projected.on_hand}, reserved={m.projected.reserved}, "
            f"incoming={m.projected.incoming}) ledger=(on_hand={m.from_ledger.on_hand}, "
            f"reserved={m.from_ledger.reserved}, incoming={m.from_ledger.incoming})"
        )


@ledger_group.command("verify")
def ledger_verify() -> None:
    """Exit non-zero if any stock level differs from the sum of its movements."""
    with read_only(_factory()) as session:
        mismatches = ledger_service.verify(session)
    _print_mismatches(mismatches)
    if mismatches:
        click.echo(f"{len(mismatches)} stock level(s) differ from the ledger", err=True)
        sys.exit(1)
    click.echo("ledger ok: every stock level equals the sum of its movements")


@ledger_group.command("rebuild")
def ledger_rebuild() -> None:
    """Recompute every stock level from its movements."""
    with unit_of_work(_factory()) as session:
        repaired = ledger_service.rebuild(session)
    _print_mismatches(repaired)
    click.echo(f"rebuilt {len(repaired)} stock level(s)")


geo_group = AppGroup("geo", help="Places: postcodes for ship-to deliveries.")


@geo_group.command("load-postcodes")
@click.argument("source", type=click.File("r", encoding="utf-8-sig"))
def geo_load_postcodes(source: Any) -> None:
    """Load a CSV with a header postcode,lat,lon (- for stdin); all rows or none."""
    from app.domain.geo import parse_postcode_rows
    from app.services import catalog

    reader = csv.DictReader(source)
    missing = {"postcode", "lat", "lon"} - set(reader.fieldnames or [])
    if missing:
        click.echo(f"the header lacks {', '.join(sorted(missing))} (want postcode,lat,lon)", err=True)
        sys.exit(1)
    places, errors = parse_postcode_rows(list(reader))
    if errors:
        for e in errors[:50]:
            click.echo(e, err=True)
        click.echo(f"{len(errors)} row(s) at fault; nothing loaded", err=True)
        sys.exit(1)
    with unit_of_work(_factory()) as session:
        n = catalog.load_postcodes(session, places)
    click.echo(f"loaded {n} postcode(s)")


demo_group = AppGroup("demo", help="Demo data.")


@demo_group.command("seed")
@click.option("--skus", default=240, show_default=True)
@click.option("--locations", "location_count", default=9, show_default=True,
              help="1 warehouse + stores; above 9, extra suburban stores are generated")  # fmt: skip
@click.option("--keys-file", type=click.Path(dir_okay=False), default=None,
              help="Also write the new keys to this file (mode 600)")  # fmt: skip
@click.option("--staff-file", type=click.Path(dir_okay=False), default=None,
              help="Also write the staff sign-ins and ready pickup codes to this file (mode 600)")  # fmt: skip
@click.option("--pickups/--no-pickups", default=True, show_default=True,
              help="Staff accounts and click-and-collect orders in every state")  # fmt: skip
def demo_seed(skus: int, location_count: int, keys_file: str | None, staff_file: str | None, pickups: bool) -> None:
    """Build a demo retailer (a warehouse, stores, SKUs, stock, pickups) and print its keys once."""
    from app import demo, demo_pickup

    with unit_of_work(_factory()) as session:
        if demo.is_seeded(session):
            click.echo("demo data already present; nothing done")
            return
        created = demo.seed(session, sku_count=skus, location_count=location_count)
        counter = demo_pickup.seed(session, current_app.config) if pickups else demo_pickup.SeededCounter()
    lines = [f"{role}\t{scope}\t{plain}" for role, scope, plain in created.keys]
    click.echo(f"seeded {created.locations} locations, {created.skus} SKUs, {created.movements} movements, "
               f"{counter.pickups} pickups")  # fmt: skip
    click.echo("API keys (shown once):")
    for line in lines:
        click.echo("  " + line)
    staff_lines = [f"{user}\t{store}\t{password}" for user, store, password in counter.accounts]
    staff_lines += [f"ready\t{store}\torder {order} code {code}" for store, order, code in counter.codes]
    if staff_lines:
        click.echo("Staff sign-in for /pickup (user, store, password) and ready pickups' codes (shown once):")
        for line in staff_lines:
            click.echo("  " + line)
    for path, rows in ((keys_file, lines), (staff_file, staff_lines)):
        if path:
            _write_private(path, rows)


def _write_private(path: str, rows: list[str]) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(rows) + "\n")


sync_group = AppGroup("sync", help="Scheduled jobs: list, run once, or run the scheduler.")


@sync_group.command("list")
def sync_list() -> None:
    """List the scheduled jobs."""
    from app.sync.scheduler import JOBS

    for job in JOBS:
        click.echo(f"{job.id}\tevery {job.seconds}s\t{job.description}")


@sync_group.command("run-once")
@click.argument("job_id")
def sync_run_once(job_id: str) -> None:
    """Run one job now (skipped if another process holds its lease); exit 1 if it failed."""
    from app.sync.scheduler import job_by_id, run_job

    try:
        job = job_by_id(job_id)
    except KeyError as exc:
        raise click.ClickException(f"no job {job_id!r}; see `flask sync list`") from exc
    result = run_job(current_app._get_current_object(), job)  # type: ignore[attr-defined]
    if result is None:
        click.echo(f"{job_id}: running elsewhere; skipped")
        return
    click.echo(f"{job_id}: {result['status']} {result['detail'] or result['error']}")
    if result["status"] != "succeeded":
        sys.exit(1)


@sync_group.command("run-scheduler")
def sync_run_scheduler() -> None:
    """Run the scheduler in this process until interrupted (one per deployment is enough)."""
    from app.sync.scheduler import run_forever

    run_forever(current_app._get_current_object())  # type: ignore[attr-defined]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--threads", default=8, show_default=True)
@click.option("--with-scheduler/--without-scheduler", default=True, show_default=True,
              help="Run the scheduled jobs inside this process (the embedded setup)")  # fmt: skip
def serve_command(host: str, port: int, threads: int, with_scheduler: bool) -> None:
    """Serve API and pages with gunicorn in one process (the embedded default)."""
    from app.server import serve

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.config["DEMO_VENDORS"]:
        from app import demo_sync

        demo_sync.start(app, f"http://{host}:{port}")
    serve(app, host, port, threads, with_scheduler=with_scheduler)


def init_app(app: Flask) -> None:
    from app import cli_staff, cli_stores, cli_sync

    cli_sync.register(sync_group)
    for group in (db_group, keys_group, ledger_group, geo_group, demo_group, sync_group, cli_staff.staff_group,
                  cli_stores.stores_group):
        app.cli.add_command(group)
    app.cli.add_command(serve_command)
