"""The monthly report's words in Simplified Chinese (default) and English. Pure."""

# ruff: noqa: E501  (a string table: one entry a line reads better than wrapped pairs)
from __future__ import annotations

from collections.abc import Mapping

STRINGS: Mapping[str, tuple[str, str]] = {
    "title": ("{name} 月度运行报告", "{name} monthly report"),
    "month": ("{y}年{m}月", "{month_en} {y}"),
    "period": ("统计期：{first} 至 {last}（{tz}）", "Period: {first} to {last} ({tz})"),
    "cutoff": ("截至 {at}（本月尚未结束）", "as of {at} (the month is not over yet)"),
    "made": ("生成于 {at}", "Made {at}"),
    "page": ("第 {n} / {of} 页", "page {n} of {of}"),
    "no_tickets": ("本月没有工单。", "There were no tickets this month."),
    "no_data": ("本月无数据", "no data this month"),
    "kpi.heading": ("核心指标：实际 / 目标 / 基线", "Headline outcomes: actual vs target and baseline"),
    "kpi.target": ("目标 {op}{v}", "target {op}{v}"),
    "kpi.baseline": ("基线 {v}", "baseline {v}"),
    "kpi.vs_baseline": ("较基线 {d}", "{d} vs baseline"),
    "kpi.met": ("达标", "met"),
    "kpi.missed": ("未达标", "missed"),
    "kpi.none": ("无数据", "no data"),
    "kpi.tickets": ("工单 {n} 张 · 居民评价 {r} 条 · 平均评分 {s}", "{n} tickets · {r} ratings · mean rating {s}"),
    "m.close_days": ("平均办结时长", "Mean time to close"),
    "m.satisfaction": ("居民满意率", "Residents satisfied"),
    "m.response_sla": ("响应及时率", "Responded on time"),
    "m.resolution_sla": ("办结及时率", "Resolved on time"),
    "m.care_on_time": ("关爱探访按时率", "Care visits on time"),
    "m.patrols_done": ("巡查完成率", "Patrols done"),
    "m.false_alarm_rate": ("误报率", "False-alarm rate"),
    "m.repeat_rate": ("重复发生率", "Repeat rate"),
    "unit.days": ("{v} 天", "{v} days"),
    "weekly.close": ("每周平均办结时长（天）", "Mean time to close per week (days)"),
    "weekly.sat": ("每周居民满意率", "Residents satisfied per week"),
    "weekly.week": ("周（按周一起算）", "week (from Monday)"),
    "line.actual": ("实际", "actual"),
    "line.target": ("目标", "target"),
    "line.baseline": ("基线", "baseline"),
    "p2.heading": ("工单与时效", "Tickets and deadlines"),
    "sla.title": ("各网格时效达标率", "Deadlines met per grid"),
    "sla.response": ("响应", "response"),
    "sla.resolution": ("办结", "resolution"),
    "sla.target": ("{what}目标 {v}", "{what} target {v}"),
    "cat.title": ("按类别的工单数", "Tickets by category"),
    "day.title": ("每日新建工单数", "New tickets per day"),
    "day.weekend": ("周末", "weekend"),
    "false.title": ("各类设备的误报率", "False-alarm rate by device kind"),
    "false.label": ("{f}/{a} 次", "{f} of {a}"),
    "false.none": ("本月没有已判定的告警", "No alarms were judged this month"),
    "p3.heading": ("热点与重复事件", "Hotspots and repeated incidents"),
    "hot.title": ("事件最多的 {n} 个位置", "The {n} places with most incidents"),
    "hot.sensor": ("设备告警", "sensor alarms"),
    "hot.reports": ("人工上报", "reported by people"),
    "hot.hints": ("提示", "Hints"),
    "rep.title": ("重复发生的事件（同一位置 ≥ 2 次）", "Repeated incidents (2 or more at one place)"),
    "rep.none": ("本月没有重复发生的事件。", "No incident repeated this month."),
    "p4.heading": ("超时工单、关爱与巡查", "Missed deadlines, care and patrols"),
    "br.title": ("超时最严重的工单", "Worst missed deadlines"),
    "br.none": ("本月没有超时的工单。", "No deadline was missed this month."),
    "br.ticket": ("工单", "Ticket"),
    "br.category": ("类别", "Category"),
    "br.place": ("位置", "Place"),
    "br.clock": ("时限", "Deadline of"),
    "br.deadline": ("截止时间", "Due"),
    "br.late": ("超时", "Late by"),
    "br.worker": ("网格员", "Worker"),
    "br.open": ("{d}（未完成）", "{d} (still open)"),
    "clock.respond": ("响应", "response"),
    "clock.resolve": ("办结", "resolution"),
    "clock.arrive": ("到场", "arrival"),
    "clock.release": ("解困", "release"),
    "care.title": ("关爱探访：应访与按时完成（按等级）", "Care visits due and made on time, per level"),
    "care.on_time": ("按时", "on time"),
    "care.missed": ("未探访", "not made"),
    "care.overdue": ("月末逾期未探访的居民：{n} 人（共 {of} 人在册）", "Residents overdue at the month's end: {n} (of {of} registered)"),
    "care.none": ("本月没有应探访的居民。", "No care visit was due this month."),
    "level.red": ("红色（每周）", "red (weekly)"),
    "level.yellow": ("黄色（每两周）", "yellow (fortnightly)"),
    "level.green": ("绿色（每月）", "green (monthly)"),
    "pat.title": ("巡查完成情况（按计划）", "Patrols done, per plan"),
    "pat.done": ("已完成", "done"),
    "pat.missed": ("未完成", "not done"),
    "pat.checkins": ("打卡 {n} 次", "{n} check-ins"),
    "pat.none": ("本月没有需评判的巡查周期。", "No patrol period to judge this month."),
    "cat.fire": ("消防", "fire"),
    "cat.elevator": ("电梯", "elevator"),
    "cat.gas": ("燃气", "gas"),
    "cat.water": ("供水", "water"),
    "cat.care": ("关爱", "care"),
    "cat.environment": ("环境", "environment"),
    "cat.other": ("其他", "other"),
    "dur.minutes": ("{n} 分钟", "{n} min"),
    "dur.hours": ("{n} 小时", "{n} h"),
    "dur.days": ("{n} 天", "{n} days"),
}

MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")


def t(lang: str, key: str, /, **values: object) -> str:
    zh, en = STRINGS[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def category(lang: str, cat: str) -> str:
    key = f"cat.{cat}"
    return t(lang, key) if key in STRINGS else cat


def duration(lang: str, seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 3600:
        return t(lang, "dur.minutes", n=int(s // 60))
    if s < 86400 * 2:
        return t(lang, "dur.hours", n=round(s / 3600, 1))
    return t(lang, "dur.days", n=round(s / 86400, 1))
