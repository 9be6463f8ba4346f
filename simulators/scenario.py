"""Scenario files: a declarative timeline of what happens to which devices. Pure: parses text.

A scenario is a YAML file (shipped ones live in ``simulators/scenarios/``)::

    name: gas-leak
    description: a basement gas detector climbs past 25 and then 50 %LEL
    duration: 20m                  # simulated time (s, m, h, d; or plain seconds)
    include: [baseline]            # other scenarios, composed (optionally {scenario: x, offset: 5m})
    population: roles              # roles: only the devices named below; all: every device
    roles:                         # selectors, resolved against whatever community is loaded
      sensor: {kind: gas}
      panel: {kind: fire_panel, same_building_as: sensor, optional: true}
    timeline:                      # times relative to the start
      - {at: 2m, role: sensor, report_every: 10s, set: {lel: {ramp_to: 30, over: 4m}}}
      - {at: 8m, role: sensor, set: {lel: {ramp_to: 62, over: 4m}}}

Fire water: ``leak: 0.03`` on a pipe-pressure sensor or jockey pump role opens a leak of that many MPa a minute
in its building's system (every sensor of the system and its pressure-holding pump see it; ``leak: 0`` closes
it). A fire panel's event may name the ``component`` role that tripped: the panel then reports that device's
address from its address table (``component 1-23: ...`` in the detail), as GB 26875.3 transmission does.

Roles never name device ids: a selector gives a kind plus constraints (building, floor, unit, same
floor/building/unit as another role, in a care unit, of a care level), and :func:`compile_plan` picks the first
devices of the community (in file order) that satisfy every role together, backtracking when a
later role cannot be met. Two roles of one scenario are always two different devices. A role with
``every: true`` is every device that fits (the kind may then be left out: any kind), the devices of the
roles before it excepted: ``building: {every: true, same_building_as: panel}`` is the rest of the panel's
building, and a step on it acts on each of them.

``expect:`` states what the scenario must produce for a control room, checked by the tests offline
(:func:`check_expect` on ``gridtwin rules test``'s replay) and through the real broker, gateway and database
(the stored tickets)::

    expect:
      incidents:                   # exactly these, one ticket each, in any order; [] for none
        - category: fire           # the ticket category
          priority: urgent         # urgent, general or complex
          title: 火警确认(同层两路信号) · 阳光社区 1号楼 3层    # exact; or title_prefix: 火警确认
          rules: [fire_confirmed, panel_fire_alarm]             # among its alarms (at least these)
          roles: [first, second]   # their devices are among its alarms' devices (included: fire.first)
          subjects: [B1/F3]        # alarm subjects among its alarms
          devices: 106             # exactly this many devices (storms)

Titles name places of the community the roles resolved in: the shipped expectations are stated for the
bundled sample community, the ``rules test`` defaults (start at a local midnight, seed 1).

Every problem is reported as ``file:line: path: message`` before anything is published.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from simulators.behaviour import RISER_SYSTEMS
from simulators.errors import SimulationError
from twin import catalogue
from twin.community import Community, Device
from twin.tickets.incidents import Incident
from twin.tickets.policy import CATEGORIES

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
Value = bool | int | float

# --- durations ------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*"
                       r"(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"``; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 90s, 15m, 1h30m, 2d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and value.strip() and (m := _DURATION.match(value)) and any(m.groups()):
        d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
        seconds = d * 86400 + h * 3600 + mi * 60 + s
    else:
        raise ValueError(f"{value!r} is not a duration (use seconds or text like 90s, 15m, 1h30m, 2d)")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} must be a finite, non-negative duration")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def format_duration(seconds: float) -> str:
    s = round(seconds)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{n}{u}" for n, u in parts if n) or "0s"


# --- schema ---------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Ramp(_Strict):
    """Move a field linearly to ``ramp_to`` over ``over`` (from its value at ``at``, or ``from``), then hold."""

    ramp_to: float
    over: Duration
    from_: float | None = Field(default=None, alias="from")


class Flap(_Strict):
    """Toggle a field between two values every ``every`` seconds (each interval jittered by +-``jitter``)."""

    flap: tuple[bool | float, bool | float]
    every: Duration
    jitter: float = Field(default=0.3, ge=0, lt=1)


def _scalar(v: Any) -> Value:
    if isinstance(v, bool | int | float):
        return v
    raise ValueError("expected a number, true/false, 'hold', {ramp_to: X, over: D} or {flap: [a, b], every: D}")


def _spec_tag(v: Any) -> str:
    if isinstance(v, dict):
        return "flap" if "flap" in v else "ramp"
    return "hold" if v == "hold" else "value"


FieldSpec = Annotated[
    Annotated[Ramp, Tag("ramp")] | Annotated[Flap, Tag("flap")] | Annotated[Literal["hold"], Tag("hold")]
    | Annotated[Value, BeforeValidator(_scalar), Tag("value")],
    Discriminator(_spec_tag),
]


class Selector(_Strict):
    """Which device plays a role: a kind plus constraints, resolved against the loaded community."""

    kind: str | None = None  # required unless every: true (then: any kind)
    id: str | None = None  # pins one device; prefer constraints so files survive community changes
    building: str | None = None
    floor: int | None = None
    unit: str | None = None
    in_care_unit: bool | None = None
    care_level: Literal["red", "yellow", "green"] | None = None  # a device of a care unit of this level
    same_floor_as: str | None = None
    same_building_as: str | None = None
    same_unit_as: str | None = None
    optional: bool = False  # if no device fits, the role and its timeline steps are skipped
    every: bool = False  # every device that fits (the earlier roles' devices excepted), not the first

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str | None) -> str | None:
        if v is not None and catalogue.kind(v) is None:
            raise ValueError(f"unknown device kind {v!r}; known: {', '.join(sorted(catalogue.KINDS))}")
        return v

    def describe(self) -> str:
        bits = [self.kind or "any kind"] + (["every device"] if self.every else [])
        for name in ("id", "building", "floor", "unit", "same_floor_as", "same_building_as", "same_unit_as"):
            value = getattr(self, name)
            if value is not None:
                bits.append(f"{name.replace('_', ' ')} {value}")
        if self.in_care_unit:
            bits.append("in a care unit")
        if self.care_level is not None:
            bits.append(f"care level {self.care_level}")
        return ", ".join(bits)


class EventSpec(_Strict):
    code: str
    state: Literal["active", "cleared", "pulse"] = "active"
    detail: str | None = Field(default=None, max_length=480)
    component: str | None = None  # fire panels: the role whose component address the panel reports


class Step(_Strict):
    """One timeline entry: at ``at`` (relative to the start), do something to one or more roles."""

    at: Duration
    role: str | None = None
    roles: list[str] | None = None
    until: Duration | None = None  # end of set/report_every/quiet (default: end of the scenario)
    set: dict[str, FieldSpec] = {}
    report_every: Duration | None = None
    event: EventSpec | None = None
    offline: Literal["lastwill", "disconnect", "silent"] | None = None
    online: bool = False
    quiet: bool = False  # no resident activity (care door / water draws, door passes, elevator calls)
    leak: float | None = Field(default=None, ge=0, le=10)  # MPa/min leaking from the role's fire-water system

    def targets(self) -> list[str]:
        return ([self.role] if self.role else []) + list(self.roles or [])


class Include(_Strict):
    scenario: str
    offset: Duration = 0.0


def _include_tag(v: Any) -> str:
    return "name" if isinstance(v, str) else "include"


IncludeItem = Annotated[
    Annotated[str, Tag("name")] | Annotated[Include, Tag("include")], Discriminator(_include_tag)
]


class ExpectedIncident(_Strict):
    """One incident (one ticket) the scenario must produce."""

    category: str
    priority: Literal["urgent", "general", "complex"]
    title: str | None = Field(default=None, min_length=1, max_length=200)  # the exact title
    title_prefix: str | None = Field(default=None, min_length=1, max_length=200)  # or how it starts
    rules: list[str] = []  # rule ids among its alarms (at least these)
    roles: list[str] = []  # roles whose devices are among its alarms' devices
    subjects: list[str] = []  # alarm subjects among its alarms
    devices: int | None = Field(default=None, ge=1)  # exactly this many devices (or subjects)

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str) -> str:
        if v not in CATEGORIES:
            raise ValueError(f"{v!r} is not a ticket category ({', '.join(CATEGORIES)})")
        return v


class Expect(_Strict):
    """What the scenario must produce: exactly these incidents (one ticket each), in any order."""

    incidents: list[ExpectedIncident]


class ScenarioFile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")
    description: str = Field(min_length=1, max_length=160)
    duration: Duration | None = None
    population: Literal["roles", "all"] = "roles"
    include: list[IncludeItem] = []
    roles: dict[str, Selector] = {}
    timeline: list[Step] = []
    expect: Expect | None = None


# --- loading with line numbers --------------------------------------------------------------------

_TAGS = {"ramp", "flap", "hold", "value", "name", "include"}


@dataclass(frozen=True)
class Loaded:
    """A validated scenario file and where it came from (for line numbers in later errors)."""

    spec: ScenarioFile
    path: Path
    root: yaml.Node | None

    def where(self, *loc: str | int) -> str:
        line = _line_of(self.root, loc)
        return f"{self.path}:{line}" if line else str(self.path)

    def problem(self, loc: tuple[str | int, ...], message: str) -> str:
        path = ".".join(str(p) for p in loc)
        return f"{self.where(*loc)}: {path + ': ' if path else ''}{message}"


def available() -> dict[str, Path]:
    """Shipped scenarios by name."""
    return {p.stem: p for p in sorted(SCENARIO_DIR.glob("*.yaml"))}


def locate(name: str, *, relative_to: Path | None = None) -> Path:
    """A shipped scenario by name, or a path to a YAML file."""
    shipped = available()
    if name in shipped:
        return shipped[name]
    if name.endswith((".yaml", ".yml")) or "/" in name:
        p = Path(name)
        if not p.is_absolute() and relative_to is not None:
            p = relative_to / p
        return p
    raise SimulationError(f"unknown scenario {name!r}; known: {', '.join(shipped) or 'none'} (or a .yaml file)")


def load(name: str, *, relative_to: Path | None = None) -> Loaded:
    """Read and validate one scenario file (not its includes, not against a community)."""
    path = locate(name, relative_to=relative_to)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulationError(f"cannot read scenario file {path}: {exc.strerror}") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Loaded:
    try:
        data: Any = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SimulationError(f"{path}{line}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SimulationError(f"{path}:1: a scenario must be a mapping with name, description, roles, timeline")
    try:
        spec = ScenarioFile.model_validate(data)
    except ValidationError as exc:
        loaded = Loaded(ScenarioFile(name="x", description="x"), path, root)
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if p not in _TAGS)
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            msg = msg.removeprefix("Value error, ")
            problems.append(loaded.problem(loc, msg))
        raise SimulationError(list(dict.fromkeys(problems))) from None
    loaded = Loaded(spec, path, root)
    problems = _check(loaded)
    if problems:
        raise SimulationError(problems)
    return loaded


def _line_of(node: yaml.Node | None, loc: Iterable[str | int]) -> int | None:
    """1-based line of the YAML node at ``loc``, or of its nearest existing parent."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if hit is None:
                break
            line = hit[0].start_mark.line + 1
            node = hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _check(f: Loaded) -> list[str]:
    """What pydantic cannot see: references between roles, fields and events of each role's kind."""
    s = f.spec
    problems: list[str] = []
    names = list(s.roles)
    groups = {r for r, sel in s.roles.items() if sel.every}
    for i, (role, sel) in enumerate(s.roles.items()):
        if sel.kind is None and not sel.every:
            problems.append(f.problem(("roles", role), "a role needs a kind (or every: true: every device that "
                                                       "fits, of any kind)"))
        if sel.every and sel.id is not None:
            problems.append(f.problem(("roles", role, "id"), "a role of every device that fits cannot pin one id"))
        for rel in ("same_floor_as", "same_building_as", "same_unit_as"):
            ref = getattr(sel, rel)
            if ref is not None and ref not in names[:i]:
                why = "is defined later; define it first" if ref in names else "is not a role of this scenario"
                problems.append(f.problem(("roles", role, rel), f"role {ref!r} {why}"))
            elif ref in groups:
                problems.append(f.problem(("roles", role, rel), f"role {ref!r} is every device that fits; "
                                                                f"relate to a role of one device"))
    for i, step in enumerate(s.timeline):
        targets = step.targets()
        if not targets:
            problems.append(f.problem(("timeline", i), "a step needs a role (or roles)"))
        if not (step.set or step.report_every or step.event or step.offline or step.online or step.quiet
                or step.leak is not None):
            problems.append(f.problem(("timeline", i), "a step needs an action: set, report_every, event, "
                                                       "offline, online, quiet or leak"))
        if step.event is not None and step.event.component is not None and step.event.component not in names:
            problems.append(f.problem(("timeline", i, "event", "component"),
                                      f"unknown role {step.event.component!r}; roles: {', '.join(names) or 'none'}"))
        elif step.event is not None and step.event.component in groups:
            problems.append(f.problem(("timeline", i, "event", "component"),
                                      f"role {step.event.component!r} is every device that fits, not one component"))
        if step.until is not None and step.until <= step.at:
            problems.append(f.problem(("timeline", i, "until"), "until must be after at"))
        if s.duration is not None and step.at > s.duration:
            problems.append(f.problem(("timeline", i, "at"), f"{format_duration(step.at)} is after the end "
                                                             f"of the scenario ({format_duration(s.duration)})"))
        if step.report_every is not None and step.report_every < 0.1:
            problems.append(f.problem(("timeline", i, "report_every"), "must be at least 0.1 s"))
        for role in targets:
            target = s.roles.get(role)
            if target is None:
                problems.append(f.problem(("timeline", i, "role"), f"unknown role {role!r}; roles: "
                                                                   f"{', '.join(names) or 'none'}"))
                continue
            if target.kind is None:
                if step.set or step.event or step.leak is not None:
                    problems.append(f.problem(("timeline", i), f"role {role!r} is of any kind: it can go offline, "
                                                               f"come online, report or be quiet; give it a kind to "
                                                               f"set fields, send events or leak"))
                continue
            problems += _check_step_for_kind(f, i, step, catalogue.KINDS[target.kind])
            if step.leak is not None and target.kind not in RISER_SYSTEMS:
                problems.append(f.problem(("timeline", i, "leak"), f"a leak needs a fire-water role "
                                                                   f"({', '.join(sorted(RISER_SYSTEMS))}), not a "
                                                                   f"{target.kind}"))
            if step.event is not None and step.event.component is not None and target.kind != "fire_panel":
                problems.append(f.problem(("timeline", i, "event", "component"),
                                          f"only a fire_panel reports components, not a {target.kind}"))
    if s.expect is not None:
        for i, exp in enumerate(s.expect.incidents):
            loc: tuple[str | int, ...] = ("expect", "incidents", i)
            if (exp.title is None) == (exp.title_prefix is None):
                problems.append(f.problem(loc, "give the incident's title (exact) or title_prefix, one of them"))
            for j, role in enumerate(exp.roles):
                if "." not in role and role not in names:  # an included scenario's role is checked with its plan
                    problems.append(f.problem((*loc, "roles", j), f"unknown role {role!r}; roles: "
                                                                  f"{', '.join(names) or 'none'} (an included "
                                                                  f"scenario's as scenario.role)"))
    return problems


