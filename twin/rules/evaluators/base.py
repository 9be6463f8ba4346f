"""What every evaluator shares: the engine's view of a device (:class:`TrackedDevice`), the compiled rule
(:class:`Evaluator`: its alarm policy, the devices it applies to, the event codes that mute it) and the
formatting of alarm details."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from twin.alarms import Subject
from twin.rules.schema import CorrelationRule, DeviceRuleBase, Rule, StateRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine
    from twin.rules.evaluators.care import CareWatch
    from twin.rules.evaluators.events import EventEvaluator
    from twin.rules.evaluators.level import LevelEvaluator
    from twin.rules.evaluators.no_data import NoDataEvaluator

# Event codes that mute a device's own rules by default while active: a shielded (disabled) detector, a lift
# under maintenance. Not the panel: its ``shielded`` means one of its components is, and its fire alarm must go on.
SUPPRESSING_CODES: Mapping[str, frozenset[str]] = MappingProxyType({
    "shielded": frozenset({"smoke_detector", "heat_detector", "manual_call_point"}),
    "maintenance_mode": frozenset({"elevator"}),
})


def utc_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def seconds_of_day(hhmm: str) -> int:
    """Seconds after midnight of ``"HH:MM"``."""
    return int(hhmm[:2]) * 3600 + int(hhmm[3:]) * 60


class DailyWindow(NamedTuple):
    """A daily window of local time, ``start`` inclusive to ``end`` exclusive (seconds after midnight); it runs
    past midnight when ``end`` is not after ``start`` (e.g. night 22:00-06:00)."""

    start: int
    end: int

    @classmethod
    def of(cls, between: tuple[str, str]) -> DailyWindow:
        return cls(seconds_of_day(between[0]), seconds_of_day(between[1]))

    def holds(self, local_s: float) -> bool:
        a, b = self.start, self.end
        return a <= local_s < b if a < b else (local_s >= a or local_s < b)

    def text(self) -> str:
        return "-".join(f"{x // 3600:02d}:{x % 3600 // 60:02d}" for x in (self.start, self.end))


def local_seconds(t: float, tz: tzinfo) -> float:
    """Seconds after local midnight in ``tz`` at epoch seconds ``t``."""
    d = datetime.fromtimestamp(t, tz=tz)
    return d.hour * 3600 + d.minute * 60 + d.second + d.microsecond / 1e6


class TrackedDevice:
    """What the engine knows about one device."""

    __slots__ = ("active_codes", "building", "by_event", "by_field", "care_watches", "event_ts", "floor", "id", "kind",
                 "last_seen", "last_ts", "newest", "no_data", "offline_since", "online", "skew", "subject", "unit")

    def __init__(self, device_id: str, kind: str, building: str | None, floor: int | None, unit: str | None) -> None:
        self.id, self.kind, self.building, self.floor, self.unit = device_id, kind, building, floor, unit
        self.subject = Subject(device_id, "device", building, floor, device_id)
        self.last_ts: float | None = None  # newest reading (device time): older ones are late
        self.newest: float | None = None  # newest device time of any reading or event
        self.skew = 0.0  # device clock minus engine clock, from the newest message
        self.last_seen: float | None = None  # engine time the device was last heard
        self.online: bool | None = None
        self.offline_since: float | None = None  # engine time
        self.active_codes: dict[str, float] = {}  # active latching event codes -> since (engine time)
        self.event_ts: dict[str, float] = {}  # newest event per code
        # the rules that apply to this device, shared between alike devices (see Engine._index_devices)
        self.by_field: Mapping[str, tuple[LevelEvaluator, ...]] = {}
        self.by_event: Mapping[str, tuple[EventEvaluator, ...]] = {}
        self.no_data: tuple[NoDataEvaluator, ...] = ()
        self.care_watches: tuple[CareWatch, ...] = ()  # care-inactivity rules watching this device's care unit


class Evaluator:
    """Compiled rule: its alarm policy and what mutes it. Subclasses hold per-subject state."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.id = rule.id
        self.policy = rule.policy()
        kinds = rule.kind if isinstance(rule, DeviceRuleBase) else ()
        if isinstance(rule, CorrelationRule):
            kinds = tuple(s.kind for s in rule.signals if s.kind)
        if rule.suppressed_by is not None:
            codes = frozenset(rule.suppressed_by)
        else:
            own = set(rule.event) if isinstance(rule, StateRule) else set()
            codes = frozenset(c for c, muted_kinds in SUPPRESSING_CODES.items() for k in kinds
                              if k in muted_kinds and c not in own)
        self.suppress = codes  # event codes that mute the rule while active on the device

    def applies(self, dev: TrackedDevice) -> bool:
        """Whether the rule's building and device filters let ``dev`` in."""
        r = self.rule
        if r.buildings is not None and dev.building not in r.buildings:
            return False
        return not (isinstance(r, DeviceRuleBase) and r.devices is not None and dev.id not in r.devices)

    def muted_by(self, dev: TrackedDevice) -> list[str]:
        """The active event codes of ``dev`` that mute this rule."""
        return [c for c in dev.active_codes if c in self.suppress] if self.suppress and dev.active_codes else []

    def snapshot(self) -> Any:
        return None

    def restore(self, data: Any, engine: Engine) -> None:
        return None

    def is_on(self, device_id: str) -> bool:
        return False


def format_value(v: bool | float) -> str:
    """A reading's value in an alarm detail: ``true``, ``0.31``."""
    return str(v).lower() if isinstance(v, bool) else f"{v:g}"


def iso_utc(t: float) -> str:
    """``2025-06-02T00:00:00.000Z``."""
    return utc_datetime(t).isoformat(timespec="milliseconds").replace("+00:00", "Z")
