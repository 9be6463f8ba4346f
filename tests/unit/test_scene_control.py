"""The control room's 3D figures as built in Python (viz/scene.py and the scene part of viz/pages/control.py):
floor labels on their own slab, a fresh 3D subplot per view, stacked beacons (worst on top) naming the
affected floor, the selected alarm's highlight, and the alarm panel's filters applied to the scene."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from twin import care
from twin import geometry as geo
from twin.alarms import AlarmStatus, Severity
from twin.care import ResidentView
from twin.community import Community, parse
from twin.people import Role, User
from twin.state import Level, Rollup
from viz.data import AlarmView, DataUnavailable, LiveView
from viz.pages import control
from viz.scene import BEACON_STEP, MARKER_LIFT, SELECTED, Scene
from viz.shell import Dashboard, Req

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)


def _alarm(key: str, severity: Severity, device: str, floor: int, building: str = "B3") -> AlarmView:
    rule = key.partition("@")[0]
    return AlarmView(key=key, rule=rule, rule_name=f"{rule} / {rule} en",
                     severity=severity, status=AlarmStatus.ACTIVE_UNACK, subject=device, subject_type="device",
                     building=building, floor=floor, device=device, raised_at=NOW, last_seen=NOW, count=1, detail="")


ALARMS = [
    _alarm("panel_fire_alarm@B3-FACP", Severity.CRITICAL, "B3-FACP", 3),
    _alarm("device_fault@B3-F3-EL", Severity.MINOR, "B3-F3-EL", 3),
    _alarm("fire_shielded@B3-F4-SD1", Severity.WARNING, "B3-F4-SD1", 4),
    _alarm("fire_shielded@B3-F5-SD1", Severity.WARNING, "B3-F5-SD1", 5),
    _alarm("elevator_maintenance@B7-E1-M", Severity.WARNING, "B7-E1-M", 1, "B7"),
]


class _Data:
    """Just what the scene reads of :class:`viz.data.DashboardData`."""

    def __init__(self, community: Community, alarms: Sequence[AlarmView], rollup: Rollup) -> None:
        self._community, self._alarms, self._rollup = community, list(alarms), rollup

    def community(self) -> Community:
        return self._community

    def live(self) -> LiveView:
        return LiveView(rollup=self._rollup, elevator_floors={}, updated_at=NOW, version="1")

    def active_alarms(self) -> Sequence[AlarmView]:
        return self._alarms

    def care_register(self) -> _Register:
        return _Register()


class _Register:
    """Just the evacuation list of :class:`viz.care_model.CareRegisterData`: two residents on B3's 5th floor, one
    on its 2nd; unreadable for B7."""

    def evacuation(self, user: User, building: str) -> list[ResidentView]:
        if building == "B7":
            raise DataUnavailable("the care register cannot be read")
        if building != "B3":
            return []
        return [_resident(1, "B3-501", 5, "张**"), _resident(2, "B3-502", 5, ""), _resident(3, "B3-201", 2, "李**")]


def _resident(rid: int, unit: str, floor: int, name: str) -> ResidentView:
    plan = care.schedule("red", NOW, None, None, NOW, ZoneInfo("Asia/Shanghai"))
    return ResidentView(id=rid, community="sunshine", unit=unit, building="B3", floor=floor, grid="G1", level="red",
                        schedule=plan, mobility_limited=True, personal=False, name=name, category=None, phone=None,
                        last_visit_at=None, version=1)


@pytest.fixture(scope="module")
def sample() -> Community:
    return parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def board(sample: Community) -> Dashboard:
    # the live state says B3's fire panel is critical: only the alarms, through the filters, may say so
    rollup = Rollup(devices={"B3-FACP": Level.CRITICAL}, floors={("B3", 3): Level.CRITICAL},
                    buildings={"B3": Level.CRITICAL}, grids={}, community=Level.CRITICAL)
    return Dashboard(_Data(sample, ALARMS, rollup), poll_ms=1000, tz=ZoneInfo("Asia/Shanghai"),  # type: ignore[arg-type]
                     secure_cookies=False, clock=lambda: NOW)


def _req(lang: str = "zh") -> Req:
    return Req(User("operator", "值班员", Role.OPERATOR), lang, NOW)


def _trace(fig: dict[str, Any], name: str) -> dict[str, Any]:
    [tr] = [tr for tr in fig["data"] if tr.get("name") == name]
    return tr


def _notes(fig: dict[str, Any], anchor: str) -> dict[str, list[Any]]:
    """The figure's text labels (scene annotations) anchored on ``anchor`` as columns: text, x, y, z, colour."""
    [sid] = [k for k in fig["layout"] if k.startswith("scene")]
    notes = [n for n in fig["layout"][sid].get("annotations", []) if n["xanchor"] == anchor]
    return {"text": [n["text"] for n in notes], "x": [n["x"] for n in notes], "y": [n["y"] for n in notes],
            "z": [n["z"] for n in notes], "colour": [n["font"]["color"] for n in notes]}


