"""Tickets: the supervisors' board with SLA countdowns (``/tickets``) and a worker's own open tickets on
a phone (``/worker``). One ticket in full is :mod:`viz.pages.worker`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dash import Dash, Input, Output, dcc, html

from viz import analytics as an
from viz.data import DataUnavailable
from viz.i18n import t
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.widgets import may_see_ticket, place_text, priority_label, sla_cell, status_label, with_data

# -- layouts ---------------------------------------------------------------------------------------------


def board_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The ticket board; the ``board`` callback fills it and refreshes the SLA clocks every 15 s."""
    lang = req.lang
    return html.Div([html.H2(t(lang, "tickets.title")), html.Div(id="board"),
                     dcc.Interval(id="board-clock", interval=15_000)], className="panel wide")


def my_tickets_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The signed-in user's open tickets as cards (phone layout)."""
    lang = req.lang
    return html.Div([html.H2(t(lang, "worker.title")), html.Div(id="my-tickets"),
                     dcc.Interval(id="worker-clock", interval=30_000)], className="phone")


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The board's table and the worker's cards, redrawn when anything changes and on their clocks."""
    guarded = guarded_callbacks(app, board)

    @guarded(Output("board", "children"), Input("version", "data"), Input("board-clock", "n_intervals"),
             roles=SUPERVISORS)
    def ticket_board(req: Req, _v: Any, _n: Any) -> Any:
        return _ticket_board(req, board)

    @guarded(Output("my-tickets", "children"), Input("version", "data"), Input("worker-clock", "n_intervals"))
    def my_tickets(req: Req, _v: Any, _n: Any) -> Any:
        return _my_tickets(req, board)


# -- content ---------------------------------------------------------------------------------------------


def _ticket_board(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    try:
        tickets = [tk for tk in board.data.tickets(req.user) if tk.open and may_see_ticket(req.user, board, tk)]
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable")
    if not tickets:
        return html.P(t(lang, "tickets.none"), className="muted")
    tickets.sort(key=lambda tk: (-an.sla_clock(tk, req.now).used, tk.created_at))
    head = html.Tr([html.Th(t(lang, f"tickets.col.{c}"))
                    for c in ("id", "title", "priority", "status", "place", "assignee", "sla", "created")])
    rows = [with_data(html.Tr([
        html.Td(tk.id), html.Td(tk.title), html.Td(priority_label(lang, tk.priority)),
        html.Td(status_label(lang, tk.status)),
        html.Td(place_text(req, board, tk.building, tk.floor, tk.device, tk.unit)),
        html.Td(tk.assignee_name or tk.assignee or t(lang, "tickets.unassigned")),
        html.Td(sla_cell(req, tk)), html.Td(board.local(tk.created_at)),
    ]), ticket=tk.id) for tk in tickets]
    return html.Table([html.Thead(head), html.Tbody(rows)], className="table", id="ticket-table")


def _my_tickets(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    try:
        tickets = [tk for tk in board.data.tickets(req.user) if tk.open and may_see_ticket(req.user, board, tk)]
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable")
    if not tickets:
        return html.P(t(lang, "worker.none"), className="muted", id="no-tickets")
    tickets.sort(key=lambda tk: (-an.sla_clock(tk, req.now).used, tk.created_at))
    return [html.A(href=f"/worker/ticket/{quote(tk.id)}", className="ticket-card", id={"type": "tcard", "id": tk.id},
                   children=[
                       html.Div([html.Span(priority_label(lang, tk.priority), className=f"prio prio-{tk.priority}"),
                                 html.Span(status_label(lang, tk.status), className="status"),
                                 sla_cell(req, tk)], className="tags"),
                       html.Div(tk.title, className="title"),
                       html.Div(place_text(req, board, tk.building, tk.floor, tk.device, tk.unit), className="small"),
                   ]) for tk in tickets]
