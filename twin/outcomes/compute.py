"""Measuring outcomes (seed 4.2/6.3): per period bucket (day, week from Monday, calendar month in the community's
local time) and per scope (community, grid, worker), from tickets, one-click reports, care visits and patrol rounds.
Pure: the caller reads the records (gateway/outcomes) and passes them in; ``now`` decides what is still undecided
(an open ticket within its deadline, a care visit not yet due, a patrol period not yet over). docs/outcomes.md
defines each figure.

Attribution: a ticket (its response, resolution, rating, whether it was a false alarm, its place) counts in the
bucket and grid it was *created* in, and for the worker it was last assigned to; a care visit due counts on its due
date for the resident's grid; a patrol round on its period's last day for the checkpoint's grid. Care visits and
patrol rounds belong to a grid, not to one worker: a worker's figures are those of their grids.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from statistics import fmean

from twin import care
from twin.outcomes import BUCKETS, Bucket, Outcomes, Values
from twin.patrols import CheckIn, Checkpoint, Plans, local_start, period_of
from twin.tickets.model import Ticket, TicketState

NO_GRID = "(none)"
UNKNOWN_KIND = "(unknown)"
DAY_S = 86400.0


# -- buckets --------------------------------------------------------------------------------------------------


def bucket_start(d: date, bucket: Bucket) -> date:
    """The first local date of the bucket holding ``d``: the day, the Monday of its week, the 1st of its month."""
    if bucket == "day":
        return d
    if bucket == "week":
        return d - timedelta(days=d.weekday())
    if bucket == "month":
        return d.replace(day=1)
    raise ValueError(f"unknown bucket {bucket!r}; one of {', '.join(BUCKETS)}")


def next_bucket(d: date, bucket: Bucket) -> date:
    """The first local date of the bucket after the one starting on ``d``."""
    if bucket == "day":
        return d + timedelta(days=1)
    if bucket == "week":
        return d + timedelta(days=7)
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def bucket_starts(first: date, end: date, bucket: Bucket) -> list[date]:
    """The starts of the buckets meeting the local dates ``[first, end)``."""
    out: list[date] = []
    d = bucket_start(first, bucket)
    while d < end:
        out.append(d)
        d = next_bucket(d, bucket)
    return out


def local_dates(start: datetime, end: datetime, tz: tzinfo) -> tuple[date, date]:
    """The local dates ``[first, end)`` that ``[start, end)`` meets."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("outcome periods are timezone-aware")
    if end <= start:
        raise ValueError(f"the period ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    first = start.astimezone(tz).date()
    last = end.astimezone(tz)
    stop = last.date() if last.time() == time(0) else last.date() + timedelta(days=1)
    return first, stop


# -- care visits ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CareHistory:
    """One resident of the care register: the level at registration, every visit and level change."""

    resident: int
    grid: str | None
    level: str  # at registration (the first change's from-level, or the level now)
    registered_at: datetime
    visits: Sequence[datetime] = ()
    level_changes: Sequence[tuple[datetime, str]] = ()  # (when, the new level)


@dataclass(frozen=True, slots=True)
class CareDue:
    """A visit that was due by a local date, and whether one was made by then; it counts on ``day``: the visit's
    date when on time, the due date when missed."""

    resident: int
    grid: str | None
    due: date
    on_time: bool
    day: date


def care_dues(histories: Iterable[CareHistory], tz: tzinfo, now: datetime) -> list[CareDue]:
    """Every decided due visit: the schedule of :mod:`twin.care` replayed over the resident's history.

    A visit is due one interval after the last visit (or registration, or level change). A due date that passes
    without a visit is one missed visit, and the next is due one interval after it (the planned dates,
    ``care.next_dates``), so a visit made late closes the missed ones without counting on time. A level change
    restarts the clock (a due date before it that had passed is missed). A due date from today on without a visit
    is not decided yet. Every visit made by its due date is one on time (a second visit within the interval too:
    the clock restarts with each visit)."""
    today = now.astimezone(tz).date()
    out: list[CareDue] = []
    for h in histories:
        events: list[tuple[datetime, str | None]] = [(v, None) for v in h.visits]
        events += [(at, lvl) for at, lvl in h.level_changes]
        events.sort(key=lambda e: e[0])
        level = h.level
        due = care.add_interval(level, h.registered_at.astimezone(tz).date())
        for at, new_level in events:
            if at < h.registered_at:
                continue
            day = at.astimezone(tz).date()
            late = False
            while due < day:  # passed without a visit
                out.append(CareDue(h.resident, h.grid, due, False, due))
                due = care.add_interval(level, due)
                late = True
            if new_level is not None:
                level = new_level
            elif not late:
                out.append(CareDue(h.resident, h.grid, due, True, day))
            due = care.add_interval(level, day)
        while due < today:
            out.append(CareDue(h.resident, h.grid, due, False, due))
            due = care.add_interval(level, due)
    return out


# -- patrol rounds --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatrolRound:
    """One checkpoint's plan period (local dates ``[start, end)``), over, done or not."""

    checkpoint: str
    grid: str | None
    start: date
    end: date
    done: bool
    by: str | None = None  # who checked in first


def patrol_rounds(points: Iterable[Checkpoint], plans: Plans, checkins: Iterable[CheckIn], *, tz: tzinfo,
                  now: datetime, first: date, stop: date, since: datetime | None = None) -> list[PatrolRound]:
    """The rounds whose period's last day falls in ``[first, stop)`` and is over by ``now``. As on the patrol page
    (:func:`twin.patrols.status`): a period that began before the plans' anchor does not count, nor one that began
    before ``since`` (when patrols began to be recorded) unless someone checked in."""
    today = now.astimezone(tz).date()
    by_point: dict[str, list[CheckIn]] = {}
    for c in checkins:
        by_point.setdefault(c.checkpoint, []).append(c)
    out: list[PatrolRound] = []
    for cp in points:
        plan = plans.plan(cp.plan)
        if plan is None:
            continue
        mine = sorted(by_point.get(cp.id, ()), key=lambda c: c.at)
        times = [c.at for c in mine]
        start, end = period_of(plan, plans.anchor, max(first, plans.anchor))
        while end - timedelta(days=1) < stop and end <= today:
            if end - timedelta(days=1) >= first and start >= plans.anchor:
                lo, hi = local_start(start, tz), local_start(end, tz)
                i = bisect_left(times, lo)
                done = i < len(times) and times[i] < hi
                if done or since is None or lo >= since:
                    out.append(PatrolRound(cp.id, cp.grid, start, end, done, mine[i].worker if done else None))
            start, end = period_of(plan, plans.anchor, end)
    return out


# -- the figures ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Records:
    """What is measured, as read for the period (tickets created in it; dues and rounds of any date: filtered)."""

    tickets: Sequence[Ticket] = ()
    report_ids: Collection[int] = frozenset()  # tickets that are one-click reports
    care: Sequence[CareDue] = ()
    patrols: Sequence[PatrolRound] = ()
    kinds: Mapping[str, str] = field(default_factory=dict)  # device id -> kind
    grid_workers: Mapping[str, Sequence[str]] = field(default_factory=dict)  # grid id -> worker ids
    buildings: Mapping[str, str] = field(default_factory=dict)  # building id -> name (place labels)


def _ratio(n: int, d: int, digits: int = 3) -> float | None:
    return round(n / d, digits) if d else None


def place_label(building: str, floor: int | None, names: Mapping[str, str]) -> str:
    """``1号楼/3F`` (``B1`` for the first basement floor); the building alone without a floor."""
    name = names.get(building, building)
    if floor is None:
        return name
    return f"{name}/{floor}F" if floor > 0 else f"{name}/B{-floor}"


def _places(tickets: Iterable[Ticket], names: Mapping[str, str]) -> Counter[str]:
    """Incidents per place: tickets with a building that were not false alarms."""
    return Counter(place_label(t.building, t.floor, names) for t in tickets
                   if t.building and t.close_reason != "false_alarm")


def measure_values(tickets: Sequence[Ticket], report_ids: Collection[int], dues: Sequence[CareDue],
                   rounds: Sequence[PatrolRound], workers: int, now: datetime,
                   names: Mapping[str, str] | None = None) -> Values:
    """Every figure of one scope and period (docs/outcomes.md); None where there is nothing to measure."""
    live = [t for t in tickets if t.state is not TicketState.CANCELLED]
    closed = [(t.resolved_at - t.created_at).total_seconds() / DAY_S for t in live if t.resolved_at is not None]
    ratings = [t.rating for t in live if t.rating is not None]
    responded = [t for t in live if t.responded_at is not None or now > t.respond_by]
    resolvable = [t for t in live if t.resolve_by is not None and (t.resolved_at is not None or now > t.resolve_by)]
    alarms = [t for t in tickets if t.source == "alarm" and not t.open]
    places = _places(live, names or {})
    reports = sum(t.id in report_ids for t in tickets)
    return {
        "close_days": round(fmean(closed), 2) if closed else None,
        "satisfaction": _ratio(sum(r >= 4 for r in ratings), len(ratings)),
        "response_sla": _ratio(sum(t.responded_at is not None and t.responded_at <= t.respond_by
                                   for t in responded), len(responded)),
        "resolution_sla": _ratio(sum(t.resolved_at is not None and t.resolve_by is not None
                                     and t.resolved_at <= t.resolve_by for t in resolvable), len(resolvable)),
        "care_on_time": _ratio(sum(d.on_time for d in dues), len(dues)),
        "patrols_done": _ratio(sum(r.done for r in rounds), len(rounds)),
        "false_alarm_rate": _ratio(sum(t.close_reason == "false_alarm" for t in alarms), len(alarms)),
        "repeat_rate": _ratio(sum(n >= 2 for n in places.values()), len(places)),
        "mean_rating": round(fmean(ratings), 2) if ratings else None,
        "tickets": float(len(tickets)),
        "reports": float(reports),
        "reports_per_worker": _ratio(reports, workers, 2),
        "rated": float(len(ratings)),
        "care_due": float(len(dues)),
        "patrol_rounds": float(len(rounds)),
        "alarm_tickets": float(len(alarms)),
    }


def measure(community: str, start: datetime, end: datetime, bucket: Bucket, tz: tzinfo, now: datetime,
            records: Records) -> Outcomes:
    """The community's outcomes over ``[start, end)``: overall, per grid (of ``records.grid_workers`` and of the
    tickets), per worker (the grids' workers and the tickets' assignees) and per bucket."""
    if bucket not in BUCKETS:
        raise ValueError(f"unknown bucket {bucket!r}; one of {', '.join(BUCKETS)}")
    first, stop = local_dates(start, end, tz)
    tickets = [t for t in records.tickets if start <= t.created_at < end]
    dues = [d for d in records.care if first <= d.day < stop]
    rounds = [r for r in records.patrols if first <= r.end - timedelta(days=1) < stop]
    names = records.buildings
    gw = records.grid_workers
    reports = records.report_ids

    def values(ts: Sequence[Ticket], ds: Sequence[CareDue], rs: Sequence[PatrolRound], workers: int) -> Values:
        return measure_values(ts, reports, ds, rs, workers, now, names)

    all_workers = {w for ws in gw.values() for w in ws}
    overall = values(tickets, dues, rounds, len(all_workers))

    grids = sorted(set(gw) | {t.grid or NO_GRID for t in tickets})
    by_grid = {g: values([t for t in tickets if (t.grid or NO_GRID) == g],
                         [d for d in dues if (d.grid or NO_GRID) == g],
                         [r for r in rounds if (r.grid or NO_GRID) == g], len(gw.get(g, ()))) for g in grids}

    workers = sorted(all_workers | {t.assignee for t in tickets if t.assignee})
    by_worker: dict[str, Values] = {}
    for w in workers:
        mine = {g for g, ws in gw.items() if w in ws}
        by_worker[w] = values([t for t in tickets if t.assignee == w], [d for d in dues if d.grid in mine],
                              [r for r in rounds if r.grid in mine], 1)

    def bucket_of(d: date) -> date:
        return bucket_start(d, bucket)

    t_by: dict[date, list[Ticket]] = {}
    for t in tickets:
        t_by.setdefault(bucket_of(t.created_at.astimezone(tz).date()), []).append(t)
    d_by: dict[date, list[CareDue]] = {}
    for d in dues:
        d_by.setdefault(bucket_of(d.day), []).append(d)
    r_by: dict[date, list[PatrolRound]] = {}
    for r in rounds:
        r_by.setdefault(bucket_of(r.end - timedelta(days=1)), []).append(r)
    series = [(datetime.combine(b, time(0), tz), values(t_by.get(b, []), d_by.get(b, []), r_by.get(b, []),
                                                        len(all_workers)))
              for b in bucket_starts(first, stop, bucket)]

    kinds: dict[str, tuple[int, int]] = {}
    for t in tickets:
        if t.source == "alarm" and not t.open:
            kind = records.kinds.get(t.device or "", UNKNOWN_KIND)
            n, f = kinds.get(kind, (0, 0))
            kinds[kind] = (n + 1, f + (t.close_reason == "false_alarm"))
    places = _places([t for t in tickets if t.state is not TicketState.CANCELLED], names)
    repeats = sorted(((p, n) for p, n in places.items() if n >= 2), key=lambda pn: (-pn[1], pn[0]))
    return Outcomes(community=community, start=start, end=end, bucket=bucket, values=overall, by_grid=by_grid,
                    by_worker=by_worker, series=series, false_alarms_by_kind=dict(sorted(kinds.items())),
                    repeats=repeats)