def _check_step_for_kind(f: Loaded, i: int, step: Step, kind: catalogue.DeviceKind) -> list[str]:
    problems = []
    for name, spec in step.set.items():
        tf = kind.field(name)
        loc: tuple[str | int, ...] = ("timeline", i, "set", name)
        if tf is None:
            known = ", ".join(x.name for x in kind.fields) or "none"
            problems.append(f.problem(loc, f"{kind.kind} has no field {name!r} (fields: {known})"))
            continue
        values: list[Value] = []
        if isinstance(spec, Ramp):
            if tf.type is catalogue.FieldType.BOOL:
                problems.append(f.problem(loc, f"{name} is true/false and cannot ramp"))
                continue
            values = [spec.ramp_to] + ([spec.from_] if spec.from_ is not None else [])
            if spec.over <= 0:
                problems.append(f.problem((*loc, "over"), "must be > 0"))
        elif isinstance(spec, Flap):
            values = list(spec.flap)
            if spec.every < 0.1:
                problems.append(f.problem((*loc, "every"), "must be at least 0.1 s"))
        elif spec != "hold":
            values = [spec]
        for raw in values:
            v = int(raw) if tf.type is catalogue.FieldType.INT and isinstance(raw, float) and raw.is_integer() else raw
            bad = tf.check(v)
            if bad:
                problems.append(f.problem(loc, f"{bad[1]} (the gateway would reject it: {bad[0]})"))
    if step.event is not None:
        code = kind.event(step.event.code)
        loc = ("timeline", i, "event", "code")
        if code is None:
            known = ", ".join(e.code for e in kind.events) or "none"
            problems.append(f.problem(loc, f"{kind.kind} has no event {step.event.code!r} (events: {known})"))
        elif not code.latching and step.event.state != "pulse":
            problems.append(f.problem(("timeline", i, "event", "state"),
                                      f"{code.code} is a one-off event: state must be pulse"))
    return problems


