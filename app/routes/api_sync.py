"""Ops: feeds with their health, runs and reports, discrepancies, quarantine, inbound orders."""

from __future__ import annotations

from flask import current_app, request
from flask_openapi3 import APIBlueprint, Tag
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import read_only, transaction, utcnow
from app.domain.errors import InvalidInput
from app.models_sync import Feed
from app.schemas.sync import (
    CsvUpload,
    DecisionIn,
    DiscrepanciesQuery,
    DiscrepancyList,
    DiscrepancyOut,
    DiscrepancyPath,
    FeedIn,
    FeedList,
    FeedOut,
    FeedPath,
    InboundOrderList,
    InboundOrdersQuery,
    QuarantineList,
    QuarantineOut,
    QuarantinePath,
    QuarantineQuery,
    ResolveIn,
    RunDetailOut,
    RunList,
    RunNowIn,
    RunPath,
    RunsQuery,
    UploadQuery,
)
from app.services.sync import discrepancies, feeds, quarantine, reads
from app.sync.runner import run_feed
from app.web import session_factory
from app.web.auth import principal, roles
from app.web.body import raw_body
from app.web.errors import UnsupportedMedia
from app.web.openapi import API_PREFIX, SECURITY
from app.web.pagination import cursor_id, decode_cursor, encode_cursor, page_limit
from app.web.respond import READ_PROBLEMS, WRITE_PROBLEMS, ApiResult, respond, respond_page

bp = APIBlueprint(
    "api_sync", __name__, url_prefix=API_PREFIX, abp_tags=[Tag(name="sync")], abp_security=SECURITY
)


def _feed(code: str) -> FeedOut:
    with read_only(session_factory()) as s:
        feeds.get(s, code)
        return FeedOut.model_validate(feeds.views(s, [code])[0], from_attributes=True)


@bp.get("/feeds", responses={200: FeedList, **READ_PROBLEMS})
@roles("ops")
def list_feeds() -> ApiResult:
    """Every feed with its last run, status (ok, failing, stale, never_run, disabled) and staleness."""
    with read_only(session_factory()) as s:
        return respond(FeedList, {"items": feeds.views(s)})


@bp.post("/feeds", responses={201: FeedOut, 200: FeedOut, **WRITE_PROBLEMS})
@roles("ops")
def put_feed(body: FeedIn) -> ApiResult:
    """Create a feed, or replace the one with this code (its history and watermark are kept).

    Credentials name environment variables; their values are never stored or shown."""

    def work(s: Session) -> bool:
        existed = s.scalar(select(Feed.id).where(Feed.code == body.code)) is not None
        feeds.upsert(s, body)
        return existed

    existed = transaction(session_factory(), work)
    return _feed(body.code).model_dump(), 200 if existed else 201


@bp.get("/feeds/<code>", responses={200: FeedOut, **READ_PROBLEMS})
@roles("ops")
def get_feed(path: FeedPath) -> ApiResult:
    """One feed with its health."""
    return _feed(path.code).model_dump(), 200


@bp.post("/feeds/<code>/run", responses={200: RunDetailOut, **WRITE_PROBLEMS})
@roles("ops")
def run_feed_now(path: FeedPath, body: RunNowIn) -> ApiResult:
    """Run the feed's cycle now and answer its run (a failed run is still a 200 with its reason).

    409 run_in_progress when another process is running it."""
    result = run_feed(session_factory(), current_app.config, path.code, kind=body.kind, trigger="manual")
    with read_only(session_factory()) as s:
        return respond(RunDetailOut, reads.run(s, int(result["run_id"])))


@bp.post("/feeds/<code>/upload", responses={200: RunDetailOut, **WRITE_PROBLEMS})
@roles("ops")
@raw_body
def upload_stock_file(path: FeedPath, query: UploadQuery, raw: CsvUpload) -> ApiResult:
    """Reconcile a CSV feed against an uploaded stock file (text/csv) now, and answer its run.

    The file is refused whole, every bad line named, before anything is compared (a failed run,
    200 with its reason). 409 run_in_progress when the feed is running; 422 for a feed that is not
    a CSV feed."""
    with read_only(session_factory()) as s:
        if feeds.get(s, path.code).connector != "csv":
            raise InvalidInput(
                "only a CSV feed takes a file",
                [{"field": "code", "message": f"{path.code} is not a CSV feed"}],
            )
    if request.mimetype != "text/csv":
        raise UnsupportedMedia("send the stock file as text/csv")
    request.max_content_length = int(current_app.config["MAX_UPLOAD_BYTES"])
    data = request.get_data()
    if not data:
        raise InvalidInput(
            "the file is empty", [{"field": "body", "message": "send the stock file as the body"}]
        )
    options = {"as_of": query.as_of.isoformat()} if query.as_of else None
    result = run_feed(
        session_factory(), current_app.config, path.code, trigger="upload", file_bytes=data, options=options
    )
    with read_only(session_factory()) as s:
        return respond(RunDetailOut, reads.run(s, int(result["run_id"])))


