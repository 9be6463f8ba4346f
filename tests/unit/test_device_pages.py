"""The device page's and the inventory's pure parts: field names and units from the catalogue, readings as people
read them, relative times, the custom range's validation, alarm periods on the chart, the state timeline, and
the inventory's filters and sorting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.cli_base import sample_community_path
from twin import catalogue
from twin.alarms import AlarmStatus, Severity
from twin.community import Community, parse
from viz.data import AlarmSpan, AlarmView, DeviceEvent, DeviceSeen, HistoryPoint
from viz.pages import device_charts as ch
from viz.pages.devices import inventory_rows, select, sort_rows
from viz.shell import CHINA

NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in the community (UTC+8)


@pytest.fixture(scope="module")
def sample() -> Community:
    return parse(sample_community_path().read_text(encoding="utf-8"))


def test_every_field_has_a_name_in_both_languages_and_the_page_shows_it_with_its_unit() -> None:
    for spec in catalogue.KINDS.values():
        for f in spec.fields:
            assert f.name in catalogue.FIELD_LABELS, f"{spec.kind}.{f.name} has no display name"
            assert f.label_zh != f.name and f.label_en
    smoke = catalogue.KINDS["smoke_detector"]
    assert ch.field_label("zh", smoke.fields[0]) == "烟雾减光率 (%/m)"
    assert ch.field_label("en", smoke.fields[1]) == "battery (%)"
    assert ch.value_text("zh", smoke.fields[0], 0.5) == "0.5 %/m"
    panel = catalogue.KINDS["fire_panel"]
    assert ch.value_text("zh", panel.fields[0], 1.0) == "是" and ch.value_text("en", panel.fields[0], 0.0) == "no"
    assert ch.numeric_fields("fire_panel") == [] and [f.name for f in ch.numeric_fields("elevator")] == [
        "floor", "direction", "load"]


def test_relative_times() -> None:
    assert ch.ago("zh", NOW, NOW - timedelta(seconds=20)) == "刚刚"
    assert ch.ago("zh", NOW, NOW - timedelta(minutes=3, seconds=10)) == "3 分钟前"
    assert ch.ago("en", NOW, NOW - timedelta(hours=5)) == "5 h ago"
    assert ch.ago("zh", NOW, NOW - timedelta(days=2, hours=1)) == "2 天前"
    assert ch.ago("zh", NOW, None) == "从未"


@pytest.mark.parametrize(("start", "end", "says"), [
    ("", "2026-03-01 10:00", "请填写开始和结束时间"),
    ("2026-13-01 08:00", "2026-03-01 10:00", "时间格式不正确"),
    ("<script>", "2026-03-01 10:00", "时间格式不正确"),
    ("2026-03-01 10:00", "2026-03-01 08:00", "开始时间必须早于结束时间"),
    ("2026-01-01 08:00", "2026-02-20 08:00", "时间段最长 31 天"),
    ("2026-03-02 08:00", "2026-03-02 10:00", "开始时间不能晚于现在"),
    ("2025-12-01 08:00", "2025-12-02 08:00", "只保留最近 31 天的数据"),
])
def test_a_bad_custom_range_is_explained(start: str, end: str, says: str) -> None:
    got = ch.custom_range("zh", CHINA, NOW, start, end)
    assert isinstance(got, str) and says in got, got


def test_a_custom_range_is_read_in_the_community_clock() -> None:
    since, until = ch.custom_range("zh", CHINA, NOW, "2026-03-01 08:00", "2026-03-01T11:30")  # type: ignore[misc]
    assert since == datetime(2026, 3, 1, 0, 0, tzinfo=UTC) and until == datetime(2026, 3, 1, 3, 30, tzinfo=UTC)
    assert ch.bucket_for(until - since) == timedelta(minutes=2)
    assert ch.custom_range("en", CHINA, NOW, "2026-03-01 08:00", 5) == "Enter both a start and an end time."


def test_the_history_chart_shades_alarm_periods_and_speaks_chinese() -> None:
    pts = [HistoryPoint(NOW - timedelta(minutes=m), 1.0, 0.5, 3.0, 4) for m in (30, 20, 10)]
    spans = [AlarmSpan("k", "烟雾浓度上升 / smoke obscuration above normal", "warning", NOW - timedelta(minutes=25),
                       NOW - timedelta(minutes=15)), AlarmSpan("k2", "x", "critical", NOW - timedelta(minutes=5), None)]
    fig = ch.history_figure(pts, spans, lang="zh", tz=CHINA, since=NOW - timedelta(hours=1), until=NOW,
                            label="烟雾减光率", unit="%/m", normal=(0, 2))
    rects = [s for s in fig["layout"]["shapes"] if s["type"] == "rect"]
    assert [(r["x0"], r["x1"]) for r in rects] == [("2026-03-01 11:35:00", "2026-03-01 11:45:00"),
                                                   ("2026-03-01 11:55:00", "2026-03-01 12:00:00")]
    assert fig["data"][2]["x"][0] == "2026-03-01 11:30:00"  # local time, not UTC
    assert fig["layout"]["annotations"][0]["text"] == "烟雾浓度上升"
    assert "月" in fig["layout"]["xaxis"]["tickformatstops"][1]["value"]
    assert fig["layout"]["yaxis"]["title"]["text"] == "烟雾减光率 (%/m)"
    assert ch.graph_config("zh")["locale"] == "zh-CN" and "locale" not in ch.graph_config("en")
    en = ch.history_figure(pts, [], lang="en", tz=CHINA, since=NOW - timedelta(hours=1), until=NOW, label="x",
                           unit="", normal=None)
    assert "月" not in str(en["layout"]["xaxis"]) and not en["layout"]["shapes"]


def test_the_state_timeline_shows_active_periods_marks_and_alarms() -> None:
    events = [DeviceEvent(NOW - timedelta(minutes=40), "fire_alarm", "active"),
              DeviceEvent(NOW - timedelta(minutes=10), "fire_alarm", "cleared"),
              DeviceEvent(NOW - timedelta(minutes=5), "fault", "active")]
    spans = [AlarmSpan("k", "控制器火警 / panel fire", "critical", NOW - timedelta(minutes=40), None)]
    fig = ch.state_figure(events, spans, "fire_panel", lang="zh", tz=CHINA, since=NOW - timedelta(hours=1), until=NOW)
    bars = {(tr["y"][0], tr["base"][0], tr["x"][0]) for tr in fig["data"]}
    assert ("火警", "2026-03-01 11:20:00", 30 * 60_000) in bars
    assert ("故障", "2026-03-01 11:55:00", 5 * 60_000) in bars  # still active: up to now
    assert ("控制器火警", "2026-03-01 11:20:00", 40 * 60_000) in bars
    pulse = ch.state_figure([DeviceEvent(NOW, "door_cycle", "pulse")], [], "care_door", lang="en", tz=CHINA,
                            since=NOW - timedelta(hours=1), until=NOW)
    assert pulse["data"][0]["type"] == "scatter" and pulse["data"][0]["y"] == ["door cycle"]
    assert ch.short("fire alarm reported by the control panel") == "fire alarm reported by…"  # room on a phone
    assert ch.short("控制器火警") == "控制器火警" and len(ch.short("很" * 20)) == 12


def _alarm(device: str, severity: str, status: str = "active_unack") -> AlarmView:
    return AlarmView(key=f"r@{device}", rule="r", rule_name="r", severity=Severity(severity),
                     status=AlarmStatus(status), subject=device, subject_type="device", building=None, floor=None,
                     device=device, raised_at=NOW, last_seen=NOW, count=1, detail="")


def test_the_inventory_filters_and_sorts(sample: Community) -> None:
    devs = sample.devices
    a, b, c = devs[0].id, devs[1].id, devs[2].id
    seen = [DeviceSeen(a, NOW - timedelta(minutes=2), "online"), DeviceSeen(b, NOW - timedelta(days=3), "online"),
            DeviceSeen(c, NOW - timedelta(minutes=1), "offline")]
    alarms = [_alarm(a, "minor"), _alarm(a, "critical"), _alarm(b, "major", "cleared_unack")]
    rows = inventory_rows(sample, seen, alarms, NOW, "zh")
    assert len(rows) == len(devs)
    by = {r.id: r for r in rows}
    assert (by[a].state, by[a].alarm) == ("online", "critical")
    assert (by[b].state, by[b].alarm) == ("offline", None)  # silent for 3 days; its alarm is cleared
    assert by[c].state == "offline" and by[devs[3].id].state == "never"
    assert [r.id for r in select(rows, alarm="yes", now=NOW)] == [a]
    assert {r.id for r in select(rows, state="offline", now=NOW)} == {b, c}
    assert {r.id for r in select(rows, silent="24h", now=NOW)} >= {b, devs[3].id} and a not in {
        r.id for r in select(rows, silent="24h", now=NOW)}
    kind = catalogue.KINDS[devs[0].kind]
    hits = select(rows, query=f"{kind.label_zh} {devs[0].id.lower()}", now=NOW)
    assert [r.id for r in hits] == [a]
    names = [b.name for b in sample.buildings]
    b0 = next(b for b in sample.buildings if sum(b.name in n for n in names) == 1)  # "3号楼", not also "13号楼"
    found = select(rows, query=b0.name, now=NOW)
    assert found and all(r.building == b0.id for r in found)
    newest = sort_rows(list(rows), "seen", True, "zh")
    assert [r.id for r in newest[:3]] == [c, a, b] and newest[-1].last_seen is None
    assert sort_rows(list(rows), "alarm", True, "zh")[0].id == a
