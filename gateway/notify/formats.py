"""What a webhook receives for a ticket message: the request body and headers of each format. Pure.

``json``: the worker's message itself (:class:`twin.contract.TicketMessage`, the ticket's whole view) with a
``summary`` text added, signed with the channel's secret: ``X-Gridtwin-Signature: sha256=<hex HMAC-SHA256 of
the body>`` (the receiver recomputes it; GitHub's webhook convention). ``wecom``: a WeCom (企业微信) group
robot's text message, ``{"msgtype":"text","text":{"content":...}}`` (the robot's key is in its URL).
``dingtalk``: a DingTalk (钉钉) robot's text message; with a secret, the URL gets ``timestamp`` and ``sign``
(base64 of HMAC-SHA256 of ``"{timestamp}\\n{secret}"``, as DingTalk's signed robots require). The text is in
Chinese, the users' language: what happened, the ticket, where, the deadline, and a link to the ticket page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import orjson

Format = Literal["json", "wecom", "dingtalk"]

EVENT_ZH = {
    "created": "新工单", "reassigned": "工单改派", "priority_raised": "工单升级", "escalated": "工单超时升级",
    "sla_warning": "工单即将超时", "alarm_cleared": "告警已恢复", "snapshot": "现场三维截图", "rated": "居民评价",
    "accept": "已受理", "arrive": "已到场", "feedback": "处理反馈", "resolve": "已办结", "reopen": "工单重开",
    "cancel": "工单撤销", "escalate": "工单升级",
}
MAX_TEXT = 1800  # WeCom's text message takes 2048 bytes of content; DingTalk's about 20,000


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: Mapping[str, str]


def summary(message: Mapping[str, Any], link_base: str | None = None) -> str:
    """A few lines of Chinese for a person on a phone: event and priority, ticket, place, deadline, link."""
    ticket = message.get("ticket") or {}
    event = str(message.get("event") or message.get("type") or "")
    what = EVENT_ZH.get(event, event) if message.get("type") != "ticket_withdrawn" else "工单已转给他人"
    prio = ticket.get("priority_zh") or ""
    flag = "【生命安全】" if ticket.get("life_safety") else ""
    lines = [f"{flag}{what}{f'（{prio}）' if prio else ''}：#{ticket.get('id')} {ticket.get('title', '')}".strip()]
    place = (ticket.get("location") or {}).get("text")
    if place:
        lines.append(f"地点：{place}")
    alert = message.get("alert") or {}
    deadlines = ticket.get("deadlines") or {}
    due = alert.get("deadline") or deadlines.get("respond_by") or deadlines.get("resolve_by")
    if due:
        lines.append(f"时限：{str(due)[:16].replace('T', ' ')}")
    assignee = (ticket.get("assignee") or {}).get("name")
    if assignee:
        lines.append(f"处理人：{assignee}")
    if link_base and ticket.get("id") is not None:
        lines.append(f"{link_base.rstrip('/')}/worker/ticket/{quote(str(ticket['id']))}")
    text = "\n".join(lines)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def request(fmt: Format, url: str, message: Mapping[str, Any], *, secret: str | None = None,
            link_base: str | None = None, now_ms: int = 0) -> Request:
    """The HTTP POST for ``message`` in format ``fmt`` (``now_ms``: the time DingTalk's signature covers)."""
    text = summary(message, link_base)
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if fmt == "json":
        body = orjson.dumps({**message, "summary": text})
        headers["X-Gridtwin-Event"] = str(message.get("event") or message.get("type") or "")
        if secret:
            headers["X-Gridtwin-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return Request(url, body, headers)
    body = orjson.dumps({"msgtype": "text", "text": {"content": text}})
    if fmt == "dingtalk" and secret:
        sign = base64.b64encode(hmac.new(secret.encode(), f"{now_ms}\n{secret}".encode(), hashlib.sha256).digest())
        parts = urlsplit(url)
        query = (parts.query + "&" if parts.query else "") + urlencode({"timestamp": now_ms, "sign": sign.decode()})
        url = urlunsplit(parts._replace(query=query))
    return Request(url, body, headers)


def verify_json(secret: str, body: bytes, signature: str) -> bool:
    """For receivers (and tests): does ``X-Gridtwin-Signature`` match the body?"""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)