# --- the compiled plan ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldOverride:
    """From ``start`` to ``end`` (seconds from the scenario start) a field follows ``spec``."""

    field: str
    start: float
    end: float
    spec: Value | Ramp | Flap | Literal["hold"]


@dataclass
class DeviceScript:
    """Everything a scenario does to one device, in seconds from the start."""

    overrides: list[FieldOverride] = field(default_factory=list)
    report_every: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, every)
    events: list[tuple[float, str, str, str | None]] = field(default_factory=list)
    presence: list[tuple[float, str]] = field(default_factory=list)  # (t, online|lastwill|disconnect|silent)
    quiet: list[tuple[float, float]] = field(default_factory=list)
    leaks: list[tuple[float, float]] = field(default_factory=list)  # (t, MPa/min) in the device's fire-water system


@dataclass
class Plan:
    """A scenario resolved against one community: which devices run and what happens to each."""

    name: str
    description: str
    duration: float
    devices: list[Device]
    scripts: dict[str, DeviceScript]
    roles: dict[str, str]  # role (included roles as "scenario.role") -> device id
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # every-device role -> its device ids
    expect: Expect | None = None  # the top scenario's (not its includes')
    source: Loaded | None = None  # the top scenario's file, for file:line in expectation problems

    def role(self, name: str) -> str:
        return self.roles[name]

    def devices_of(self, role: str) -> tuple[str, ...]:
        """The device ids playing ``role`` (one, every device of an every-device role, none if optional)."""
        if role in self.groups:
            return self.groups[role]
        return (self.roles[role],) if role in self.roles else ()