@bp.get("/sync/runs", responses={200: RunList, **READ_PROBLEMS})
@roles("ops")
def list_runs(query: RunsQuery) -> ApiResult:
    """Run history, newest first."""
    with read_only(session_factory()) as s:
        items, last = reads.runs(
            s,
            feed=query.feed,
            status=query.status,
            before=cursor_id(query.cursor),
            limit=page_limit(query.limit),
        )
    return respond_page(RunList, items, encode_cursor(last) if last else None)


@bp.get("/sync/runs/<int:run_id>", responses={200: RunDetailOut, **READ_PROBLEMS})
@roles("ops")
def get_run(path: RunPath) -> ApiResult:
    """A run with its report: samples of what it adjusted, deferred, held and quarantined."""
    with read_only(session_factory()) as s:
        return respond(RunDetailOut, reads.run(s, path.run_id))


@bp.get("/sync/discrepancies", responses={200: DiscrepancyList, **READ_PROBLEMS})
@roles("ops")
def list_discrepancies(query: DiscrepanciesQuery) -> ApiResult:
    """Differences over a feed's auto-apply limit (open ones by default), newest first."""
    with read_only(session_factory()) as s:
        items, last = reads.discrepancies(
            s,
            feed=query.feed,
            status=None if query.status == "any" else query.status,
            before=cursor_id(query.cursor),
            limit=page_limit(query.limit),
        )
    return respond_page(DiscrepancyList, items, encode_cursor(last) if last else None)


def _decide(discrepancy_id: int, body: DecisionIn, accept: bool) -> ApiResult:
    who = principal()
    by = f"{who.role}:{who.name}"

    def work(s: Session) -> discrepancies.DiscrepancyView:
        decide = discrepancies.accept if accept else discrepancies.reject
        d = decide(s, discrepancy_id, by=by, note=body.note, now=utcnow())
        return discrepancies.view(s, d)

    return respond(DiscrepancyOut, transaction(session_factory(), work))


@bp.post("/sync/discrepancies/<int:discrepancy_id>/accept", responses={200: DiscrepancyOut, **WRITE_PROBLEMS})
@roles("ops")
def accept_discrepancy(path: DiscrepancyPath, body: DecisionIn) -> ApiResult:
    """Apply the held difference now, to the ledger as it is now (409 if already decided)."""
    return _decide(path.discrepancy_id, body, accept=True)


@bp.post("/sync/discrepancies/<int:discrepancy_id>/reject", responses={200: DiscrepancyOut, **WRITE_PROBLEMS})
@roles("ops")
def reject_discrepancy(path: DiscrepancyPath, body: DecisionIn) -> ApiResult:
    """Keep the ledger as it is (409 if already decided)."""
    return _decide(path.discrepancy_id, body, accept=False)


@bp.get("/sync/quarantine", responses={200: QuarantineList, **READ_PROBLEMS})
@roles("ops")
def list_quarantine(query: QuarantineQuery) -> ApiResult:
    """Rows feeds sent that could not be used, with their raw payload (open ones by default)."""
    with read_only(session_factory()) as s:
        items, last = reads.quarantined(
            s,
            feed=query.feed,
            status=None if query.status == "any" else query.status,
            before=cursor_id(query.cursor),
            limit=page_limit(query.limit),
        )
    return respond_page(QuarantineList, items, encode_cursor(last) if last else None)


@bp.post("/sync/quarantine/<int:quarantine_id>/resolve", responses={200: QuarantineOut, **WRITE_PROBLEMS})
@roles("ops")
def resolve_quarantine(path: QuarantinePath, body: ResolveIn) -> ApiResult:
    """Map the reference to a SKU or location (the next run takes the row), or dismiss it."""

    def work(s: Session) -> reads.QuarantineView:
        q = quarantine.resolve(
            s,
            path.quarantine_id,
            sku=body.sku,
            location=body.location,
            dismiss=body.dismiss,
            note=body.note,
            now=utcnow(),
        )
        feed = s.get(Feed, q.feed_id)
        return reads.quarantine_view(q, feed.code if feed else "")

    return respond(QuarantineOut, transaction(session_factory(), work))


@bp.get("/sync/orders", responses={200: InboundOrderList, **READ_PROBLEMS})
@roles("ops")
def list_inbound_orders(query: InboundOrdersQuery) -> ApiResult:
    """Orders channels sent: placed (with the order id) or refused (with the reason)."""
    raw = decode_cursor(query.cursor)
    after = None
    if raw is not None:
        if not (isinstance(raw, list) and len(raw) == 2 and type(raw[0]) is int and isinstance(raw[1], str)):
            raise InvalidInput("bad cursor", [{"field": "cursor", "message": "not a cursor this API gave"}])
        after = (raw[0], raw[1])
    with read_only(session_factory()) as s:
        items, last = reads.inbound_orders(
            s, feed=query.feed, status=query.status, after=after, limit=page_limit(query.limit)
        )
    return respond_page(InboundOrderList, items, encode_cursor(list(last)) if last else None)
