"""Dashboard strings for the live area: key -> (Simplified Chinese, English). Merged by :mod:`viz.i18n`."""
# ruff: noqa: E501

from __future__ import annotations

STRINGS: dict[str, tuple[str, str]] = {
    "live.connecting": ("正在连接实时推送…", "Connecting to live updates…"),
    "live.updated": ("实时 · 更新于 {time}", "Live · updated {time}"),
    "live.stalled": ("实时推送中断：{time} 后无更新，正在重连", "Live feed stalled: nothing since {time}, reconnecting"),
    "live.never": ("实时推送未连接，正在重连", "Live feed not connected, reconnecting"),
    "live.broker_down": ("消息服务器不可达，数据可能滞后（更新于 {time}）",
                         "Message broker unreachable, data may lag (updated {time})"),
    "live.hint": ("告警与工单由服务器实时推送；长时间无推送时变红", "Alarms and tickets are pushed by the server; "
                  "turns red when nothing arrives for a while"),
    "live.sound": ("声音提醒", "Sound"),
    "live.notify": ("桌面通知", "Notify"),
    "live.alerts_hint": ("新的严重告警时提醒（仅本浏览器）", "Alert me on new critical alarms (this browser only)"),
    "live.notify_denied": ("浏览器已禁止通知", "Notifications are blocked by the browser"),
    "live.notify_title": ("严重告警", "Critical alarm"),
    "live.notify_body": ("{n} 条新的严重告警，请查看告警列表", "{n} new critical alarm(s): see the alarm list"),
}
