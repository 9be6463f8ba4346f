"""The control room's 3D scene in Debian's Chromium during a fire, against the running system (the fixtures of
``test_browser``): a building opened from the overview draws its markers and labels as a reload does, the
overview names the affected floors with beacons stacked worst on top, the selected alarm is ringed in 3D,
and the alarm panel's severity filter filters the scene.

The devices report through the real broker; the alarms come from the real alarm service.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.e2e import test_browser as tb
from tests.e2e.test_browser import Page, System, _wait, publish
from twin import contract
from twin import geometry as geo

# the module-wide system, the browser and a tab: the same fixtures as test_browser (pytest finds them by name here)
system = tb.system
browser = tb.browser
tab = tb.tab

pytestmark = pytest.mark.integration

# the fire on 3号楼's 3rd floor and what else is going on in the building: (device, event code, component)
EVENTS = [("B3-F4-SD1", "shielded", None), ("B3-F5-SD1", "shielded", None), ("B3-F3-EL", "fault", None),
          ("B3-F3-SD1", "fire_alarm", None), ("B3-FACP", "fire_alarm", "B3-F3-SD1"), ("B3-F3-SD2", "fire_alarm", None)]
WORST_FIRST = [geo.PALETTE[c] for c in ("critical", "major", "minor", "warning")]
PLOT = "document.querySelector('#scene .js-plotly-plot')"
# the scene's text labels (annotations of its 3D subplot), anchored on a side: left = beacon labels, right = floors
NOTES = "Object.keys(gd.layout).filter(k => k.startsWith('scene')).flatMap(k => gd.layout[k].annotations || [])"


def _publish(system: System, events: list[tuple[str, str, str | None]]) -> None:
    for n, (device, code, component) in enumerate(events):
        body: dict[str, Any] = {"v": 1, "ts": int(datetime.now(UTC).timestamp() * 1000), "seq": 10 + n,
                                "code": code, "state": "active"}
        if component:
            body["component"] = component
        publish(system, device, contract.Channel.EVENT, [body])


def _canvas(tab: Page) -> np.ndarray:
    png = tab.page.locator("#scene.dash-graph").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int32)


def _light(img: np.ndarray) -> int:
    """Pixels of the light grey device markers and floor labels (#CBD5E1-ish, not the blue-grey slabs).
    Drawn at half size (the defect this guards against) they cover about 0.6 times as many."""
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    return int(((r > 170) & (g > 170) & (b - r < 35)).sum())


def _settled(tab: Page, timeout: float = 30) -> np.ndarray:
    """The 3D canvas once two screenshots in a row are the same (WebGL has finished drawing)."""
    last: list[np.ndarray] = [_canvas(tab)]

    def same() -> bool:
        now = _canvas(tab)
        stable = now.shape == last[0].shape and int(np.abs(now - last[0]).sum(axis=2).max()) == 0
        last[0] = now
        return stable
    assert _wait(same, timeout), "the 3D view keeps changing"
    return last[0]


def _figure_has(tab: Page, js: str, timeout: float = 30_000) -> None:
    """Wait until ``js`` (a predicate of the graph div ``gd``) holds for the scene's figure."""
    try:
        tab.page.wait_for_function(f"() => {{ const gd = {PLOT}; return !!(gd && gd.data && ({js})); }}",
                                   timeout=timeout, polling=100)
    except Exception as exc:  # playwright's TimeoutError: say what the page shows
        tab.shot("scene_timeout.png")
        raise AssertionError(f"the scene never showed {js!r}; console errors {tab.errors}") from exc


def _beacons(tab: Page) -> list[dict[str, Any]]:
    """The overview's beacons: label (the text beside each), height and colour."""
    got: list[dict[str, Any]] = tab.page.evaluate(f"""() => {{
        const gd = {PLOT};
        const b = gd.data.find(t => t.name === '告警位置');
        const l = ({NOTES}).filter(n => n.xanchor === 'left');
        if (!b) {{ return []; }}
        return b.z.map((z, i) => {{
            const c = b.marker.color[i];
            const n = l.find(n => n.z === z && n.font.color === c);
            return {{z: z, colour: c, label: n ? n.text : ''}};
        }});
    }}""")
    return got


def test_the_scene_opens_a_building_at_full_size_names_floors_rings_the_selection_and_filters(
        tab: Page, system: System) -> None:
    _publish(system, EVENTS)
    assert _wait(lambda: {"fire_confirmed", "fire_shielded", "device_fault"} <= {
        r[0] for r in system.sql("SELECT rule FROM alarms WHERE status = 'active_unack'")}, 90)
    tab.sign_in("operator")
    _figure_has(tab, f"({NOTES}).some(n => n.text === '3号楼 3F')", 150_000)

    # a building opened from the overview (the path a click on it sets) is drawn exactly as after a reload
    tab.page.evaluate("() => { window.history.pushState({}, '', '/building/B3');"
                      " window.dispatchEvent(new PopStateEvent('popstate')); }")
    _figure_has(tab, f"({NOTES}).some(n => n.xanchor === 'right')", 120_000)
    # the resident with limited mobility on the 20th floor stands there, to be evacuated first (fire SOP)
    _figure_has(tab, "gd.data.some(t => t.name === '行动不便住户（火警优先疏散）' && t.customdata.length === 1"
                     " && t.hovertext[0].includes('B3-2001') && t.hovertext[0].includes('20F'))", 30_000)
    opened = _settled(tab)
    tab.shot("scene_building_residents_zh.png")
    tab.page.reload()
    _figure_has(tab, f"({NOTES}).some(n => n.xanchor === 'right')", 120_000)
    reloaded = _settled(tab)
    ratio = _light(opened) / max(_light(reloaded), 1)
    print(f"building opened from the overview vs reloaded: {ratio:.2f} times the marker and label pixels")
    assert 0.85 < ratio < 1.18, f"markers and labels drawn at {ratio:.2f} times their size after a reload"

    # the overview: one beacon per affected floor of 3号楼, labelled with the floor, the worst the highest
    tab.page.click("#scene-back")
    _figure_has(tab, "gd.data.some(t => t.name === '告警位置') && gd.data.some(t => t.mode === 'lines')", 90_000)
    b3 = [b for b in _beacons(tab) if b["label"].startswith(("3号楼", "3F", "4F", "5F"))]
    assert sorted(b["label"] for b in b3) == ["3号楼 3F", "4F", "5F"], b3
    top = max(b3, key=lambda b: b["z"])
    assert top["label"] == "3号楼 3F"
    assert WORST_FIRST.index(top["colour"]) == min(WORST_FIRST.index(b["colour"]) for b in b3)

    # selecting an alarm in the list rings its beacon in 3D and names the alarm beside it
    for _ in range(10):  # the list may be redrawn under the first click
        tab.page.locator(".alarm-row[data-key='fire_shielded@B3-F4-SD1']").click()
        try:
            _figure_has(tab, "gd.data.some(t => t.name === '选中的告警')", 20_000)
            break
        except Exception:  # playwright's TimeoutError: click again
            continue
    ring_z = tab.page.evaluate(f"() => {PLOT}.data.find(t => t.name === '选中的告警').z[0]")
    [four] = [b for b in _beacons(tab) if b["label"].startswith("4F")]
    assert four["z"] == ring_z and "部件屏蔽" in four["label"]

    # the panel's severity filter filters the scene: only the warnings' beacons, no red building
    tab.page.click("#f-severity")
    tab.page.locator(".dash-dropdown-option, [role=option]", has_text="提示").first.click()
    _figure_has(tab, f"gd.data.filter(t => t.name === '告警位置').every(t => t.marker.color.every("
                     f"c => c === '{geo.PALETTE['warning']}')) && !gd.data.some(t => t.type === 'mesh3d'"
                     f" && t.color === '{geo.PALETTE['critical']}')", 60_000)
    assert "筛选" in tab.page.inner_text("#scene-note")
    assert sorted(b["label"] for b in _beacons(tab)) == ["3号楼 4F · 部件屏蔽", "5F"]
    assert tab.errors == []
