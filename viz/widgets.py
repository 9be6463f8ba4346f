"""Small pieces more than one page shows: places, ticket labels and SLA clocks, ``data-*`` attributes,
refusal texts, and who may see which ticket or building."""

from __future__ import annotations

import base64
import binascii
from typing import Any, TypeVar

from dash import html
from dash.development.base_component import Component

from twin.community import Community
from twin.people import User
from viz import analytics as an
from viz.data import ActionRefused, Photo, TicketView
from viz.i18n import floor_label, t
from viz.shell import MAX_PHOTO_BYTES, PHOTO_TYPES, Dashboard, Req

C = TypeVar("C", bound=Component)


def with_data(component: C, **attrs: str) -> C:
    """Set ``data-*`` attributes (tests and CSS find rows and states by them)."""
    for name, value in attrs.items():
        setattr(component, f"data-{name}", value)
    return component


def refusal_text(lang: str, exc: ActionRefused) -> str:
    try:
        text = t(lang, f"refused.{exc.code}")
    except KeyError:
        text = t(lang, "refused.bad_input")
    return f"{text}{'：' if lang == 'zh' else ': '}{exc.detail}" if exc.detail else text


def place_text(req: Req, board: Dashboard, building: str | None, floor: int | None, device: str | None,
           unit: str | None = None) -> str:
    community = board.community()
    if building is None and device is not None:
        dev = community.device(device)
        if dev is not None:
            building, floor = dev.building, floor if floor is not None else dev.floor
    parts = []
    b = community.building(building) if building else None
    if b is not None:
        parts.append(b.name)
    elif building:
        parts.append(building)
    if floor is not None:
        parts.append(floor_label(req.lang, floor))
    if unit:
        parts.append(unit)
    if device:
        parts.append(device)
    return " · ".join(parts) or t(req.lang, "place.unknown")


def status_label(lang: str, status: str) -> str:
    try:
        return t(lang, f"status.{status}")
    except KeyError:
        return status


def priority_label(lang: str, priority: str) -> str:
    try:
        return t(lang, f"priority.{priority}")
    except KeyError:
        return priority


def sla_cell(req: Req, ticket: TicketView) -> html.Span:
    clock = an.sla_clock(ticket, req.now)
    lang = req.lang
    if clock.state == "done":
        return html.Span(t(lang, "tickets.sla.done"), className="sla sla-done")
    if clock.remaining is None:
        return html.Span(t(lang, "tickets.sla.none"), className="sla")
    stage = t(lang, f"tickets.stage.{clock.stage}")
    if clock.remaining.total_seconds() < 0:
        text = f"{stage} · {t(lang, 'tickets.sla.overdue', t=an.format_remaining(-clock.remaining))}"
    else:
        text = f"{stage} · {an.format_remaining(clock.remaining)}"
    return with_data(html.Span(text, className=f"sla sla-{clock.state}"), sla=clock.state)


def may_see_ticket(user: User, board: Dashboard, ticket: TicketView) -> bool:
    """Defence in depth: the data source filters tickets by user; check the grid here too."""
    if user.sees_everything():
        return True
    grid = ticket.grid
    if grid is None and ticket.building is not None:
        b = board.community().building(ticket.building)
        grid = board.community().grid_of(b) if b else None
    return user.may_see_grid(grid) or (user.worker_id is not None and ticket.assignee == user.worker_id)


def visible_buildings(user: User, community: Community) -> set[str]:
    return {b.id for b in community.buildings if user.may_see_grid(community.grid_of(b))}


def photo_from_upload(contents: Any, filename: Any) -> Photo | None:
    """A ``data:image/...;base64,`` upload as a :class:`Photo`, or None if it is not an acceptable image."""
    if not isinstance(contents, str) or not contents.startswith("data:") or ";base64," not in contents:
        return None
    head, b64 = contents.split(";base64,", 1)
    ctype = head[5:].lower()
    if ctype not in PHOTO_TYPES or len(b64) > MAX_PHOTO_BYTES * 4 // 3 + 8:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return None
    magic = {"image/jpeg": (b"\xff\xd8\xff",), "image/png": (b"\x89PNG\r\n\x1a\n",), "image/webp": (b"RIFF",)}
    if len(raw) > MAX_PHOTO_BYTES or not raw.startswith(magic[ctype]):
        return None
    name = filename if isinstance(filename, str) else ""
    return Photo(raw, ctype, name[:120])
