"""Every string the dashboard shows, in Simplified Chinese (default) and English. Pure.

``t(lang, key, **values)`` looks a key up and fills ``{placeholders}``. A missing key is a bug
(tests check that every key the pages use is here in both languages), so it raises ``KeyError``.
Catalogue labels (device kinds, event codes) come from :mod:`twin.catalogue`, which carries both
languages itself; rule names come as "中文 / English" from the rule files and are split here.
"""

# ruff: noqa: E501  (a string table: one entry a line reads better than wrapped pairs)
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from twin import catalogue
from viz.strings import assistant, care, control, devices, history, hotspots, live, patrols, push, reports, tickets
from viz.strings import outcomes as outcome_strings

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT_LANG: Lang = "zh"

_CORE: Mapping[str, tuple[str, str]] = {
    # -- frame --------------------------------------------------------------------------------------
    "app.title": ("gridtwin 社区数字孪生", "gridtwin community digital twin"),
    "nav.control": ("三维总览", "3D overview"),
    "nav.tickets": ("工单看板", "Ticket board"),
    "nav.kpi": ("绩效考核", "KPIs"),
    "nav.hotspots": ("热点分析", "Hotspots"),
    "nav.care": ("关爱老人", "Elderly care"),
    "nav.worker": ("我的工单", "My tickets"),
    "nav.signout": ("退出", "Sign out"),
    "nav.more": ("更多", "More"),
    "nav.lang": ("English", "中文"),
    "role.worker": ("网格员", "grid worker"),
    "role.supervisor": ("网格长", "supervisor"),
    "role.operator": ("值班员", "operator"),
    "role.admin": ("管理员", "admin"),
    # -- sign-in ------------------------------------------------------------------------------------
    "login.title": ("登录", "Sign in"),
    "login.username": ("用户名", "Username"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Sign in"),
    "login.bad": ("用户名或密码不正确。", "Wrong username or password."),
    "login.expired": ("登录已过期，请重新登录。", "Your session has expired: please sign in again."),
    "login.unavailable": ("登录服务暂时不可用，请稍后再试。", "Sign-in is not available right now: please try again shortly."),
    "login.locked": ("登录失败次数过多，该账户已临时锁定。请于 {at}（{wait}后）再试。", "Too many failed sign-ins: this account is locked until {at} (in {wait}). Please try again then."),
    "login.throttled": ("登录尝试过于频繁，请 {wait}后再试。", "Too many sign-in attempts: please try again in {wait}."),
    "login.busy": ("登录服务繁忙，请 {wait}后再试。", "Sign-in is busy: please try again in {wait}."),
    "login.seconds": ("{n} 秒", "{n} s"),
    "login.back": ("返回登录页", "Back to sign-in"),
    "login.signed_out": ("您已退出。", "You have signed out."),
    # -- errors and notices -------------------------------------------------------------------------
    "err.not_found_page": ("页面不存在：{path}", "No such page: {path}"),
    "err.unknown_building": ("未知楼栋“{id}”。", "Unknown building “{id}”."),
    "err.unknown_device": ("未知设备“{id}”。", "Unknown device “{id}”."),
    "err.unknown_ticket": ("工单“{id}”不存在或您无权查看。", "Ticket “{id}” does not exist or is not yours to see."),
    "err.forbidden": ("您的角色（{role}）无权访问此页面。", "Your role ({role}) may not open this page."),
    "err.unavailable": ("此功能暂不可用：{detail}", "Not available yet: {detail}"),
    "err.db_down": ("数据暂时无法读取，请稍后再试。", "The data cannot be read right now: please try again shortly."),
    "err.service_down": ("服务暂时不可用，请稍后再试。", "The service is temporarily unavailable: please try again shortly."),
    "err.retry": ("重试", "Try again"),
    "err.internal": ("出现内部错误，已记录。请稍后重试。", "Something went wrong; it has been logged. Please try again."),
    "err.back_home": ("返回首页", "Back to my home page"),
    "refused.not_found": ("对象不存在（可能已处理）", "It no longer exists (perhaps already handled)"),
    "refused.forbidden": ("无权执行此操作", "You may not do this"),
    "refused.already_acknowledged": ("该告警已被确认", "This alarm is already acknowledged"),
    "refused.not_active": ("该告警已不在活动状态", "This alarm is no longer active"),
    "refused.illegal_transition": ("当前状态不允许此操作", "Not allowed in the ticket's current state"),
    "refused.conflict": ("数据已被他人修改，请刷新后重试", "Someone else changed it: refresh and try again"),
    "refused.bad_input": ("输入无效", "Invalid input"),
    "refused.too_large": ("文件过大", "File too large"),
    "refused.not_confirmed": ("告警服务未在 3 秒内确认执行（可能已被拒绝），请查看列表后重试", "The alarm service did not confirm it within 3 s (it may have refused it): check the list and try again"),
    "refused.not_shelved": ("该告警未处于搁置状态", "This alarm is not shelved"),
    "refused.alarms_active": ("仍有生命安全报警未复位，请等设备复位，或选择原因后再办结", "Life-safety alarms are still active: wait for the devices to reset, or choose a reason and resolve again"),
    # -- 3D view ------------------------------------------------------------------------------------
    "scene.community": ("{name} · {buildings} 栋楼 · {devices} 台设备", "{name} · {buildings} buildings · {devices} devices"),
    "scene.building": ("{name}（{floors}）· 楼层已展开", "{name} ({floors}) · floors pulled apart"),
    "scene.back": ("← 返回社区总览", "← Back to the community"),
    "scene.colour_by": ("着色：", "Colour by:"),
    "scene.by_alarm": ("告警", "alarms"),
    "scene.by_sla": ("工单时限", "ticket SLA"),
    "scene.hint": ("悬停查看楼栋，点击楼栋展开楼层，点击设备查看详情", "Hover a building for details, click it to pull its floors apart, click a device for its history"),
    "scene.floors": ("地上{above}层", "{above} floors"),
    "scene.floors_below": ("地上{above}层 · 地下{below}层", "{above} floors + {below} below ground"),
    "scene.floor_label": ("{n}F", "{n}F"),
    "scene.basement_label": ("B{n}", "B{n}"),
    "scene.devices": ("设备", "devices"),
    "scene.cars": ("电梯轿厢", "elevator cars"),
    "scene.beacon": ("告警位置", "alarm location"),
    "scene.car_text": ("电梯 {id} · {floor}层", "elevator {id} · floor {floor}"),
    "scene.hover": ("{name} · {floors} · {grid} · 状态：{state}", "{name} · {floors} · {grid} · condition: {state}"),
    "scene.no_grid": ("未划网格", "no grid"),
    "class.normal": ("正常", "normal"),
    "class.warning": ("提示", "warning"),
    "class.minor": ("次要", "minor"),
    "class.major": ("重要", "major"),
    "class.critical": ("紧急", "critical"),
    "class.offline": ("离线", "offline"),
    "class.ground": ("地面", "ground"),
    "class.shaft": ("电梯井", "elevator shafts"),
    "class.unknown": ("无数据", "no data"),
    "sla_class.normal": ("时限内", "on time"),
    "sla_class.minor": ("已用 75% 时限", "75% of time used"),
    "sla_class.critical": ("已超时", "overdue"),
    # -- alarms -------------------------------------------------------------------------------------
    "alarms.title": ("活动告警", "Active alarms"),
    "alarms.count": ("{n} 条", "{n}"),
    "alarms.none": ("当前没有告警。", "No active alarms."),
    "alarms.filter_severity": ("级别", "Severity"),
    "alarms.filter_category": ("类别", "Kind"),
    "alarms.filter_building": ("楼栋", "Building"),
    "alarms.select_first": ("请先在列表中选择一条告警。", "Select an alarm in the list first."),
    "alarms.selected": ("已选：{what}", "Selected: {what}"),
    "alarms.comment": ("确认说明（必填）", "Comment (required)"),
    "alarms.comment_needed": ("确认告警需要填写说明。", "Acknowledging needs a comment."),
    "alarms.ack": ("确认", "Acknowledge"),
    "alarms.shelve": ("搁置", "Shelve"),
    "alarms.dispatch": ("派单", "Dispatch"),
    "alarms.acked": ("已确认：{key}", "Acknowledged: {key}"),
    "alarms.shelved_ok": ("已搁置至 {until}", "Shelved until {until}"),
    "alarms.dispatched": ("已派单：工单 {ticket}", "Dispatched: ticket {ticket}"),
    "alarms.clear": ("手动复位", "Clear"),
    "alarms.unshelve": ("取消搁置", "Unshelve"),
    "alarms.cleared_ok": ("已手动复位：{key}", "Cleared: {key}"),
    "alarms.unshelved_ok": ("已取消搁置：{key}", "Unshelved: {key}"),
    "alarms.failed": ("操作未完成，请稍后重试（详情见服务器日志）", "The action did not go through: try again (details in the server log)"),
    "alarms.msg_at": ("{time} {msg}", "{time} {msg}"),
    "alarms.more": ("再显示 {n} 条", "Show {n} more"),
    "alarms.showing": ("按级别显示前 {shown} 条，共 {total} 条", "Showing the worst {shown} of {total}"),
    "alarms.legend": ("级别", "Severity"),
    "alarms.shelved_title": ("已搁置告警", "Shelved alarms"),
    "alarms.shelved_none": ("没有搁置中的告警。", "No shelved alarms."),
    "alarms.shelved_until_by": ("搁置至 {until} · {who}", "shelved until {until} · by {who}"),
    "alarms.someone": ("未知", "unknown"),
    "alarms.status.active_unack": ("未确认", "unacknowledged"),
    "alarms.status.active_ack": ("已确认", "acknowledged"),
    "alarms.status.cleared_unack": ("已恢复待确认", "cleared, unacknowledged"),
    "alarms.status.cleared_ack": ("已恢复", "cleared"),
    "alarms.shelved_tag": ("搁置中", "shelved"),
    "alarms.count_tag": ("×{n}", "×{n}"),
    "alarms.ticket_tag": ("工单 {id}", "ticket {id}"),
    "alarms.acked_by": ("{who} 确认：{comment}", "acknowledged by {who}: {comment}"),
    "shelve.1h": ("1 小时", "1 hour"),
    "shelve.8h": ("8 小时", "8 hours"),
    "shelve.24h": ("24 小时", "24 hours"),
    "severity.critical": ("紧急", "critical"),
    "severity.major": ("重要", "major"),
    "severity.minor": ("次要", "minor"),
    "severity.warning": ("提示", "warning"),
    "category.fire": ("消防", "fire"),
    "category.elevator": ("电梯", "elevator"),
    "category.environment": ("环境", "environment"),
    "category.water": ("供水", "water"),
    "category.care": ("关爱", "care"),
    "category.other": ("其他", "other"),
    "place.floor": ("{building} {floor}", "{building} {floor}"),
    "place.unknown": ("位置未知", "location unknown"),
    # -- tickets ------------------------------------------------------------------------------------
    "tickets.title": ("工单看板", "Ticket board"),
    "tickets.none": ("没有进行中的工单。", "No open tickets."),
    "tickets.col.id": ("编号", "No."),
    "tickets.col.title": ("事项", "Subject"),
    "tickets.col.priority": ("等级", "Priority"),
    "tickets.col.status": ("状态", "Status"),
    "tickets.col.place": ("位置", "Location"),
    "tickets.col.assignee": ("处理人", "Assignee"),
    "tickets.col.sla": ("剩余时限", "Time left"),
    "tickets.col.created": ("创建时间", "Created"),
    "tickets.stage.respond": ("响应", "respond"),
    "tickets.stage.resolve": ("办结", "resolve"),
    "tickets.sla.done": ("已办结", "done"),
    "tickets.sla.none": ("—", "—"),
    "tickets.sla.overdue": ("超时 {t}", "overdue {t}"),
    "tickets.unassigned": ("未分派", "unassigned"),
    "priority.urgent": ("紧急", "urgent"),
    "priority.general": ("一般", "general"),
    "priority.complex": ("复杂", "complex"),
    "status.open": ("待受理", "new"),
    "status.accepted": ("已受理", "accepted"),
    "status.dispatched": ("已分派", "dispatched"),
    "status.handling": ("处置中", "in progress"),
    "status.feedback": ("已办结待评价", "resolved, awaiting rating"),
    "status.progress": ("进展反馈", "progress report"),
    "status.dispatch": ("分派", "dispatched"),
    "status.accept": ("签收", "accepted"),
    "status.resolve": ("办结", "resolved"),
    "status.rate": ("评价", "rated"),
    "status.create": ("创建", "created"),
    "status.resolved": ("已办结", "resolved"),
    "status.evaluated": ("已评价", "rated"),
    "status.escalated": ("已升级", "escalated"),
    "status.reopened": ("已重开", "reopened"),
    "status.cancelled": ("已撤销", "cancelled"),
    "status.closed": ("已关闭", "closed"),
    # -- worker -------------------------------------------------------------------------------------
    "worker.title": ("我的工单", "My tickets"),
    "worker.none": ("暂无待办工单。", "Nothing to do right now."),
    "worker.open": ("查看", "Open"),
    "worker.back": ("← 我的工单", "← My tickets"),
    "worker.where": ("位置", "Where"),
    "worker.what": ("情况", "What"),
    "worker.latest": ("最新读数", "Latest readings"),
    "worker.sop": ("处置步骤（SOP）", "What to do (SOP)"),
    "worker.no_sop": ("此类事项暂无 SOP。", "No SOP for this kind of incident."),
    "worker.snapshot": ("三维位置图", "3D snapshot"),
    "worker.no_snapshot": ("暂无三维位置图。", "No 3D snapshot attached."),
    "worker.history": ("处理记录", "History"),
    "worker.accept": ("受理", "Accept"),
    "worker.feedback": ("反馈", "Send feedback"),
    "worker.feedback_note": ("现场情况说明", "What you found and did"),
    "worker.photo": ("拍照 / 选择照片", "Take or choose a photo"),
    "worker.photo_ready": ("已选照片：{name}", "Photo ready: {name}"),
    "worker.photo_bad": ("照片须为 JPEG/PNG/WebP 且不超过 {mb} MB。", "A photo must be JPEG/PNG/WebP and at most {mb} MB."),
    "worker.resolve": ("办结", "Resolve"),
    "worker.resolve_note": ("办结说明", "How it was resolved"),
    "worker.alarms": ("本事件报警", "Alarms of this incident"),
    "worker.alarm_active": ("未复位", "active"),
    "worker.alarm_cleared": ("已复位", "cleared"),
    "worker.life_safety": ("生命安全", "life-safety"),
    "worker.reason": ("报警未复位时的办结原因", "Reason to resolve while an alarm is active"),
    "worker.reason_none": ("（报警均已复位）", "(every alarm has reset)"),
    "reason.false_alarm": ("误报", "false alarm"),
    "reason.device_fault": ("设备故障", "device fault"),
    "reason.other": ("其他（在说明中写明）", "other (say what in the note)"),
    "worker.note_needed": ("请填写说明。", "Please write a note."),
    "worker.accepted": ("已受理。", "Accepted."),
    "worker.feedback_sent": ("反馈已提交。", "Feedback sent."),
    "worker.resolved": ("已办结。", "Resolved."),
    "worker.sla": ("时限：{stage} {left}", "Deadline: {stage} {left}"),
    # -- device -------------------------------------------------------------------------------------
    "device.title": ("设备 {id} · {kind}", "Device {id} · {kind}"),
    "device.place": ("位置：{place}", "Location: {place}"),
    "device.latest": ("最新读数", "Latest readings"),
    "device.none": ("暂无读数。", "No readings yet."),
    "device.field": ("字段", "Field"),
    "device.value": ("数值", "Value"),
    "device.time": ("时间", "Time"),
    "device.history": ("历史曲线", "History"),
    "device.no_fields": ("此类设备没有数值字段。", "This kind of device has no numeric fields."),
    "device.no_history": ("所选时间段内没有数据。", "No data in this period."),
    "device.avg": ("平均", "average"),
    "device.range": ("最小–最大", "min–max"),
    "range.hour": ("最近 1 小时", "last hour"),
    "range.day": ("最近 1 天", "last day"),
    "range.week": ("最近 1 周", "last week"),
    # -- KPIs ---------------------------------------------------------------------------------------
    "kpi.title": ("绩效考核", "KPIs"),
    "kpi.period": ("统计周期", "Period"),
    "kpi.days": ("{n} 天", "{n} days"),
    "kpi.workers": ("按网格员", "Per grid worker"),
    "kpi.grids": ("按网格", "Per grid"),
    "kpi.col.name": ("名称", "Name"),
    "kpi.col.tickets": ("工单数", "Tickets"),
    "kpi.col.open": ("未办结", "Open"),
    "kpi.col.respond": ("平均响应", "Mean respond"),
    "kpi.col.resolve": ("平均办结", "Mean resolve"),
    "kpi.col.on_time": ("按时率", "On time"),
    "kpi.col.satisfaction": ("满意度", "Satisfaction"),
    "kpi.col.reopen": ("重开率", "Reopened"),
    "kpi.none": ("本周期内没有工单。", "No tickets in this period."),
    "kpi.partners": ("协作单位到场", "Partners called"),
    "kpi.partner.name": ("协作单位", "Partner"),
    "kpi.partner.calls": ("呼叫次数", "Calls"),
    "kpi.partner.arrived": ("到场次数", "Arrived"),
    "kpi.partner.median": ("到场用时（中位数）", "Time to arrive (median)"),
    "kpi.partner.max": ("最长用时", "Longest"),
    # -- care ---------------------------------------------------------------------------------------
    "care.title": ("关爱老人（独居）", "Elderly residents living alone"),
    "care.summary": ("红 {red} · 黄 {yellow} · 绿 {green} · 需关注 {alerts}", "red {red} · yellow {yellow} · green {green} · need a look {alerts}"),
    "care.col.unit": ("住户", "Home"),
    "care.col.level": ("关爱等级", "Care level"),
    "care.col.last": ("最近活动", "Last activity"),
    "care.col.alert": ("提醒", "Alert"),
    "care.level.red": ("红（每周走访）", "red (weekly visit)"),
    "care.level.yellow": ("黄（每两周走访）", "yellow (fortnightly visit)"),
    "care.level.green": ("绿（每月走访）", "green (monthly visit)"),
    "care.never": ("无记录", "never"),
    "care.ago": ("{t} 前", "{t} ago"),
    "care.alert_alarm": ("无活动告警：请上门查看", "Inactivity alarm: visit now"),
    "care.alert_quiet": ("长时间无活动", "Quiet for a long time"),
    "care.ok": ("正常", "OK"),
    "care.offline": ("{n} 个传感器离线", "{n} sensors offline"),
    "care.none": ("社区没有登记关爱住户。", "No care homes registered in this community."),
    # -- units of time ------------------------------------------------------------------------------
    "time.minutes": ("{n} 分钟", "{n} min"),
    "time.hours": ("{n} 小时", "{n} h"),
    "time.days": ("{n} 天", "{n} d"),
}


def _merge(*tables: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    merged: dict[str, tuple[str, str]] = {}
    for table in tables:
        twice = merged.keys() & table.keys()
        if twice:
            raise ValueError(f"string keys defined twice: {sorted(twice)}")
        merged.update(table)
    return merged


STRINGS: Mapping[str, tuple[str, str]] = _merge(
    _CORE, outcome_strings.STRINGS, control.STRINGS, tickets.STRINGS, devices.STRINGS, history.STRINGS, live.STRINGS, reports.STRINGS, care.STRINGS, patrols.STRINGS,
    push.STRINGS, assistant.STRINGS, hotspots.STRINGS)


def t(lang: str, key: str, /, **values: object) -> str:
    """The string ``key`` in ``lang`` (unknown languages fall back to Chinese), ``{names}`` filled."""
    zh, en = STRINGS[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def norm_lang(value: str | None) -> Lang:
    return "en" if value == "en" else "zh"


def kind_label(lang: str, kind: str) -> str:
    spec = catalogue.KINDS.get(kind)
    if spec is None:
        return kind
    return spec.label_en if lang == "en" else spec.label_zh


def rule_label(lang: str, name: str) -> str:
    """A rule's display name: the files write ``中文 / English``; pick the half for ``lang``."""
    if " / " in name:
        zh, en = name.split(" / ", 1)
        return en.strip() if lang == "en" else zh.strip()
    return name


ROLE_WORDS = ("worker", "supervisor", "operator", "admin")


def person_label(lang: str, name: str) -> str:
    """A user's display name for ``lang``: accounts named after their role (the demo's 值班员, 管理员,
    网格长 s-1) get the role word in ``lang``; a person's own name stays as it is."""
    for role in ROLE_WORDS:
        word = t("zh", "role." + role)
        if name == word or name.startswith(word + " "):
            return (t(lang, "role." + role) + name[len(word):]).strip()
    return name


def floor_label(lang: str, floor: int) -> str:
    return t(lang, "scene.basement_label", n=-floor) if floor < 0 else t(lang, "scene.floor_label", n=floor)


def duration(lang: str, seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 3600:
        return t(lang, "time.minutes", n=s // 60)
    if s < 86400 * 2:
        return t(lang, "time.hours", n=round(s / 3600, 1))
    return t(lang, "time.days", n=round(s / 86400, 1))
