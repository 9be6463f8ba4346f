"""Patrols (巡查, seed 4.1): the plans (``twin/patrol_plans.yaml``: fire doors, fire lanes, extinguishers per
GB 25201; elevator maintenance every 15 days per TSG T5002), their checkpoints in a community, which patrols are
done / due / missed in each period of the community's local time, check-in tokens, positions in local metres and
the on-duty worker nearest to a place. Pure: parses text it is given, reads the packaged plans file only in
:func:`default_plans`.

Periods: ``every_days: N`` periods run from the plans' ``anchor`` date in steps of N local days (so every gateway
agrees on a 15-day period); ``every_months: N`` periods are calendar months from the anchor's month. A checkpoint
is *done* in a period when a check-in falls inside it, *due* while its current period is open without one, and
*missed* when a period closed without one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twin.community import Community, centroid
from twin.tickets.model import InvalidInput

PLANS_FILE = Path(__file__).resolve().parent / "patrol_plans.yaml"
EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)
MAX_ACCURACY_M = 500.0  # a fix vaguer than this says nothing about where on the estate the worker is
ACCURACY_ALLOWANCE_M = 30.0  # at most this much of a fix's accuracy is added to a checkpoint's radius
CLOCK_SKEW = timedelta(minutes=2)  # a phone's time may be this far ahead of ours
MAX_POSITION_AGE = timedelta(minutes=10)  # an older position is not a trail point (posted late: refused)
MAX_CHECKIN_AGE = timedelta(hours=24)  # a check-in may be sent up to a day late (no signal in the basement)
FRESH_POSITION = timedelta(minutes=10)  # a worker's last position counts for "nearest" this long
RETENTION = timedelta(days=30)  # positions are deleted after this long (docs/patrols.md)
TOKEN_SEP = "~"  # noqa: S105 (a separator, not a password)
SIG_LEN = 16  # base64url characters of the HMAC-SHA256 kept in a token (96 bits)

Result = Literal["ok", "problem"]
How = Literal["qr", "position"]
State = Literal["done", "due", "missed"]


class PlansError(ValueError):
    """A plans file that does not parse or validate (the message says where and why)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(_Model):
    zh: str = Field(min_length=1, max_length=200)
    en: str = Field(min_length=1, max_length=300)


class Plan(_Model):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    name: Names
    standard: str = Field(min_length=3, max_length=120, description="the source standard(s), e.g. GB 25201-2010")
    checks: Names = Field(description="what the worker checks there, per the standard")
    every_days: int | None = Field(default=None, ge=1, le=366)
    every_months: int | None = Field(default=None, ge=1, le=12)
    per: Literal["building", "elevator"]

    @model_validator(mode="after")
    def _one_interval(self) -> Plan:
        if (self.every_days is None) == (self.every_months is None):
            raise ValueError("give exactly one of every_days and every_months")
        return self


class Plans(_Model):
    version: Literal[1]
    anchor: date
    radius_m: float = Field(default=30.0, gt=0, le=500)
    plans: list[Plan] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Plans:
        ids = [p.id for p in self.plans]
        if len(ids) != len(set(ids)):
            raise ValueError("plan ids must be unique")
        return self

    def plan(self, plan_id: str) -> Plan | None:
        return next((p for p in self.plans if p.id == plan_id), None)


def parse_plans(text: str, source: str = "patrol_plans.yaml") -> Plans:
    try:
        data = yaml.safe_load(text)
        return Plans.model_validate(data)
    except yaml.YAMLError as exc:
        raise PlansError(f"{source}: not YAML: {exc}") from None
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PlansError(f"{source}: {msgs}") from None


@cache
def default_plans() -> Plans:
    return parse_plans(PLANS_FILE.read_text(encoding="utf-8"))


# -- checkpoints ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: str  # "{plan}.{subject}": fire_door.B1, elevator.B1-E1
    plan: str
    subject: str  # building or elevator id
    building: str
    grid: str | None
    x: float
    y: float
    label: str  # the building's (and elevator's) name


def checkpoints(community: Community, plans: Plans) -> list[Checkpoint]:
    """Every checkpoint of every plan in ``community``, plan by plan in the file's order."""
    out: list[Checkpoint] = []
    for p in plans.plans:
        if p.per == "building":
            for b in community.buildings:
                cx, cy = centroid(b.footprint)
                out.append(Checkpoint(f"{p.id}.{b.id}", p.id, b.id, b.id, community.grid_of(b), cx, cy, b.name))
        else:
            for e in community.elevators:
                eb = community.building(e.building)
                if eb is None:
                    continue
                out.append(Checkpoint(f"{p.id}.{e.id}", p.id, e.id, eb.id, community.grid_of(eb), e.shaft[0],
                                      e.shaft[1], f"{eb.name} {e.id}"))
    return out


