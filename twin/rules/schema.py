"""The rules-file schema: rule types as pydantic models, durations, :class:`RuleSet` and :class:`RulesError`.

Shapes only: what the catalogue and the community allow is checked by :mod:`twin.rules.loader`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from twin import catalogue
from twin.alarms import AlarmPolicy, Dispatch, Severity

# --- durations ------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS_PER_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``; anything else is a ValueError."""
    if isinstance(value, str) and _DURATION.match(value.strip()):
        return sum(float(n) * _SECONDS_PER_UNIT[u] for n, u in _DURATION_PART.findall(value))
    raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 30s, 5m, 2h, 1d")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Names = Annotated[tuple[str, ...], BeforeValidator(_as_list), Field(min_length=1)]
_LOCAL_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_UTC_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def _local_time_of_day(v: Any) -> str:
    if isinstance(v, str) and _LOCAL_TIME.match(v):
        return v
    raise ValueError(f"{v!r} is not a local time: write it quoted, as 'HH:MM' (e.g. '07:00')")


LocalTimeOfDay = Annotated[str, BeforeValidator(_local_time_of_day)]

# --- schema ---------------------------------------------------------------------------------------


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Escalate(StrictModel):
    """Severity rises one step every ``every`` while the alarm is active and unacknowledged, up to ``max``."""

    every: Duration = Field(gt=0)
    max: Severity = Severity.CRITICAL


class Flapping(StrictModel):
    """More than ``cycles`` raise/clear cycles within ``within``: hold raised until clear for ``settle``."""

    cycles: int = Field(default=3, ge=1)
    within: Duration = Field(default=600.0, gt=0)
    settle: Duration = Field(default=300.0, gt=0)


