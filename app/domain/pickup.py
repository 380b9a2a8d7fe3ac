"""Click-and-collect rules. Invariants: a pickup's promised ready time falls inside the store's
opening hours; a pickup code is short, unguessable and only ever kept as a keyed hash; after
MAX_TRIES wrong codes a pickup is locked; a ready pickup is reminded once, then expires at its
deadline; the queue's tabs are disjoint."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from app.domain.errors import DomainError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# No 0/O, 1/I/L, 2/Z, 5/S, 8/B, 6/G: a code read aloud or typed from a phone is not misread.
CODE_ALPHABET = "ACDEFHJKMNPQRTUVWXY3479"
CODE_LENGTH = 6  # 23**6 = 148 million codes against a handful of tries before a lock
BARCODE_PREFIX = "PU"
_HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d|24:00")

OpeningHours = Mapping[str, Sequence[Sequence[str]]]


class PickupCodeWrong(DomainError):
    code = "wrong_pickup_code"
    kind = "invalid"


class PickupLocked(DomainError):
    code = "pickup_locked"


def parse_hours(hours: OpeningHours) -> dict[str, list[tuple[time, time | None]]]:
    """Opening hours as times per weekday (close None = midnight); raises ValueError naming the day."""
    out: dict[str, list[tuple[time, time | None]]] = {}
    for day, spans in hours.items():
        if day not in DAYS:
            raise ValueError(f"{day!r} is not a weekday; use {', '.join(DAYS)}")
        parsed: list[tuple[time, time | None]] = []
        for span in spans:
            if len(span) != 2 or not all(isinstance(x, str) and _HHMM.fullmatch(x) for x in span):
                raise ValueError(f"{day}: each span is [\"HH:MM\", \"HH:MM\"]")
            start = time.fromisoformat(span[0]) if span[0] != "24:00" else None
            end = None if span[1] == "24:00" else time.fromisoformat(span[1])
            if start is None or (end is not None and end <= start):
                raise ValueError(f"{day}: {span[0]}-{span[1]} closes before it opens")
            if parsed and (parsed[-1][1] is None or parsed[-1][1] > start):
                raise ValueError(f"{day}: spans must be in order and must not overlap")
            parsed.append((start, end))
        out[day] = parsed
    return out


def _open_spans(
    hours: OpeningHours | None, tz: ZoneInfo, start: datetime, days: int = 15
) -> Iterator[tuple[datetime, datetime]]:
    """Open (from, to) intervals in UTC from the local day of start onwards."""
    local_day = start.astimezone(tz).date()
    table = parse_hours(hours) if hours is not None else None
    for offset in range(days):
        day: date = local_day + timedelta(days=offset)
        spans = [(time(0), None)] if table is None else table.get(DAYS[day.weekday()], [])
        for open_t, close_t in spans:
            lo = datetime.combine(day, open_t, tz)
            hi = datetime.combine(day + timedelta(days=1), time(0), tz) if close_t is None else datetime.combine(day, close_t, tz)
            yield lo, hi


def promised_ready(
    now: datetime, pick_minutes: int, hours: OpeningHours | None, timezone: str, arrives_at: datetime | None = None
) -> datetime:
    """When a pickup will be ready: from now (or the transfer's arrival, if later), pick_minutes of
    open store time; a store closed all fortnight promises start + pick time as if always open."""
    start = max(now, arrives_at) if arrives_at is not None else now
    if hours is None:
        return start + timedelta(minutes=pick_minutes)
    left = timedelta(minutes=pick_minutes)
    for lo, hi in _open_spans(hours, ZoneInfo(timezone), start):
        if hi <= start:
            continue
        begin: datetime = max(lo, start)
        if begin + left <= hi:
            return begin + left
        left -= hi - begin
    return start + timedelta(minutes=pick_minutes)


def transfer_arrival(now: datetime, transfer_hours: int) -> datetime:
    """When units sent to a store today arrive there."""
    return now + timedelta(hours=transfer_hours)


def new_code() -> str:
    """A fresh pickup code for the customer."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str) -> str:
    """What a person typed: case, spaces and dashes do not matter."""
    return re.sub(r"[\s-]", "", raw).upper()


def code_digest(key: bytes, fulfilment_id: int, code: str) -> str:
    """The stored form of a pickup code: keyed (a leaked table cannot be brute-forced offline)
    and bound to its pickup (a code is worth nothing on another order)."""
    msg = f"{fulfilment_id}:{normalise_code(code)}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def code_matches(key: bytes, fulfilment_id: int, code: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(code_digest(key, fulfilment_id, code), stored)


def barcode_payload(fulfilment_id: int, code: str) -> str:
    """What the customer's scannable code holds: the pickup and its code, so a scan proves both."""
    return f"{BARCODE_PREFIX}-{fulfilment_id}-{code}"


@dataclass(frozen=True)
class Scanned:
    """A scanner's input: an order number, or a pickup barcode (which also carries the code)."""

    order_id: int | None = None
    fulfilment_id: int | None = None
    code: str | None = None


def parse_scan(raw: str) -> Scanned | None:
    """Read what a barcode scanner typed: "PU-<pickup>-<code>", an order number, or "#<number>"."""
    text = raw.strip().upper()
    m = re.fullmatch(rf"{BARCODE_PREFIX}-(\d{{1,18}})-([{CODE_ALPHABET}]{{{CODE_LENGTH}}})", text)
    if m:
        return Scanned(fulfilment_id=int(m.group(1)), code=m.group(2))
    m = re.fullmatch(r"(?:#|ORDER[-\s]?)?(\d{1,18})", text)
    if m:
        return Scanned(order_id=int(m.group(1)))
    return None


@dataclass(frozen=True)
class TryOutcome:
    tries: int
    locked_until: datetime | None


def wrong_try(tries: int, now: datetime, max_tries: int, lock_minutes: int) -> TryOutcome:
    """One more wrong code: the max_tries-th locks the pickup for lock_minutes and resets the count."""
    tries += 1
    if tries >= max_tries:
        return TryOutcome(0, now + timedelta(minutes=lock_minutes))
    return TryOutcome(tries, None)


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def hold_deadline(ready_at: datetime, hold_hours: int) -> datetime:
    """A ready pickup is kept for hold_hours, then it is a no-show."""
    return ready_at + timedelta(hours=hold_hours)


def reminder_due(hold_until: datetime | None, reminder_hours: int, reminded_at: datetime | None, now: datetime) -> bool:
    """The reminder goes once, reminder_hours before the deadline (and not after it)."""
    if hold_until is None or reminded_at is not None or reminder_hours <= 0:
        return False
    return hold_until - timedelta(hours=reminder_hours) <= now < hold_until


def expired(hold_until: datetime | None, now: datetime) -> bool:
    return hold_until is not None and hold_until <= now


class Tab(StrEnum):
    TO_PICK = "to_pick"
    READY = "ready"
    OVERDUE = "overdue"
    COLLECTED_TODAY = "collected_today"


def tab_of(
    status: str, promised_at: datetime | None, hold_until: datetime | None, collected_at: datetime | None,
    now: datetime, day_start: datetime,
) -> Tab | None:  # fmt: skip
    """Which queue tab a pickup sits in: overdue means its current promise (ready time while being
    picked, hold deadline once ready) has passed; None for pickups no longer on the counter's mind."""
    if status in ("allocated", "picking"):
        return Tab.OVERDUE if promised_at is not None and promised_at < now else Tab.TO_PICK
    if status == "ready_for_pickup":
        return Tab.OVERDUE if hold_until is not None and hold_until <= now else Tab.READY
    if status == "collected" and collected_at is not None and collected_at >= day_start:
        return Tab.COLLECTED_TODAY
    return None


def local_day_start(now: datetime, timezone: str) -> datetime:
    """Midnight today in the store's zone (what "collected today" means at the counter)."""
    tz = ZoneInfo(timezone)
    return datetime.combine(now.astimezone(tz).date(), time(0), tz)
