"""Dashboard strings for the control area: key -> (Simplified Chinese, English). Merged by :mod:`viz.i18n`."""

# ruff: noqa: E501

from __future__ import annotations

STRINGS: dict[str, tuple[str, str]] = {
    "scene.selected": ("选中的告警", "selected alarm"),
    "scene.filtered": ("三维视图按告警筛选显示：{shown}/{total} 条告警", "3D view follows the alarm filters: {shown} of {total} alarms"),
    "scene.more_floors": ("另{n}层", "+{n} floors"),
    "scene.more_alarms": ("另有 {n} 条告警", "{n} more alarms"),
    "render.alarm": ("告警：", "ALARM: "),
    "scene.residents": ("行动不便住户（火警优先疏散）", "limited mobility (evacuate first in a fire)"),
    "scene.resident_text": ("行动不便 · {who} · {floor} · 火警时优先疏散", "Limited mobility · {who} · {floor} · evacuate first in a fire"),
}
