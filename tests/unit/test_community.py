"""Community files: the bundled sample is valid; bad files are rejected with line-numbered problems."""

from __future__ import annotations

import pytest

from gateway.cli_base import sample_community_path
from twin import catalogue
from twin.community import CommunityError, parse

GOOD = """
version: 1
id: c1
name: test
origin: [30.0, 120.0]
grids:
  - {id: G1, name: g, boundary: [[0,0],[100,0],[100,100]], workers: [{id: w1, name: W}], supervisor: s1}
buildings:
  - {id: B1, name: b1, footprint: [[0,0],[10,0],[10,10],[0,10]], floors_above: 5, floors_below: 1, grid: G1}
elevators:
  - {id: E1, building: B1, shaft: [5, 5], serves: [-1, 5]}
devices:
  - {id: D1, kind: smoke_detector, building: B1, floor: 3}
  - {id: D2, kind: care_door, building: B1, floor: 2, unit: "201"}
care_units:
  - {unit: "201", building: B1, floor: 2, level: red, sensors: [D2]}
"""


def test_sample_community_is_valid_and_uses_every_kind_it_needs() -> None:
    c = parse(sample_community_path().read_text(encoding="utf-8"))
    assert len(c.buildings) == 12 and 1000 <= len(c.devices) <= 2000
    assert 2 <= len(c.grids) <= 3 and 3 <= sum(len(g.workers) for g in c.grids) <= 4
    assert {b.floors_above for b in c.buildings} <= set(range(6, 34)) and c.care_units
    assert all(c.grid_of(b) is not None for b in c.buildings)
    assert {d.kind for d in c.devices} <= set(catalogue.KINDS)
    assert c.buildings[0].floors[:2] == [-1, 1]  # no floor 0


def test_generated_communities_are_deterministic_and_valid() -> None:
    import orjson

    from twin.generate import generate

    a, b = generate(40, seed=5, devices=8000), generate(40, seed=5, devices=8000)
    assert a == b and a != generate(40, seed=6, devices=8000)
    c = parse(orjson.dumps(a).decode())
    assert len(c.buildings) == 40 and 7200 <= len(c.devices) <= 8800


def test_good_minimal_file() -> None:
    c = parse(GOOD)
    assert c.device("D1") is not None and c.building("B1") is not None
    # a second building sharing a wall is not an overlap
    b2 = "\n  - {id: B2, name: b2, footprint: [[10,0],[20,0],[20,10],[10,10]], floors_above: 2}"
    touching = GOOD.replace("grid: G1}", "grid: G1}" + b2)
    assert len(parse(touching).buildings) == 2


