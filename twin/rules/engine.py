"""The rules engine: evaluates a :class:`~twin.rules.schema.RuleSet` over one community, fact by fact, on the
timestamps the facts carry (it never reads a clock), and keeps the alarm lifecycle in an
:class:`~twin.alarms.AlarmBook`. Its state survives a restart through :meth:`Engine.snapshot` /
:meth:`Engine.restore`.

The evaluators (:mod:`twin.rules.evaluators`) hold per-subject rule state and report through the engine's
internal side: ``_device_condition`` (a device rule's condition turned on or off), ``_raise_or_clear`` (a
place or care unit), ``_engine_time`` (device time to engine time), ``_scope_subject`` and ``_devices``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

from twin import catalogue
from twin.alarms import Alarm, AlarmBook, AlarmError, AlarmEvent, Subject, alarm_key, floor_id
from twin.community import Community, address_in_detail
from twin.rules.components import ComponentView, PanelComponents
from twin.rules.evaluators.base import Evaluator, TrackedDevice, format_value, utc_datetime
from twin.rules.evaluators.baseline import DropFromNormalEvaluator
from twin.rules.evaluators.care import CareAway, CareInactivityEvaluator
from twin.rules.evaluators.correlation import CorrelationEvaluator
from twin.rules.evaluators.cycling import pump_cycling_evaluator
from twin.rules.evaluators.dose import DoseEvaluator
from twin.rules.evaluators.events import CountEvaluator, EventEvaluator, StateEvaluator
from twin.rules.evaluators.interlock import CommandOut, InterlockEvaluator
from twin.rules.evaluators.level import DurationEvaluator, LevelEvaluator, RateEvaluator
from twin.rules.evaluators.no_data import NoDataEvaluator
from twin.rules.evaluators.riser import threshold_evaluator
from twin.rules.schema import (
    CareInactivityRule,
    CorrelationRule,
    CountRule,
    DeviceRuleBase,
    DoseRule,
    DropFromNormalRule,
    DurationRule,
    InterlockRule,
    NoDataRule,
    PumpCyclingRule,
    RateRule,
    RuleBase,
    RuleSet,
    StateRule,
    ThresholdRule,
)

DEVICE_EVALUATORS: dict[type[RuleBase], Callable[[Any], Evaluator]] = {
    ThresholdRule: threshold_evaluator, DurationRule: DurationEvaluator, RateRule: RateEvaluator,
    StateRule: StateEvaluator, CountRule: CountEvaluator, NoDataRule: NoDataEvaluator, DoseRule: DoseEvaluator,
    DropFromNormalRule: DropFromNormalEvaluator, PumpCyclingRule: pump_cycling_evaluator,
}


_WHOLE_BUILDING = -10_000  # the floor part of a building subject's key in ``_place_subjects``


class SignalListener(NamedTuple):
    """A correlation rule listening for a signal (``event:<code>`` or ``rule:<id>``)."""

    correlation: CorrelationEvaluator
    signal_name: str


class DeviceRuleIndex(NamedTuple):
    """The rules that apply to a device: level rules by field, event rules by code, no-data rules."""

    by_field: Mapping[str, tuple[LevelEvaluator, ...]]
    by_event: Mapping[str, tuple[EventEvaluator, ...]]
    no_data: tuple[NoDataEvaluator, ...]


class Engine:
    """Evaluates a :class:`RuleSet` over one community. Feed it facts in any order; it never reads a clock."""

    SNAPSHOT_VERSION: ClassVar[int] = 1

    def __init__(self, ruleset: RuleSet, community: Community) -> None:
        self.ruleset = ruleset
        self.community = community
        self.epoch: float | None = None  # first instant the engine heard of: silence is measured from here
        self.late = 0  # readings older than the device's newest (only level thresholds act on them)
        self.now = -math.inf  # newest instant of the engine's clock seen in any fact or tick
        self._fact_time: float | None = None  # engine time of the fact being applied (None: in a tick)
        self.book = AlarmBook({r.id: r.policy() for r in ruleset})
        self._events: list[AlarmEvent] = []
        unit_of = {s: cu.unit for cu in community.care_units for s in cu.sensors}
        self._devices = {d.id: TrackedDevice(d.id, d.kind, d.building, d.floor, unit_of.get(d.id))
                         for d in community.devices}
        self._place_subjects: dict[tuple[str, int], Subject] = {}  # (building, floor) -> floor or building subject
        self._evaluators: dict[str, Evaluator] = {}
        self._level_evaluators: list[LevelEvaluator] = []
        self._count_evaluators: list[CountEvaluator] = []
        self._no_data_evaluators: list[NoDataEvaluator] = []
        self._care_evaluators: list[CareInactivityEvaluator] = []
        self.care_away: dict[str, CareAway] = {}  # care unit -> its resident is away (inactivity suspended)
        self._care_units = {cu.unit for cu in community.care_units}
        self._interlocks: list[InterlockEvaluator] = []
        self._interlock_listeners: dict[str, list[InterlockEvaluator]] = {}  # rule id -> interlocks it drives
        self.commands: list[CommandOut] = []  # device commands decided, for the caller to send (take_commands)
        self._next_interlock_check = math.inf
        self._rule_listeners: dict[str, list[SignalListener]] = {}  # rule id -> correlations listening
        self._event_listeners: dict[tuple[str, str], list[SignalListener]] = {}  # (kind, code) -> correlations
        for rule in ruleset:
            ev: Evaluator
            if isinstance(rule, CorrelationRule):
                ev = CorrelationEvaluator(rule)
                for sig in rule.signals:
                    if sig.rule is not None:
                        self._rule_listeners.setdefault(sig.rule, []).append(SignalListener(ev, sig.name))
                    elif sig.kind is not None and sig.event is not None:
                        self._event_listeners.setdefault((sig.kind, sig.event), []).append(SignalListener(ev, sig.name))
            elif isinstance(rule, CareInactivityRule):
                ev = CareInactivityEvaluator(rule, community)
                self._care_evaluators.append(ev)
            elif isinstance(rule, InterlockRule):
                ev = InterlockEvaluator(rule, community)
                self._interlocks.append(ev)
                for rid in rule.when:
                    self._interlock_listeners.setdefault(rid, []).append(ev)
            else:
                ev = DEVICE_EVALUATORS[type(rule)](rule)
                if isinstance(ev, DurationEvaluator):
                    ev.tz = community.tz  # day/night periods are the community's local time
            self._evaluators[rule.id] = ev
            if isinstance(ev, LevelEvaluator):
                self._level_evaluators.append(ev)
            elif isinstance(ev, CountEvaluator):
                self._count_evaluators.append(ev)
            elif isinstance(ev, NoDataEvaluator):
                self._no_data_evaluators.append(ev)
        self._muting_codes = frozenset(c for e in self._evaluators.values() for c in e.suppress)
        self._index_devices()
        self._components = PanelComponents(community, self._devices)  # fire panels' events placed at components
        self._next_no_data_check = -math.inf
        self._next_care_check = -math.inf

    def _index_devices(self) -> None:
        """Per device: the rules of its kind by field and by event code (shared between alike devices)."""
        cache: dict[tuple[int, ...], DeviceRuleIndex] = {}
        of_kind: dict[str, list[Evaluator]] = {}
        for e in self._evaluators.values():
            if isinstance(e.rule, DeviceRuleBase):
                for k in e.rule.kind:
                    of_kind.setdefault(k, []).append(e)
        for dev in self._devices.values():
            evs = [e for e in of_kind.get(dev.kind, ()) if e.applies(dev)]
            applicable = tuple(id(e) for e in evs)
            if applicable not in cache:
                by_field: dict[str, list[LevelEvaluator]] = {}
                by_event: dict[str, list[EventEvaluator]] = {}
                for e in evs:
                    if isinstance(e, LevelEvaluator):
                        by_field.setdefault(e.field, []).append(e)
                    elif isinstance(e, StateEvaluator):
                        for code in e.codes:
                            by_event.setdefault(code, []).append(e)
                    elif isinstance(e, CountEvaluator):
                        by_event.setdefault(e.event_code, []).append(e)
                cache[applicable] = DeviceRuleIndex({k: tuple(v) for k, v in by_field.items()},
                                                    {k: tuple(v) for k, v in by_event.items()},
                                                    tuple(e for e in evs if isinstance(e, NoDataEvaluator)))
            dev.by_field, dev.by_event, dev.no_data = cache[applicable]
            if dev.unit is not None:
                dev.care_watches = tuple(c.watch(dev.kind) for c in self._care_evaluators if dev.unit in c.units)

    # -- facts in ---------------------------------------------------------------------------------

    def _advance(self, when: datetime) -> float:
        """Epoch seconds of ``when`` (engine time); moves the engine's clock (and its epoch, on the first fact)
        forward."""
        t = when.timestamp()
        if self.epoch is None:
            self.epoch = t
        self.now = max(self.now, t)
        return t

    def _fact_at(self, ts: datetime, received: datetime | None) -> tuple[float, float]:
        """(device time, engine time) of a fact; the engine time is also when alarms it causes are raised."""
        rx = self._advance(received if received is not None else ts)
        self._fact_time = rx
        return ts.timestamp(), rx

    def _engine_time(self, dev: TrackedDevice, t: float) -> float:
        """Engine time of device time ``t``: a fact's own time while it is applied (an alarm is raised when the
        engine learns of it), else (timers, in a tick) the device instant shifted by the device's skew."""
        return self._fact_time if self._fact_time is not None else min(t - dev.skew, self.now)

    @staticmethod
    def _track_skew(dev: TrackedDevice, t: float, rx: float) -> None:
        """The device's clock offset, from its newest message (device time ``t`` received at ``rx``)."""
        if dev.newest is None or t >= dev.newest:
            dev.newest, dev.skew = t, t - rx

    def on_reading(self, device_id: str, ts: datetime, values: Mapping[str, bool | int | float], *,
                   received: datetime | None = None) -> list[AlarmEvent]:
        """Telemetry of one device taken at ``ts`` (device time), ``received`` on the engine's clock (default:
        ``ts``). A reading older than the device's newest is late: it counts as activity and as a sign of
        life, a level threshold (without ``for``) still raises on it, but it drives no duration or rate and
        clears nothing."""
        dev = self._devices.get(device_id)
        if dev is None:
            return []
        t, rx = self._fact_at(ts, received)
        out = self._events = []
        self._heard(dev, rx)
        late = dev.last_ts is not None and t < dev.last_ts
        if dev.care_watches:
            act = min(rx, t - dev.skew) if late else rx
            for care, fields, _codes in dev.care_watches:
                for name in fields:
                    v = values.get(name)
                    if v is not None and v is not False and v > 0:
                        care.activity(self, dev.unit or "", act, f"{dev.id} {name}={format_value(v)}")
        by_field = dev.by_field
        if late:
            self.late += 1
            for name, v in values.items():
                for e in by_field.get(name, ()):
                    e.on_late(self, dev, t, v)
            return out
        dev.last_ts = t
        self._track_skew(dev, t, rx)
        for name, v in values.items():
            evs = by_field.get(name)
            if evs is not None:
                for e in evs:
                    e.on_value(self, dev, t, v)
        return out

    def on_event(self, device_id: str, ts: datetime, code: str, state: str, *,
                 received: datetime | None = None, detail: str | None = None) -> list[AlarmEvent]:
        """A device event (``state`` active, cleared or pulse) at ``ts`` (device time), ``received`` on the
        engine's clock (default: ``ts``). An event older than the newest of the same code is late: counted by
        count rules, ignored by state rules. A fire panel's event whose ``detail`` names a component address is
        placed at that component (:mod:`twin.rules.components`); lateness is then per component."""
        dev = self._devices.get(device_id)
        if dev is None or isinstance(dev, ComponentView):
            return []
        t, rx = self._fact_at(ts, received)
        out = self._events = []
        self._heard(dev, rx)
        address = address_in_detail(detail) if self._components.is_panel(dev.id) else None
        stamp = code if address is None else f"{code}@{address}"
        last = dev.event_ts.get(stamp)
        late = last is not None and t < last
        unmuted = False
        if not late:
            dev.event_ts[stamp] = t
            self._track_skew(dev, t, rx)
            spec = catalogue.KINDS[dev.kind].event(code)
            if spec is not None and spec.latching:
                if state == "active":
                    dev.active_codes.setdefault(code, rx)
                elif state == "cleared" and dev.active_codes.pop(code, None) is not None:
                    unmuted = code in self._muting_codes
        places = [dev]
        if address is not None:
            places = [self._components.view(dev, address)]
        elif state == "cleared" and self._components.is_panel(dev.id):
            # a panel reset clears what its components reported before it (not what they reported since)
            places += [v for v in self._components.all_views(dev.id) if dev.event_ts.get(f"{code}@{v.address}", t) <= t]
        for place in places:
            for e in dev.by_event.get(code, ()):
                e.on_event(self, place, t, code, state, late)
            if not late and state in ("active", "cleared"):
                for corr, name in self._event_listeners.get((dev.kind, code), ()):
                    corr.signal(self, place, name, rx, state == "active", t)
        if self._interlocks and catalogue.KINDS[dev.kind].commands:
            for il in self._interlocks:
                il.acknowledged(self, dev, code, rx)
        for care, _fields, codes in dev.care_watches:
            if code in codes:
                care.activity(self, dev.unit or "", min(rx, t - dev.skew) if late else rx, f"{dev.id} {code}")
        if unmuted:
            self._unmuted(dev, rx)
        return out

    def on_status(self, device_id: str, ts: datetime, online: bool, *,
                  received: datetime | None = None) -> list[AlarmEvent]:
        """Online/offline (an offline status is often the broker publishing the device's last will), applied at
        ``received`` on the engine's clock (default: ``ts``)."""
        dev = self._devices.get(device_id)
        if dev is None:
            return []
        _t, rx = self._fact_at(ts, received)
        out = self._events = []
        if online:
            self._heard(dev, rx)
        elif dev.online is not False:
            dev.online, dev.offline_since = False, rx
            for nd in dev.no_data:
                self._next_no_data_check = min(self._next_no_data_check, nd.check(self, dev, rx))
        return out

    def tick(self, now: datetime) -> list[AlarmEvent]:
        """Let time pass (``now`` on the engine's clock): durations, no-data, care inactivity, count windows,
        escalation, shelving expiry."""
        self._fact_time = None
        t = self._advance(now)
        out = self._events = []
        for lv in self._level_evaluators:
            if lv.pending:
                lv.tick(self, t)
        for c in self._count_evaluators:
            if c.on:
                c.tick(self, t)
        if t >= self._next_no_data_check:
            nxt = math.inf
            for dev in self._devices.values():
                for nd in dev.no_data:
                    nxt = min(nxt, nd.check(self, dev, t))
            self._next_no_data_check = nxt
        if t >= self._next_interlock_check:
            self._next_interlock_check = min((il.check(self, t) for il in self._interlocks), default=math.inf)
        for unit, away in list(self.care_away.items()):
            if away.until is not None and t >= away.until:
                self._care_back(unit, away.until)
        if t >= self._next_care_check:
            self._next_care_check = min((c.check(self, t) for c in self._care_evaluators), default=math.inf)
        self.book.tick(t, out)
        return out

    # -- people -----------------------------------------------------------------------------------

    def acknowledge(self, alarm_key: str, who: str, at: datetime, comment: str | None = None) -> AlarmEvent:
        """active_unack -> active_ack, cleared_unack -> cleared_ack; anything else raises AlarmError."""
        return self.book.acknowledge(alarm_key, who, at, comment)

    def clear(self, alarm_key: str, who: str, at: datetime, comment: str | None = None) -> AlarmEvent:
        """Clear an active alarm by hand."""
        return self.book.clear_by(alarm_key, who, at, comment)

    def shelve(self, alarm_key: str, until: datetime, who: str, at: datetime | None = None) -> AlarmEvent:
        """Mute an active alarm (and its re-raises) until ``until``; its events then carry ``shelved=True``.
        ``at`` defaults to the newest instant the engine has seen."""
        if at is None and not math.isfinite(self.now):
            raise AlarmError("the engine has seen no time yet: give at=")
        return self.book.shelve(alarm_key, until, who, at or utc_datetime(self.now))

    def unshelve(self, alarm_key: str, who: str, at: datetime) -> AlarmEvent:
        return self.book.unshelve(alarm_key, who, at)

    def take_commands(self) -> list[CommandOut]:
        """The device commands decided since the last call (interlocks), oldest first; the caller sends them."""
        out, self.commands = self.commands, []
        return out

    def set_care_away(self, unit: str, away: bool, who: str, at: datetime, reason: str | None = None,
                      until: datetime | None = None) -> list[AlarmEvent]:
        """An operator says the resident of care ``unit`` is away (in hospital, with family; optionally ``until``)
        or back. Away suspends care inactivity and clears its alarm; back watches the unit afresh from ``at`` (the
        days away are not inactivity). Raises AlarmError for an unknown unit, a resident already in that state,
        or an ``until`` not after ``at``."""
        if unit not in self._care_units:
            raise AlarmError(f"unknown care unit {unit!r}")
        t = self._advance(at)
        self._fact_time = None
        out = self._events = []
        if away:
            if unit in self.care_away:
                raise AlarmError(f"{unit}: already away since {utc_datetime(self.care_away[unit].since).isoformat()}")
            end = until.timestamp() if until is not None else None
            if end is not None and end <= t:
                raise AlarmError("until must be after now")
            status = self.care_away[unit] = CareAway(t, who, reason, end)
            for c in self._care_evaluators:
                c.away(self, unit, status, t)
        elif unit not in self.care_away:
            raise AlarmError(f"{unit}: the resident is not away")
        else:
            self._care_back(unit, t)
        return out

    def _care_back(self, unit: str, t: float) -> None:
        self.care_away.pop(unit, None)
        for c in self._care_evaluators:
            c.away(self, unit, None, t)

    def alarms(self) -> list[Alarm]:
        """Current alarms (active, or cleared and not yet acknowledged)."""
        return self.book.alarms()

    def alarm(self, rule: str, subject: str) -> Alarm | None:
        return self.book.get(alarm_key(rule, subject))

    # -- internals --------------------------------------------------------------------------------

    def _heard(self, dev: TrackedDevice, t: float) -> None:
        if dev.care_watches:
            for care, _fields, _codes in dev.care_watches:
                care.observed(self, dev.unit or "", t)
        if dev.last_seen is None or t > dev.last_seen:
            # silent or offline past its rule's limit with no tick since (messages arriving in a burst: a backlog
            # after a restart, a replay flat out): raised when it fell due, before it is heard again
            for nd in dev.no_data:
                nd.check(self, dev, t)
            dev.last_seen = t
            if dev.online is not True and (dev.offline_since is None or t >= dev.offline_since):
                dev.online, dev.offline_since = True, None
            for nd in dev.no_data:
                nd.heard(self, dev, t)

    def _scope_subject(self, scope: str, dev: TrackedDevice | None) -> Subject | None:
        """The subject a correlation of ``scope`` (device, floor, building) raises on for a signal of ``dev``."""
        if dev is None:
            return None
        if scope == "device":
            return dev.subject
        if dev.building is None:
            return None
        if scope == "building":
            key = (dev.building, _WHOLE_BUILDING)
            s = self._place_subjects.get(key)
            if s is None:
                s = self._place_subjects[key] = Subject(dev.building, "building", dev.building)
            return s
        if dev.floor is None:
            return None
        key = (dev.building, dev.floor)
        s = self._place_subjects.get(key)
        if s is None:
            s = self._place_subjects[key] = Subject(floor_id(dev.building, dev.floor), "floor", dev.building,
                                                    dev.floor)
        return s

    def _device_condition(self, ev: Evaluator, dev: TrackedDevice, t: float, on: bool, detail: str,
                          occurred: float | None = None) -> None:
        """A device rule's condition turned on (or repeated) or off at engine time ``t`` (``occurred``: the device
        time of the observation): raise/clear its alarm, tell correlations."""
        if isinstance(dev, ComponentView):
            detail = f"{detail} {dev.note}"
        if on and ev.suppress and dev.active_codes:
            muted = ev.muted_by(dev)
            if muted:
                self.book.suppressed(ev.policy, dev.subject, t, f"{detail} (suppressed: {', '.join(muted)} active)",
                                     self._events, occurred)
            else:
                self.book.raise_(ev.policy, dev.subject, t, detail, self._events, occurred)
        elif on:
            self.book.raise_(ev.policy, dev.subject, t, detail, self._events, occurred)
        else:
            self.book.clear(ev.policy, dev.id, t, detail, self._events, occurred)
        for corr, name in self._rule_listeners.get(ev.id, ()):
            corr.signal(self, dev, name, t, on, occurred)
        for il in self._interlock_listeners.get(ev.id, ()):
            il.triggered(self, dev, ev.id, t, on)

    def _raise_or_clear(self, ev: Evaluator, subject: Subject, t: float, on: bool, detail: str,
                        occurred: float | None = None) -> None:
        """A place's or care unit's condition turned on (or repeated) or off at engine time ``t``."""
        if on:
            self.book.raise_(ev.policy, subject, t, detail, self._events, occurred)
        else:
            self.book.clear(ev.policy, subject.id, t, detail, self._events, occurred)

    def _unmuted(self, dev: TrackedDevice, t: float) -> None:
        """A shielded/maintenance state ended: conditions still true on the device raise now."""
        for ev in self._evaluators.values():
            if (isinstance(ev.rule, DeviceRuleBase) and dev.kind in ev.rule.kind and ev.is_on(dev.id)
                    and not self.book.active(alarm_key(ev.id, dev.id)) and not ev.muted_by(dev)):
                self.book.raise_(ev.policy, dev.subject, t, "still active after shielding/maintenance ended",
                                 self._events)

    # -- persistence ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as plain JSON types."""
        devices = {}
        for d in self._devices.values():
            heard_of = d.last_seen is not None or d.last_ts is not None or d.online is not None
            if heard_of or d.active_codes or d.event_ts:
                devices[d.id] = {"last_ts": d.last_ts, "last_seen": d.last_seen, "online": d.online,
                                 "offline_since": d.offline_since, "codes": dict(d.active_codes),
                                 "event_ts": dict(d.event_ts), "newest": d.newest, "skew": d.skew}
        return {
            "version": self.SNAPSHOT_VERSION, "epoch": self.epoch, "now": self.now if math.isfinite(self.now) else None,
            "late": self.late, "devices": devices,
            "rules": {rid: {"type": ev.rule.type, "state": ev.snapshot()} for rid, ev in self._evaluators.items()},
            "book": self.book.snapshot(),
            "panel_addresses": self._components.snapshot(),
            "care_away": {u: list(a) for u, a in self.care_away.items()},
        }

    @classmethod
    def restore(cls, ruleset: RuleSet, community: Community, snapshot: Mapping[str, Any]) -> Engine:
        """An engine for ``ruleset`` carrying on from ``snapshot`` (rules that are gone or changed type start
        afresh; their alarms are cleared at the next tick)."""
        eng = cls(ruleset, community)
        if snapshot.get("version") != cls.SNAPSHOT_VERSION:
            raise ValueError(f"rules engine snapshot version {snapshot.get('version')!r} is not supported")
        eng.epoch = snapshot.get("epoch")
        eng.now = float(snapshot.get("now") or -math.inf)
        eng.late = int(snapshot.get("late", 0))
        for dev_id, d in snapshot.get("devices", {}).items():
            dev = eng._devices.get(dev_id)
            if dev is None:
                continue
            dev.last_ts, dev.last_seen, dev.online = d["last_ts"], d["last_seen"], d["online"]
            dev.offline_since = d["offline_since"]
            dev.active_codes, dev.event_ts = dict(d["codes"]), dict(d["event_ts"])
            dev.newest, dev.skew = d.get("newest", dev.last_ts), float(d.get("skew", 0.0))
        eng._components.restore(snapshot.get("panel_addresses", {}))
        for rid, item in snapshot.get("rules", {}).items():
            ev = eng._evaluators.get(rid)
            if ev is not None and ev.rule.type == item["type"] and item["state"] is not None:
                ev.restore(item["state"], eng)
        eng.book.restore(snapshot.get("book", {}))
        eng.care_away = {u: CareAway(float(a[0]), str(a[1]), a[2], None if a[3] is None else float(a[3]))
                         for u, a in snapshot.get("care_away", {}).items() if u in eng._care_units}
        return eng