class RuleBase(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    name: str | None = Field(default=None, max_length=120)
    severity: Severity
    dispatch: Dispatch
    source: str | None = None
    enabled: bool = True
    escalate: Escalate | None = None
    flapping: Flapping | None = Flapping()
    buildings: list[str] | None = None
    suppressed_by: list[str] | None = None

    def policy(self) -> AlarmPolicy:
        e, f = self.escalate, self.flapping
        return AlarmPolicy(
            rule=self.id, severity=self.severity, dispatch=self.dispatch,
            escalate_every=e.every if e else None, escalate_max=e.max if e else Severity.CRITICAL,
            flap_cycles=f.cycles if f else None, flap_within=f.within if f else 600.0,
            flap_settle=f.settle if f else 300.0,
        )


class DeviceRuleBase(RuleBase):
    kind: Names
    devices: list[str] | None = None


class FieldRuleBase(DeviceRuleBase):
    field: str
    unit: str | None = None


class ThresholdRule(FieldRuleBase):
    """Raise at ``raise`` (>= for high, <= for low), clear past ``clear``; optionally only after ``for``."""

    type: Literal["threshold"]
    direction: Literal["high", "low"]
    raise_: float = Field(alias="raise")
    clear: float
    for_: Duration = Field(default=0.0, alias="for")
    # pipe pressure: judge the pressure at the riser's most unfavourable point (its top), i.e. the reading less the
    # static head between the sensor and the top (twin.hydraulics), so one limit fits every sensor height
    at: Literal["sensor", "most_unfavourable_point"] = "sensor"


class Period(StrictModel):
    """A daily window of the community's local time in which another limit applies (e.g. night-time noise):
    ``between: ["22:00", "06:00"]`` (start inclusive, end exclusive; it may run past midnight)."""

    between: tuple[LocalTimeOfDay, LocalTimeOfDay]
    name: str | None = Field(default=None, max_length=40)
    equals: bool | float | None = None
    above: float | None = None
    below: float | None = None


class DurationRule(FieldRuleBase):
    """Raise when the condition has held for ``for``; clear as soon as it does not. ``periods`` give other limits
    for daily local-time windows (the first window holding the reading's engine time applies; else the rule's)."""

    type: Literal["duration"]
    equals: bool | float | None = None
    above: float | None = None
    below: float | None = None
    for_: Duration = Field(alias="for")
    periods: list[Period] | None = None


class RateRule(FieldRuleBase):
    """Raise when the field moves faster than ``raise`` units per minute over ``window``."""

    type: Literal["rate"]
    direction: Literal["rising", "falling"]
    raise_: float = Field(alias="raise", gt=0)
    clear: float | None = Field(default=None, ge=0)
    window: Duration = Field(default=120.0, gt=0)
    min_span: Duration | None = None  # default: half the window

    @property
    def clear_at(self) -> float:
        return self.clear if self.clear is not None else self.raise_ / 2


class DoseRule(FieldRuleBase):
    """Time-weighted exposure (a home CO alarm's curve): the reading's excess over ``baseline``, integrated on the
    engine's clock in field units x minutes, drains while the reading is below ``baseline`` (never below 0). Raise
    when it reaches ``dose``; clear when it has drained to ``clear``. Between readings the newest one stands for
    at most ``hold`` (default: the kind's catalogue silence). docs/alarms.md derives the constants."""

    type: Literal["dose"]
    baseline: float
    dose: float = Field(gt=0)
    clear: float = Field(default=0.0, ge=0)
    hold: Duration | None = None

    def hold_for(self, kind: str) -> float:
        return self.hold if self.hold is not None else float(catalogue.KINDS[kind].silence_s)


class DropFromNormalRule(FieldRuleBase):
    """Raise when the reading falls ``drop`` units or ``drop_pct`` % (the larger, when both are given) below the
    device's learned normal and stays there for ``for``; clear when it is back within half that drop. The normal is
    the median of the means of 48 slices of the last ``learn``, learned on the engine's clock from readings outside
    the condition; the rule starts once a device has ``min_samples`` learned readings spanning ``warmup``."""

    type: Literal["drop_from_normal"]
    drop: float | None = Field(default=None, gt=0)
    drop_pct: float | None = Field(default=None, gt=0, lt=100)
    for_: Duration = Field(default=0.0, alias="for")
    learn: Duration = Field(default=86400.0, gt=0)
    warmup: Duration = Field(default=3600.0, ge=0)
    min_samples: int = Field(default=6, ge=1)


class PumpCyclingRule(DeviceRuleBase):
    """Raise when a pump starts ``starts`` times within ``within`` (engine clock). A start is its ``event`` going
    active (or a pulse), its true/false ``field`` turning true, or a numeric ``field`` (a pressure it holds) rising
    ``rise`` or more above its low since the last start. Give either ``event`` or ``field``."""

    type: Literal["pump_cycling"]
    event: str | None = None
    field: str | None = None
    rise: float | None = Field(default=None, gt=0)
    starts: int = Field(ge=2)
    within: Duration = Field(gt=0)


class NoDataRule(DeviceRuleBase):
    """Raise when a device is silent for ``after`` (default: the kind's catalogue ``silence_s``) or offline for
    ``offline_for``. Silence is measured on the engine's clock from when the device was last heard."""

    type: Literal["no_data"]
    after: Duration | None = None
    offline_for: Duration = 0.0

    def after_for(self, kind: str) -> float:
        return self.after if self.after is not None else float(catalogue.KINDS[kind].silence_s)


class CountRule(DeviceRuleBase):
    """Raise when ``count`` events of ``event`` happen within ``within``; clear when fewer remain in the window."""

    type: Literal["count"]
    event: str
    count: int = Field(ge=2)
    within: Duration = Field(gt=0)


class StateRule(DeviceRuleBase):
    """Raise while any of the event codes is active on the device; clear when all are cleared."""

    type: Literal["state"]
    event: Names


class Signal(StrictModel):
    """A correlation input: an event of a kind (``{kind, event}``) or another rule's condition (``{rule}``)."""

    kind: str | None = None
    event: str | None = None
    rule: str | None = None

    @property
    def name(self) -> str:
        return f"rule:{self.rule}" if self.rule else f"event:{self.event}"


class CorrelationRule(RuleBase):
    """Raise when signals from ``min_devices`` different devices of one place start within ``within``."""

    type: Literal["correlation"]
    scope: Literal["device", "floor", "building"]
    min_devices: int = Field(default=2, ge=1)
    within: Duration = Field(default=60.0, ge=0)
    signals: list[Signal] = Field(min_length=1)


class Activity(StrictModel):
    kind: str
    field: str | None = None
    event: str | None = None


CareLevel = Literal["red", "yellow", "green"]
CARE_LEVELS: tuple[CareLevel, ...] = ("red", "yellow", "green")


def _care_after(v: Any) -> Any:
    """One duration, or a mapping care level -> duration."""
    if not isinstance(v, dict):
        return parse_duration(v)
    unknown = [k for k in v if k not in CARE_LEVELS]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a care level ({', '.join(CARE_LEVELS)})")
    return {k: parse_duration(d) for k, d in v.items()}


CareAfter = Annotated[float | dict[CareLevel, float], BeforeValidator(_care_after)]


class CareInactivityRule(RuleBase):
    """Raise when a care unit's sensors show no activity for ``after`` (one duration, or one per care level
    ``{red: 12h, yellow: 24h, green: 72h}``), counted on the engine's clock from the last activity, or from when
    the unit was first heard (a unit never heard is never raised: its sensors' no-data rule speaks), or from when
    its resident came back. Only raised inside the local daily ``window`` (the community's time zone, or
    ``utc_offset`` if given): falling due at night, it is raised when the window opens. Suspended while the
    resident is away (an operator's ``care_away``). Activity: a listed field reading true or > 0, or a listed
    event. Subject: the care unit."""

    type: Literal["care_inactivity"]
    after: CareAfter
    window: tuple[LocalTimeOfDay, LocalTimeOfDay] | None = None
    utc_offset: str | None = None
    activity: list[Activity] = Field(min_length=1)

    @field_validator("utc_offset", mode="before")
    @classmethod
    def _offset(cls, v: Any) -> Any:
        if v is None or (isinstance(v, str) and _UTC_OFFSET.match(v) and int(v[1:3]) <= 14 and int(v[4:6]) < 60):
            return v
        raise ValueError(f"{v!r} is not a UTC offset: write it quoted, like '+08:00'")

    def after_for(self, level: str) -> float:
        """How long without activity raises for a unit of care ``level``."""
        return self.after if isinstance(self.after, float) else self.after[level]  # type: ignore[index]

    @property
    def offset_s(self) -> float:
        m = _UTC_OFFSET.match(self.utc_offset or "+00:00")
        assert m is not None
        return (1 if m.group(1) == "+" else -1) * (int(m.group(2)) * 3600 + int(m.group(3)) * 60)


class InterlockCommand(StrictModel):
    """A command an interlock sends to every device of ``kind`` at the alarm's place (catalogue commands)."""

    kind: str
    command: str


class InterlockRule(RuleBase):
    """When any rule in ``when`` raises at a device, send each of ``commands`` to the devices of its kind at the same
    place (the same home ``unit`` when the device has one, else the same floor of its building) on their
    ``command`` channel, once per episode. A target that has not answered with the command's acknowledgement event
    within ``ack_within`` (engine clock) raises this rule's alarm on the target; the acknowledgement clears it."""

    type: Literal["interlock"]
    when: Names
    commands: list[InterlockCommand] = Field(min_length=1)
    ack_within: Duration = Field(default=30.0, gt=0)


Rule = (ThresholdRule | DurationRule | RateRule | DoseRule | NoDataRule | CountRule | StateRule | CorrelationRule
        | CareInactivityRule | InterlockRule | DropFromNormalRule | PumpCyclingRule)
DeviceRule = (ThresholdRule | DurationRule | RateRule | DoseRule | NoDataRule | CountRule | StateRule
              | DropFromNormalRule | PumpCyclingRule)
RULE_MODELS: dict[str, type[RuleBase]] = {
    "threshold": ThresholdRule, "duration": DurationRule, "rate": RateRule, "dose": DoseRule, "no_data": NoDataRule,
    "count": CountRule, "state": StateRule, "correlation": CorrelationRule, "care_inactivity": CareInactivityRule,
    "interlock": InterlockRule, "drop_from_normal": DropFromNormalRule, "pump_cycling": PumpCyclingRule,
}
SIGNALLING_RULES = (ThresholdRule, DurationRule, RateRule, DoseRule, CountRule, StateRule, DropFromNormalRule,
                    PumpCyclingRule)


class RulesFile(StrictModel):
    version: Literal[1]
    description: str | None = None
    rules: list[Any] = []


# --- the rule set ---------------------------------------------------------------------------------


class RulesError(ValueError):
    """Rules that cannot be used; ``problems`` lists every one as ``file:line: rules.<id>.<key>: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class RuleSet:
    """Validated, enabled rules in file order. Immutable: a reload builds a new one."""

    rules: tuple[Rule, ...]
    disabled: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    _by_id: Mapping[str, Rule] = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", MappingProxyType({r.id: r for r in self.rules}))

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def rule(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def for_kind(self, kind: str) -> tuple[Rule, ...]:
        """Device rules that apply to a device kind."""
        return tuple(r for r in self.rules if isinstance(r, DeviceRuleBase) and kind in r.kind)