def test_every_problem_is_listed_not_just_the_first() -> None:
    bad = GOOD.replace("floor: 3}", "floor: 9}").replace("grid: G1}", "grid: G9}")
    with pytest.raises(CommunityError) as e:
        parse(bad)
    assert len(e.value.problems) == 2


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("kind: smoke_detector", "kind: toaster", "line 13: devices.0.kind: Value error, unknown device kind"),
        ("floor: 3}", "floor: 9}", "devices.0.floor: building B1 has no floor 9"),
        ("serves: [-1, 5]", "serves: [-1, 50]", "elevators.0.serves"),
        ("sensors: [D2]", "sensors: [D1]", "is a smoke_detector, not a care sensor"),
        ("grid: G1}", "grid: G9}", "buildings.0.grid: unknown grid 'G9'"),
        ("floors_above: 5,", "floors_above: 0,", "line 9: buildings.0.floors_above"),
        ("[[0,0],[10,0],[10,10],[0,10]]", "[[0,0],[10,0]]", "a polygon needs at least 3 points"),
        ("id: D2,", "id: D1,", "devices.1.id: duplicate id 'D1'"),
        ("name: test", "name: test\ncolour: red", "line 5: colour: unknown key"),
        ("version: 1", "version: 2", "version"),
        ("[[0,0],[10,0],[10,10],[0,10]]", "[[0,0],[10,8],[10,0],[0,10]]",
         "line 9: buildings.0.footprint: footprint polygon intersects itself"),
        ("grid: G1}", "grid: G1}\n  - {id: B2, name: b2, footprint: [[5,5],[15,5],[15,15],[5,15]], floors_above: 2}",
         "buildings.1.footprint: overlaps building 'B1'"),
        ("grid: G1}", "grid: G1}\n  - {id: B2, name: b2, footprint: [[500,5],[515,5],[515,15],[500,15]], "
                      "floors_above: 2}",
         "buildings.1.footprint: building lies outside every grid boundary"),
        ("floor: 3}", "floor: 3, normal: {obscuration: [0, 500]}}",
         "devices.0.normal.obscuration: [0.0, 500.0] is not an increasing range inside the catalogue's valid range"),
        ("floor: 3}", "floor: 3, normal: {pressure: [0, 1]}}", "smoke_detector has no field 'pressure'"),
        ("id: E1, building: B1", "id: E1, building: B7", "line 11: elevators.0.building: unknown building 'B7'"),
        ("floor: 3}", "floor: 3, riser_top: 5}", "devices.0.riser_top: only pipe-pressure sensors"),
        ("kind: smoke_detector, building: B1, floor: 3}", "kind: hydrant_pressure, building: B1, floor: 3, "
                                                          "riser_top: 2}",
         "devices.0.riser_top: 2 is not a floor of building B1 at or above the sensor's floor 3"),
        ("floor: 3}", "floor: 3}\n  - {id: P1, kind: fire_panel, building: B1, floor: 1, components: {1-1: D9}}",
         "line 14: devices.1.components.1-1: unknown device 'D9'"),
        ("floor: 3}", "floor: 3}\n  - {id: P1, kind: fire_panel, building: B1, floor: 1, components: {1-1: D2}}",
         "devices.1.components.1-1: D2 is a care_door, not a fire component"),
        ("floor: 3}", "floor: 3}\n  - {id: P1, kind: fire_panel, building: B1, floor: 1, components: {loop1: D1}}",
         "devices.1.components: Value error, 'loop1' is not a component address"),
        ("floor: 3}", "floor: 3}\n  - {id: P1, kind: fire_panel, building: B1, floor: 1, "
                      "components: {1-1: D1, 01-001: D1}}", "address '01-001' is given twice (as 1-1)"),
        ("floor: 3}", "floor: 3}\n  - {id: P1, kind: fire_panel, building: B1, floor: 1, components: {1-1: D1}}"
                      "\n  - {id: P2, kind: fire_panel, building: B1, floor: 1, components: {2-7: D1}}",
         "line 15: devices.2.components.2-7: D1 is already at P1 component 1-1"),
        ("floor: 3}", "floor: 3, components: {1-1: D1}}", "devices.0.components: only a fire_panel has component"),
    ],
)
def test_bad_files_name_line_and_field(old: str, new: str, fragment: str) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    with pytest.raises(CommunityError) as e:
        parse(text, "c.yaml")
    assert fragment in str(e.value), str(e.value)
    assert str(e.value).startswith("c.yaml: ")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "key: [unclosed\n"])
def test_not_a_community_at_all(text: str) -> None:
    with pytest.raises(CommunityError):
        parse(text)


def test_panel_address_table_and_riser_heights() -> None:
    from twin.community import address_in_detail
    from twin.hydraulics import MPA_PER_METRE, head_below_top, static_offset

    text = GOOD.replace("floor: 3}", "floor: 3}\n  - {id: P1, kind: fire_panel, building: B1, floor: 1, "
                                     "components: {01-023: D1}}\n  - {id: H1, kind: hydrant_pressure, building: B1, "
                                     "floor: -1}\n  - {id: H2, kind: hydrant_pressure, building: B1, floor: 1, "
                                     "riser_top: 3}", 1)
    c = parse(text)
    assert c.component("P1", "1-23") == c.device("D1") and c.component("P1", "001-0023") == c.device("D1")
    assert c.component("P1", "1-24") is None and c.component("D1", "1-23") is None
    assert address_in_detail("fire: component 01-023 (smoke)") == "1-23"
    assert address_in_detail("confirmed: two detectors") is None and address_in_detail(None) is None
    # B1: 5 floors of 3 m above ground and a basement: the basement sensor is 5 storeys below floor 5
    h1, h2 = c.device("H1"), c.device("H2")
    assert h1 is not None and h2 is not None
    assert head_below_top(c, h1) == pytest.approx(15.0) and head_below_top(c, h2) == pytest.approx(6.0)
    assert static_offset(100.0) == pytest.approx(100 * MPA_PER_METRE) == pytest.approx(0.98, abs=0.01)
