"""Alarm lifecycle, ThingsBoard-like: severities, states, acknowledge, clear, shelve, flapping, escalation. Pure.

One alarm per (rule, subject), keyed ``"{rule}@{subject}"``. A rule raising again while its alarm is
active is a *repeat*: ``count`` and ``last_seen`` go up, no second alarm. States::

    active_unack --ack--> active_ack
         |                    |
       clear                clear
         v                    v
    cleared_unack --ack--> cleared_ack   (done: leaves the book; history is the caller's to keep)

Every change comes out as an :class:`AlarmEvent` for the caller to store and act on (dispatch,
notify, paint the 3D model). :class:`AlarmBook` keeps the current alarms, shelving (per key, with an
expiry, survives re-raises), flapping holds and escalation clocks. Times are epoch seconds inside,
aware datetimes outside. No I/O; :meth:`AlarmBook.snapshot` is JSON-serialisable.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, NamedTuple, cast

from twin.state import Level


class Severity(StrEnum):
    """Alarm severity, lowest first (ThingsBoard's WARNING < MINOR < MAJOR < CRITICAL)."""

    WARNING = "warning"
    MINOR = "minor"
    MAJOR = "major"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def level(self) -> Level:
        """The live-state level this severity paints a device/floor/building with."""
        return _LEVEL[self]

    def step_up(self, cap: Severity | None = None) -> Severity:
        """One step more severe, never above ``cap`` (default critical)."""
        return _ORDER[self.rank + 1] if self.rank < (cap or Severity.CRITICAL).rank else self


_ORDER = (Severity.WARNING, Severity.MINOR, Severity.MAJOR, Severity.CRITICAL)
_RANK = {s: i for i, s in enumerate(_ORDER)}
_LEVEL = {Severity.WARNING: Level.WARNING, Severity.MINOR: Level.MINOR, Severity.MAJOR: Level.MAJOR,
          Severity.CRITICAL: Level.CRITICAL}


class AlarmStatus(StrEnum):
    ACTIVE_UNACK = "active_unack"
    ACTIVE_ACK = "active_ack"
    CLEARED_UNACK = "cleared_unack"
    CLEARED_ACK = "cleared_ack"

    @property
    def active(self) -> bool:
        return self in (AlarmStatus.ACTIVE_UNACK, AlarmStatus.ACTIVE_ACK)

    @property
    def acknowledged(self) -> bool:
        return self in (AlarmStatus.ACTIVE_ACK, AlarmStatus.CLEARED_ACK)


class Dispatch(StrEnum):
    """Ticket priority a rule asks for (SLA classes: docs/tickets.md), or none."""

    URGENT = "urgent"
    GENERAL = "general"
    COMPLEX = "complex"
    NONE = "none"


class EventKind(StrEnum):
    RAISED = "raised"
    UPDATED = "updated"  # a repeat while active: count and last_seen went up
    CLEARED = "cleared"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    FLAPPING = "flapping"  # too many raise/clear cycles: held raised until it settles
    SUPPRESSED = "suppressed"  # would have raised, but the device is shielded / in maintenance


SubjectType = Literal["device", "floor", "building", "care_unit"]


@dataclass(frozen=True, slots=True)
class Subject:
    """What an alarm is about: a device id, a floor ``"B3/F12"``, a building id or a care unit."""

    id: str
    type: SubjectType
    building: str | None = None
    floor: int | None = None
    device: str | None = None


def floor_id(building: str, floor: int) -> str:
    """Subject id of a floor: ``B3/F12``; basements are negative: ``B3/F-1``."""
    return f"{building}/F{floor}"


def alarm_key(rule: str, subject: str) -> str:
    return f"{rule}@{subject}"


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """What the book needs to know about a rule: severity, dispatch, escalation, flapping."""

    rule: str
    severity: Severity
    dispatch: Dispatch
    escalate_every: float | None = None
    escalate_max: Severity = Severity.CRITICAL
    flap_cycles: int | None = None  # more than this many raise/clear cycles within flap_within -> flapping
    flap_within: float = 600.0
    flap_settle: float = 300.0  # a flapping alarm clears after its condition stayed clear this long


@dataclass(frozen=True, slots=True)
class Alarm:
    """The current alarm of one (rule, subject)."""

    rule: str
    subject: Subject
    severity: Severity
    status: AlarmStatus
    dispatch: Dispatch
    raised_at: datetime
    last_seen: datetime
    count: int = 1
    detail: str = ""
    acked_at: datetime | None = None
    acked_by: str | None = None
    ack_comment: str | None = None
    cleared_at: datetime | None = None
    cleared_by: str | None = None  # None: cleared by its rule
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    flapping: bool = False
    escalated_at: datetime | None = None

    @property
    def key(self) -> str:
        return alarm_key(self.rule, self.subject.id)


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One change to one alarm, as the engine reports it."""

    kind: EventKind
    rule: str
    subject: str
    subject_type: SubjectType
    severity: Severity
    status: AlarmStatus | None  # None for SUPPRESSED (no alarm exists)
    at: datetime
    raised_at: datetime
    count: int
    building: str | None
    floor: int | None
    device: str | None
    detail: str
    dispatch: Dispatch
    by: str | None = None
    shelved: bool = False
    # ``at`` is the engine's clock (server time live, the replayed time in a replay); these say more:
    occurred_at: datetime | None = None  # device time of the observation behind it (None: same as ``at``)
    received_at: datetime | None = None  # server (wall) time when the gateway got what caused it (None: unknown)

    @property
    def key(self) -> str:
        return alarm_key(self.rule, self.subject)

    @property
    def notify(self) -> bool:
        """Whether this event should reach a person (not shelved, not suppressed)."""
        return not self.shelved and self.kind is not EventKind.SUPPRESSED

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "rule": self.rule, "severity": self.severity.value,
            "subject": self.subject, "subject_type": self.subject_type,
            "status": self.status.value if self.status else None,
            "at": self.at.isoformat(), "raised_at": self.raised_at.isoformat(), "count": self.count,
            "building": self.building, "floor": self.floor, "device": self.device, "detail": self.detail,
            "dispatch": self.dispatch.value, "by": self.by, "shelved": self.shelved,
            "occurred_at": self.occurred_at.isoformat() if self.occurred_at else None,
            "received_at": self.received_at.isoformat() if self.received_at else None,
        }


    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AlarmEvent:
        """The inverse of :meth:`to_json` (events read back from the outbox table)."""
        status = d.get("status")
        return cls(
            EventKind(d["kind"]), d["rule"], d["subject"], cast(SubjectType, d["subject_type"]),
            Severity(d["severity"]), AlarmStatus(status) if status else None, datetime.fromisoformat(d["at"]),
            datetime.fromisoformat(d["raised_at"]), int(d["count"]), d.get("building"), d.get("floor"),
            d.get("device"), d["detail"], Dispatch(d["dispatch"]), d.get("by"), bool(d.get("shelved", False)),
            _opt_iso(d.get("occurred_at")), _opt_iso(d.get("received_at")),
        )


class AlarmError(ValueError):
    """An operator action that the alarm's state does not allow (or an unknown alarm key)."""


def _utc_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def _event(kind: EventKind, a: Alarm, at: datetime, *, by: str | None = None, detail: str | None = None,
           shelved: bool = False, occurred: float | None = None) -> AlarmEvent:
    s = a.subject
    return AlarmEvent(kind, a.rule, s.id, s.type, a.severity, a.status, at, a.raised_at, a.count, s.building, s.floor,
                      s.device, a.detail if detail is None else detail, a.dispatch, by, shelved,
                      None if occurred is None else _utc_datetime(occurred))


class Shelving(NamedTuple):
    """An alarm muted by a person: ``until`` (engine time, epoch seconds) and ``by`` whom."""

    until: float
    by: str


class AlarmBook:
    """The current alarms and their lifecycle. Rules call :meth:`raise_` / :meth:`clear`; people call the rest.

    Times ``t`` are the engine's clock (epoch seconds); ``occurred`` is the device time of the observation
    behind a rule's raise or clear, carried on the event as ``occurred_at``."""

    def __init__(self, policies: Mapping[str, AlarmPolicy]) -> None:
        self.policies = policies
        self._alarms: dict[str, Alarm] = {}
        self._shelf: dict[str, Shelving] = {}  # alarm key -> until when, by whom
        self._cycles: dict[str, deque[float]] = {}  # key -> times of recent rule clears (flapping)
        self._held: dict[str, float] = {}  # flapping alarms held raised: key -> since when the rule is clear

    # -- reading ----------------------------------------------------------------------------------

    def get(self, key: str) -> Alarm | None:
        return self._alarms.get(key)

    def alarms(self) -> list[Alarm]:
        return list(self._alarms.values())

    def active(self, key: str) -> bool:
        a = self._alarms.get(key)
        return a is not None and a.status.active

    def shelved(self, key: str, t: float) -> bool:
        s = self._shelf.get(key)
        return s is not None and s.until > t

    # -- from rules -------------------------------------------------------------------------------

    def raise_(self, policy: AlarmPolicy, subject: Subject, t: float, detail: str, out: list[AlarmEvent],
               occurred: float | None = None) -> None:
        key = alarm_key(policy.rule, subject.id)
        a = self._alarms.get(key)
        shelved = self.shelved(key, t)
        at = _utc_datetime(t)
        if a is not None and a.status.active:
            self._held.pop(key, None)
            a = replace(a, count=a.count + 1, last_seen=max(a.last_seen, at), detail=detail)
            self._alarms[key] = a
            if not a.flapping:  # a flapping alarm counts silently: that is the point of holding it
                out.append(_event(EventKind.UPDATED, a, at, shelved=shelved, occurred=occurred))
            return
        shelf = self._shelf.get(key) if shelved else None
        a = Alarm(policy.rule, subject, policy.severity, AlarmStatus.ACTIVE_UNACK, policy.dispatch, at, at,
                  detail=detail, shelved_until=_utc_datetime(shelf.until) if shelf else None,
                  shelved_by=shelf.by if shelf else None)
        self._alarms[key] = a
        out.append(_event(EventKind.RAISED, a, at, shelved=shelved, occurred=occurred))

    def clear(self, policy: AlarmPolicy, subject_id: str, t: float, detail: str, out: list[AlarmEvent],
              occurred: float | None = None) -> None:
        key = alarm_key(policy.rule, subject_id)
        a = self._alarms.get(key)
        if a is None or not a.status.active:
            return
        if policy.flap_cycles is not None:
            cycles = self._cycles.setdefault(key, deque())
            cycles.append(t)
            while cycles and cycles[0] < t - policy.flap_within:
                cycles.popleft()
            if a.flapping or len(cycles) > policy.flap_cycles:
                self._held[key] = t
                if not a.flapping:
                    a = replace(a, flapping=True)
                    self._alarms[key] = a
                    out.append(_event(EventKind.FLAPPING, a, _utc_datetime(t), shelved=self.shelved(key, t),
                                      detail=f"{len(cycles)} raise/clear cycles within "
                                             f"{format_duration(policy.flap_within)}: held raised until it "
                                             f"stays clear for {format_duration(policy.flap_settle)}"))
                return
        self._close(a, t, None, detail, out, occurred)

    def suppressed(self, policy: AlarmPolicy, subject: Subject, t: float, detail: str, out: list[AlarmEvent],
                   occurred: float | None = None) -> None:
        """Report a raise that did not happen because the device is shielded or in maintenance."""
        at = _utc_datetime(t)
        out.append(AlarmEvent(EventKind.SUPPRESSED, policy.rule, subject.id, subject.type, policy.severity, None, at,
                              at, 0, subject.building, subject.floor, subject.device, detail, policy.dispatch,
                              occurred_at=None if occurred is None else _utc_datetime(occurred)))

    # -- from people ------------------------------------------------------------------------------

    def acknowledge(self, key: str, who: str, at: datetime, comment: str | None = None) -> AlarmEvent:
        a = self._current(key)
        if a.status is AlarmStatus.ACTIVE_UNACK:
            a = replace(a, status=AlarmStatus.ACTIVE_ACK, acked_at=at, acked_by=who, ack_comment=comment)
            self._alarms[key] = a
        elif a.status is AlarmStatus.CLEARED_UNACK:
            a = replace(a, status=AlarmStatus.CLEARED_ACK, acked_at=at, acked_by=who, ack_comment=comment)
            self._forget(key)
        else:
            raise AlarmError(f"alarm {key} is already acknowledged (by {a.acked_by})")
        return _event(EventKind.ACKNOWLEDGED, a, at, by=who, detail=comment or "",
                      shelved=self.shelved(key, at.timestamp()))

    def clear_by(self, key: str, who: str, at: datetime, comment: str | None = None) -> AlarmEvent:
        """An operator clears an active alarm by hand (it raises again only on a new onset)."""
        a = self._current(key)
        if not a.status.active:
            raise AlarmError(f"alarm {key} is already cleared")
        out: list[AlarmEvent] = []
        self._close(a, at.timestamp(), who, comment or "cleared by hand", out)
        return out[0]

    def shelve(self, key: str, until: datetime, who: str, at: datetime) -> AlarmEvent:
        a = self._current(key)
        if not a.status.active:
            raise AlarmError(f"alarm {key} is cleared: only an active alarm can be shelved")
        if until <= at:
            raise AlarmError(f"shelving until {until.isoformat()} is not after {at.isoformat()}")
        self._shelf[key] = Shelving(until.timestamp(), who)
        a = replace(a, shelved_until=until, shelved_by=who)
        self._alarms[key] = a
        return _event(EventKind.SHELVED, a, at, by=who, detail=f"shelved until {until.isoformat()}", shelved=True)

    def unshelve(self, key: str, who: str, at: datetime) -> AlarmEvent:
        if key not in self._shelf:
            raise AlarmError(f"alarm {key} is not shelved")
        return self._unshelve(key, at.timestamp(), who, "unshelved")

    # -- the clock --------------------------------------------------------------------------------

    def tick(self, t: float, out: list[AlarmEvent]) -> None:
        """Shelving expiry, flapping release, escalation, and clearing alarms of rules that are gone."""
        for key, (until, _who) in list(self._shelf.items()):
            if t >= until:
                ev = self._unshelve(key, t, "expiry", "shelving expired")
                if ev.status is not None:
                    out.append(ev)
        for key, since in list(self._held.items()):
            a = self._alarms[key]
            p = self.policies.get(a.rule)
            if p is None or t - since >= p.flap_settle:
                del self._held[key]
                at = since + p.flap_settle if p is not None else t
                self._close(replace(a, flapping=False), at, None,
                            f"stopped flapping: clear for {format_duration(at - since)}", out)
        for key, current in list(self._alarms.items()):
            p = self.policies.get(current.rule)
            if p is None:
                if current.status.active:
                    self._close(current, t, None, "rule removed or disabled", out)
                continue
            if (p.escalate_every is None or current.status is not AlarmStatus.ACTIVE_UNACK or self.shelved(key, t)
                    or current.severity.rank >= p.escalate_max.rank):
                continue
            a = current
            due = (a.escalated_at or a.raised_at).timestamp() + p.escalate_every
            while t >= due and a.severity.rank < p.escalate_max.rank:
                a = replace(a, severity=a.severity.step_up(p.escalate_max), escalated_at=_utc_datetime(due))
                self._alarms[key] = a
                out.append(_event(EventKind.ESCALATED, a, _utc_datetime(due),
                                  detail=f"unacknowledged for {format_duration(due - a.raised_at.timestamp())}"))
                due += p.escalate_every
        if len(self._cycles) > 4 * len(self._alarms) + 64:  # forget flapping history that has aged out
            for key, cycles in list(self._cycles.items()):
                p = self.policies.get(key.split("@", 1)[0])
                if not cycles or p is None or cycles[-1] < t - p.flap_within:
                    del self._cycles[key]

    # -- internals --------------------------------------------------------------------------------

    def _current(self, key: str) -> Alarm:
        """The current alarm under ``key``; AlarmError if there is none."""
        a = self._alarms.get(key)
        if a is None:
            raise AlarmError(f"no current alarm {key}")
        return a

    def _close(self, a: Alarm, t: float, who: str | None, detail: str, out: list[AlarmEvent],
               occurred: float | None = None) -> None:
        key = a.key
        at = _utc_datetime(t)
        status = AlarmStatus.CLEARED_ACK if a.status is AlarmStatus.ACTIVE_ACK else AlarmStatus.CLEARED_UNACK
        a = replace(a, status=status, cleared_at=at, cleared_by=who, flapping=False, detail=detail)
        self._held.pop(key, None)
        if status is AlarmStatus.CLEARED_ACK:
            self._forget(key)
        else:
            self._alarms[key] = a
        out.append(_event(EventKind.CLEARED, a, at, by=who, shelved=self.shelved(key, t), occurred=occurred))

    def _forget(self, key: str) -> None:
        self._alarms.pop(key, None)
        self._held.pop(key, None)

    def _unshelve(self, key: str, t: float, who: str, detail: str) -> AlarmEvent:
        del self._shelf[key]
        at = _utc_datetime(t)
        a = self._alarms.get(key)
        if a is None:  # the alarm was cleared and acknowledged while shelved: nothing to report on
            rule, _, subject = key.partition("@")
            p = self.policies.get(rule)
            return AlarmEvent(EventKind.UNSHELVED, rule, subject, "device", p.severity if p else Severity.WARNING,
                              None, at, at, 0, None, None, None, detail, p.dispatch if p else Dispatch.NONE, who)
        a = replace(a, shelved_until=None, shelved_by=None,
                    escalated_at=at if a.status is AlarmStatus.ACTIVE_UNACK else a.escalated_at)
        self._alarms[key] = a
        return _event(EventKind.UNSHELVED, a, at, by=who, detail=detail)

    # -- persistence ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "alarms": [_alarm_json(a) for a in self._alarms.values()],
            "shelf": {k: [u, w] for k, (u, w) in self._shelf.items()},
            "cycles": {k: list(c) for k, c in self._cycles.items() if c},
            "held": dict(self._held),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        for item in data.get("alarms", ()):
            a = _alarm_from_json(item)
            self._alarms[a.key] = a
        self._shelf = {k: Shelving(float(u), str(w)) for k, (u, w) in data.get("shelf", {}).items()}
        self._cycles = {k: deque(float(x) for x in v) for k, v in data.get("cycles", {}).items()}
        self._held = {k: float(v) for k, v in data.get("held", {}).items() if k in self._alarms}


def _epoch_seconds(d: datetime | None) -> float | None:
    return None if d is None else d.timestamp()


def _alarm_json(a: Alarm) -> dict[str, Any]:
    s = a.subject
    return {
        "rule": a.rule, "subject": [s.id, s.type, s.building, s.floor, s.device], "severity": a.severity.value,
        "status": a.status.value, "dispatch": a.dispatch.value, "raised_at": _epoch_seconds(a.raised_at),
        "last_seen": _epoch_seconds(a.last_seen), "count": a.count, "detail": a.detail,
        "acked_at": _epoch_seconds(a.acked_at),
        "acked_by": a.acked_by, "ack_comment": a.ack_comment, "cleared_at": _epoch_seconds(a.cleared_at),
        "cleared_by": a.cleared_by, "shelved_until": _epoch_seconds(a.shelved_until), "shelved_by": a.shelved_by,
        "flapping": a.flapping, "escalated_at": _epoch_seconds(a.escalated_at),
    }


def _optional_utc(v: Any) -> datetime | None:
    return None if v is None else _utc_datetime(float(v))


def _opt_iso(v: Any) -> datetime | None:
    return None if v is None else datetime.fromisoformat(v)


def _alarm_from_json(d: Mapping[str, Any]) -> Alarm:
    sid, stype, building, floor, device = d["subject"]
    return Alarm(
        rule=d["rule"], subject=Subject(sid, stype, building, floor, device), severity=Severity(d["severity"]),
        status=AlarmStatus(d["status"]), dispatch=Dispatch(d["dispatch"]), raised_at=_utc_datetime(d["raised_at"]),
        last_seen=_utc_datetime(d["last_seen"]), count=int(d["count"]), detail=d["detail"],
        acked_at=_optional_utc(d["acked_at"]),
        acked_by=d["acked_by"], ack_comment=d["ack_comment"], cleared_at=_optional_utc(d["cleared_at"]),
        cleared_by=d["cleared_by"], shelved_until=_optional_utc(d["shelved_until"]), shelved_by=d["shelved_by"],
        flapping=bool(d["flapping"]), escalated_at=_optional_utc(d["escalated_at"]),
    )


def format_duration(seconds: float) -> str:
    """``4500`` -> ``1h15m``; whole seconds."""
    s = round(seconds)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{n}{u}" for n, u in parts if n) or "0s"