def _beacons(fig: dict[str, Any], name: str) -> list[tuple[str, float, str, int]]:
    """(label, z, colour, size) of each beacon; a label is the text beside it (same height, its colour)."""
    tr = _trace(fig, name)
    labels = _notes(fig, "left")
    text = {(z, c): s for s, z, c in zip(labels["text"], labels["z"], labels["colour"], strict=True)}
    return [(text.get((z, c), ""), z, c, size)
            for z, c, size in zip(tr["z"], tr["marker"]["color"], tr["marker"]["size"], strict=True)]


def _texts(fig: dict[str, Any]) -> dict[str, list[Any]]:
    return _notes(fig, "right")


def test_each_floor_label_sits_at_the_middle_of_its_own_slab_beside_it(sample: Community) -> None:
    scene = Scene(sample)
    b = sample.building("B3")
    assert b is not None
    fig = scene.exploded("B3", {3: "critical"}, {}, floor_names={f: f"{f}F" for f in b.floors})
    labels = _texts(fig)
    for f, text, z, colour in zip(b.floors, labels["text"], labels["z"], labels["colour"], strict=True):
        span = geo.floor_span(b, f, exploded=True)
        assert text == f"{f}F"
        assert span.bottom < z < span.top, f"{text} at z={z} is not within its slab {span}"
        assert colour == (geo.PALETTE["critical"] if f == 3 else "#CBD5E1")
    # beside the slab (outside the footprint), running leftwards away from it
    xs, ys = [p[0] for p in b.footprint], [p[1] for p in b.footprint]
    x, y = labels["x"][0], labels["y"][0]
    assert not (min(xs) <= x <= max(xs) and min(ys) <= y <= max(ys))


def test_every_view_draws_in_its_own_3d_subplot(sample: Community) -> None:
    scene = Scene(sample)
    over = scene.overview({}, {})
    b3 = scene.exploded("B3", {}, {})
    b4 = scene.exploded("B4", {}, {})
    ids = []
    for fig in (over, b3, b4):
        [sid] = [k for k in fig["layout"] if k.startswith("scene")]
        assert {tr["scene"] for tr in fig["data"]} == {sid}
        ids.append(sid)
    assert ids[0] == "scene" and len(set(ids)) == 3
    assert scene.exploded("B3", {}, {})["layout"][ids[1]]["aspectratio"] == b3["layout"][ids[1]]["aspectratio"]


def test_overview_stacks_one_beacon_per_affected_floor_worst_on_top_and_names_the_floor(board: Dashboard) -> None:
    fig, *_ = control._scene_figure(_req(), board, None, "alarm")
    beacons = _beacons(fig, "告警位置")
    b3 = [bc for bc in beacons if bc[0].startswith(("3号楼", "4F", "5F"))]
    assert len(b3) == 3  # floors 3, 4 and 5: the minor fault on 3F shares the critical's beacon
    top = max(b3, key=lambda bc: bc[1])
    assert top[0] == "3号楼 3F" and top[2] == geo.PALETTE["critical"]
    assert top[3] > max(bc[3] for bc in b3 if bc is not top)
    zs = sorted(bc[1] for bc in b3)
    assert all(hi - lo >= BEACON_STEP - 1e-9 for lo, hi in itertools.pairwise(zs)), "beacons overlap"
    assert {bc[0] for bc in b3} == {"3号楼 3F", "4F", "5F"}
    # the affected floors are outlined on the building; the building is not named twice
    [bands] = [tr for tr in fig["data"] if tr.get("mode") == "lines"]
    b = board.community().building("B3")
    assert b is not None
    band_z = {round(z, 3) for z in bands["z"] if z is not None}
    assert band_z >= {round(sum(geo.floor_span(b, f)) / 2, 3) for f in (3, 4, 5)}
    names = _notes(fig, "center")["text"]
    assert "3号楼" not in names and "1号楼" in names


