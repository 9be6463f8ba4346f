"""The monthly report's pure parts: --month, the local month's bounds, the worst missed deadlines, text wrapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.monthly import measures as ms
from gateway.monthly.pdf import wrap
from twin.tickets import Priority, Ticket, TicketState

SH = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("text", "why"), [("2026-13", "01..12"), ("2026-00", "01..12"), ("1999-12", "2000..2999"),
                                           ("3000-01", "2000..2999"), ("2026-1", "YYYY-MM"), ("2026/11", "YYYY-MM"),
                                           ("", "YYYY-MM"), ("２０２６-11", "YYYY-MM")])
def test_bad_months(text: str, why: str) -> None:
    with pytest.raises(ms.MonthError, match=why.replace(".", r"\.")):
        ms.parse_month(text)


def test_the_local_month() -> None:
    assert ms.parse_month(" 2026-11 ") == (2026, 11)
    start, end = ms.month_bounds(2026, 12, SH)
    assert start.isoformat() == "2026-12-01T00:00:00+08:00" and end.isoformat() == "2027-01-01T00:00:00+08:00"
    assert start.astimezone(UTC) == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert ms.month_days(2028, 2)[1].isoformat() == "2028-03-01"


def _ticket(i: int, created: datetime, **kw: object) -> Ticket:
    base: dict[str, object] = {
        "id": i, "community": "c", "title": "t", "category": "fire", "priority": Priority.URGENT,
        "state": TicketState.FEEDBACK, "source": "alarm", "created_at": created, "clock_start": created,
        "respond_by": created + timedelta(hours=2), "resolve_by": created + timedelta(hours=24), "rate_token": "x",
        "building": "B1", "floor": 3, "assignee": "w1-1"}
    base.update(kw)
    return Ticket(**base)  # type: ignore[arg-type]


def test_worst_breaches() -> None:
    t0 = datetime(2026, 11, 3, 2, tzinfo=UTC)
    cutoff = datetime(2026, 12, 1, tzinfo=UTC)
    tickets = [
        _ticket(1, t0, responded_at=t0 + timedelta(hours=1), resolved_at=t0 + timedelta(hours=30)),  # 6 h late
        _ticket(2, t0, responded_at=t0 + timedelta(hours=5), resolved_at=t0 + timedelta(hours=3)),  # 3 h late
        _ticket(3, t0, responded_at=t0 + timedelta(hours=1), resolved_at=t0 + timedelta(hours=3)),  # on time
        _ticket(4, t0, state=TicketState.CANCELLED, responded_at=None),  # cancelled: not counted
        _ticket(5, cutoff - timedelta(days=2), state=TicketState.HANDLING, responded_at=cutoff - timedelta(days=2),
                accepted_at=cutoff - timedelta(days=2)),  # still open: 24 h late at the cut-off
        _ticket(6, cutoff - timedelta(hours=1), state=TicketState.DISPATCHED),  # deadlines after the cut-off
    ]
    got = ms.worst_breaches(tickets, cutoff)
    assert [(b.ticket, b.clock, b.late, b.done) for b in got] == [
        (5, "resolve", timedelta(hours=24), False), (1, "resolve", timedelta(hours=6), True),
        (2, "respond", timedelta(hours=3), True)]
    assert ms.worst_breaches(tickets, cutoff, n=1)[0].ticket == 5


def test_per_day_and_category_in_local_days() -> None:
    late_evening = datetime(2026, 11, 1, 15, 30, tzinfo=UTC)  # 23:30 on 11-01 in Shanghai
    after_midnight = datetime(2026, 11, 1, 16, 30, tzinfo=UTC)  # 00:30 on 11-02
    days = ms.per_day([_ticket(1, late_evening), _ticket(2, after_midnight, category="gas")],
                      *ms.month_days(2026, 11), SH)
    assert days[0][1] == 1 and days[1][1] == 1 and len(days) == 30
    assert ms.per_category([_ticket(1, late_evening), _ticket(2, late_evening), _ticket(3, late_evening,
                                                                                         category="gas")]) == [
        ("fire", 2), ("gas", 1)]


def test_wrap_counts_chinese_as_two_columns() -> None:
    assert wrap("一二三四五六", 6) == ["一二三", "四五六"]
    assert wrap("inspect the device on site", 12) == ["inspect the", "device on", "site"]
