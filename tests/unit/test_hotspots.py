"""Hotspots, pure: the root-cause hint rules at their thresholds, the ranking, the breakdowns, the colour scales, the
3D heat map figure, and the page's content from a data source of our own (the DashboardData seam)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from gateway.cli_base import sample_community_path
from twin import hotspots as hs
from twin.community import Community, parse
from twin.hotspots import IncidentGroup
from twin.people import Role, User
from viz.pages import hotspots as page
from viz.scene import Scene
from viz.shell import Req

LABELS = {"fire_lane": "消防通道堵塞 / Blocked fire lane", "fire_prealarm": "火警预警 / Fire pre-alarm",
          "falling_objects": "高空抛物 / Objects thrown from height"}


def label(cat: str) -> str:
    return LABELS.get(cat, cat)


def rep(cat: str, n: int, hour: int = 10, building: str = "B3", floor: int | None = 1) -> IncidentGroup:
    return IncidentGroup("report", building, floor, cat, hour, n)


def alarm(cat: str, n: int, hour: int = 10, device: str | None = "D1", false: int = 0, building: str = "B5",
          floor: int | None = 2) -> IncidentGroup:
    return IncidentGroup("sensor", building, floor, cat, hour, n, device, false)


def codes(groups: Sequence[IncidentGroup]) -> list[str]:
    return [h.code for h in hs.hints(groups, label)]


# -- hint rules --------------------------------------------------------------------------------------------


def test_the_same_report_repeating_at_a_place_asks_for_the_source_to_be_tackled() -> None:
    [h] = hs.hints([rep("fire_lane", 5)], label)
    assert (h.code, h.n, h.of, h.subject) == ("repeat", 5, 5, "fire_lane")
    assert h.zh == "消防通道堵塞反复发生 5 次：建议源头治理（物业/执法）"
    assert h.text("en").startswith("Blocked fire lane reported 5 times")
    assert codes([rep("fire_lane", 2)]) == []  # below REPEAT_MIN
    assert codes([rep("fire_lane", 3), rep("gas_smell", 2), rep("elevator_fault", 2)]) == []  # 3 of 7: not most


def test_alarms_mostly_closed_as_false_point_at_device_maintenance() -> None:
    groups = [alarm("fire_prealarm", 2, device="D1", false=2), alarm("fire_prealarm", 2, device="D2", false=1)]
    found = hs.hints(groups, label)
    assert found[0].code == "false_alarms" and (found[0].n, found[0].of) == (3, 4)
    assert "检修设备或调整灵敏度" in found[0].zh
    assert "false_alarms" not in codes([alarm("x", 4, false=2)])  # below FALSE_MIN
    assert "false_alarms" not in codes([alarm("x", 7, false=3)])  # 3 of 7: under half


def test_one_device_behind_most_alarms_is_named_and_replaces_the_alarm_repeat() -> None:
    groups = [alarm("fire_door_open", 4, device="B7-F3-FD"), alarm("fire_door_open", 1, device="B7-F3-FD2")]
    found = hs.hints(groups, label)
    assert [h.code for h in found] == ["one_device"]  # the repeat of fire_door_open is that device's
    assert (found[0].subject, found[0].n, found[0].of) == ("B7-F3-FD", 4, 5)
    assert "B7-F3-FD" in found[0].zh and "现场检查" in found[0].zh
    assert codes([alarm("x", 3, device="D1")]) == ["repeat"]  # 3 alarms: below DEVICE_MIN, still a repeat
    spread = [alarm("x", 2, device="D1"), alarm("x", 2, device="D2"), alarm("x", 1, device="D3")]
    assert "one_device" not in codes(spread)  # 2 of 5 at most


def test_incidents_clustered_at_night() -> None:
    night = [rep("falling_objects", 1, hour=h) for h in (23, 1, 2)] + [rep("falling_objects", 1, hour=14)]
    found = hs.hints(night, label)
    assert [h.code for h in found] == ["repeat", "night"]
    assert (found[1].n, found[1].of) == (3, 4) and "夜间巡查" in found[1].zh  # reports: patrol
    alarms_at_night = [alarm("a", 1, hour=h, device=f"D{h}") for h in (22, 0, 3, 5, 12)]
    assert "设备夜间工况" in next(h for h in hs.hints(alarms_at_night, label) if h.code == "night").zh
    assert "night" not in codes([rep("a", 1, hour=h) for h in (23, 1, 14, 15)])  # half: not a cluster
    assert "night" not in codes([rep("a", 1, hour=h) for h in (23, 1, 2)])  # three: too few to tell
    assert "night" not in codes([rep("a", 1, hour=h) for h in (6, 21, 7, 20)])  # 06:00-22:00 is day


def test_a_quiet_place_gets_no_hint() -> None:
    assert hs.hints([rep("fire_lane", 1), alarm("smoke_rising", 1)], label) == ()


# -- ranking and breakdowns --------------------------------------------------------------------------------


def test_places_are_ranked_worst_first_with_the_source_split() -> None:
    groups = [rep("fire_lane", 5), alarm("smoke_rising", 1, building="B3", floor=1),
              alarm("fire_prealarm", 4, false=3), rep("elevator_fault", 2, building="B4"),
              alarm("hydrant_pressure_low", 2, device=None, building="B11", floor=None),
              IncidentGroup("report", "B9", 12, "x", 1, 0)]  # an empty group is no place
    spots = hs.rank(groups, label)
    assert [(h.building, h.floor, h.count, h.sensor, h.reports) for h in spots] == [
        ("B3", 1, 6, 1, 5), ("B5", 2, 4, 4, 0), ("B4", 1, 2, 0, 2), ("B11", None, 2, 2, 0)]  # tie: reports first
    top = spots[0]
    assert (top.top_category, top.top_count, top.top_label) == ("fire_lane", 5, LABELS["fire_lane"])
    assert top.hint.startswith("消防通道堵塞反复发生 5 次") and top.hint_en
    assert spots[1].false_alarms == 3 and spots[1].device == "D1"
    assert spots[1].hint == "；".join(h.zh for h in spots[1].hints)
    assert spots[3].hint == "" and spots[3].hints == ()
    assert hs.rank(groups, label, top=2) == spots[:2]
    d = top.as_dict()
    assert d["hints"][0]["code"] == "repeat" and d["categories"][0] == {"category": "fire_lane", "count": 5}
    assert hs.per_building(spots)[0] == ("B3", 6, 1, 5)
    assert hs.building_counts(spots)["B11"] == 2
    assert set(hs.floor_counts(spots)) == {("B3", 1), ("B5", 2), ("B4", 1)}


def test_category_by_hour_bucket_and_by_building() -> None:
    groups = [rep("fire_lane", 2, hour=0), rep("fire_lane", 1, hour=23), rep("fire_lane", 1, hour=10),
              alarm("fire_lane", 1, hour=2), rep("gas_smell", 1, building="B4", hour=5)]
    hours = hs.by_hour(groups)
    assert list(hours) == [("report", "fire_lane"), ("report", "gas_smell"), ("sensor", "fire_lane")]
    assert hours[("report", "fire_lane")] == [2, 0, 0, 1, 0, 0, 0, 1]
    assert hs.buckets()[0] == (0, 3) and hs.buckets()[-1] == (21, 24)
    by_b = hs.by_building(groups)
    assert by_b[("report", "fire_lane")] == {"B3": 4} and by_b[("report", "gas_smell")] == {"B4": 1}
    assert hs.only_building(groups, "B4") == [groups[-1]] and hs.only_building(groups, None) == groups


# -- colours and the 3D heat map ---------------------------------------------------------------------------


@pytest.mark.parametrize("cmax", [1.0, 2.0, 6.0, 250.0])
def test_colour_scale_is_grey_at_zero_and_sequential_from_one(cmax: float) -> None:
    scale = page.colour_scale(cmax)
    positions = [p for p, _c in scale]
    assert positions[0] == 0.0 and positions[-1] == 1.0 and positions == sorted(positions)
    assert scale[0][1] == page.ZERO_COLOUR
    first_coloured = next(p for p, c in scale if c != page.ZERO_COLOUR)
    assert first_coloured <= 1.0 / cmax + 1e-9  # one incident is already coloured
    assert page.cell_colour(0, 5) == "" and page.cell_colour(1, 5) == page.SEQUENTIAL[0]
    assert page.cell_colour(5, 5) == page.SEQUENTIAL[-1] and page.cell_colour(1, 1) in page.SEQUENTIAL


@pytest.fixture(scope="module")
def sample() -> Community:
    return parse(sample_community_path().read_text(encoding="utf-8"))


def _floats(spec: dict[str, str]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.float32)


def test_heat_figure_colours_each_floor_by_its_count_with_hover_and_a_colour_bar(sample: Community) -> None:
    scene = Scene(sample)
    values = {("B3", 1): 6.0, ("B9", 12): 4.0}
    hover = {("B3", 1): "3号楼 1F: 6", ("B9", 12): "9号楼 12F: 4"}
    fig = scene.heat(values, hover, colorscale=page.colour_scale(6), cmax=6, title="事件数")
    [heat] = [tr for tr in fig["data"] if tr.get("intensity")]
    intensity = _floats(heat["intensity"])
    assert len(intensity) == len(_floats(heat["x"])) == len(heat["hovertext"]) == len(heat["customdata"])
    assert sorted(set(intensity.tolist())) == [0.0, 4.0, 6.0]
    assert {txt for txt, v in zip(heat["hovertext"], intensity, strict=True) if v == 6.0} == {"3号楼 1F: 6"}
    assert heat["showscale"] and heat["colorbar"]["title"]["text"] == "事件数" and heat["cmax"] == 6
    assert {tr["name"] for tr in fig["data"] if tr is not heat} <= {"ground", "shaft"}
    one = scene.heat(values, hover, colorscale=page.colour_scale(6), cmax=6, title="n", building="B3",
                     notes={1: "1F · 6", 99: "no such floor"})
    assert [a["text"] for a in one["layout"]["scene4"]["annotations"]] == ["1F · 6"]
    with pytest.raises(KeyError):
        scene.heat(values, hover, colorscale=page.colour_scale(6), cmax=6, title="n", building="NOPE")


# -- the page's content from our own data source ------------------------------------------------------------


@dataclass
class FakeData:
    groups: tuple[IncidentGroup, ...]
    asked: list[tuple[datetime, datetime]] = field(default_factory=list)

    def hotspot_data(self, since: datetime, until: datetime) -> hs.HotspotData:
        self.asked.append((since, until))
        return hs.HotspotData(self.groups, LABELS)


class FakeBoard:
    def __init__(self, community: Community, data: FakeData) -> None:
        self.data = data
        self._community = community
        self._scene = Scene(community)

    def community(self) -> Community:
        return self._community

    def scene(self) -> Scene:
        return self._scene


def _text(component: Any) -> str:
    """All the text of a Dash component tree."""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    children = getattr(component, "children", None)
    return "" if children is None else _text(children)


def _find(component: Any, ident: str) -> Any:
    if getattr(component, "id", None) == ident:
        return component
    children = getattr(component, "children", None)
    for c in children if isinstance(children, list | tuple) else [children] if children is not None else []:
        found = _find(c, ident)
        if found is not None:
            return found
    return None


NOW = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)
GROUPS = (rep("fire_lane", 5), alarm("fire_prealarm", 4, device="B5-F2-SD1", false=3),
          rep("elevator_fault", 2, building="B11", floor=1),
          alarm("hydrant_pressure_low", 2, device=None, building=None, floor=None))


def test_the_page_ranks_places_with_hints_for_the_buildings_the_user_may_see(sample: Community) -> None:
    data = FakeData(GROUPS)
    board: Any = FakeBoard(sample, data)
    op = Req(User("op", "值班员", Role.OPERATOR), "zh", NOW)
    out = page.body(op, board, 7, None)
    assert data.asked == [(NOW - timedelta(days=7), NOW)]
    ranked = _text(_find(out, "hs-ranked"))
    assert "3号楼 1F" in ranked and "消防通道堵塞反复发生 5 次" in ranked and "社区公共区域" in ranked
    assert "B5-F2-SD1" in ranked
    assert "共 13 起：设备告警 6 · 人工上报 7" in _text(_find(out, "hs-summary"))
    g1 = Req(User("s-g1", "网格长", Role.SUPERVISOR, ("G1",)), "en", NOW)  # G1: B11, not B3, B5
    mine = _text(_find(page.body(g1, board, 30, None), "hs-ranked"))
    assert "11号楼" in mine and "3号楼" not in mine and "Community-wide" not in mine
    assert "3号楼" not in _text(_find(page.body(g1, board, 30, "B3"), "hs-ranked"))  # not theirs: all of theirs
    only = page.body(op, board, 30, "B3")
    assert "5号楼" not in _text(_find(only, "hs-ranked"))
    assert _find(page.body(g1, FakeBoard(sample, FakeData(GROUPS[:2])), 30, None), "hs-none") is not None