def describe_all() -> list[tuple[str, str]]:
    """(name, description) of every shipped scenario; validates each file on the way."""
    return [(name, load(name).spec.description) for name in available()]


def compile_plan(name: str, community: Community, *, pins: dict[str, str] | None = None,
                 duration: float | None = None) -> Plan:
    """Load a scenario with its includes and resolve every role against ``community``."""
    top = load(name)
    layers: list[tuple[Loaded, float, str, float | None]] = []  # (file, offset, role prefix, own end)
    _collect(top, 0.0, "", layers, stack=[top.path.resolve()])
    total = duration if duration is not None else top.spec.duration
    if total is None:
        ends = [off + (f.spec.duration or 0.0) for f, off, _p, _e in layers]
        steps = [off + max((s.until or s.at) for s in f.spec.timeline) for f, off, _p, _e in layers
                 if f.spec.timeline]
        total = max([*ends, *(t + 60 for t in steps), 60.0])
    pins = dict(pins or {})
    known_roles = {prefix + r for f, _o, prefix, _e in layers for r in f.spec.roles}
    unknown = sorted(set(pins) - known_roles)
    if unknown:
        raise SimulationError(f"scenario {top.spec.name}: no role {unknown[0]!r} to pin; roles: "
                              f"{', '.join(sorted(known_roles)) or 'none'}")
    every_roles = {prefix + r for f, _o, prefix, _e in layers for r, sel in f.spec.roles.items() if sel.every}
    if set(pins) & every_roles:
        raise SimulationError(f"scenario {top.spec.name}: role {sorted(set(pins) & every_roles)[0]!r} is every "
                              f"device that fits; it cannot be pinned to one")
    if top.spec.expect is not None:
        for i, exp in enumerate(top.spec.expect.incidents):
            for j, role in enumerate(exp.roles):
                if role not in known_roles:
                    raise SimulationError(top.problem(("expect", "incidents", i, "roles", j),
                                                      f"unknown role {role!r}; roles: "
                                                      f"{', '.join(sorted(known_roles)) or 'none'}"))
    by_id = {d.id: d for d in community.devices}
    for role, dev_id in pins.items():
        if dev_id not in by_id:
            raise SimulationError(f"unknown device {dev_id!r} (pinned to role {role!r}) in community {community.id}")
    roles: dict[str, str] = {}
    groups: dict[str, tuple[str, ...]] = {}
    scripts: dict[str, DeviceScript] = {}
    everyone = False
    for f, offset, prefix, _own in layers:
        everyone = everyone or f.spec.population == "all"
        local_pins = {r.removeprefix(prefix): d for r, d in pins.items() if r.startswith(prefix)
                      and "." not in r.removeprefix(prefix)}
        chosen = resolve_roles(f, community, local_pins)
        for role, devs in chosen.items():
            if f.spec.roles[role].every:
                groups[prefix + role] = tuple(d.id for d in devs)
            elif devs:
                roles[prefix + role] = devs[0].id
        _script_layer(f, offset, total, chosen, scripts, community)
    ids = set(scripts) | set(roles.values())
    devices = [d for d in community.devices if everyone or d.id in ids]
    if not devices:
        raise SimulationError(f"scenario {top.spec.name} selects no devices in community {community.id}")
    return Plan(top.spec.name, top.spec.description, total, devices, scripts, roles, groups, top.spec.expect, top)