# -- periods --------------------------------------------------------------------------------------------------


def _add_months(d: date, n: int) -> date:
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def period_of(plan: Plan, anchor: date, day: date) -> tuple[date, date]:
    """The period of ``plan`` holding the local date ``day``: (first day, first day of the next period)."""
    if plan.every_days is not None:
        n = plan.every_days
        start = anchor + timedelta(days=((day - anchor).days // n) * n)
        return start, start + timedelta(days=n)
    n = plan.every_months or 1
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    start = _add_months(date(anchor.year, anchor.month, 1), (months // n) * n)
    return start, _add_months(start, n)


def local_start(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tz)


@dataclass(frozen=True, slots=True)
class CheckIn:
    checkpoint: str
    at: datetime
    worker: str
    result: Result
    how: How = "qr"
    note: str = ""
    ticket: int | None = None


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    checkpoint: Checkpoint
    start: date  # the current period, local dates [start, end)
    end: date
    state: Literal["done", "due"]
    last: CheckIn | None  # the newest check-in of the current period
    previous: Literal["done", "missed"] | None  # the period before (None: it began before the plan's anchor)

    @property
    def missed(self) -> bool:
        return self.previous == "missed"


def status(points: Iterable[Checkpoint], plans: Plans, checkins: Iterable[CheckIn], now: datetime,
           tz: tzinfo, since: datetime | None = None) -> list[CheckpointStatus]:
    """Each checkpoint's state in its current period and whether the period before was missed. ``since``: when
    patrols began to be recorded (a period that began earlier is not judged: nobody could check in)."""
    by_point: dict[str, list[CheckIn]] = {}
    for c in checkins:
        by_point.setdefault(c.checkpoint, []).append(c)
    today = now.astimezone(tz).date()
    out: list[CheckpointStatus] = []
    for cp in points:
        plan = plans.plan(cp.plan)
        if plan is None:
            continue
        start, end = period_of(plan, plans.anchor, today)
        lo, hi = local_start(start, tz), local_start(end, tz)
        mine = sorted(by_point.get(cp.id, ()), key=lambda c: c.at)
        current = [c for c in mine if lo <= c.at < hi]
        previous: Literal["done", "missed"] | None = None
        if start > plans.anchor:
            p_start, _ = period_of(plan, plans.anchor, start - timedelta(days=1))
            p_lo = local_start(p_start, tz)
            done = any(p_lo <= c.at < lo for c in mine)
            if done or since is None or p_lo >= since:
                previous = "done" if done else "missed"
        out.append(CheckpointStatus(cp, start, end, "done" if current else "due", current[-1] if current else None,
                                    previous))
    return out


def window(plans: Plans, now: datetime, tz: tzinfo) -> datetime:
    """The earliest time a check-in can matter to :func:`status` at ``now`` (the start of the longest plan's
    previous period)."""
    today = now.astimezone(tz).date()
    first = today
    for plan in plans.plans:
        start, _ = period_of(plan, plans.anchor, today)
        prev, _ = period_of(plan, plans.anchor, start - timedelta(days=1))
        first = min(first, prev)
    return local_start(first, tz)


# -- where ----------------------------------------------------------------------------------------------------


def to_local(origin: tuple[float, float], lat: float, lon: float) -> tuple[float, float]:
    """Local metres (x east, y north) of a WGS 84 position, by the equirectangular projection around the community's
    origin (error well under a metre across an estate)."""
    lat0, lon0 = origin
    k = math.pi / 180 * EARTH_RADIUS_M
    return (lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k


def to_latlon(origin: tuple[float, float], x: float, y: float) -> tuple[float, float]:
    lat0, lon0 = origin
    k = math.pi / 180 * EARTH_RADIUS_M
    return lat0 + y / k, lon0 + x / (k * math.cos(math.radians(lat0)))


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def within(plans: Plans, points: Iterable[Checkpoint], x: float, y: float,
           accuracy_m: float | None) -> list[tuple[float, Checkpoint]]:
    """(distance, checkpoint) of the checkpoints a fix at local ``(x, y)`` may check in at, nearest first."""
    reach = plans.radius_m + min(accuracy_m or 0.0, ACCURACY_ALLOWANCE_M)
    found = [(distance((x, y), (cp.x, cp.y)), cp) for cp in points]
    return sorted(((d, cp) for d, cp in found if d <= reach), key=lambda dc: dc[0])


def on_duty(shift: tuple[time, time], local: datetime) -> bool:
    """Whether the local time falls in a shift ``(start, end)``; a shift may run past midnight (18:00-08:00)."""
    start, end = shift
    t = local.time()
    if start == end:
        return True
    return start <= t < end if start < end else (t >= start or t < end)


@dataclass(frozen=True, slots=True)
class Fix:
    """A worker's last known place in local metres."""

    worker: str  # username
    worker_id: str | None
    at: datetime
    x: float
    y: float
    accuracy_m: float | None


def nearest(fixes: Iterable[Fix], x: float, y: float, now: datetime,
            fresh: timedelta = FRESH_POSITION) -> list[tuple[float, Fix]]:
    """(metres, fix) of the fixes not older than ``fresh``, nearest to ``(x, y)`` first."""
    found = [(distance((f.x, f.y), (x, y)), f) for f in fixes if now - fresh <= f.at <= now + CLOCK_SKEW]
    return sorted(found, key=lambda df: (df[0], df[1].worker))


# -- input checks -------------------------------------------------------------------------------------------


def check_time(at: datetime | None, now: datetime, max_age: timedelta, what: str) -> datetime:
    """``at`` (default ``now``) if it is neither in the future beyond :data:`CLOCK_SKEW` nor older than
    ``max_age``; else :class:`InvalidInput`."""
    if at is None:
        return now
    if at.tzinfo is None:
        raise InvalidInput(f"{what}: give the time with its offset, e.g. 2026-12-02T10:30:00+08:00")
    if at > now + CLOCK_SKEW:
        raise InvalidInput(f"{what} {at.isoformat()} is in the future (the server's time is {now.isoformat()})")
    if at < now - max_age:
        raise InvalidInput(f"{what} {at.isoformat()} is older than {int(max_age.total_seconds() // 60)} minutes")
    return at


def check_fix(lat: float, lon: float, accuracy_m: float | None, origin: tuple[float, float],
              max_m: float = 5_000.0) -> tuple[float, float]:
    """Local metres of a fix; :class:`InvalidInput` if it is out of range, too vague or far from the estate."""
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise InvalidInput("lat must be in -90..90 and lon in -180..180")
    if accuracy_m is not None and not (math.isfinite(accuracy_m) and 0 <= accuracy_m <= MAX_ACCURACY_M):
        raise InvalidInput(f"accuracy_m must be 0..{MAX_ACCURACY_M:g} metres")
    x, y = to_local(origin, lat, lon)
    if math.hypot(x, y) > max_m:
        raise InvalidInput(f"the position is {math.hypot(x, y) / 1000:.1f} km from the community; positions are kept "
                           "only on the estate")
    return x, y


# -- check-in tokens ------------------------------------------------------------------------------------------


def _sig(secret: bytes, community: str, checkpoint: str) -> str:
    mac = hmac.new(secret, f"gridtwin-patrol/{community}/{checkpoint}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:SIG_LEN]


def token(secret: bytes, community: str, checkpoint: str) -> str:
    """The signed token a checkpoint's QR code carries: ``{checkpoint}~{signature}``."""
    return f"{checkpoint}{TOKEN_SEP}{_sig(secret, community, checkpoint)}"


def read_token(secret: bytes, community: str, text: str, known: Mapping[str, Checkpoint]) -> Checkpoint:
    """The checkpoint a token names, if its signature is right; :class:`InvalidInput` otherwise."""
    checkpoint, sep, sig = text.partition(TOKEN_SEP)
    cp = known.get(checkpoint)
    if not sep or cp is None or len(sig) != SIG_LEN or not hmac.compare_digest(sig, _sig(secret, community,
                                                                                         checkpoint)):
        raise InvalidInput("this QR code is not a checkpoint of this community (or was altered)")
    return cp


def by_grid(rows: Sequence[CheckpointStatus]) -> dict[str | None, list[CheckpointStatus]]:
    out: dict[str | None, list[CheckpointStatus]] = {}
    for r in rows:
        out.setdefault(r.checkpoint.grid, []).append(r)
    return out
