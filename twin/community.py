"""Community description: grids, buildings, elevators, devices and care units. Pure: parses text.

A community file is YAML (schema ``version: 1``). :func:`parse` validates it completely (shapes,
references between sections, catalogue kinds, floors inside the building) and raises
:class:`CommunityError` listing every problem with its line, so a bad file is never half-loaded.
"""

from __future__ import annotations

import re
from datetime import date, time, tzinfo
from functools import cache
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from twin import care, catalogue
from twin.contacts import Contacts
from twin.contract import valid_id
from twin.outcomes import OutcomeTargets

Point = tuple[float, float]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_id(v: str) -> str:
    if not valid_id(v):
        raise ValueError("ids are 1-64 of letters, digits, '_', '-', '.'")
    return v


def _check_polygon(v: list[Point]) -> list[Point]:
    if len(v) < 3:
        raise ValueError("a polygon needs at least 3 points")
    area2 = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(v, v[1:] + v[:1], strict=True))
    if abs(area2) < 1e-6:
        raise ValueError("polygon has zero area")
    return v


Id = Annotated[str, AfterValidator(_check_id)]
Polygon = Annotated[list[Point], AfterValidator(_check_polygon)]


@cache
def zone(name: str) -> tzinfo:
    """The IANA time zone ``name`` (tz data from the system or the ``tzdata`` package); KeyError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise KeyError(name) from None


def _check_zone(v: str) -> str:
    try:
        zone(v)
    except KeyError:
        raise ValueError(f"{v!r} is not an IANA time zone (e.g. 'Asia/Shanghai')") from None
    return v


# -- fire panel component addresses ------------------------------------------------------------------
# GB 26875.3 (urban fire remote monitoring, user information transmission) carries a component's address with each
# component state; panels number components by bus loop and address on the loop (GB 50116-2013 §3.1.5 keeps a loop
# at or under 200 devices). Written here as "loop-address": "1-23" (leading zeros allowed: "01-023").
_ADDRESS = re.compile(r"^(\d{1,3})-(\d{1,4})$")
_ADDRESS_IN_DETAIL = re.compile(r"(?:^|[\s(\[,;])component[\s:=]+(\d{1,3})-(\d{1,4})(?![\d-])", re.IGNORECASE)
PANEL_COMPONENT_KINDS = frozenset({"smoke_detector", "heat_detector", "manual_call_point", "fire_door",
                                   "sprinkler_pressure", "hydrant_pressure"})
PIPE_PRESSURE_KINDS = frozenset({"hydrant_pressure", "sprinkler_pressure"})


def component_address(text: str) -> str | None:
    """The canonical component address (``"1-23"``) of ``text`` like ``"1-23"`` or ``"01-023"``, else None."""
    m = _ADDRESS.match(text.strip())
    if m is None or int(m.group(1)) == 0 or int(m.group(2)) == 0:
        return None
    return f"{int(m.group(1))}-{int(m.group(2))}"


def address_in_detail(detail: str | None) -> str | None:
    """The component address a fire panel's event names in its detail (``"component 1-23: smoke"``), or None."""
    m = _ADDRESS_IN_DETAIL.search(detail) if detail else None
    return component_address(f"{m.group(1)}-{m.group(2)}") if m is not None else None


def floor_elevation(floor: int, floor_height: float) -> float:
    """Metres of ``floor`` above floor 1 with storeys of ``floor_height`` (B1 is one storey down; no floor 0)."""
    return (floor - 1 if floor > 0 else floor) * floor_height


class Worker(_Model):
    id: Id
    name: str
    phone: str | None = None
    on_duty: tuple[time, time] = (time(8, 0), time(18, 0))



class Grid(_Model):
    id: Id
    name: str
    boundary: Polygon
    workers: list[Worker] = Field(min_length=1)
    supervisor: str
    backup: str | None = None



class Building(_Model):
    id: Id
    name: str
    footprint: Polygon
    floors_above: int = Field(ge=1, le=200)
    floors_below: int = Field(default=0, ge=0, le=10)
    floor_height: float = Field(default=3.0, gt=1.5, le=10)
    use: Literal["residential", "commercial", "mixed", "public", "utility"] = "residential"
    grid: str | None = None


    @property
    def floors(self) -> list[int]:
        """Floor numbers, basement first: B2 = -2, B1 = -1, then 1..N (no floor 0, as in China)."""
        return [*range(-self.floors_below, 0), *range(1, self.floors_above + 1)]

    def elevation(self, floor: int) -> float:
        """Metres of ``floor`` above floor 1 (basements below it: B1 is one storey down, there is no floor 0)."""
        return floor_elevation(floor, self.floor_height)


