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
    assert len(c.buildings) == 6 and len(c.devices) > 100
    assert {d.kind for d in c.devices} <= set(catalogue.KINDS)
    assert c.buildings[0].floors[:2] == [-1, 1]  # no floor 0


def test_good_minimal_file() -> None:
    c = parse(GOOD)
    assert c.device("D1") is not None and c.building("B1") is not None


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