def _collect(f: Loaded, offset: float, prefix: str, out: list[tuple[Loaded, float, str, float | None]],
             stack: list[Path]) -> None:
    for i, item in enumerate(f.spec.include):
        inc = Include(scenario=item) if isinstance(item, str) else item
        try:
            child = load(inc.scenario, relative_to=f.path.parent)
        except SimulationError as exc:
            raise SimulationError(f"{f.where('include', i)}: include {inc.scenario!r}: {exc}") from None
        key = child.path.resolve()
        if key in stack:
            raise SimulationError(f"{f.where('include', i)}: include cycle: "
                                  + " -> ".join(p.stem for p in [*stack, key]))
        _collect(child, offset + inc.offset, f"{prefix}{child.spec.name}.", out, [*stack, key])
    out.append((f, offset, prefix, None))


def resolve_roles(f: Loaded, community: Community, pins: dict[str, str] | None = None) -> dict[str, list[Device]]:
    """Pick the devices of every role of one file: first fit in community order, backtracking. A role's list holds
    its device (none: an optional role nothing fits; every fitting device for an ``every`` role)."""
    pins = pins or {}
    care = {s for c in community.care_units for s in c.sensors}
    unit_of = {s: c.unit for c in community.care_units for s in c.sensors}
    level_of = {s: c.level for c in community.care_units for s in c.sensors}
    names = list(f.spec.roles)
    sels = [f.spec.roles[n] for n in names]
    by_kind: dict[str, list[Device]] = {}
    for d in community.devices:
        by_kind.setdefault(d.kind, []).append(d)

    for n, sel in zip(names, sels, strict=True):
        if sel.id is not None and community.device(sel.id) is None:
            raise SimulationError(f.problem(("roles", n, "id"), f"unknown device {sel.id!r} in community "
                                                                f"{community.id}"))
        if sel.building is not None and community.building(sel.building) is None:
            raise SimulationError(f.problem(("roles", n, "building"), f"unknown building {sel.building!r} in "
                                                                      f"community {community.id}"))

    def unit(d: Device) -> str | None:
        return d.unit or unit_of.get(d.id)

    def fits(sel: Selector, d: Device, chosen: dict[str, list[Device]]) -> bool:
        if (sel.id is not None and d.id != sel.id) or (sel.building is not None and d.building != sel.building):
            return False
        if (sel.floor is not None and d.floor != sel.floor) or (sel.unit is not None and unit(d) != sel.unit):
            return False
        if sel.in_care_unit is not None and (d.id in care) != sel.in_care_unit:
            return False
        if sel.care_level is not None and level_of.get(d.id) != sel.care_level:
            return False
        for rel in ("same_floor_as", "same_building_as", "same_unit_as"):
            ref = getattr(sel, rel)
            if ref is not None:
                other = chosen.get(ref)
                if not other or not related(rel, d, other[0]):
                    return False
        return True

    def related(rel: str, a: Device, b: Device) -> bool:
        if rel == "same_floor_as":
            return a.building == b.building and a.floor == b.floor and a.floor is not None
        if rel == "same_building_as":
            return a.building == b.building and a.building is not None
        return unit(a) == unit(b) and unit(a) is not None

    def search(limit: int, i: int, chosen: dict[str, list[Device]], budget: list[int]) -> bool:
        """Depth-first over roles[:limit]; fills ``chosen`` and returns True on success."""
        if i == limit:
            return True
        name, sel = names[i], sels[i]
        used = {d.id for devs in chosen.values() for d in devs}
        pool = by_kind.get(sel.kind, []) if sel.kind is not None else community.devices
        if name in pins:
            pool = [d for d in pool if d.id == pins[name]]
        fitting = [d for d in pool if d.id not in used and fits(sel, d, chosen)]
        options: list[list[Device]] = ([fitting] if fitting else []) if sel.every else [[d] for d in fitting]
        if sel.optional:
            options.append([])
        for d in options:
            budget[0] -= 1
            if budget[0] < 0:
                return False
            chosen[name] = d
            if search(limit, i + 1, chosen, budget):
                return True
            del chosen[name]
        return False

    result: dict[str, list[Device]] = {}
    if search(len(names), 0, result, [200_000]):
        return result
    # name the first role that cannot be met together with the roles before it
    for k in range(1, len(names) + 1):
        if not search(k, 0, {}, [200_000]):
            n, sel = names[k - 1], sels[k - 1]
            pinned = f" pinned to {pins[n]}" if n in pins else ""
            raise SimulationError(f.problem(("roles", n), f"no device in community {community.id} fits role "
                                                          f"{n!r}{pinned} ({sel.describe()})"
                                                          + (" together with the roles before it" if k > 1 else "")))
    raise SimulationError(f.problem(("roles",), f"the roles cannot all be met in community {community.id}"))


