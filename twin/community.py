"""Community description: grids, buildings, elevators, devices and care units. Pure: parses text.

A community file is YAML (schema ``version: 1``). :func:`parse` validates it completely (shapes,
references between sections, catalogue kinds, floors inside the building) and raises
:class:`CommunityError` listing every problem with its line, so a bad file is never half-loaded.
"""

from __future__ import annotations

from datetime import date, time
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from twin import catalogue
from twin.contract import valid_id

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


class Community(_Model):
    version: Literal[1]
    id: Id
    name: str
    origin: tuple[float, float] = Field(description="lat, lon of local (0, 0)")
    grids: list[Grid] = []
    buildings: list[Building] = Field(min_length=1)
    elevators: list[Elevator] = []
    devices: list[Device] = []
    care_units: list[CareUnit] = []


    @model_validator(mode="after")
    def _references(self) -> Community:
        problems: list[str] = []
        sections: dict[str, list[str]] = {
            "grids": [g.id for g in self.grids], "buildings": [b.id for b in self.buildings],
            "elevators": [e.id for e in self.elevators], "devices": [d.id for d in self.devices],
        }
        for section, ids in sections.items():
            seen: set[str] = set()
            for i, item_id in enumerate(ids):
                if item_id in seen:
                    problems.append(f"{section}.{i}.id: duplicate id {item_id!r}")
                seen.add(item_id)
        buildings = {b.id: b for b in self.buildings}
        grids = {g.id for g in self.grids}
        elevators = {e.id for e in self.elevators}
        devices = {d.id: d for d in self.devices}
        for i, b in enumerate(self.buildings):
            if b.grid is not None and b.grid not in grids:
                problems.append(f"buildings.{i}.grid: unknown grid {b.grid!r}")
        for i, e in enumerate(self.elevators):
            eb = buildings.get(e.building)
            if eb is None:
                problems.append(f"elevators.{i}.building: unknown building {e.building!r}")
            elif not (e.serves[0] in eb.floors and e.serves[1] in eb.floors and e.serves[0] < e.serves[1]):
                problems.append(f"elevators.{i}.serves: {e.serves} not a floor range of building {eb.id}")
        for i, d in enumerate(self.devices):
            if d.building is not None:
                db = buildings.get(d.building)
                if db is None:
                    problems.append(f"devices.{i}.building: unknown building {d.building!r}")
                elif d.floor is not None and d.floor not in db.floors:
                    problems.append(f"devices.{i}.floor: building {db.id} has no floor {d.floor}")
            if d.elevator is not None and d.elevator not in elevators:
                problems.append(f"devices.{i}.elevator: unknown elevator {d.elevator!r}")
        for i, c in enumerate(self.care_units):
            if c.building not in buildings:
                problems.append(f"care_units.{i}.building: unknown building {c.building!r}")
            for j, s in enumerate(c.sensors):
                dev = devices.get(s)
                if dev is None:
                    problems.append(f"care_units.{i}.sensors.{j}: unknown device {s!r}")
                elif catalogue.KINDS[dev.kind].category != "care":
                    problems.append(f"care_units.{i}.sensors.{j}: {s!r} is a {dev.kind}, not a care sensor")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def building(self, building_id: str) -> Building | None:
        return next((b for b in self.buildings if b.id == building_id), None)

    def device(self, device_id: str) -> Device | None:
        return next((d for d in self.devices if d.id == device_id), None)


class CommunityError(ValueError):
    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + f"\n{source}: ".join(problems))
        self.problems = problems


def parse(text: str, source: str = "<community>") -> Community:
    """Validate community YAML text; every problem is reported as ``source:line: path: message``."""
    try:
        data: Any = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise CommunityError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise CommunityError(source, ["top level must be a mapping with version, id, name, buildings..."])
    try:
        return Community.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            path = ".".join(str(p) for p in loc) or "(community)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"line {line}: {path}: {msg}" if line else f"{path}: {msg}")
        raise CommunityError(source, problems) from None


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            nxt = next(((k, v) for k, v in node.value if k.value == part), None)
            if nxt is None:
                break
            line = nxt[0].start_mark.line + 1
            node = nxt[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    else:
        if node is not None and line is None:
            line = node.start_mark.line + 1
    return line