class Elevator(_Model):
    id: Id
    building: str
    shaft: Point
    serves: tuple[int, int]



class Device(_Model):
    id: Id
    kind: str
    building: str | None = None
    floor: int | None = None
    position: Point | None = None
    unit: str | None = None
    elevator: str | None = None
    installed: date | None = None
    normal: dict[str, tuple[float, float]] | None = Field(
        default=None, description="site override of a field's normal range; must lie inside the valid range"
    )
    riser_top: int | None = Field(
        default=None, description="pipe-pressure sensors: the highest floor of the riser or zone the sensor is on "
                                  "(its most unfavourable point); default: the building's top floor")
    components: dict[str, str] | None = Field(
        default=None, description="fire panels: component address 'loop-address' (GB 26875.3) -> device id")

    @field_validator("components")
    @classmethod
    def _addresses(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is None:
            return v
        out: dict[str, str] = {}
        for raw, device_id in v.items():
            address = component_address(str(raw))
            if address is None:
                raise ValueError(f"{raw!r} is not a component address: write loop-address, e.g. '1-23'")
            if address in out:
                raise ValueError(f"address {raw!r} is given twice (as {address})")
            out[address] = device_id
        return out

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if catalogue.kind(v) is None:
            raise ValueError(f"unknown device kind {v!r}; known: {', '.join(sorted(catalogue.KINDS))}")
        return v


class CareUnit(_Model):
    unit: str
    building: str
    floor: int
    level: Literal["red", "yellow", "green"]
    sensors: list[str] = Field(min_length=1)
    # the resident on record (optional; personal data: twin/care.py, docs/care.md)
    name: care.ResidentName | None = None
    category: care.Category | None = None
    mobility_limited: bool = False
    phone: care.Phone | None = None


class Community(_Model):
    version: Literal[1]
    id: Id
    name: str
    origin: tuple[float, float] = Field(description="lat, lon of local (0, 0)")
    timezone: Annotated[str, AfterValidator(_check_zone)] = Field(
        default="Asia/Shanghai", description="IANA zone of the community's local time (day/night, care windows)")
    grids: list[Grid] = []
    buildings: list[Building] = Field(min_length=1)
    elevators: list[Elevator] = []
    devices: list[Device] = []
    care_units: list[CareUnit] = []
    contacts: Contacts = Field(default_factory=Contacts, description="whom workers call: twin/contacts.py")
    targets: OutcomeTargets = Field(default_factory=OutcomeTargets,
                                    description="baseline and target per outcome: twin/outcomes/, docs/outcomes.md")
    _by_id: dict[str, Device] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Community:
        if not (info.context or {}).get("defer_references"):
            problems = reference_problems(self)
            if problems:
                raise ValueError("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        return self

    @property
    def tz(self) -> tzinfo:
        """The community's local time zone."""
        return zone(self.timezone)

    def building(self, building_id: str) -> Building | None:
        return next((b for b in self.buildings if b.id == building_id), None)

    def device(self, device_id: str) -> Device | None:
        if not self._by_id:
            self._by_id = {d.id: d for d in self.devices}
        return self._by_id.get(device_id)

    def component(self, panel_id: str, address: str) -> Device | None:
        """The device at component ``address`` (any spelling :func:`component_address` reads) of fire panel
        ``panel_id``, or None when the panel's address table does not hold it."""
        panel = self.device(panel_id)
        canonical = component_address(address)
        if panel is None or panel.components is None or canonical is None:
            return None
        device_id = panel.components.get(canonical)
        return self.device(device_id) if device_id is not None else None

    def grid_of(self, building: Building) -> str | None:
        """The building's grid: its own ``grid`` key, else the grid whose boundary holds its centroid."""
        if building.grid is not None:
            return building.grid
        c = centroid(building.footprint)
        return next((g.id for g in self.grids if point_in_polygon(c, g.boundary)), None)


Loc = tuple[str | int, ...]


def reference_problems(c: Community) -> list[tuple[Loc, str]]:
    """Everything that is wrong between sections: ids, references, floors, geometry, care sensors."""
    problems: list[tuple[Loc, str]] = []
    sections: dict[str, list[str]] = {
        "grids": [g.id for g in c.grids], "buildings": [b.id for b in c.buildings],
        "elevators": [e.id for e in c.elevators], "devices": [d.id for d in c.devices],
    }
    for section, ids in sections.items():
        seen: set[str] = set()
        for i, item_id in enumerate(ids):
            if item_id in seen:
                problems.append(((section, i, "id"), f"duplicate id {item_id!r}"))
            seen.add(item_id)
    buildings = {b.id: b for b in c.buildings}
    grids = {g.id for g in c.grids}
    elevators = {e.id: e for e in c.elevators}
    devices = {d.id: d for d in c.devices}
    for i, g in enumerate(c.grids):
        if self_intersects(g.boundary):
            problems.append((("grids", i, "boundary"), "boundary polygon intersects itself"))
    boxes = [_bounding_box(b.footprint) for b in c.buildings]
    for i, b in enumerate(c.buildings):
        if self_intersects(b.footprint):
            problems.append((("buildings", i, "footprint"), "footprint polygon intersects itself"))
        if b.grid is not None and b.grid not in grids:
            problems.append((("buildings", i, "grid"), f"unknown grid {b.grid!r}"))
        elif c.grids and c.grid_of(b) is None:
            problems.append((("buildings", i, "footprint"), "building lies outside every grid boundary"))
        for j in range(i):
            if _boxes_overlap(boxes[i], boxes[j]) and polygons_overlap(b.footprint, c.buildings[j].footprint):
                problems.append((("buildings", i, "footprint"), f"overlaps building {c.buildings[j].id!r}"))
    for i, e in enumerate(c.elevators):
        eb = buildings.get(e.building)
        if eb is None:
            problems.append((("elevators", i, "building"), f"unknown building {e.building!r}"))
        elif not (e.serves[0] in eb.floors and e.serves[1] in eb.floors and e.serves[0] < e.serves[1]):
            problems.append((("elevators", i, "serves"), f"{list(e.serves)} is not a floor range of building "
                             f"{eb.id} (floors {eb.floors[0]}..{eb.floors[-1]}, no floor 0)"))
    for i, d in enumerate(c.devices):
        db = None
        if d.building is not None:
            db = buildings.get(d.building)
            if db is None:
                problems.append((("devices", i, "building"), f"unknown building {d.building!r}"))
            elif d.floor is not None and d.floor not in db.floors:
                problems.append((("devices", i, "floor"), f"building {db.id} has no floor {d.floor}"))
        elif d.floor is not None:
            problems.append((("devices", i, "floor"), "a floor needs a building"))
        if d.elevator is not None:
            el = elevators.get(d.elevator)
            if el is None:
                problems.append((("devices", i, "elevator"), f"unknown elevator {d.elevator!r}"))
            elif d.building is not None and el.building != d.building:
                problems.append((("devices", i, "elevator"), f"elevator {el.id} is in building {el.building}"))
        spec = catalogue.KINDS[d.kind]
        for name, (lo, hi) in (d.normal or {}).items():
            f = spec.field(name)
            if f is None:
                problems.append((("devices", i, "normal", name), f"{d.kind} has no field {name!r}"))
            elif not (f.valid[0] <= lo < hi <= f.valid[1]):
                problems.append((("devices", i, "normal", name),
                                 f"[{lo}, {hi}] is not an increasing range inside the catalogue's valid range "
                                 f"{f.valid[0]:g}..{f.valid[1]:g} {f.unit}"))
    problems += _fire_water_and_panel_problems(c, buildings, devices)
    for i, cu in enumerate(c.care_units):
        if cu.building not in buildings:
            problems.append((("care_units", i, "building"), f"unknown building {cu.building!r}"))
        elif cu.floor not in buildings[cu.building].floors:
            problems.append((("care_units", i, "floor"), f"building {cu.building} has no floor {cu.floor}"))
        for j, sid in enumerate(cu.sensors):
            dev = devices.get(sid)
            if dev is None:
                problems.append((("care_units", i, "sensors", j), f"unknown device {sid!r}"))
            elif catalogue.KINDS[dev.kind].category != "care":
                problems.append((("care_units", i, "sensors", j), f"{sid!r} is a {dev.kind}, not a care sensor"))
    return problems


def _fire_water_and_panel_problems(c: Community, buildings: dict[str, Building],
                                   devices: dict[str, Device]) -> list[tuple[Loc, str]]:
    """Riser tops of pipe-pressure sensors, and fire panels' address tables (every address one known fire
    component, every component on one address)."""
    problems: list[tuple[Loc, str]] = []
    on_panel: dict[str, tuple[str, str]] = {}  # component device -> (panel, address)
    for i, d in enumerate(c.devices):
        if d.riser_top is not None:
            b = buildings.get(d.building) if d.building is not None else None
            if d.kind not in PIPE_PRESSURE_KINDS:
                problems.append((("devices", i, "riser_top"), f"only pipe-pressure sensors "
                                 f"({', '.join(sorted(PIPE_PRESSURE_KINDS))}) have a riser top, not a {d.kind}"))
            elif b is None or d.floor is None:
                problems.append((("devices", i, "riser_top"), "a riser top needs the sensor's building and floor"))
            elif d.riser_top not in b.floors or d.riser_top < d.floor:
                problems.append((("devices", i, "riser_top"), f"{d.riser_top} is not a floor of building {b.id} "
                                 f"at or above the sensor's floor {d.floor}"))
        if d.components is None:
            continue
        if d.kind != "fire_panel":
            problems.append((("devices", i, "components"),
                             f"only a fire_panel has component addresses, not a {d.kind}"))
            continue
        for address, comp_id in d.components.items():
            comp = devices.get(comp_id)
            if comp is None:
                problems.append((("devices", i, "components", address), f"unknown device {comp_id!r}"))
            elif comp.kind not in PANEL_COMPONENT_KINDS:
                problems.append((("devices", i, "components", address), f"{comp_id} is a {comp.kind}, not a fire "
                                 f"component ({', '.join(sorted(PANEL_COMPONENT_KINDS))})"))
            elif comp_id in on_panel:
                panel, other = on_panel[comp_id]
                problems.append((("devices", i, "components", address), f"{comp_id} is already at {panel} "
                                 f"component {other}"))
            else:
                on_panel[comp_id] = (d.id, address)
    return problems


# -- plane geometry (pure, small) -------------------------------------------------------------------


def centroid(poly: list[Point]) -> Point:
    n = len(poly)
    return (sum(p[0] for p in poly) / n, sum(p[1] for p in poly) / n)


def point_in_polygon(pt: Point, poly: list[Point]) -> bool:
    x, y = pt
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _orient(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Proper crossing (interiors intersect); touching at endpoints does not count."""
    d1, d2 = _orient(q1, q2, p1), _orient(q1, q2, p2)
    d3, d4 = _orient(p1, p2, q1), _orient(p1, p2, q2)
    return ((d1 > 0) != (d2 > 0)) and ((d3 > 0) != (d4 > 0)) and 0 not in (d1, d2, d3, d4)


def self_intersects(poly: list[Point]) -> bool:
    edges = list(zip(poly, poly[1:] + poly[:1], strict=True))
    n = len(edges)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            if _segments_cross(*edges[i], *edges[j]):
                return True
    return False


def polygons_overlap(a: list[Point], b: list[Point]) -> bool:
    """True when the interiors of two simple polygons intersect (shared edges or corners are fine)."""
    ea = list(zip(a, a[1:] + a[:1], strict=True))
    eb = list(zip(b, b[1:] + b[:1], strict=True))
    if any(_segments_cross(*x, *y) for x in ea for y in eb):
        return True
    return point_in_polygon(centroid(a), b) or point_in_polygon(centroid(b), a)


class _BoundingBox(NamedTuple):
    xmin: float
    ymin: float
    xmax: float
    ymax: float


def _bounding_box(poly: list[Point]) -> _BoundingBox:
    xs, ys = [p[0] for p in poly], [p[1] for p in poly]
    return _BoundingBox(min(xs), min(ys), max(xs), max(ys))


def _boxes_overlap(a: _BoundingBox, b: _BoundingBox) -> bool:
    return a.xmin < b.xmax and b.xmin < a.xmax and a.ymin < b.ymax and b.ymin < a.ymax


class CommunityError(ValueError):
    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + f"\n{source}: ".join(problems))
        self.problems = problems


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse(text: str, source: str = "<community>") -> Community:
    """Validate community YAML text; every problem is reported as ``source: line N: path: message``."""
    try:
        # JSON is YAML too; large generated communities are written as JSON because it parses 50x faster
        data: Any = orjson.loads(text) if text.lstrip().startswith("{") else yaml.load(text, Loader=_Loader)  # noqa: S506
    except orjson.JSONDecodeError as exc:
        raise CommunityError(source, [f"not valid JSON: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise CommunityError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise CommunityError(source, ["top level must be a mapping with version, id, name, buildings..."])
    try:
        community = Community.model_validate(data, context={"defer_references": True})
    except ValidationError as exc:
        root = _compose(text)
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            path = ".".join(str(p) for p in loc) or "(community)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"line {line}: {path}: {msg}" if line else f"{path}: {msg}")
        raise CommunityError(source, problems) from None
    refs = reference_problems(community)
    if refs:
        root = _compose(text)
        lines = []
        for loc, msg in refs:
            line = _line_of(root, loc)
            path = ".".join(str(p) for p in loc)
            lines.append(f"line {line}: {path}: {msg}" if line else f"{path}: {msg}")
        raise CommunityError(source, lines)
    return community


def _compose(text: str) -> yaml.Node | None:
    """The YAML node tree (with line marks); only built when there is an error to locate."""
    return yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            entry = next(((key, value) for key, value in node.value if key.value == part), None)
            if entry is None:
                break
            key_node, node = entry
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    else:
        if node is not None and line is None:
            line = node.start_mark.line + 1
    return line