def _script_layer(f: Loaded, offset: float, total: float, chosen: dict[str, list[Device]],
                  scripts: dict[str, DeviceScript], community: Community) -> None:
    own_end = offset + f.spec.duration if f.spec.duration is not None else total
    end_default = min(own_end, total)
    for i, step in enumerate(f.spec.timeline):
        at = offset + step.at
        if at >= total:
            continue
        until = min(offset + step.until, total) if step.until is not None else end_default
        for dev in (d for role in step.targets() for d in chosen.get(role, ())):  # none: an optional role unmet
            sc = scripts.setdefault(dev.id, DeviceScript())
            for name, spec in step.set.items():
                sc.overrides.append(FieldOverride(name, at, until, spec))
            if step.report_every is not None:
                sc.report_every.append((at, until, step.report_every))
            if step.event is not None:
                sc.events.append((at, step.event.code, step.event.state, _event_detail(f, i, step.event, dev, chosen)))
            if step.leak is not None:
                for d in _riser_devices(community, dev):
                    scripts.setdefault(d.id, DeviceScript()).leaks.append((at, step.leak))
            if step.offline is not None:
                sc.presence.append((at, step.offline))
            if step.online:
                sc.presence.append((at, "online"))
            if step.quiet:
                sc.quiet.append((at, until))
    for devs in chosen.values():
        for dev in devs:
            scripts.setdefault(dev.id, DeviceScript())


