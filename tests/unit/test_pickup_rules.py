"""The pure click-and-collect rules: promises inside opening hours, codes, scans, lock, tabs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain import pickup as rules

LONDON = "Europe/London"
WEEKDAYS = {d: [["09:00", "17:30"]] for d in ("mon", "tue", "wed", "thu", "fri")} | {"sat": [["10:00", "16:00"]]}


def _local(dt: datetime) -> datetime:
    return dt.astimezone(ZoneInfo(LONDON))


def test_within_opening_hours_is_now_plus_pick_time() -> None:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # a Wednesday, 10:00 in London (GMT)
    assert rules.promised_ready(now, 45, WEEKDAYS, LONDON) == now + timedelta(minutes=45)


def test_pick_time_runs_across_the_closing_time_into_the_next_opening() -> None:
    now = datetime(2026, 12, 2, 17, 0, tzinfo=UTC)  # Wednesday 17:00: 30 minutes before closing
    promised = _local(rules.promised_ready(now, 60, WEEKDAYS, LONDON))
    # 30 minutes tonight, the other 30 after Thursday's 09:00 opening.
    assert (promised.date().isoformat(), promised.hour, promised.minute) == ("2026-12-03", 9, 30)


def test_an_order_after_saturday_closing_is_ready_on_monday() -> None:
    now = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)  # Saturday, after 16:00; closed Sunday
    promised = _local(rules.promised_ready(now, 45, WEEKDAYS, LONDON))
    assert (promised.strftime("%a"), promised.hour, promised.minute) == ("Mon", 9, 45)


def test_with_a_transfer_the_clock_starts_when_it_arrives() -> None:
    now = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    arrives = rules.transfer_arrival(now, 24)  # Thursday 10:00
    assert rules.promised_ready(now, 45, WEEKDAYS, LONDON, arrives) == arrives + timedelta(minutes=45)
    late = rules.transfer_arrival(now, 31)  # Thursday 17:00: 30 minutes before closing
    promised = _local(rules.promised_ready(now, 45, WEEKDAYS, LONDON, late))
    assert (promised.strftime("%a"), promised.hour, promised.minute) == ("Fri", 9, 15)


def test_summer_time_is_the_store_clock() -> None:
    now = datetime(2026, 7, 1, 7, 30, tzinfo=UTC)  # 08:30 BST, before 09:00 opening
    promised = _local(rules.promised_ready(now, 15, WEEKDAYS, LONDON))
    assert (promised.hour, promised.minute) == (9, 15)


def test_always_open_and_never_open() -> None:
    now = datetime(2026, 12, 2, 23, 0, tzinfo=UTC)
    assert rules.promised_ready(now, 30, None, LONDON) == now + timedelta(minutes=30)
    # A store with no open hour at all in a fortnight: the plain pick time, not an endless search.
    assert rules.promised_ready(now, 30, {}, LONDON) == now + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("hours", "fault"),
    [({"mon": [["17:00", "09:00"]]}, "closes before it opens"), ({"xyz": []}, "not a weekday"),
     ({"mon": [["09:00", "13:00"], ["12:00", "17:00"]]}, "must not overlap"), ({"mon": [["9:00", "17:00"]]}, "HH:MM")],
)  # fmt: skip
def test_bad_opening_hours_name_the_day(hours: dict[str, list[list[str]]], fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        rules.parse_hours(hours)


@settings(max_examples=200, deadline=None)
@given(
    minutes=st.integers(0, 7 * 24 * 60),
    pick=st.integers(0, 600),
    arrive_h=st.one_of(st.none(), st.integers(0, 96)),
)
def test_a_promise_is_inside_opening_hours_and_never_early(minutes: int, pick: int, arrive_h: int | None) -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC) + timedelta(minutes=minutes)
    arrives = None if arrive_h is None else now + timedelta(hours=arrive_h)
    promised = rules.promised_ready(now, pick, WEEKDAYS, LONDON, arrives)
    start = max(now, arrives or now)
    assert promised >= start + timedelta(minutes=pick)
    local = _local(promised)
    spans = WEEKDAYS.get(local.strftime("%a").lower(), [])
    hm = local.strftime("%H:%M")
    assert any(a <= hm <= b for a, b in spans), (now, promised)


def test_codes_are_short_unambiguous_and_hashed_per_pickup() -> None:
    codes = {rules.new_code() for _ in range(2000)}
    assert len(codes) > 1990  # 148 million possibilities: repeats are rare
    assert all(len(c) == 6 and set(c) <= set(rules.CODE_ALPHABET) for c in codes)
    assert not set("0O1IL2Z5S8B6G") & set(rules.CODE_ALPHABET)
    key = b"k" * 32
    digest = rules.code_digest(key, 7, "abc-dee")
    assert rules.code_matches(key, 7, "ABCDEE", digest)
    assert not rules.code_matches(key, 8, "ABCDEE", digest)  # bound to its pickup
    assert not rules.code_matches(b"other", 7, "ABCDEE", digest)  # keyed
    assert not rules.code_matches(key, 7, "ABCDEE", None)
    assert "ABCDEE" not in digest


def test_scanner_input() -> None:
    assert rules.parse_scan("PU-42-ACDEFH\n") == rules.Scanned(fulfilment_id=42, code="ACDEFH")
    assert rules.parse_scan(" 1234 ") == rules.Scanned(order_id=1234)
    assert rules.parse_scan("#1234") == rules.Scanned(order_id=1234)
    assert rules.parse_scan("order-77") == rules.Scanned(order_id=77)
    assert rules.parse_scan("hello") is None
    assert rules.parse_scan("PU-42-ACDEF") is None


def test_wrong_tries_lock_on_the_last_and_start_again() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    tries = 0
    for _ in range(4):
        out = rules.wrong_try(tries, now, 5, 15)
        assert out.locked_until is None
        tries = out.tries
    out = rules.wrong_try(tries, now, 5, 15)
    assert out == rules.TryOutcome(0, now + timedelta(minutes=15))
    assert rules.is_locked(out.locked_until, now + timedelta(minutes=14))
    assert not rules.is_locked(out.locked_until, now + timedelta(minutes=15))


def test_reminder_once_before_the_deadline_and_expiry_at_it() -> None:
    deadline = datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert not rules.reminder_due(deadline, 6, None, deadline - timedelta(hours=7))
    assert rules.reminder_due(deadline, 6, None, deadline - timedelta(hours=6))
    assert not rules.reminder_due(deadline, 6, deadline - timedelta(hours=6), deadline - timedelta(hours=5))
    assert not rules.reminder_due(deadline, 0, None, deadline - timedelta(hours=1))
    assert not rules.reminder_due(deadline, 6, None, deadline)
    assert not rules.expired(deadline, deadline - timedelta(seconds=1))
    assert rules.expired(deadline, deadline)


def test_tabs_are_disjoint() -> None:
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    day = rules.local_day_start(now, LONDON)
    soon, past = now + timedelta(hours=1), now - timedelta(minutes=1)
    assert rules.tab_of("allocated", soon, None, None, now, day) is rules.Tab.TO_PICK
    assert rules.tab_of("picking", past, None, None, now, day) is rules.Tab.OVERDUE
    assert rules.tab_of("ready_for_pickup", past, soon, None, now, day) is rules.Tab.READY
    assert rules.tab_of("ready_for_pickup", past, past, None, now, day) is rules.Tab.OVERDUE
    assert rules.tab_of("collected", past, past, now, now, day) is rules.Tab.COLLECTED_TODAY
    assert rules.tab_of("collected", past, past, day - timedelta(seconds=1), now, day) is None
    assert rules.tab_of("expired", past, past, None, now, day) is None
