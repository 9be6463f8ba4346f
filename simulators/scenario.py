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
floor/building/unit as another role, in a care unit), and :func:`compile_plan` picks the first
devices of the community (in file order) that satisfy every role together, backtracking when a
later role cannot be met. Two roles of one scenario are always two different devices.

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

    kind: str
    id: str | None = None  # pins one device; prefer constraints so files survive community changes
    building: str | None = None
    floor: int | None = None
    unit: str | None = None
    in_care_unit: bool | None = None
    same_floor_as: str | None = None
    same_building_as: str | None = None
    same_unit_as: str | None = None
    optional: bool = False  # if no device fits, the role and its timeline steps are skipped

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if catalogue.kind(v) is None:
            raise ValueError(f"unknown device kind {v!r}; known: {', '.join(sorted(catalogue.KINDS))}")
        return v

    def describe(self) -> str:
        bits = [self.kind]
        for name in ("id", "building", "floor", "unit", "same_floor_as", "same_building_as", "same_unit_as"):
            value = getattr(self, name)
            if value is not None:
                bits.append(f"{name.replace('_', ' ')} {value}")
        if self.in_care_unit:
            bits.append("in a care unit")
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


class ScenarioFile(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")
    description: str = Field(min_length=1, max_length=160)
    duration: Duration | None = None
    population: Literal["roles", "all"] = "roles"
    include: list[IncludeItem] = []
    roles: dict[str, Selector] = {}
    timeline: list[Step] = []


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
    for i, (role, sel) in enumerate(s.roles.items()):
        for rel in ("same_floor_as", "same_building_as", "same_unit_as"):
            ref = getattr(sel, rel)
            if ref is not None and ref not in names[:i]:
                why = "is defined later; define it first" if ref in names else "is not a role of this scenario"
                problems.append(f.problem(("roles", role, rel), f"role {ref!r} {why}"))
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
            problems += _check_step_for_kind(f, i, step, catalogue.KINDS[target.kind])
            if step.leak is not None and target.kind not in RISER_SYSTEMS:
                problems.append(f.problem(("timeline", i, "leak"), f"a leak needs a fire-water role "
                                                                   f"({', '.join(sorted(RISER_SYSTEMS))}), not a "
                                                                   f"{target.kind}"))
            if step.event is not None and step.event.component is not None and target.kind != "fire_panel":
                problems.append(f.problem(("timeline", i, "event", "component"),
                                          f"only a fire_panel reports components, not a {target.kind}"))
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

    def role(self, name: str) -> str:
        return self.roles[name]


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
    by_id = {d.id: d for d in community.devices}
    for role, dev_id in pins.items():
        if dev_id not in by_id:
            raise SimulationError(f"unknown device {dev_id!r} (pinned to role {role!r}) in community {community.id}")
    roles: dict[str, str] = {}
    scripts: dict[str, DeviceScript] = {}
    everyone = False
    for f, offset, prefix, _own in layers:
        everyone = everyone or f.spec.population == "all"
        local_pins = {r.removeprefix(prefix): d for r, d in pins.items() if r.startswith(prefix)
                      and "." not in r.removeprefix(prefix)}
        chosen = resolve_roles(f, community, local_pins)
        for role, dev in chosen.items():
            if dev is not None:
                roles[prefix + role] = dev.id
        _script_layer(f, offset, total, chosen, scripts, community)
    ids = set(scripts) | set(roles.values())
    devices = [d for d in community.devices if everyone or d.id in ids]
    if not devices:
        raise SimulationError(f"scenario {top.spec.name} selects no devices in community {community.id}")
    return Plan(top.spec.name, top.spec.description, total, devices, scripts, roles)


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


def resolve_roles(f: Loaded, community: Community, pins: dict[str, str] | None = None) -> dict[str, Device | None]:
    """Pick a device for every role of one file: first fit in community order, backtracking."""
    pins = pins or {}
    care = {s for c in community.care_units for s in c.sensors}
    unit_of = {s: c.unit for c in community.care_units for s in c.sensors}
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

    def fits(sel: Selector, d: Device, chosen: dict[str, Device | None]) -> bool:
        if (sel.id is not None and d.id != sel.id) or (sel.building is not None and d.building != sel.building):
            return False
        if (sel.floor is not None and d.floor != sel.floor) or (sel.unit is not None and unit(d) != sel.unit):
            return False
        if sel.in_care_unit is not None and (d.id in care) != sel.in_care_unit:
            return False
        for rel in ("same_floor_as", "same_building_as", "same_unit_as"):
            ref = getattr(sel, rel)
            if ref is not None:
                other = chosen.get(ref)
                if other is None or not related(rel, d, other):
                    return False
        return True

    def related(rel: str, a: Device, b: Device) -> bool:
        if rel == "same_floor_as":
            return a.building == b.building and a.floor == b.floor and a.floor is not None
        if rel == "same_building_as":
            return a.building == b.building and a.building is not None
        return unit(a) == unit(b) and unit(a) is not None

    def search(limit: int, i: int, chosen: dict[str, Device | None], budget: list[int]) -> bool:
        """Depth-first over roles[:limit]; fills ``chosen`` and returns True on success."""
        if i == limit:
            return True
        name, sel = names[i], sels[i]
        used = {d.id for d in chosen.values() if d is not None}
        pool = by_kind.get(sel.kind, [])
        if name in pins:
            pool = [d for d in pool if d.id == pins[name]]
        options: list[Device | None] = [d for d in pool if d.id not in used and fits(sel, d, chosen)]
        if sel.optional:
            options.append(None)
        for d in options:
            budget[0] -= 1
            if budget[0] < 0:
                return False
            chosen[name] = d
            if search(limit, i + 1, chosen, budget):
                return True
            del chosen[name]
        return False

    result: dict[str, Device | None] = {}
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


def _script_layer(f: Loaded, offset: float, total: float, chosen: dict[str, Device | None],
                  scripts: dict[str, DeviceScript], community: Community) -> None:
    own_end = offset + f.spec.duration if f.spec.duration is not None else total
    end_default = min(own_end, total)
    for i, step in enumerate(f.spec.timeline):
        at = offset + step.at
        if at >= total:
            continue
        until = min(offset + step.until, total) if step.until is not None else end_default
        for role in step.targets():
            dev = chosen.get(role)
            if dev is None:
                continue  # an optional role nothing fitted
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
    for dev in chosen.values():
        if dev is not None:
            scripts.setdefault(dev.id, DeviceScript())


def _event_detail(f: Loaded, i: int, ev: EventSpec, dev: Device, chosen: dict[str, Device | None]) -> str | None:
    """The event's detail; a panel's names the address of the ``component`` role's device in the panel's table."""
    comp = chosen.get(ev.component) if ev.component is not None else None
    if comp is None:
        return ev.detail
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
