"""Sync commands: load feeds from YAML, list them, run one now and print its report."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson
import yaml
from flask import current_app
from flask.cli import AppGroup
from pydantic import ValidationError

from app.db import read_only, transaction
from app.domain.errors import DomainError
from app.schemas.sync import FeedsFile
from app.services.sync import feeds


def _factory() -> Any:
    return current_app.extensions["session_factory"]


def load_feeds_file(path: Path) -> FeedsFile:
    """The YAML file as validated feeds; any fault is named by its field (feeds[i].field)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{path}: {exc}") from exc
    try:
        return FeedsFile.model_validate(data)
    except ValidationError as exc:
        lines = [_fault(e["loc"], e["type"], e["msg"]) for e in exc.errors(include_url=False)]
        raise click.ClickException(
            f"{path}: the feeds are refused (none configured):\n" + "\n".join(lines)
        ) from exc


# FeedIn's cross-field rules are raised at the feed, each about one field: as "field: message"
# value errors, or as these error types.
_RULE_FIELDS = {
    "feed_role": "role", "feed_channel": "channel", "feed_credentials": "credentials", "feed_url": "base_url",
    "feed_locations": "locations", "feed_items": "items",
}  # fmt: skip


def _fault(loc: tuple[int | str, ...], kind: str, message: str) -> str:
    """One fault as the file's path and what is wrong: `feeds[1].settings.every_s: ...`."""
    parts = list(loc)
    message = message.removeprefix("Value error, ")
    if len(parts) == 2 and kind in _RULE_FIELDS:
        parts.append(_RULE_FIELDS[kind])
    elif len(parts) == 2 and kind == "value_error" and ": " in message:
        head, _, rest = message.partition(": ")
        if head.isidentifier():
            parts.append(head)
            message = rest
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return f"  {out or '(file)'}: {message}"


def register(sync_group: AppGroup) -> None:
    @sync_group.command("load-feeds")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def load_feeds(path: Path) -> None:
        """Create or replace every feed in a YAML file (all or none)."""
        parsed = load_feeds_file(path)
        try:
            transaction(_factory(), lambda s: feeds.load_file(s, parsed.feeds))
        except DomainError as exc:
            errors = exc.details.get("errors") or []
            detail = "\n".join(f"  {e['field']}: {e['message']}" for e in errors)
            raise click.ClickException(f"{path}: {exc.message}\n{detail}") from exc
        click.echo(f"{len(parsed.feeds)} feed(s) configured from {path}")

    @sync_group.command("feeds")
    def list_feeds() -> None:
        """Every feed with its status and last run."""
        with read_only(_factory()) as s:
            for f in feeds.views(s):
                last = f.last_run
                when = last.started_at.isoformat(timespec="seconds") if last else "-"
                click.echo(
                    f"{f.code}\t{f.role}\t{f.connector}\t{f.status}\tlast run {when} {last.status if last else ''}"
                )

    @sync_group.command("run")
    @click.argument("feed")
    @click.option("--file", "file_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="A CSV stock file to reconcile instead of the feed's URL")  # fmt: skip
    @click.option("--as-of", "as_of", default=None, metavar="ISO8601",
                  help="When the file's counts were taken (with its UTC offset), for a file without an as_of column")  # fmt: skip
    @click.option("--kind", type=click.Choice(["reconcile", "push"]), default=None)
    def run(feed: str, file_path: Path | None, as_of: str | None, kind: str | None) -> None:
        """Run one feed now and print its report; exit 1 when the run failed."""
        from app.sync.runner import run_feed

        data = file_path.read_bytes() if file_path else None
        options = {"as_of": _as_of(as_of)} if as_of is not None else None
        try:
            result = run_feed(
                _factory(),
                current_app.config,
                feed,
                kind=kind,
                trigger="cli",
                file_bytes=data,
                options=options,
            )
        except DomainError as exc:
            raise click.ClickException(exc.message) from exc
        click.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())
        connector = (result.get("report") or {}).get("connector") or {}
        if data is not None and result["status"] == "succeeded" and connector.get("as_of_source") is None:
            # Then the file counts as read now: sales since its export would be taken as not yet made.
            click.echo(
                "note: the file has no as_of column and no --as-of was given: it was read as of now", err=True
            )
        if result["status"] == "failed":
            sys.exit(1)


def _as_of(text: str) -> str:
    """--as-of as an aware ISO 8601 time; a time without an offset would be read on whose clock?"""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.ClickException(f"--as-of {text!r}: as_of must be an ISO 8601 time") from None
    if when.tzinfo is None:
        raise click.ClickException(f"--as-of {text!r}: as_of needs its UTC offset (e.g. +00:00)")
    return when.isoformat()
