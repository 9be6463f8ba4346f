"""Synthetic communities: the bundled sample and large ones for benchmarks. Pure and deterministic.

:func:`generate` returns a community *document* (plain dicts, ready for YAML) so that what is
generated goes through exactly the same validation as a hand-written file.
"""

from __future__ import annotations

import math
import random
from typing import Any

from twin.community import floor_elevation
from twin.hydraulics import static_offset

SAMPLE_HEIGHTS = (18, 18, 26, 33, 11, 11, 6, 18, 26, 11, 33, 6)
LOOP_DEVICES = 180  # GB 50116-2013 §3.1.5: at most 200 devices on a bus loop, with at least 10 % spare
_PANEL_COMPONENTS = ("smoke_detector", "heat_detector", "manual_call_point")
FLOOR_HEIGHT = 2.9
# standby pressure at the most unfavourable point: above 0.15 MPa (GB 50974-2014 §5.3.3) and below the 0.6 MPa
# the over-pressure rule uses; a sensor lower down reads its static head on top (twin.hydraulics)
TOP_PRESSURE_NORMAL = (0.15, 0.6)


def _pipe_normal(floor: int, top: int) -> dict[str, list[float]]:
    """A pipe-pressure sensor's normal range at its height (the twin shows it abnormal outside)."""
    head = static_offset(floor_elevation(top, FLOOR_HEIGHT) - floor_elevation(floor, FLOOR_HEIGHT))
    return {"pressure": [round(TOP_PRESSURE_NORMAL[0] + head, 3), round(TOP_PRESSURE_NORMAL[1] + head, 3)]}
_SURNAMES = "李王张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
_GIVEN = "敏强静伟芳娜磊洋勇艳杰军涛明超秀霞平刚桂"