def _event_detail(f: Loaded, i: int, ev: EventSpec, dev: Device, chosen: dict[str, list[Device]]) -> str | None:
    """The event's detail; a panel's names the address of the ``component`` role's device in the panel's table."""
    comps = chosen.get(ev.component, []) if ev.component is not None else []
    if not comps:
        return ev.detail
    comp = comps[0]
    address = next((a for a, d in (dev.components or {}).items() if d == comp.id), None)
    if address is None:
        raise SimulationError(f.problem(("timeline", i, "event", "component"),
                                        f"{comp.id} (role {ev.component!r}) is not in {dev.id}'s address table"))
    return f"component {address}" + (f": {ev.detail}" if ev.detail else "")


def _riser_devices(community: Community, dev: Device) -> list[Device]:
    """The devices of ``dev``'s fire-water system: its building's sensors of the system and its jockey pump."""
    system = RISER_SYSTEMS[dev.kind]
    return [d for d in community.devices if RISER_SYSTEMS.get(d.kind) == system and d.building == dev.building
            and (d.building is not None or d.id == dev.id)]


# --- expectations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    """An incident as the expectation sees it: offline (:func:`twin.tickets.incidents_of`) or a stored ticket
    with its alarms. ``alarms``: (rule, subject, device) of each of its alarms."""

    title: str
    category: str
    priority: str
    alarms: tuple[tuple[str, str, str | None], ...]

    @property
    def rules(self) -> set[str]:
        return {r for r, _s, _d in self.alarms}

    @property
    def subjects(self) -> set[str]:
        return {s for _r, s, _d in self.alarms}

    @property
    def devices(self) -> set[str]:
        """As the incident counts them: each alarm's device, else its subject."""
        return {d or s for _r, s, d in self.alarms}

    @classmethod
    def of_incident(cls, inc: Incident) -> Observed:
        return cls(inc.title, inc.category, inc.priority.value,
                   tuple((a.rule, a.subject, a.device) for a in inc.alarms))

    def describe(self) -> str:
        return f"{self.title!r} ({self.category}, {self.priority}; {len(self.alarms)} alarms, rules " \
               f"{', '.join(sorted(self.rules))})"


