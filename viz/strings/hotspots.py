"""Strings of the hotspots page (``/hotspots``): device alarms and one-click reports per place, the 3D heat map, the
ranked list with its root-cause hints (their text comes from :mod:`twin.hotspots`), the category x time-of-day
breakdown. key -> (Simplified Chinese, English). Merged by :mod:`viz.i18n`."""
# ruff: noqa: E501

from __future__ import annotations

STRINGS: dict[str, tuple[str, str]] = {
    "hs.title": ("热点分析（近 {days} 天告警与上报）", "Hotspots (alarms and reports in the last {days} days)"),
    "hs.period": ("统计周期", "Period"),
    "hs.days": ("近 {n} 天", "{n} days"),
    "hs.building": ("楼栋", "Building"),
    "hs.all_buildings": ("全部楼栋", "All buildings"),
    "hs.summary": ("共 {total} 起：设备告警 {sensor} · 人工上报 {reports} · 涉及 {places} 处",
                   "{total} incidents: {sensor} device alarms · {reports} reports · {places} places"),
    "hs.none": ("本周期内没有告警或上报。", "No alarms or reports in this period."),
    "hs.map": ("三维热力图（按楼层）", "3D heat map (by floor)"),
    "hs.map.note": ("颜色越深事件越多；灰色为零。悬停查看楼层、次数与主要类别；选择楼栋可分层查看。",
                    "Darker means more incidents; grey is none. Hover for floor, count and main category; pick a building to see its floors apart."),
    "hs.scale": ("事件数", "Incidents"),
    "hs.hover": ("{place}<br>{count} 起（告警 {sensor} · 上报 {reports}）<br>主要：{top}",
                 "{place}<br>{count} incidents ({sensor} alarms · {reports} reports)<br>Main: {top}"),
    "hs.hover.none": ("{place}<br>无事件", "{place}<br>none"),
    "hs.ranked": ("热点排行（由高到低）", "Places, worst first"),
    "hs.col.rank": ("#", "#"),
    "hs.col.place": ("位置", "Place"),
    "hs.col.count": ("次数", "Incidents"),
    "hs.col.sensor": ("告警", "Alarms"),
    "hs.col.reports": ("上报", "reports"),
    "hs.col.top": ("主要类别", "Main category"),
    "hs.col.hint": ("原因提示", "Likely cause"),
    "hs.no_hint": ("—（数据不足以判断）", "— (not enough to tell)"),
    "hs.outlier": ("明显偏高", "stands out"),
    "hs.whole_building": ("（全楼）", "(building-wide)"),
    "hs.community_wide": ("社区公共区域", "Community-wide"),
    "hs.breakdown": ("类别 × 时段", "Category × time of day"),
    "hs.breakdown.note": ("按当地时间每 3 小时一列；22:00–6:00 为夜间。", "Local time, 3 hours a column; 22:00–06:00 is night."),
    "hs.by_building": ("类别 × 楼栋", "Category × building"),
    "hs.col.category": ("类别", "Category"),
    "hs.col.source": ("来源", "Source"),
    "hs.col.total": ("合计", "Total"),
    "hs.source.sensor": ("设备告警", "device alarm"),
    "hs.source.report": ("人工上报", "report"),
    "hs.more": ("另有 {n} 处未列出（事件较少）。", "{n} more places not listed (fewer incidents)."),
}
