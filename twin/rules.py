"""Alarm rules as data and the engine that evaluates them. Pure: parses text given to it, no I/O, and the
engine never reads a clock (only :func:`bench_rules` times itself).

Rules are YAML (``version: 1`` and a list ``rules``); the shipped defaults (``rules_defaults.yaml``
next to this module, read by the caller) come first, site files after; a later rule with the same
``id`` overrides only the keys it gives (``enabled: false`` switches a rule off; a different
``type`` replaces the rule). :func:`load_rules` validates everything (shapes with pydantic, then
kinds, fields, units, event codes, thresholds, durations and references against the catalogue and the
community) and raises :class:`RulesError` naming ``file:line: rules.<id>.<key>: message`` for every
problem, so a bad file never replaces a rule set in force. :class:`RuleSet` is immutable.

Rule types (all: ``id``, ``type``, ``severity``, ``dispatch``; optional ``name``, ``source``,
``enabled``, ``escalate: {every, max}``, ``flapping: {cycles, within, settle}`` or ``null``)::

    threshold        kind, field, [unit], direction high|low, raise, clear, [for]   hysteresis (+ pending)
    duration         kind, field, [unit], equals|above|below, for                   condition true for T
    rate             kind, field, [unit], direction rising|falling, raise, [clear], [window], [min_span]
                     (units per minute)
    no_data          kind, [after] (default 2 catalogue heartbeats), [offline_for]
    count            kind, event, count, within                                     N events in T
    state            kind, event (code or list)                                     active raises, cleared clears
    correlation      scope device|floor|building, min_devices, within, signals [{kind, event} | {rule}]
    care_inactivity  after, [window ["07:00", "21:00"]], [utc_offset "+08:00"], activity [{kind, field|event}]

Device rules also take ``buildings`` / ``devices`` filters and ``suppressed_by`` (event codes that
mute the rule while active on the device; default: ``shielded`` for detectors and call points,
``maintenance_mode`` for elevators). Durations are text: ``30s``, ``5m``, ``2h``, ``1d`` (or ``1h30m``).

:class:`Engine` evaluates a rule set against facts with the timestamps they carry (simulated time
works): ``on_reading``, ``on_event``, ``on_status``, ``tick(now)``; each returns the
:class:`~twin.alarms.AlarmEvent` list it caused. Rule state is keyed by subject and survives a
restart through :meth:`Engine.snapshot` / :meth:`Engine.restore` (also the way to hot-reload rules).

Two clocks (docs/alarms.md). A fact carries its *device time* ``ts`` and may carry ``received``: the
engine's clock when it arrived (the gateway passes its event clock, never ahead of server time; without
it the device time is used, as in an offline replay). Silence (no-data), correlation windows, care
inactivity and the alarm lifecycle (raised_at, escalation, flapping, shelving) run on the engine's clock,
so no device clock can make another device look silent or age an alarm. A device's own durations, rates
and count windows run on its own clock (its readings are consistent with each other), and a timer
started by one of them is checked against the engine's clock plus that device's offset (``skew``, from
its newest message). Alarms raised by a fact are raised at its ``received`` time; ``occurred_at`` on the
event keeps the device time. A fact older than the device's newest is *late*: level thresholds (without
``for``) still raise on it, saying so; durations, rates and state rules ignore it; count rules count it.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

import orjson
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from twin import catalogue, contract
from twin.alarms import (
    Alarm,
    AlarmBook,
    AlarmError,
    AlarmEvent,
    AlarmPolicy,
    Dispatch,
    Severity,
    Subject,
    alarm_key,
    floor_id,
    format_duration,
)
from twin.community import Community, _line_of

__all__ = [
    "DEFAULTS_FILE",
    "AlarmError",
    "Engine",
    "RuleSet",
    "RulesError",
    "bench_rules",
    "load_rules",
    "parse_duration",
    "replay",
]

DEFAULTS_FILE = Path(__file__).resolve().parent / "rules_defaults.yaml"
# Event codes that mute a device's own rules by default while active: a shielded (disabled) detector, a lift
# under maintenance. Not the panel: its ``shielded`` means one of its components is, and its fire alarm must go on.
SUPPRESSING_CODES: Mapping[str, frozenset[str]] = MappingProxyType({
    "shielded": frozenset({"smoke_detector", "heat_detector", "manual_call_point"}),
    "maintenance_mode": frozenset({"elevator"}),
})

# --- durations ------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhd])+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``; anything else is a ValueError."""
    if isinstance(value, str) and _DURATION.match(value.strip()):
        return sum(float(n) * _UNIT_S[u] for n, u in _DURATION_PART.findall(value))
    raise ValueError(f"{value!r} is not a duration: write a number and a unit, e.g. 30s, 5m, 2h, 1d")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Names = Annotated[tuple[str, ...], BeforeValidator(_as_list), Field(min_length=1)]
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def _clock(v: Any) -> str:
    if isinstance(v, str) and _HHMM.match(v):
        return v
    raise ValueError(f"{v!r} is not a local time: write it quoted, as 'HH:MM' (e.g. '07:00')")


Clock = Annotated[str, BeforeValidator(_clock)]

# --- schema ---------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Escalate(_Strict):
    """Severity rises one step every ``every`` while the alarm is active and unacknowledged, up to ``max``."""

    every: Duration = Field(gt=0)
    max: Severity = Severity.CRITICAL


class Flapping(_Strict):
    """More than ``cycles`` raise/clear cycles within ``within``: hold raised until clear for ``settle``."""

    cycles: int = Field(default=3, ge=1)
    within: Duration = Field(default=600.0, gt=0)
    settle: Duration = Field(default=300.0, gt=0)


class _RuleBase(_Strict):
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


class _DeviceRule(_RuleBase):
    kind: Names
    devices: list[str] | None = None


class _FieldRule(_DeviceRule):
    field: str
    unit: str | None = None


class ThresholdRule(_FieldRule):
    """Raise at ``raise`` (>= for high, <= for low), clear past ``clear``; optionally only after ``for``."""

    type: Literal["threshold"]
    direction: Literal["high", "low"]
    raise_: float = Field(alias="raise")
    clear: float
    for_: Duration = Field(default=0.0, alias="for")


class DurationRule(_FieldRule):
    """Raise when the condition has held for ``for``; clear as soon as it does not."""

    type: Literal["duration"]
    equals: bool | float | None = None
    above: float | None = None
    below: float | None = None
    for_: Duration = Field(alias="for")


class RateRule(_FieldRule):
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


class NoDataRule(_DeviceRule):
    """Raise when a device is silent for ``after`` (default: the kind's catalogue ``silence_s``) or offline for
    ``offline_for``. Silence is measured on the engine's clock from when the device was last heard."""

    type: Literal["no_data"]
    after: Duration | None = None
    offline_for: Duration = 0.0

    def after_for(self, kind: str) -> float:
        return self.after if self.after is not None else float(catalogue.KINDS[kind].silence_s)


class CountRule(_DeviceRule):
    """Raise when ``count`` events of ``event`` happen within ``within``; clear when fewer remain in the window."""

    type: Literal["count"]
    event: str
    count: int = Field(ge=2)
    within: Duration = Field(gt=0)


class StateRule(_DeviceRule):
    """Raise while any of the event codes is active on the device; clear when all are cleared."""

    type: Literal["state"]
    event: Names


class Signal(_Strict):
    """A correlation input: an event of a kind (``{kind, event}``) or another rule's condition (``{rule}``)."""

    kind: str | None = None
    event: str | None = None
    rule: str | None = None

    @property
    def name(self) -> str:
        return f"rule:{self.rule}" if self.rule else f"event:{self.event}"


class CorrelationRule(_RuleBase):
    """Raise when signals from ``min_devices`` different devices of one place start within ``within``."""

    type: Literal["correlation"]
    scope: Literal["device", "floor", "building"]
    min_devices: int = Field(default=2, ge=1)
    within: Duration = Field(default=60.0, ge=0)
    signals: list[Signal] = Field(min_length=1)


class Activity(_Strict):
    kind: str
    field: str | None = None
    event: str | None = None