def mismatches(plan: Plan, exp: ExpectedIncident, obs: Observed) -> list[str]:
    """Why ``obs`` is not the expected incident (empty: it is)."""
    out = []
    if obs.category != exp.category:
        out.append(f"category is {obs.category}, not {exp.category}")
    if obs.priority != exp.priority:
        out.append(f"priority is {obs.priority}, not {exp.priority}")
    if exp.title is not None and obs.title != exp.title:
        out.append(f"title is {obs.title!r}, not {exp.title!r}")
    if exp.title_prefix is not None and not obs.title.startswith(exp.title_prefix):
        out.append(f"title {obs.title!r} does not start with {exp.title_prefix!r}")
    missing = [r for r in exp.rules if r not in obs.rules]
    if missing:
        out.append(f"no alarm of rule {', '.join(missing)}")
    for role in exp.roles:
        absent = [d for d in plan.devices_of(role) if d not in obs.devices]
        if absent:
            out.append(f"no alarm of role {role} ({', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''})")
    absent_subjects = [x for x in exp.subjects if x not in obs.subjects]
    if absent_subjects:
        out.append(f"no alarm on {', '.join(absent_subjects)}")
    if exp.devices is not None and len(obs.devices) != exp.devices:
        out.append(f"{len(obs.devices)} devices, not {exp.devices}")
    return out


def check_expect(plan: Plan, observed: Iterable[Observed], *, known_rules: Iterable[str] | None = None) -> list[str]:
    """How ``observed`` (the incidents or tickets a run of ``plan`` produced) falls short of the scenario's
    ``expect:``, one ``file:line: expect.incidents.N: why`` per problem (empty: met). Every expected incident
    must be a different observed one, and nothing else may be observed. ``known_rules``: the rule ids in force,
    to name an expected rule that does not exist. A scenario without ``expect:`` has nothing to meet."""
    if plan.expect is None:
        return []
    src = plan.source
    obs = list(observed)
    expected = plan.expect.incidents

    def where(loc: tuple[str | int, ...], msg: str) -> str:
        return src.problem(("expect", "incidents", *loc), msg) if src is not None else \
            f"expect.incidents.{'.'.join(map(str, loc))}: {msg}"

    problems: list[str] = []
    if known_rules is not None:
        known = set(known_rules)
        for i, exp in enumerate(expected):
            problems += [where((i, "rules", j), f"unknown rule {r!r}") for j, r in enumerate(exp.rules)
                         if r not in known]
        if problems:
            return problems
    pairs = _pairing([[not mismatches(plan, exp, o) for o in obs] for exp in expected])
    taken = set(pairs.values())
    free = [j for j in range(len(obs)) if j not in taken]
    for i, exp in enumerate(expected):
        if i in pairs:
            continue
        if not free:
            problems.append(where((i,), f"no incident left for it: {len(obs)} observed, expected {len(expected)}"))
            continue
        close = min(free, key=lambda j: (obs[j].category != exp.category, len(mismatches(plan, exp, obs[j]))))
        free.remove(close)
        problems.append(where((i,), f"no incident matches; the closest, {obs[close].describe()}: "
                                    + "; ".join(mismatches(plan, exp, obs[close]))))
    problems += [where((), f"an incident not expected: {obs[j].describe()}") for j in free]
    return problems


def _pairing(fits: list[list[bool]]) -> dict[int, int]:
    """A largest match of expected incidents (rows) to different observed ones (columns): row -> column."""
    match: dict[int, int] = {}  # column -> row

    def assign(row: int, seen: set[int]) -> bool:
        for col, ok in enumerate(fits[row]):
            if ok and col not in seen:
                seen.add(col)
                if col not in match or assign(match[col], seen):
                    match[col] = row
                    return True
        return False

    for row in range(len(fits)):
        assign(row, set())
    return {row: col for col, row in match.items()}
