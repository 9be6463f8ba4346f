"""Community files: the bundled sample is valid; bad files are rejected with line-numbered problems."""

from __future__ import annotations

import pytest

from gateway.cli import sample_community_path
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