def test_the_selected_alarm_is_ringed_in_the_overview_and_in_its_building(board: Dashboard) -> None:
    key = "fire_shielded@B3-F4-SD1"
    fig, *_ = control._scene_figure(_req("en"), board, None, "alarm", selected=key)
    ring = _trace(fig, "selected alarm")
    assert ring["marker"]["color"] == [SELECTED] and ring["marker"]["symbol"] == ["circle-open"]
    [four] = [bc for bc in _beacons(fig, "alarm location") if bc[0].startswith("4F")]
    assert ring["z"] == [four[1]] and ring["marker"]["size"][0] > four[3]
    assert four[0] == "4F · fire_shielded en"
    assert any(tr.get("mode") == "lines" and tr["line"]["color"] == SELECTED for tr in fig["data"])

    fig, *_ = control._scene_figure(_req("en"), board, "B3", "alarm", selected=key)
    ring = _trace(fig, "selected alarm")
    xyz = board.scene().device_xyz("B3-F4-SD1", exploded="B3")
    assert xyz is not None and (ring["x"][0], ring["y"][0], ring["z"][0]) == pytest.approx(xyz)
    assert [n for n in _notes(fig, "left")["text"] if not n.startswith("B3-")] == ["fire_shielded en"]
    labels = _texts(fig)
    assert labels["colour"][labels["text"].index("4F")] == SELECTED
    # nothing selected, or an unknown key: no ring
    fig, *_ = control._scene_figure(_req("en"), board, "B3", "alarm", selected="nope@x")
    assert not [tr for tr in fig["data"] if tr.get("name") == "selected alarm"]


def test_residents_with_limited_mobility_stand_on_their_floors_in_the_building_view(board: Dashboard) -> None:
    fig, *_ = control._scene_figure(_req("en"), board, "B3", "alarm")
    people = _trace(fig, "limited mobility (evacuate first in a fire)")
    b = board.community().building("B3")
    assert b is not None
    top = {f: geo.floor_span(b, f, exploded=True).top for f in (2, 5)}
    assert [round(z - top[f], 3) for z, f in zip(people["z"], (5, 5, 2), strict=True)] == [MARKER_LIFT] * 3
    assert people["x"][1] - people["x"][0] == pytest.approx(2.0) and people["x"][2] == people["x"][0]
    assert people["hovertext"][0] == "Limited mobility · B3-501 张** · 5F · evacuate first in a fire"
    assert people["hovertext"][1].startswith("Limited mobility · B3-502 · 5F")  # no name on record: the unit alone
    assert {"B3-501", "B3-502", "B3-201"} <= set(_notes(fig, "left")["text"])  # each unit named beside its marker
    # not in the overview; none where the register is unreadable or holds nobody
    for building in (None, "B7", "B4"):
        fig, *_ = control._scene_figure(_req("en"), board, building, "alarm")
        assert not [tr for tr in fig["data"] if tr.get("name", "").startswith("limited mobility")]


def test_the_scene_shows_only_the_alarms_that_pass_the_panel_filters(board: Dashboard) -> None:
    warn = control.SceneFilter(severities=frozenset({"warning"}))
    fig, _title, _hover, note = control._scene_figure(_req("en"), board, None, "alarm", warn)
    beacons = _beacons(fig, "alarm location")
    assert {bc[2] for bc in beacons} == {geo.PALETTE["warning"]}
    assert sorted(bc[0] for bc in beacons) == ["3号楼 4F", "5F", "7号楼 1F"]
    meshes = {tr["name"] for tr in fig["data"] if tr["type"] == "mesh3d"}
    assert "critical" not in meshes and "warning" in meshes  # the live critical state is filtered out too
    assert note == "3D view follows the alarm filters: 3 of 5 alarms"

    only_b7 = control.SceneFilter(buildings=frozenset({"B7"}))
    fig, *_ = control._scene_figure(_req(), board, "B3", "alarm", only_b7)
    assert {tr["name"] for tr in fig["data"] if tr["type"] == "mesh3d"} <= {"正常", "电梯井"}
    fire = control.SceneFilter(categories=frozenset({"fire"}))
    fig, *_ = control._scene_figure(_req(), board, None, "alarm", fire)
    assert len(_trace(fig, "告警位置")["x"]) == 3  # B3's three floors; B7's lift is not a fire alarm
    fig, _t, _h, note = control._scene_figure(_req(), board, None, "alarm")
    assert len(_trace(fig, "告警位置")["x"]) == 4 and "筛选" not in note


def test_the_offscreen_render_legend_speaks_the_requested_language(sample: Community) -> None:
    from viz import render

    if render.find_cjk_font() is None:
        pytest.skip("no CJK font on this machine: Chinese cannot be drawn")
    view = render.plan_view(sample, building=None, floor=None, highlight=("B3", 3, "B3-F3-SD1"))

    def texts(lang: str | None) -> list[str]:
        p = render.build_scene(sample, view, floor_class={("B3", 3): "critical", ("B3", 4): "warning"},
                               device_class={"B3-F3-SD1": "critical"}, size=(320, 240), lang=lang)
        try:
            return [a.input for a in p.actors.values() if isinstance(getattr(a, "input", None), str)]
        finally:
            p.close()

    zh, en = texts(None), texts("en")  # Chinese unless asked otherwise
    assert {"紧急", "提示", "正常"} <= set(zh) and not {"critical", "warning", "normal"} & set(zh)
    assert {"critical", "warning", "normal"} <= set(en) and not {"紧急", "提示", "正常"} & set(en)
    with pytest.raises(render.RenderError, match="unknown language"):
        texts("fr")