def _person(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + rng.choice(_GIVEN) + (rng.choice(_GIVEN) if rng.random() < 0.5 else "")


def generate(
    buildings: int = 12,
    *,
    seed: int = 7,
    devices: int | None = None,
    community_id: str = "sunshine",
    name: str = "阳光社区",
    heights: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """A community of ``buildings`` residential towers in rows, split into grids.

    ``devices``: aim for about this many devices in total by adding smoke detectors per floor
    (default: two per floor, as in a typical corridor layout; the sample has about 1,200).
    """
    if buildings < 1:
        raise ValueError("buildings must be >= 1")
    doc = _generate(buildings, seed, 2, community_id, name, heights)
    if devices is not None:
        have = len(doc["devices"])
        floors_above = sum(b["floors_above"] for b in doc["buildings"])
        extra = max(0, round((devices - have) / max(floors_above, 1)))
        if extra:
            doc = _generate(buildings, seed, 2 + extra, community_id, name, heights)
    return doc


def _generate(
    buildings: int,
    seed: int,
    detectors: int,
    community_id: str,
    name: str,
    heights: tuple[int, ...] | None,
) -> dict[str, Any]:
    rng = random.Random(seed)
    if heights is None:
        heights = SAMPLE_HEIGHTS if buildings <= len(SAMPLE_HEIGHTS) else ()
    floors = [heights[i] if i < len(heights) else rng.choice((6, 11, 18, 18, 26, 33)) for i in range(buildings)]
    per_row = max(3, math.ceil(math.sqrt(buildings * 1.5)))
    dx, dy = 48.0, 42.0
    n_grids = 1 if buildings < 4 else max(2, min(3, buildings // 4)) if buildings <= 20 else math.ceil(buildings / 6)
    cols_per_grid = max(1, math.ceil(per_row / n_grids)) if buildings <= 20 else None

    doc_buildings: list[dict[str, Any]] = []
    doc_elevators: list[dict[str, Any]] = []
    doc_devices: list[dict[str, Any]] = []
    doc_care: list[dict[str, Any]] = []
    grid_of: list[int] = []
    for i in range(buildings):
        row, col = divmod(i, per_row)
        x0, y0 = col * dx, row * dy
        w, d = 30.0 + (i % 3) * 2, 14.0
        if i % 4 == 3:  # every fourth tower is L-shaped
            fp = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + d + 10], [x0 + w - 12, y0 + d + 10],
                  [x0 + w - 12, y0 + d], [x0, y0 + d]]
        else:
            fp = [[x0, y0], [x0 + w, y0], [x0 + w, y0 + d], [x0, y0 + d]]
        bid = f"B{i + 1}"
        f_top = floors[i]
        below = 2 if f_top >= 26 else 1
        g = (col // cols_per_grid) if cols_per_grid else (i // 6)
        grid_of.append(g)
        doc_buildings.append({"id": bid, "name": f"{i + 1}号楼", "footprint": fp, "floors_above": f_top,
                              "floors_below": below, "floor_height": FLOOR_HEIGHT, "use": "residential"})
        n_lifts = 1 if f_top <= 11 else 2
        for e in range(n_lifts):
            eid = f"{bid}-E{e + 1}"
            shaft = [x0 + w / 2 - 2 + 4 * e, y0 + d / 2]
            doc_elevators.append({"id": eid, "building": bid, "shaft": shaft, "serves": [-below, f_top]})
            doc_devices.append({"id": f"{eid}-M", "kind": "elevator", "building": bid, "floor": 1,
                                "elevator": eid, "position": shaft})

        def dev(did: str, kind: str, floor: int, px: float, py: float, _b: str = bid, **extra: Any) -> None:
            doc_devices.append({"id": did, "kind": kind, "building": _b, "floor": floor,
                                "position": [round(px, 2), round(py, 2)], **extra})

        first = len(doc_devices)
        dev(f"{bid}-FACP", "fire_panel", 1, x0 + 2, y0 + 2)
        dev(f"{bid}-HYD", "hydrant_pressure", f_top, x0 + w - 2, y0 + 2,  # most unfavourable point: top
            normal=_pipe_normal(f_top, f_top))
        dev(f"{bid}-HYD-F1", "hydrant_pressure", 1, x0 + w - 2, y0 + 4, normal=_pipe_normal(1, f_top))
        dev(f"{bid}-SPK", "sprinkler_pressure", -below, x0 + w - 4, y0 + 2, normal=_pipe_normal(-below, f_top))
        dev(f"{bid}-TANK", "water_tank", f_top, x0 + 4, y0 + d - 2)
        # the roof tank's pressure-holding set (GB 50974-2014 §5.2.2 item 5: where the tank alone cannot hold the
        # static pressure at the most unfavourable point, a pressure-holding pump does)
        dev(f"{bid}-JP", "jockey_pump", f_top, x0 + 7, y0 + d - 2)
        dev(f"{bid}-F1-TH", "temp_humidity", 1, x0 + 12, y0 + d - 2)
        dev(f"{bid}-F1-EXT", "extinguisher", 1, x0 + 6, y0 + 2)
        for bf in range(1, below + 1):
            dev(f"{bid}-B{bf}-SD1", "smoke_detector", -bf, x0 + 8, y0 + d / 2)
            dev(f"{bid}-B{bf}-GAS", "gas", -bf, x0 + 5, y0 + d - 4)
            # GB 50028-2006 §10.8.2-10.8.4: a basement gas room's detector drives its shut-off valve and exhaust fan
            dev(f"{bid}-B{bf}-VALVE", "gas_valve", -bf, x0 + 3, y0 + d - 4)
            dev(f"{bid}-B{bf}-FAN", "exhaust_fan", -bf, x0 + 5, y0 + d - 1)
            dev(f"{bid}-B{bf}-LEAK", "water_leak", -bf, x0 + 10, y0 + d - 2)
        dev(f"{bid}-B1-CO", "co", -1, x0 + 14, y0 + 3)
        for f in range(1, f_top + 1):
            for k in range(detectors):
                dev(f"{bid}-F{f}-SD{k + 1}", "smoke_detector", f, x0 + (k + 1) * w / (detectors + 1), y0 + d / 2)
            dev(f"{bid}-F{f}-MCP", "manual_call_point", f, x0 + 1, y0 + d / 2)
            dev(f"{bid}-F{f}-EL", "emergency_light", f, x0 + w - 1, y0 + d / 2)
            if f % 3 == 0:
                dev(f"{bid}-F{f}-HD1", "heat_detector", f, x0 + w / 2, y0 + 3)
                dev(f"{bid}-F{f}-FD", "fire_door", f, x0 + w / 2 + 3, y0 + 1)
        # the panel's address table (GB 26875.3 component addresses): its building's detectors and call points,
        # numbered along bus loops from the basement up
        wired = [d["id"] for d in doc_devices[first:] if d["kind"] in _PANEL_COMPONENTS]
        doc_devices[first]["components"] = {f"{1 + n // LOOP_DEVICES}-{1 + n % LOOP_DEVICES}": did
                                            for n, did in enumerate(wired)}
        # care units of elderly residents living alone (seed 3.2: red weekly, yellow fortnightly, green monthly)
        for u in range(2 if f_top >= 11 else 1):
            floor = rng.randint(2, f_top) if f_top >= 2 else 1
            unit = f"{bid}-{floor}0{u + 1}"
            doc_devices.append({"id": f"{unit}-DOOR", "kind": "care_door", "building": bid, "floor": floor,
                                "unit": unit, "position": [round(x0 + 4 + 10 * u, 2), y0 + d - 1]})
            doc_devices.append({"id": f"{unit}-WATER", "kind": "care_water", "building": bid, "floor": floor,
                                "unit": unit, "position": [round(x0 + 6 + 10 * u, 2), y0 + d - 1]})
            doc_care.append({"unit": unit, "building": bid, "floor": floor,
                             "level": rng.choice(("red", "yellow", "yellow", "green", "green")),
                             "sensors": [f"{unit}-DOOR", f"{unit}-WATER"]})

    doc_devices.append({"id": "PUMP-1", "kind": "fire_pump", "building": "B1", "floor": -1, "position": [5, 4]})
    doc_devices.append({"id": "PUMP-2", "kind": "fire_pump", "building": "B1", "floor": -1, "position": [8, 4]})
    rows = math.ceil(buildings / per_row)
    doc_devices.append({"id": "NOISE-1", "kind": "noise", "position": [per_row * dx / 2, -10]})
    doc_devices.append({"id": "NOISE-2", "kind": "noise", "position": [per_row * dx / 2, rows * dy]})

    grids = _grids(doc_buildings, grid_of, rng)
    for b, g in zip(doc_buildings, grid_of, strict=True):
        b["grid"] = grids[g]["id"]
    return {
        "version": 1,
        "id": community_id,
        "name": name,
        "origin": [30.2741, 120.1551],
        "grids": grids,
        "buildings": doc_buildings,
        "elevators": doc_elevators,
        "devices": doc_devices,
        "care_units": doc_care,
    }


def _grids(buildings: list[dict[str, Any]], grid_of: list[int], rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for g in sorted(set(grid_of)):
        members = [b for b, gg in zip(buildings, grid_of, strict=True) if gg == g]
        xs = [p[0] for b in members for p in b["footprint"]]
        ys = [p[1] for b in members for p in b["footprint"]]
        x0, x1, y0, y1 = min(xs) - 8, max(xs) + 8, min(ys) - 8, max(ys) + 8
        n_workers = 2 if g == 0 else 1
        workers = [{"id": f"w{g + 1}-{k + 1}", "name": _person(rng), "phone": f"1380000{g + 1:02d}{k + 1:02d}",
                    "on_duty": ["08:00", "18:00"] if k == 0 else ["18:00", "08:00"]} for k in range(n_workers)]
        out.append({"id": f"G{g + 1}", "name": f"第{g + 1}网格", "boundary": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]],
                    "workers": workers, "supervisor": "s-1", "backup": f"w{(g + 1) % len(set(grid_of)) + 1}-1"})
    return out
