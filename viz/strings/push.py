"""Dashboard strings for phone notifications (Web Push): key -> (Simplified Chinese, English). Merged by
:mod:`viz.i18n`."""
# ruff: noqa: E501

from __future__ import annotations

STRINGS: dict[str, tuple[str, str]] = {
    "push.enable": ("开启手机通知", "Turn on phone notifications"),
    "push.hint": ("新工单、改派和即将超时的提醒会推送到本机（需允许通知）。", "New, reassigned and nearly overdue tickets are pushed to this phone (allow notifications)."),
    "push.on": ("已开启：本机会收到工单通知。", "On: this phone gets ticket notifications."),
    "push.denied": ("未获通知权限：请在浏览器设置中允许本站通知。", "Notifications are blocked: allow them for this site in the browser's settings."),
    "push.unsupported": ("此浏览器不支持推送通知。", "This browser cannot receive push notifications."),
    "push.failed": ("开启失败，请稍后重试。", "Could not turn them on; try again later."),
    "push.working": ("正在开启…", "Turning on…"),
}