class CareInactivityRule(_RuleBase):
    """Raise when a care unit's sensors show no activity for ``after`` (wall time since the last activity, or since
    the engine started watching). Only raised inside the local daily ``window``: falling due at night, it is raised
    when the window opens. Activity: a listed field reading true or > 0, or a listed event. Subject: the care unit."""

    type: Literal["care_inactivity"]
    after: Duration = Field(gt=0)
    window: tuple[Clock, Clock] | None = None
    utc_offset: str = "+08:00"
    activity: list[Activity] = Field(min_length=1)

    @field_validator("utc_offset", mode="before")
    @classmethod
    def _offset(cls, v: Any) -> Any:
        if isinstance(v, str) and _OFFSET.match(v) and int(v[1:3]) <= 14 and int(v[4:6]) < 60:
            return v
        raise ValueError(f"{v!r} is not a UTC offset: write it quoted, like '+08:00'")

    @property
    def offset_s(self) -> float:
        m = _OFFSET.match(self.utc_offset)
        assert m is not None
        return (1 if m.group(1) == "+" else -1) * (int(m.group(2)) * 3600 + int(m.group(3)) * 60)


Rule = (ThresholdRule | DurationRule | RateRule | NoDataRule | CountRule | StateRule | CorrelationRule
        | CareInactivityRule)
DeviceRule = ThresholdRule | DurationRule | RateRule | NoDataRule | CountRule | StateRule
_MODELS: dict[str, type[_RuleBase]] = {
    "threshold": ThresholdRule, "duration": DurationRule, "rate": RateRule, "no_data": NoDataRule,
    "count": CountRule, "state": StateRule, "correlation": CorrelationRule, "care_inactivity": CareInactivityRule,
}
_SIGNAL_RULES = (ThresholdRule, DurationRule, RateRule, CountRule, StateRule)


class _RulesFile(_Strict):
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
        return tuple(r for r in self.rules if isinstance(r, _DeviceRule) and kind in r.kind)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Loc = tuple[str | int, ...]


def load_rules(texts: Sequence[tuple[str, str]], community: Community | None = None) -> RuleSet:
    """Merge rule files (earlier first, later override by id) and validate them against the catalogue and
    ``community`` (filters; skipped when None). Raises :class:`RulesError` listing every problem."""
    problems: list[str] = []
    roots: dict[int, yaml.Node | None] = {}

    def root(fi: int) -> yaml.Node | None:
        if fi not in roots:
            try:
                roots[fi] = yaml.compose(texts[fi][1], Loader=_Loader)
            except yaml.YAMLError:
                roots[fi] = None
        return roots[fi]

    def at(fi: int, loc: Loc) -> str:
        line = _line_of(root(fi), loc)
        return f"{texts[fi][0]}:{line}" if line else texts[fi][0]

    merged: dict[str, dict[str, Any]] = {}
    origin: dict[str, dict[str, tuple[int, int]]] = {}  # rule id -> key -> (file, item) that set it
    home: dict[str, tuple[int, int]] = {}  # rule id -> last (file, item) that mentioned it
    for fi, (source, text) in enumerate(texts):
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{source}:{mark.line + 1}" if mark is not None else source
            problems.append(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{source}:1: a rules file is a mapping with version: 1 and rules: [...]")
            continue
        try:
            envelope = _RulesFile.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                problems.append(f"{at(fi, loc)}: {'.'.join(map(str, loc))}: {_message(err)}")
            continue
        seen: set[str] = set()
        for ii, item in enumerate(envelope.rules):
            rid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item, dict):
                problems.append(f"{at(fi, ('rules', ii))}: rules.{ii}: a rule is a mapping with id, type, ...")
                continue
            if not isinstance(rid, str):
                problems.append(f"{at(fi, ('rules', ii))}: rules.{ii}.id: every rule needs an id")
                continue
            if rid in seen:
                problems.append(f"{at(fi, ('rules', ii, 'id'))}: rules.{rid}.id: duplicate id in this file "
                                f"(override a rule from another file instead)")
                continue
            seen.add(rid)
            prev = merged.get(rid)
            if prev is None or ("type" in item and item["type"] != prev.get("type")):
                merged[rid] = dict(item)
                origin[rid] = dict.fromkeys(item, (fi, ii))
            else:
                prev.update(item)
                origin[rid].update(dict.fromkeys(item, (fi, ii)))
            home[rid] = (fi, ii)

    def rule_problem(rid: str, loc: Loc, message: str) -> str:
        key = loc[0] if loc and isinstance(loc[0], str) and loc[0] in origin[rid] else None
        fi, ii = origin[rid][key] if key is not None else home[rid]
        line = _line_of(root(fi), ("rules", ii, *loc) if key is not None else ("rules", ii))
        where = f"{texts[fi][0]}:{line}" if line else texts[fi][0]
        return f"{where}: rules.{rid}{''.join(f'.{p}' for p in loc)}: {message}"

    rules: dict[str, Rule] = {}
    for rid, data in merged.items():
        tag = data.get("type")
        model = _MODELS.get(tag) if isinstance(tag, str) else None
        if model is None:
            problems.append(rule_problem(rid, ("type",) if "type" in data else (),
                                         f"type must be one of {', '.join(_MODELS)}"
                                         + ("" if "type" in data else " (missing)")))
            continue
        try:
            rules[rid] = model.model_validate(data)  # type: ignore[assignment]
        except ValidationError as exc:
            found = [rule_problem(rid, tuple(p for p in e["loc"] if p not in _TYPE_TAGS), _message(e))
                     for e in exc.errors()]
            problems += list(dict.fromkeys(found))
    for rid, rule in rules.items():
        problems += [rule_problem(rid, loc, msg) for loc, msg in _rule_problems(rule, rules, community)]
    if problems:
        raise RulesError(sorted(problems, key=lambda p: _problem_order(p, texts)))
    enabled = tuple(r for r in rules.values() if r.enabled)
    return RuleSet(enabled, tuple(r.id for r in rules.values() if not r.enabled), tuple(s for s, _ in texts))


