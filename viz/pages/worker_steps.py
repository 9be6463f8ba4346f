"""The parts of the worker's ticket page (``/worker/ticket/<id>``) that follow its progress (issue 15): which step
comes next (受理 → 到场 → 反馈 → 办结), the compact stepper with the time each was done, the call buttons of the
SOP's contacts (``tel:`` links from the community file), the history entries this page adds (SOP ticks, the
arrival's position, photos as thumbnails) and the position the browser reports at 到场."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from dash import html

from twin.contacts import RESIDENT, Resident, calls_for
from viz.data import Position, TicketStep, TicketView
from viz.i18n import t
from viz.pages.handoffs import handoff_controls
from viz.shell import Dashboard, Req
from viz.ticket_text import person, step_text
from viz.widgets import with_data

STEPS = ("accept", "arrive", "feedback", "resolve")
RESOLVED = frozenset({"feedback", "evaluated"})  # twin.tickets: resolved (反馈), then rated


def feedback_at(tk: TicketView) -> Any:
    """When the worker first reported from the site in the ticket's current cycle (None: not yet)."""
    since = tk.arrived_at or tk.clock_start
    return next((s.at for s in tk.history if s.action == "progress" and (since is None or s.at >= since)), None)


def next_step(tk: TicketView) -> str | None:
    """The action the ticket waits for from its worker: accept, arrive, feedback or resolve (None: nothing, it is
    closed or not yet dispatched to anyone)."""
    if not tk.open or tk.status == "accepted":
        return None
    if tk.responded_at is None:
        return "accept"
    if tk.arrived_at is None:
        return "arrive"
    return "feedback" if feedback_at(tk) is None else "resolve"


def step_times(tk: TicketView) -> dict[str, Any]:
    """Step -> when it was done in the current cycle (absent: not yet)."""
    done = {"accept": tk.responded_at, "arrive": tk.arrived_at, "feedback": feedback_at(tk),
            "resolve": tk.resolved_at if tk.status in RESOLVED else None}
    return {k: v for k, v in done.items() if v is not None}


def stepper(req: Req, board: Dashboard, tk: TicketView) -> html.Ol:
    """受理 · 到场 · 反馈 · 办结, each done one with its time, the next one marked."""
    lang = req.lang
    times = step_times(tk)
    nxt = next_step(tk)
    items = []
    for n, step in enumerate(STEPS, 1):
        state = "done" if step in times else "next" if step == nxt else "todo"
        mark = "✓" if state == "done" else str(n)
        items.append(with_data(html.Li([html.Span(mark, className="mark"), html.Span(t(lang, f"wt.step.{step}"),
                                        className="label"),
                                        html.Span(board.local(times[step], "%H:%M") if step in times else "",
                                                  className="when")],
                                       className=f"step step-{state}"), step=step, state=state))
    return html.Ol(items, className="stepper", id="wt-stepper", title=t(lang, "wt.steps"))


def call_buttons(req: Req, board: Dashboard, tk: TicketView) -> list[Any]:
    """``tel:`` links for whom the ticket's SOP says to call, with the community's numbers (empty: none known)."""
    lang = req.lang
    community = board.community()
    # the resident on record: the care register's phone for the unit, else the community file's contacts
    care = next((u for u in community.care_units if tk.unit and u.unit == tk.unit and u.phone), None)
    resident = Resident(unit=care.unit, phone=care.phone) if care is not None and care.phone else None
    calls = calls_for(community.contacts, list(tk.sop_calls), tk.unit, resident=resident) if tk.open else []
    links = []
    for c in calls:
        label = t(lang, f"call.{c.role}", unit=c.unit or "")
        # who answers (a resident: their number only, not their name)
        who = None if c.role == RESIDENT else c.name_en if lang == "en" and c.name_en else c.name if lang == "zh" \
            else None
        link = with_data(html.A([html.Span("☎", className="icon"),
                                 html.Span([html.Span(label, className="role"),
                                            html.Span(who or c.phone, className="who")], className="text")],
                                href=c.href, className="call", title=f"{label} {c.phone}"), role=c.role)
        logged = handoff_controls(req, board, tk, c.role)  # a partner: log the call and their arrival
        links.append(html.Div([link, logged], className="call-box") if logged is not None else link)
    return [html.H3(t(lang, "wt.calls")), html.Div(links, className="calls")] if links else []


def _num(v: float, digits: int) -> str:
    return f"{v:.{digits}f}"


def position_text(lang: str, p: Mapping[str, Any] | Position | None) -> str:
    """An arrival's position for the history: ``手机位置 30.27412, 120.15508（±12 米）``."""
    lat: Any
    lon: Any
    acc: Any
    if isinstance(p, Position):
        lat, lon, acc = p.lat, p.lon, p.accuracy_m
    elif isinstance(p, Mapping):
        lat, lon, acc = p.get("lat"), p.get("lon"), p.get("accuracy_m")
    else:
        return t(lang, "tk.hist.no_position")
    if not isinstance(lat, int | float) or not isinstance(lon, int | float):
        return t(lang, "tk.hist.no_position")
    if isinstance(acc, int | float):
        return t(lang, "tk.hist.position_acc", lat=_num(lat, 5), lon=_num(lon, 5), acc=round(acc))
    return t(lang, "tk.hist.position", lat=_num(lat, 5), lon=_num(lon, 5))


def history_item(req: Req, board: Dashboard, tk: TicketView, s: TicketStep, names: Mapping[str, str]) -> html.Li:
    """One history entry; a photo as a thumbnail that opens full size."""
    lang = req.lang
    if s.action == "sop_check":
        d = s.detail
        step = d.get("step")
        n = step if isinstance(step, int) else -1
        sop = tk.sop_en if lang == "en" and len(tk.sop_en) == len(tk.sop) else tk.sop
        text = sop[n] if d.get("sop") == tk.sop_id and 0 <= n < len(sop) else str(d.get("text") or "")
        short = text if len(text) <= 40 else text[:39] + "…"
        what = t(lang, "tk.hist.sop_check" if d.get("done") else "tk.hist.sop_uncheck", n=n + 1, step=short)
        body: list[Any] = [" · ".join(p for p in (board.local(s.at), person(lang, s.by, names), what) if p)]
    else:
        body = [step_text(req, board, tk, s, names)]
        if s.action == "arrive":
            where = s.detail.get("position")
            body.append(f" · {position_text(lang, where if isinstance(where, Mapping) else None)}")
    if s.photo_id:
        src = f"/media/photos/{quote(s.photo_id)}"
        body.append(html.A(html.Img(src=src, className="thumb", alt=t(lang, "wt.photo_alt")), href=src,
                           target="_blank", rel="noopener", className="photo-link"))
    return with_data(html.Li(body), action=s.action)


def position_from_browser(geo: Any) -> Position | None:
    """The position the page's geolocation request gave (``{lat, lon, accuracy}``), if it is a valid one; anything
    else (denied, unavailable, timed out, or not numbers in range) is None: the arrival is recorded without it."""
    if not isinstance(geo, dict):
        return None
    lat, lon, acc = geo.get("lat"), geo.get("lon"), geo.get("accuracy")

    def number(v: Any, low: float, high: float) -> float | None:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high
        return float(v) if ok else None

    la, lo = number(lat, -90, 90), number(lon, -180, 180)
    if la is None or lo is None:
        return None
    return Position(la, lo, number(acc, 0, 100_000))