def _problem_order(problem: str, texts: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """Sort key: file order, then line."""
    for i, (source, _text) in enumerate(texts):
        if problem.startswith(source + ":"):
            line = problem[len(source) + 1:].split(":", 1)[0]
            return i, int(line) if line.isdigit() else 0
    return len(texts), 0


_TYPE_TAGS = {"bool", "float", "int", "str", "function-before[_as_list(), tuple[str, ...]]"}


def _message(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required"
    return str(err["msg"]).removeprefix("Value error, ")


def _kinds(rule: _DeviceRule, out: list[tuple[Loc, str]]) -> list[catalogue.DeviceKind]:
    found = []
    for i, k in enumerate(rule.kind):
        spec = catalogue.kind(k)
        if spec is None:
            out.append((("kind", i) if len(rule.kind) > 1 else ("kind",),
                        f"unknown device kind {k!r}; known: {', '.join(sorted(catalogue.KINDS))}"))
        else:
            found.append(spec)
    return found


def _event_problem(spec: catalogue.DeviceKind, code: str, *, latching: bool | None = None) -> str | None:
    ev = spec.event(code)
    if ev is None:
        return f"{spec.kind} has no event {code!r} (events: {', '.join(e.code for e in spec.events) or 'none'})"
    if latching is True and not ev.latching:
        return f"{code} is a one-off event of {spec.kind} (no cleared state): use type count"
    return None


def _field_problems(rule: _FieldRule, specs: list[catalogue.DeviceKind],
                    out: list[tuple[Loc, str]]) -> list[catalogue.TelemetryField]:
    fields = []
    for spec in specs:
        f = spec.field(rule.field)
        if f is None:
            known = ", ".join(x.name for x in spec.fields) or "none"
            out.append((("field",), f"{spec.kind} has no field {rule.field!r} (fields: {known})"))
            continue
        fields.append(f)
        allowed = (f.unit, f"{f.unit}/min") if isinstance(rule, RateRule) else (f.unit,)
        if rule.unit is not None and rule.unit not in allowed:
            out.append((("unit",), f"unit {rule.unit!r} does not match the catalogue unit of {spec.kind}."
                                   f"{f.name}: {f.unit or '(none)'!r}"))
        numeric = f.type is not catalogue.FieldType.BOOL
        if isinstance(rule, ThresholdRule | RateRule) and not numeric:
            out.append((("field",), f"{spec.kind}.{f.name} is true/false: use type duration with equals"))
    return fields


def _in_range(f: catalogue.TelemetryField, name: str, v: float, out: list[tuple[Loc, str]]) -> None:
    lo, hi = f.valid
    if not lo <= v <= hi:
        out.append(((name,), f"{v:g} is outside the valid range of {f.name} ({lo:g}..{hi:g} {f.unit}".rstrip()
                    + "): it can never be reached"))


def _rule_problems(rule: Rule, rules: Mapping[str, Rule], community: Community | None) -> list[tuple[Loc, str]]:
    """What pydantic cannot see: the catalogue, thresholds that cannot work, references, the community."""
    out: list[tuple[Loc, str]] = []
    if rule.escalate is not None and rule.escalate.max.rank <= rule.severity.rank:
        out.append((("escalate", "max"), f"{rule.escalate.max.value} is not above severity "
                                         f"{rule.severity.value}: escalation would never change anything"))
    if community is not None:
        for i, b in enumerate(rule.buildings or ()):
            if community.building(b) is None:
                out.append((("buildings", i), f"unknown building {b!r} in community {community.id}"))
    specs: list[catalogue.DeviceKind] = []
    if isinstance(rule, _DeviceRule):
        specs = _kinds(rule, out)
        if community is not None:
            for i, d in enumerate(rule.devices or ()):
                dev = community.device(d)
                if dev is None:
                    out.append((("devices", i), f"unknown device {d!r} in community {community.id}"))
                elif dev.kind not in rule.kind:
                    out.append((("devices", i), f"{d} is a {dev.kind}, not a {' or '.join(rule.kind)}"))
    if isinstance(rule, _FieldRule):
        for f in _field_problems(rule, specs, out):
            if isinstance(rule, ThresholdRule) and f.type is not catalogue.FieldType.BOOL:
                high = rule.direction == "high"
                if (rule.clear > rule.raise_) if high else (rule.clear < rule.raise_):
                    out.append((("clear",), f"clear {rule.clear:g} is {'above' if high else 'below'} raise "
                                            f"{rule.raise_:g}: a {rule.direction} alarm clears "
                                            f"{'below' if high else 'above'} where it raises"))
                _in_range(f, "raise", rule.raise_, out)
                _in_range(f, "clear", rule.clear, out)
            elif isinstance(rule, DurationRule):
                given = [k for k in ("equals", "above", "below") if getattr(rule, k) is not None]
                if len(given) != 1:
                    out.append(((), "give exactly one of equals, above, below"))
                elif (f.type is catalogue.FieldType.BOOL) and given[0] != "equals":
                    out.append(((given[0],), f"{f.name} is true/false: use equals: true or false"))
                elif given[0] == "equals" and (f.type is catalogue.FieldType.BOOL) != isinstance(rule.equals, bool):
                    want = "true or false" if f.type is catalogue.FieldType.BOOL else "a number"
                    out.append((("equals",), f"{f.name} is {'true/false' if want != 'a number' else 'a number'}: "
                                             f"equals must be {want}"))
                else:
                    v = getattr(rule, given[0])
                    if not isinstance(v, bool):
                        _in_range(f, given[0], float(v), out)
            elif isinstance(rule, RateRule):
                if rule.clear is not None and rule.clear > rule.raise_:
                    out.append((("clear",), f"clear {rule.clear:g}/min is above raise {rule.raise_:g}/min"))
                if rule.min_span is not None and not 0 < rule.min_span <= rule.window:
                    out.append((("min_span",), "must be > 0 and not longer than window"))
    if isinstance(rule, CountRule):
        for spec in specs:
            msg = _event_problem(spec, rule.event)
            if msg:
                out.append((("event",), msg))
    if isinstance(rule, StateRule):
        for spec in specs:
            for i, code in enumerate(rule.event):
                msg = _event_problem(spec, code, latching=True)
                if msg:
                    out.append((("event", i) if len(rule.event) > 1 else ("event",), msg))
    if isinstance(rule, _DeviceRule):
        for i, code in enumerate(rule.suppressed_by or ()):
            for spec in specs:
                msg = _event_problem(spec, code, latching=True)
                if msg:
                    out.append((("suppressed_by", i), msg))
    if isinstance(rule, CorrelationRule):
        kinds: set[str] = set()
        for j, sig in enumerate(rule.signals):
            by_rule, by_event = sig.rule is not None, sig.kind is not None or sig.event is not None
            if by_rule == by_event or (by_event and (sig.kind is None or sig.event is None)):
                out.append((("signals", j), "a signal is either {kind, event} or {rule}"))
                continue
            if sig.rule is not None:
                ref = rules.get(sig.rule)
                if ref is None or not isinstance(ref, _SIGNAL_RULES):
                    out.append((("signals", j, "rule"), f"{sig.rule!r} is not a device rule of this rule set"
                                if ref is None else f"{sig.rule!r} is a {ref.type} rule: only device rules signal"))
                elif not ref.enabled:
                    out.append((("signals", j, "rule"), f"rule {sig.rule!r} is disabled"))
                else:
                    kinds.update(ref.kind)
                continue
            assert sig.kind is not None and sig.event is not None
            sig_spec = catalogue.kind(sig.kind)
            if sig_spec is None:
                out.append((("signals", j, "kind"), f"unknown device kind {sig.kind!r}"))
                continue
            kinds.add(sig_spec.kind)
            msg = _event_problem(sig_spec, sig.event, latching=True)
            if msg:
                out.append((("signals", j, "event"), msg))
        for i, code in enumerate(rule.suppressed_by or ()):
            if not any((s := catalogue.kind(k)) is not None and s.event(code) for k in kinds):
                out.append((("suppressed_by", i), f"no signal kind has an event {code!r}"))
    if isinstance(rule, CareInactivityRule):
        for j, act in enumerate(rule.activity):
            act_spec = catalogue.kind(act.kind)
            if act_spec is None:
                out.append((("activity", j, "kind"), f"unknown device kind {act.kind!r}"))
            elif (act.field is None) == (act.event is None):
                out.append((("activity", j), "give exactly one of field, event"))
            elif act.field is not None and act_spec.field(act.field) is None:
                out.append((("activity", j, "field"), f"{act_spec.kind} has no field {act.field!r} (fields: "
                                                      f"{', '.join(f.name for f in act_spec.fields) or 'none'})"))
            elif act.event is not None and (msg := _event_problem(act_spec, act.event)):
                out.append((("activity", j, "event"), msg))
    return out


# --- the engine -----------------------------------------------------------------------------------


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


class _Dev:
    """What the engine knows about one device."""

    __slots__ = ("building", "by_event", "by_field", "care", "codes", "event_ts", "floor", "id", "kind", "last_seen",
                 "last_ts", "newest", "nodata", "offline_since", "online", "skew", "subject", "unit")

    def __init__(self, device_id: str, kind: str, building: str | None, floor: int | None, unit: str | None) -> None:
        self.id, self.kind, self.building, self.floor, self.unit = device_id, kind, building, floor, unit
        self.subject = Subject(device_id, "device", building, floor, device_id)
        self.last_ts: float | None = None  # newest reading (device time): older ones are late
        self.newest: float | None = None  # newest device time of any reading or event
        self.skew = 0.0  # device clock minus engine clock, from the newest message
        self.last_seen: float | None = None  # engine time the device was last heard
        self.online: bool | None = None
        self.offline_since: float | None = None  # engine time
        self.codes: dict[str, float] = {}  # active latching event codes -> since (engine time)
        self.event_ts: dict[str, float] = {}  # newest event per code
        self.by_field: Mapping[str, tuple[_LevelEval, ...]] = {}
        self.by_event: Mapping[str, tuple[_EventEval, ...]] = {}
        self.nodata: tuple[_NoDataEval, ...] = ()
        self.care: tuple[tuple[_CareEval, tuple[str, ...], frozenset[str]], ...] = ()


class _Eval:
    """Compiled rule: its alarm policy and what mutes it. Subclasses hold per-subject state."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.id = rule.id
        self.policy = rule.policy()
        kinds = rule.kind if isinstance(rule, _DeviceRule) else ()
        if isinstance(rule, CorrelationRule):
            kinds = tuple(s.kind for s in rule.signals if s.kind)
        if rule.suppressed_by is not None:
            codes = frozenset(rule.suppressed_by)
        else:
            own = set(rule.event) if isinstance(rule, StateRule) else set()
            codes = frozenset(c for c, muted_kinds in SUPPRESSING_CODES.items() for k in kinds
                              if k in muted_kinds and c not in own)
        self.suppress = codes

    def applies(self, dev: _Dev) -> bool:
        r = self.rule
        if r.buildings is not None and dev.building not in r.buildings:
            return False
        return not (isinstance(r, _DeviceRule) and r.devices is not None and dev.id not in r.devices)

    def muted_by(self, dev: _Dev) -> list[str]:
        return [c for c in dev.codes if c in self.suppress] if self.suppress and dev.codes else []

    def snapshot(self) -> Any:
        return None

    def restore(self, data: Any, engine: Engine) -> None:
        return None

    def is_on(self, device_id: str) -> bool:
        return False


class _LS:
    __slots__ = ("last", "on", "pts", "since")

    def __init__(self) -> None:
        self.on = False
        self.since: float | None = None
        self.last: bool | float = 0.0
        self.pts: deque[tuple[float, float]] | None = None


class _LevelEval(_Eval):
    """Threshold, duration and rate: a condition per device, optionally pending for ``for`` seconds."""

    field: str
    unit: str
    for_s: float

    def __init__(self, rule: ThresholdRule | DurationRule | RateRule) -> None:
        super().__init__(rule)
        self.field = rule.field
        f = catalogue.KINDS[rule.kind[0]].field(rule.field)
        self.unit = f" {f.unit}" if f is not None and f.unit else ""
        self.state: dict[str, _LS] = {}
        self.pending: set[str] = set()

    def on_value(self, eng: Engine, dev: _Dev, t: float, v: bool | float) -> None:
        """A reading in order, at device time ``t``."""
        raise NotImplementedError

    def on_late(self, eng: Engine, dev: _Dev, t: float, v: bool | float) -> None:
        """A reading older than the device's newest: durations and rates ignore it (it says nothing about now)."""

    def _exceeded(self, eng: Engine, dev: _Dev, st: _LS, t: float, v: bool | float) -> None:
        since = st.since
        if self.for_s <= 0 or (since is not None and t - since >= self.for_s):
            st.on, st.since = True, None
            self.pending.discard(dev.id)
            eng._set(self, dev, eng._at(dev, t), True, self.raise_detail(v, t - (since if since is not None else t)), t)
        elif since is None:
            st.since, st.last = t, v
            self.pending.add(dev.id)
        else:
            st.last = v

    def _released(self, eng: Engine, dev: _Dev, st: _LS, t: float, v: bool | float) -> None:
        st.on = False
        eng._set(self, dev, eng._at(dev, t), False, self.clear_detail(v), t)

    def tick(self, eng: Engine, now: float) -> None:
        """Pending conditions whose ``for`` has passed on the device's clock (the engine's plus its skew)."""
        for dev_id in list(self.pending):
            st = self.state[dev_id]
            dev = eng._devs[dev_id]
            if st.since is not None and now + dev.skew - st.since >= self.for_s:
                at = st.since + self.for_s
                st.on, st.since = True, None
                self.pending.discard(dev_id)
                eng._set(self, dev, eng._at(dev, at), True, self.raise_detail(st.last, self.for_s), at)

    def raise_detail(self, v: bool | float, held: float) -> str:
        return f"{self.field}={_fmt(v)}{self.unit}" + (f" for {format_duration(held)}" if held > 0 else "")

    def clear_detail(self, v: bool | float) -> str:
        return f"{self.field}={_fmt(v)}{self.unit}"

    def is_on(self, device_id: str) -> bool:
        st = self.state.get(device_id)
        return st is not None and st.on

    def snapshot(self) -> Any:
        return {d: [s.on, s.since, s.last, list(s.pts) if s.pts is not None else None]
                for d, s in self.state.items() if s.on or s.since is not None or s.pts}

    def restore(self, data: Any, engine: Engine) -> None:
        for d, (on, since, last, pts) in data.items():
            if d not in engine._devs:
                continue
            st = self.state[d] = _LS()
            st.on, st.since, st.last = bool(on), since, last
            if pts is not None and isinstance(self, _RateEval):
                st.pts = deque(((float(a), float(b)) for a, b in pts), maxlen=_RATE_POINTS)
            if since is not None:
                self.pending.add(d)


def _fmt(v: bool | float) -> str:
    return str(v).lower() if isinstance(v, bool) else f"{v:g}"


def _iso(t: float) -> str:
    return _dt(t).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _ThresholdEval(_LevelEval):
    def __init__(self, rule: ThresholdRule) -> None:
        super().__init__(rule)
        self.high = rule.direction == "high"
        self.raise_at, self.clear_at, self.for_s = rule.raise_, rule.clear, rule.for_

    def on_value(self, eng: Engine, dev: _Dev, t: float, v: bool | float) -> None:
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = _LS()
        if st.on:
            if (v < self.clear_at) if self.high else (v > self.clear_at):
                self._released(eng, dev, st, t, v)
        elif (v >= self.raise_at) if self.high else (v <= self.raise_at):
            self._exceeded(eng, dev, st, t, v)
        elif st.since is not None:
            st.since = None
            self.pending.discard(dev.id)

    def on_late(self, eng: Engine, dev: _Dev, t: float, v: bool | float) -> None:
        """A level crossed in a late reading (store-and-forward after an outage) raises: it happened. It never
        clears (the newest reading stands for now) and does not start a ``for`` (one old point proves no hold)."""
        if self.for_s > 0 or isinstance(v, bool) or not ((v >= self.raise_at) if self.high else (v <= self.raise_at)):
            return
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = _LS()
        st.on, st.since = True, None
        self.pending.discard(dev.id)
        behind = f", {format_duration(dev.last_ts - t)} before its newest" if dev.last_ts is not None else ""
        eng._set(self, dev, eng._at(dev, t), True,
                 f"{self.raise_detail(v, 0)}; late reading taken at {_iso(t)} device time{behind}", t)

    def raise_detail(self, v: bool | float, held: float) -> str:
        op = ">=" if self.high else "<="
        return f"{super().raise_detail(v, held)} ({op} {self.raise_at:g})"

    def clear_detail(self, v: bool | float) -> str:
        return f"{super().clear_detail(v)} ({'<' if self.high else '>'} {self.clear_at:g})"


class _DurationEval(_LevelEval):
    def __init__(self, rule: DurationRule) -> None:
        super().__init__(rule)
        self.for_s = rule.for_
        if rule.equals is not None:
            target = rule.equals
            self.test: Callable[[bool | float], bool] = lambda v: v == target
            self.text = f"= {_fmt(target)}"
        elif rule.above is not None:
            lim = rule.above
            self.test = lambda v: v > lim
            self.text = f"> {lim:g}"
        else:
            low = rule.below if rule.below is not None else -math.inf
            self.test = lambda v: v < low
            self.text = f"< {low:g}"

    def on_value(self, eng: Engine, dev: _Dev, t: float, v: bool | float) -> None:
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = _LS()
        hit = self.test(v)
        if st.on:
            if not hit:
                self._released(eng, dev, st, t, v)
        elif hit:
            self._exceeded(eng, dev, st, t, v)
        elif st.since is not None:
            st.since = None
            self.pending.discard(dev.id)

    def raise_detail(self, v: bool | float, held: float) -> str:
        return f"{super().raise_detail(v, held)} ({self.text})"


_RATE_POINTS = 1024


class _RateEval(_LevelEval):
    def __init__(self, rule: RateRule) -> None:
        super().__init__(rule)
        self.for_s = 0.0
        self.sign = 1.0 if rule.direction == "rising" else -1.0
        self.raise_at, self.clear_at = rule.raise_, rule.clear_at
        self.raise_cmp = rule.raise_ * (1 - 1e-9)  # a rate computed from decimals lands a hair off the limit
        self.window = rule.window
        self.min_span = rule.min_span if rule.min_span is not None else rule.window / 2
        self.rate = 0.0

    def on_value(self, eng: Engine, dev: _Dev, t: float, v: bool | float) -> None:
        st = self.state.get(dev.id)
        if st is None:
            st = self.state[dev.id] = _LS()
        pts = st.pts
        if pts is None:
            pts = st.pts = deque(maxlen=_RATE_POINTS)
        pts.append((t, float(v)))
        oldest = t - self.window
        while pts[0][0] < oldest:
            pts.popleft()
        t0, v0 = pts[0]
        span = t - t0
        if span < self.min_span:
            return
        rate = self.sign * (v - v0) * 60.0 / span
        if st.on:
            if rate < self.clear_at:
                self.rate = rate
                self._released(eng, dev, st, t, v)
        elif rate >= self.raise_cmp:
            self.rate = rate
            self._exceeded(eng, dev, st, t, v)

    def raise_detail(self, v: bool | float, held: float) -> str:
        word = "rising" if self.sign > 0 else "falling"
        return (f"{self.field} {word} {abs(self.rate):.3g}{self.unit}/min over {format_duration(self.window)} "
                f"(>= {self.raise_at:g}), now {_fmt(v)}{self.unit}")

    def clear_detail(self, v: bool | float) -> str:
        word = "rising" if self.sign > 0 else "falling"
        return f"{self.field} {word} at {self.rate:.3g}{self.unit}/min (< {self.clear_at:g}), now {_fmt(v)}{self.unit}"


class _EventEval(_Eval):
    def on_event(self, eng: Engine, dev: _Dev, t: float, code: str, state: str, late: bool) -> None:
        raise NotImplementedError


class _StateEval(_EventEval):
    def __init__(self, rule: StateRule) -> None:
        super().__init__(rule)
        self.codes = rule.event
        self.state: dict[str, set[str]] = {}

    def on_event(self, eng: Engine, dev: _Dev, t: float, code: str, state: str, late: bool) -> None:
        if late:
            return
        active = self.state.setdefault(dev.id, set())
        if state == "active":
            active.add(code)
            eng._set(self, dev, eng._at(dev, t), True, f"{code} active", t)
        elif state == "cleared" and code in active:
            active.discard(code)
            if not active:
                eng._set(self, dev, eng._at(dev, t), False, f"{code} cleared", t)

    def is_on(self, device_id: str) -> bool:
        return bool(self.state.get(device_id))

    def snapshot(self) -> Any:
        return {d: sorted(c) for d, c in self.state.items() if c}

    def restore(self, data: Any, engine: Engine) -> None:
        self.state = {d: set(c) for d, c in data.items() if d in engine._devs}


class _CountEval(_EventEval):
    def __init__(self, rule: CountRule) -> None:
        super().__init__(rule)
        self.n, self.within, self.rule_event = rule.count, rule.within, rule.event
        self.times: dict[str, list[float]] = {}
        self.on: set[str] = set()

    def on_event(self, eng: Engine, dev: _Dev, t: float, code: str, state: str, late: bool) -> None:
        if state == "cleared":
            return
        times = self.times.setdefault(dev.id, [])
        bisect.insort(times, t)  # a late event still counts, in its place
        if len(times) > self.n:
            del times[0]
        if len(times) == self.n and times[-1] - times[0] <= self.within:
            self.on.add(dev.id)
            eng._set(self, dev, eng._at(dev, t), True,
                     f"{self.n} x {code} within {format_duration(times[-1] - times[0])} "
                     f"(limit {self.n} in {format_duration(self.within)})", t)

    def tick(self, eng: Engine, now: float) -> None:
        """The window (on the device's clock) moved past the oldest of the N events."""
        for dev_id in list(self.on):
            times = self.times[dev_id]
            dev = eng._devs[dev_id]
            if now + dev.skew - times[0] > self.within:
                self.on.discard(dev_id)
                at = times[0] + self.within
                eng._set(self, dev, eng._at(dev, at), False,
                         f"fewer than {self.n} in the last {format_duration(self.within)}", at)

    def is_on(self, device_id: str) -> bool:
        return device_id in self.on

    def snapshot(self) -> Any:
        return {"times": {d: t for d, t in self.times.items() if t}, "on": sorted(self.on)}

    def restore(self, data: Any, engine: Engine) -> None:
        self.times = {d: [float(x) for x in t][-self.n:] for d, t in data["times"].items() if d in engine._devs}
        self.on = {d for d in data["on"] if d in self.times}


class _NoDataEval(_Eval):
    def __init__(self, rule: NoDataRule) -> None:
        super().__init__(rule)
        self.rule_nd = rule
        self.after = {k: rule.after_for(k) for k in rule.kind}
        self.on: set[str] = set()

    def due(self, eng: Engine, dev: _Dev) -> tuple[float, str]:
        """When this device's alarm falls due (if nothing is heard), and why."""
        base = dev.last_seen if dev.last_seen is not None else eng.epoch
        after = self.after[dev.kind]
        due, why = (base or 0.0) + after, f"no message for {format_duration(after)}"
        if dev.online is False and dev.offline_since is not None:
            off = dev.offline_since + self.rule_nd.offline_for
            if off < due:
                due, why = off, "reported offline" + (
                    f" for {format_duration(self.rule_nd.offline_for)}" if self.rule_nd.offline_for else "")
        return due, why

    def check(self, eng: Engine, dev: _Dev, now: float) -> float:
        """Raise if due; return the next time worth checking again (inf while raised)."""
        if dev.id in self.on:
            return math.inf
        due, why = self.due(eng, dev)
        if now >= due:
            self.on.add(dev.id)
            eng._set(self, dev, due, True, why)
            return math.inf
        return due

    def heard(self, eng: Engine, dev: _Dev, t: float) -> None:
        if dev.id in self.on:
            self.on.discard(dev.id)
            eng._set(self, dev, t, False, "heard from again")

    def is_on(self, device_id: str) -> bool:
        return device_id in self.on

    def snapshot(self) -> Any:
        return sorted(self.on)

    def restore(self, data: Any, engine: Engine) -> None:
        self.on = {d for d in data if d in engine._devs}


class _CorrS:
    __slots__ = ("active", "on", "subject")

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.active: dict[tuple[str, str], float] = {}  # (device, signal) -> onset
        self.on = False


class _CorrelationEval(_Eval):
    def __init__(self, rule: CorrelationRule) -> None:
        super().__init__(rule)
        self.rule_c = rule
        self.state: dict[str, _CorrS] = {}

    def signal(self, eng: Engine, dev: _Dev, name: str, t: float, on: bool, occurred: float | None = None) -> None:
        """A signal of ``dev`` went on or off at engine time ``t`` (onsets of different devices compare on it)."""
        if not self.applies(dev):
            return
        subject = eng._scope(self.rule_c.scope, dev)
        if subject is None:
            return
        st = self.state.get(subject.id)
        if st is None:
            st = self.state[subject.id] = _CorrS(subject)
        key = (dev.id, name)
        if not on:
            if st.active.pop(key, None) is not None and st.on and not st.active:
                st.on = False
                eng._raise_or_clear(self, subject, t, False, f"{dev.id}: {name.split(':', 1)[1]} cleared", occurred)
            return
        if key in st.active:
            return
        muted = self.muted_by(dev)
        if muted:
            eng.book.suppressed(self.policy, subject, t, f"{dev.id}: {name.split(':', 1)[1]} "
                                                         f"(suppressed: {', '.join(muted)} active)", eng._out, occurred)
            return
        new_device = all(d != dev.id for d, _ in st.active)
        st.active[key] = t
        devices = self._devices_within(st)
        if devices is None:
            return
        if not st.on:
            st.on = True
            eng._raise_or_clear(self, subject, t, True, self._describe(devices), occurred)
        elif new_device:
            eng._raise_or_clear(self, subject, t, True, self._describe(devices), occurred)

    def _devices_within(self, st: _CorrS) -> list[tuple[float, str]] | None:
        """``min_devices`` different devices whose onsets lie within ``within`` of each other, or None."""
        first: dict[str, float] = {}
        for (d, _sig), onset in st.active.items():
            first[d] = min(onset, first.get(d, onset))
        onsets = sorted((o, d) for d, o in first.items())
        n, w = self.rule_c.min_devices, self.rule_c.within
        for i in range(len(onsets) - n + 1):
            if onsets[i + n - 1][0] - onsets[i][0] <= w:
                return onsets[i:i + n]
        return None

    def _describe(self, devices: list[tuple[float, str]]) -> str:
        if len(devices) == 1:
            return f"{devices[0][1]}: one signal, verify on site"
        span = devices[-1][0] - devices[0][0]
        return f"{len(devices)} devices within {format_duration(span)}: {', '.join(d for _, d in devices)}"

    def snapshot(self) -> Any:
        return {k: [v.on, [[d, sig, o] for (d, sig), o in v.active.items()],
                    [v.subject.type, v.subject.building, v.subject.floor, v.subject.device]]
                for k, v in self.state.items() if v.active or v.on}

    def restore(self, data: Any, engine: Engine) -> None:
        for subject_id, (on, active, (stype, building, floor, device)) in data.items():
            st = self.state[subject_id] = _CorrS(Subject(subject_id, stype, building, floor, device))
            st.on = bool(on)
            st.active = {(d, sig): float(o) for d, sig, o in active if d in engine._devs}


class _CareS:
    __slots__ = ("base", "last", "on", "subject")

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.last: float | None = None
        self.on = False
        self.base = 0.0  # last activity (or start) when raised


def _seconds_of_day(hhmm: str) -> int:
    return int(hhmm[:2]) * 3600 + int(hhmm[3:]) * 60


class _CareEval(_Eval):
    def __init__(self, rule: CareInactivityRule, community: Community) -> None:
        super().__init__(rule)
        self.rule_c = rule
        self.fields: dict[str, tuple[str, ...]] = {}
        self.events: dict[str, frozenset[str]] = {}
        for a in rule.activity:
            if a.field is not None:
                self.fields[a.kind] = (*self.fields.get(a.kind, ()), a.field)
            if a.event is not None:
                self.events[a.kind] = self.events.get(a.kind, frozenset()) | {a.event}
        self.units = {cu.unit: _CareS(Subject(cu.unit, "care_unit", cu.building, cu.floor, None))
                      for cu in community.care_units if self.applies_building(cu.building)}
        self.offset = rule.offset_s
        w = rule.window
        self.window = (_seconds_of_day(w[0]), _seconds_of_day(w[1])) if w else None

    def applies_building(self, building: str) -> bool:
        return self.rule.buildings is None or building in self.rule.buildings

    def activity(self, eng: Engine, unit: str, t: float, what: str) -> None:
        st = self.units.get(unit)
        if st is None:
            return
        if st.last is None or t > st.last:
            st.last = t
            eng._care_next = min(eng._care_next, t + self.rule_c.after)
        if st.on and t > st.base:
            st.on = False
            eng._raise_or_clear(self, st.subject, t, False, f"activity: {what}")

    def _open(self, t: float) -> float:
        """``t`` if inside the daily window, else the next opening of the window."""
        if self.window is None:
            return t
        a, b = self.window
        s = (t + self.offset) % 86400
        inside = a <= s < b if a < b else (s >= a or s < b)
        return t if inside else t + (a - s) % 86400

    def check(self, eng: Engine, now: float) -> float:
        nxt = math.inf
        for st in self.units.values():
            if st.on:
                continue
            base = st.last if st.last is not None else (eng.epoch or now)
            due = self._open(base + self.rule_c.after)
            if now >= due:
                st.on, st.base = True, base
                local = _dt(base + self.offset).strftime("%Y-%m-%d %H:%M")
                eng._raise_or_clear(self, st.subject, due, True,
                                    f"no activity for {format_duration(due - base)} (since {local} "
                                    f"{self.rule_c.utc_offset}{'' if st.last is not None else ', start of watch'})")
            else:
                nxt = min(nxt, due)
        return nxt

    def snapshot(self) -> Any:
        return {u: [s.last, s.on, s.base] for u, s in self.units.items() if s.last is not None or s.on}

    def restore(self, data: Any, engine: Engine) -> None:
        for u, (last, on, base) in data.items():
            st = self.units.get(u)
            if st is not None:
                st.last, st.on, st.base = last, bool(on), float(base)


_DEVICE_EVALS: dict[type[_RuleBase], Callable[[Any], _Eval]] = {
    ThresholdRule: _ThresholdEval, DurationRule: _DurationEval, RateRule: _RateEval, StateRule: _StateEval,
    CountRule: _CountEval, NoDataRule: _NoDataEval,
}


class Engine:
    """Evaluates a :class:`RuleSet` over one community. Feed it facts in any order; it never reads a clock."""

    SNAPSHOT_VERSION: ClassVar[int] = 1

    def __init__(self, ruleset: RuleSet, community: Community) -> None:
        self.ruleset = ruleset
        self.community = community
        self.epoch: float | None = None  # first instant the engine heard of: silence is measured from here
        self.late = 0  # readings older than the device's newest (only level thresholds act on them)
        self.now = -math.inf  # newest instant of the engine's clock seen in any fact or tick
        self._fact: float | None = None  # engine time of the fact being applied (None: in a tick)
        self.book = AlarmBook({r.id: r.policy() for r in ruleset})
        self._out: list[AlarmEvent] = []
        unit_of = {s: cu.unit for cu in community.care_units for s in cu.sensors}
        self._devs = {d.id: _Dev(d.id, d.kind, d.building, d.floor, unit_of.get(d.id)) for d in community.devices}
        self._floors: dict[tuple[str, int], Subject] = {}
        self._evals: dict[str, _Eval] = {}
        self._levels: list[_LevelEval] = []
        self._counts: list[_CountEval] = []
        self._nodata: list[_NoDataEval] = []
        self._cares: list[_CareEval] = []
        self._rule_listeners: dict[str, list[tuple[_CorrelationEval, str]]] = {}
        self._event_listeners: dict[tuple[str, str], list[tuple[_CorrelationEval, str]]] = {}
        for rule in ruleset:
            ev: _Eval
            if isinstance(rule, CorrelationRule):
                ev = _CorrelationEval(rule)
                for sig in rule.signals:
                    if sig.rule is not None:
                        self._rule_listeners.setdefault(sig.rule, []).append((ev, sig.name))
                    elif sig.kind is not None and sig.event is not None:
                        self._event_listeners.setdefault((sig.kind, sig.event), []).append((ev, sig.name))
            elif isinstance(rule, CareInactivityRule):
                ev = _CareEval(rule, community)
                self._cares.append(ev)
            else:
                ev = _DEVICE_EVALS[type(rule)](rule)
            self._evals[rule.id] = ev
            if isinstance(ev, _LevelEval):
                self._levels.append(ev)
            elif isinstance(ev, _CountEval):
                self._counts.append(ev)
            elif isinstance(ev, _NoDataEval):
                self._nodata.append(ev)
        self._muting = frozenset(c for e in self._evals.values() for c in e.suppress)
        self._index()
        self._nodata_next = -math.inf
        self._care_next = -math.inf

    def _index(self) -> None:
        """Per device: the rules of its kind by field and by event code (shared between alike devices)."""
        cache: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        of_kind: dict[str, list[_Eval]] = {}
        for e in self._evals.values():
            if isinstance(e.rule, _DeviceRule):
                for k in e.rule.kind:
                    of_kind.setdefault(k, []).append(e)
        for dev in self._devs.values():
            evs = [e for e in of_kind.get(dev.kind, ()) if e.applies(dev)]
            sig = tuple(id(e) for e in evs)
            if sig not in cache:
                by_field: dict[str, list[_LevelEval]] = {}
                by_event: dict[str, list[_EventEval]] = {}
                for e in evs:
                    if isinstance(e, _LevelEval):
                        by_field.setdefault(e.field, []).append(e)
                    elif isinstance(e, _StateEval):
                        for code in e.codes:
                            by_event.setdefault(code, []).append(e)
                    elif isinstance(e, _CountEval):
                        by_event.setdefault(e.rule_event, []).append(e)
                cache[sig] = ({k: tuple(v) for k, v in by_field.items()}, {k: tuple(v) for k, v in by_event.items()},
                              tuple(e for e in evs if isinstance(e, _NoDataEval)))
            dev.by_field, dev.by_event, dev.nodata = cache[sig]
            if dev.unit is not None:
                dev.care = tuple((c, c.fields.get(dev.kind, ()), c.events.get(dev.kind, frozenset()))
                                 for c in self._cares if dev.unit in c.units)

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
        self._fact = rx
        return ts.timestamp(), rx

    def _at(self, dev: _Dev, t: float) -> float:
        """Engine time of device time ``t``: a fact's own time while it is applied (an alarm is raised when the
        engine learns of it), else (timers, in a tick) the device instant shifted by the device's skew."""
        return self._fact if self._fact is not None else min(t - dev.skew, self.now)

    @staticmethod
    def _track(dev: _Dev, t: float, rx: float) -> None:
        """The device's clock offset, from its newest message (device time ``t`` received at ``rx``)."""
        if dev.newest is None or t >= dev.newest:
            dev.newest, dev.skew = t, t - rx

    def on_reading(self, device_id: str, ts: datetime, values: Mapping[str, bool | int | float], *,
                   received: datetime | None = None) -> list[AlarmEvent]:
        """Telemetry of one device taken at ``ts`` (device time), ``received`` on the engine's clock (default:
        ``ts``). A reading older than the device's newest is late: it counts as activity and as a sign of
        life, a level threshold (without ``for``) still raises on it, but it drives no duration or rate and
        clears nothing."""
        dev = self._devs.get(device_id)
        if dev is None:
            return []
        t, rx = self._fact_at(ts, received)
        out = self._out = []
        self._heard(dev, rx)
        late = dev.last_ts is not None and t < dev.last_ts
        if dev.care:
            act = min(rx, t - dev.skew) if late else rx
            for care, fields, _codes in dev.care:
                for name in fields:
                    v = values.get(name)
                    if v is not None and v is not False and v > 0:
                        care.activity(self, dev.unit or "", act, f"{dev.id} {name}={_fmt(v)}")
        by_field = dev.by_field
        if late:
            self.late += 1
            for name, v in values.items():
                for e in by_field.get(name, ()):
                    e.on_late(self, dev, t, v)
            return out
        dev.last_ts = t
        self._track(dev, t, rx)
        for name, v in values.items():
            evs = by_field.get(name)
            if evs is not None:
                for e in evs:
                    e.on_value(self, dev, t, v)
        return out

    def on_event(self, device_id: str, ts: datetime, code: str, state: str, *,
                 received: datetime | None = None) -> list[AlarmEvent]:
        """A device event (``state`` active, cleared or pulse) at ``ts`` (device time), ``received`` on the
        engine's clock (default: ``ts``). An event older than the newest of the same code is late: counted by
        count rules, ignored by state rules."""
        dev = self._devs.get(device_id)
        if dev is None:
            return []
        t, rx = self._fact_at(ts, received)
        out = self._out = []
        self._heard(dev, rx)
        last = dev.event_ts.get(code)
        late = last is not None and t < last
        unmuted = False
        if not late:
            dev.event_ts[code] = t
            self._track(dev, t, rx)
            spec = catalogue.KINDS[dev.kind].event(code)
            if spec is not None and spec.latching:
                if state == "active":
                    dev.codes.setdefault(code, rx)
                elif state == "cleared" and dev.codes.pop(code, None) is not None:
                    unmuted = code in self._muting
        for e in dev.by_event.get(code, ()):
            e.on_event(self, dev, t, code, state, late)
        if not late and state in ("active", "cleared"):
            for corr, name in self._event_listeners.get((dev.kind, code), ()):
                corr.signal(self, dev, name, rx, state == "active", t)
        for care, _fields, codes in dev.care:
            if code in codes:
                care.activity(self, dev.unit or "", min(rx, t - dev.skew) if late else rx, f"{dev.id} {code}")
        if unmuted:
            self._unmuted(dev, rx)
        return out

    def on_status(self, device_id: str, ts: datetime, online: bool, *,
                  received: datetime | None = None) -> list[AlarmEvent]:
        """Online/offline (an offline status is often the broker publishing the device's last will), applied at
        ``received`` on the engine's clock (default: ``ts``)."""
        dev = self._devs.get(device_id)
        if dev is None:
            return []
        _t, rx = self._fact_at(ts, received)
        out = self._out = []
        if online:
            self._heard(dev, rx)
        elif dev.online is not False:
            dev.online, dev.offline_since = False, rx
            for nd in dev.nodata:
                self._nodata_next = min(self._nodata_next, nd.check(self, dev, rx))
        return out

    def tick(self, now: datetime) -> list[AlarmEvent]:
        """Let time pass (``now`` on the engine's clock): durations, no-data, care inactivity, count windows,
        escalation, shelving expiry."""
        self._fact = None
        t = self._advance(now)
        out = self._out = []
        for lv in self._levels:
            if lv.pending:
                lv.tick(self, t)
        for c in self._counts:
            if c.on:
                c.tick(self, t)
        if t >= self._nodata_next:
            nxt = math.inf
            for dev in self._devs.values():
                for nd in dev.nodata:
                    nxt = min(nxt, nd.check(self, dev, t))
            self._nodata_next = nxt
        if t >= self._care_next:
            self._care_next = min((c.check(self, t) for c in self._cares), default=math.inf)
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
        return self.book.shelve(alarm_key, until, who, at or _dt(self.now))

    def unshelve(self, alarm_key: str, who: str, at: datetime) -> AlarmEvent:
        return self.book.unshelve(alarm_key, who, at)

    def alarms(self) -> list[Alarm]:
        """Current alarms (active, or cleared and not yet acknowledged)."""
        return self.book.alarms()

    def alarm(self, rule: str, subject: str) -> Alarm | None:
        return self.book.get(alarm_key(rule, subject))

    # -- internals --------------------------------------------------------------------------------

    def _heard(self, dev: _Dev, t: float) -> None:
        if dev.last_seen is None or t > dev.last_seen:
            dev.last_seen = t
            if dev.online is not True and (dev.offline_since is None or t >= dev.offline_since):
                dev.online, dev.offline_since = True, None
            for nd in dev.nodata:
                nd.heard(self, dev, t)

    def _scope(self, scope: str, dev: _Dev | None) -> Subject | None:
        if dev is None:
            return None
        if scope == "device":
            return dev.subject
        if dev.building is None:
            return None
        if scope == "building":
            key = (dev.building, -10_000)
            s = self._floors.get(key)
            if s is None:
                s = self._floors[key] = Subject(dev.building, "building", dev.building)
            return s
        if dev.floor is None:
            return None
        key = (dev.building, dev.floor)
        s = self._floors.get(key)
        if s is None:
            s = self._floors[key] = Subject(floor_id(dev.building, dev.floor), "floor", dev.building, dev.floor)
        return s

    def _set(self, ev: _Eval, dev: _Dev, t: float, on: bool, detail: str, occurred: float | None = None) -> None:
        """A device rule's condition turned on (or repeated) or off at engine time ``t`` (``occurred``: the device
        time of the observation): raise/clear its alarm, tell correlations."""
        if on and ev.suppress and dev.codes:
            muted = ev.muted_by(dev)
            if muted:
                self.book.suppressed(ev.policy, dev.subject, t, f"{detail} (suppressed: {', '.join(muted)} active)",
                                     self._out, occurred)
            else:
                self.book.raise_(ev.policy, dev.subject, t, detail, self._out, occurred)
        elif on:
            self.book.raise_(ev.policy, dev.subject, t, detail, self._out, occurred)
        else:
            self.book.clear(ev.policy, dev.id, t, detail, self._out, occurred)
        for corr, name in self._rule_listeners.get(ev.id, ()):
            corr.signal(self, dev, name, t, on, occurred)

    def _raise_or_clear(self, ev: _Eval, subject: Subject, t: float, on: bool, detail: str,
                        occurred: float | None = None) -> None:
        if on:
            self.book.raise_(ev.policy, subject, t, detail, self._out, occurred)
        else:
            self.book.clear(ev.policy, subject.id, t, detail, self._out, occurred)

    def _unmuted(self, dev: _Dev, t: float) -> None:
        """A shielded/maintenance state ended: conditions still true on the device raise now."""
        for ev in self._evals.values():
            if (isinstance(ev.rule, _DeviceRule) and dev.kind in ev.rule.kind and ev.is_on(dev.id)
                    and not self.book.active(alarm_key(ev.id, dev.id)) and not ev.muted_by(dev)):
                self.book.raise_(ev.policy, dev.subject, t, "still active after shielding/maintenance ended", self._out)

    # -- persistence ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as plain JSON types."""
        devices = {}
        for d in self._devs.values():
            if d.last_seen is not None or d.last_ts is not None or d.online is not None or d.codes or d.event_ts:
                devices[d.id] = {"last_ts": d.last_ts, "last_seen": d.last_seen, "online": d.online,
                                 "offline_since": d.offline_since, "codes": dict(d.codes),
                                 "event_ts": dict(d.event_ts), "newest": d.newest, "skew": d.skew}
        return {
            "version": self.SNAPSHOT_VERSION, "epoch": self.epoch, "now": self.now if math.isfinite(self.now) else None,
            "late": self.late, "devices": devices,
            "rules": {rid: {"type": ev.rule.type, "state": ev.snapshot()} for rid, ev in self._evals.items()},
            "book": self.book.snapshot(),
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
            dev = eng._devs.get(dev_id)
            if dev is None:
                continue
            dev.last_ts, dev.last_seen, dev.online = d["last_ts"], d["last_seen"], d["online"]
            dev.offline_since = d["offline_since"]
            dev.codes, dev.event_ts = dict(d["codes"]), dict(d["event_ts"])
            dev.newest, dev.skew = d.get("newest", dev.last_ts), float(d.get("skew", 0.0))
        for rid, item in snapshot.get("rules", {}).items():
            ev = eng._evals.get(rid)
            if ev is not None and ev.rule.type == item["type"] and item["state"] is not None:
                ev.restore(item["state"], eng)
        eng.book.restore(snapshot.get("book", {}))
        return eng


# --- replaying contract messages ------------------------------------------------------------------


def replay(engine: Engine, messages: Iterable[tuple[float, str, bytes]], *, root: str, tick_every: float = 5.0,
           until: float | None = None, rejected: list[str] | None = None) -> Iterator[AlarmEvent]:
    """Feed ``(t, topic, payload)`` messages (time-ordered, ``t`` in epoch seconds) through the contract into
    ``engine``, ticking every ``tick_every`` simulated seconds (and up to ``until``); yield every alarm event.
    Each fact counts as received at its own device time (the simulated clock is the engine's clock).
    Messages the contract rejects are skipped (and described in ``rejected`` if given)."""
    next_tick: float | None = None
    for t, topic_text, payload in messages:
        if next_tick is None:
            next_tick = t
        while t >= next_tick:
            yield from engine.tick(_dt(next_tick))
            next_tick += tick_every
        try:
            topic = contract.parse_topic(root, topic_text)
            msg = contract.decode(topic.channel, payload)
        except contract.ContractError as exc:
            if rejected is not None:
                rejected.append(f"{topic_text}: {exc}")
            continue
        dev = topic.device_id
        if isinstance(msg, contract.Telemetry):
            yield from engine.on_reading(dev, msg.ts, msg.values)
        elif isinstance(msg, contract.Event):
            yield from engine.on_event(dev, msg.ts, msg.code, msg.state.value)
        elif isinstance(msg, contract.Status):
            yield from engine.on_status(dev, msg.ts or _dt(t), msg.state is contract.DeviceState.ONLINE)
        else:
            for item in msg.items:
                yield from engine.on_reading(dev, item.ts, item.values)
    if until is not None and next_tick is not None:
        while next_tick <= until:
            yield from engine.tick(_dt(next_tick))
            next_tick += tick_every


# --- cost -----------------------------------------------------------------------------------------


def _bench_rules(n: int) -> list[dict[str, Any]]:
    """``n`` synthetic rules spread over every numeric field of every kind: thresholds, durations, rates."""
    fields = [(k.kind, f) for k in catalogue.KINDS.values() for f in k.fields if f.type is not catalogue.FieldType.BOOL]
    rules: list[dict[str, Any]] = []
    for i in range(n):
        kind, f = fields[i % len(fields)]
        lo, hi = f.normal or (f.valid[0] if math.isfinite(f.valid[0]) else 0.0,
                              f.valid[1] if math.isfinite(f.valid[1]) else 100.0)
        span = hi - lo or 1.0
        base = {"id": f"bench_{i}", "kind": kind, "field": f.name, "severity": "minor", "dispatch": "none"}
        variant = (i // len(fields)) % 4
        if variant == 0:
            rules.append({**base, "type": "threshold", "direction": "high", "raise": hi, "clear": hi - span * 0.05})
        elif variant == 1:
            rules.append({**base, "type": "threshold", "direction": "low", "raise": lo, "clear": lo + span * 0.05,
                          "for": "30s"})
        elif variant == 2:
            rules.append({**base, "type": "duration", "above": hi - span * 0.1, "for": "2m"})
        else:
            rules.append({**base, "type": "rate", "direction": "rising", "raise": span / 2, "window": "2m"})
    return rules


def bench_rules(n_rules: int = 200, messages: int = 100_000, *, seed: int = 1) -> dict[str, float]:
    """Cost of :meth:`Engine.on_reading` with ``n_rules`` rules on the sample-sized community (1,217 devices),
    readings of every field of a random device inside (and now and then just outside) its normal range."""
    import random
    import time

    from twin.generate import generate

    community = Community.model_validate(generate(12, seed=7))
    ruleset = load_rules([("bench", orjson.dumps({"version": 1, "rules": _bench_rules(n_rules)}).decode())],
                         community)
    engine = Engine(ruleset, community)
    rng = random.Random(seed)
    devs = [d for d in community.devices if catalogue.KINDS[d.kind].fields]
    start = 1_750_000_000.0
    batch: list[tuple[str, datetime, dict[str, bool | int | float]]] = []
    applicable = 0
    for i in range(messages):
        d = devs[rng.randrange(len(devs))]
        values: dict[str, bool | int | float] = {}
        for f in catalogue.KINDS[d.kind].fields:
            if f.type is catalogue.FieldType.BOOL:
                values[f.name] = rng.random() < 0.5
            else:
                lo, hi = f.normal or (0.0, 100.0)
                values[f.name] = lo + (hi - lo) * rng.uniform(-0.02, 1.02)
        applicable += sum(len(engine._devs[d.id].by_field.get(k, ())) for k in values)
        batch.append((d.id, _dt(start + i * 0.01), values))
    events = 0
    t0 = time.perf_counter()
    for dev_id, ts, values in batch:
        events += len(engine.on_reading(dev_id, ts, values))
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    ticks = 100
    for k in range(ticks):
        engine.tick(_dt(start + messages * 0.01 + k))
    tick_elapsed = time.perf_counter() - t1
    return {"rules": float(len(ruleset)), "messages": float(messages), "us_per_message": elapsed / messages * 1e6,
            "rules_per_message": applicable / messages, "alarm_events": float(events),
            "us_per_tick": tick_elapsed / ticks * 1e6}
