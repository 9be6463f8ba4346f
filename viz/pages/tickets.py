"""Tickets: the supervisors' board with SLA countdowns (``/tickets``: open, closed or all, by state, searched
by number, subject or place; each row opens the ticket) and a worker's own open tickets on a phone
(``/worker``). One ticket in full is :mod:`viz.pages.worker`."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dash import Dash, Input, Output, dcc, html
from dash.development.base_component import Component

from viz import analytics as an
from viz.data import DataUnavailable
from viz.i18n import t
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import outcome_text, people, ticket_title
from viz.widgets import may_see_ticket, place_text, priority_label, sla_cell, status_label, with_data

# -- layouts ---------------------------------------------------------------------------------------------


def board_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The ticket board; the ``board`` callback fills it and refreshes the SLA clocks every 15 s."""
    lang = req.lang
    states = [{"label": t(lang, "tk.filter.state"), "value": ""}] + [
        {"label": t(lang, f"status.{s}"), "value": s} for s in STATES]
    filters = html.Div([
        dcc.RadioItems(id="board-scope", value="open", inline=True, className="scope",
                       options=[{"label": t(lang, f"tk.filter.{v}"), "value": v} for v in SCOPES]),
        dcc.Dropdown(id="board-state", options=states, value="", clearable=False, searchable=False,
                     className="board-state"),
        dcc.Input(id="board-search", type="search", debounce=0.3, maxLength=MAX_SEARCH,
                  placeholder=t(lang, "tk.filter.search"), className="board-search"),
    ], className="filters board-filters")
    return html.Div([html.H2(t(lang, "tickets.title")), filters, html.Div(id="board"),
                     dcc.Interval(id="board-clock", interval=15_000)], className="panel wide")


def my_tickets_page(req: Req, board: Dashboard, _arg: str | None = None) -> Any:
    """The signed-in user's open tickets as cards (phone layout)."""
    lang = req.lang
    return html.Div([html.H2(t(lang, "worker.title")),
                     dcc.Link(t(lang, "report.worker_link"), href="/report", id="report-link", className="report-link"),
                     html.Div(id="my-tickets"),
                     push_box(lang),
                     dcc.Interval(id="worker-clock", interval=30_000)], className="phone")


def push_box(lang: str) -> html.Div:
    """Phone notifications (Web Push, ``viz/assets/push.js``): the button and what came of pressing it."""
    states = ("on", "denied", "unsupported", "failed", "working")
    return html.Div([
        html.Button(t(lang, "push.enable"), id="push-enable", className="push-enable"),
        html.P(t(lang, "push.hint"), className="small muted"),
        with_data(html.P(id="push-msg", className="small", role="status"), **{s: t(lang, f"push.{s}") for s in states}),
    ], className="push-box")


SCOPES = ("open", "closed", "all")
STATES = ("dispatched", "handling", "escalated", "reopened", "accepted", "feedback", "evaluated", "cancelled")
MAX_SEARCH = 100


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    """The board's table and the worker's cards, redrawn when anything changes and on their clocks."""
    guarded = guarded_callbacks(app, board)

    @guarded(Output("board", "children"), Input("version", "data"), Input("board-clock", "n_intervals"),
             Input("board-scope", "value"), Input("board-state", "value"), Input("board-search", "value"),
             roles=SUPERVISORS)
    def ticket_board(req: Req, _v: Any, _n: Any, scope: Any = "open", state: Any = "", search: Any = "") -> Any:
        return _ticket_board(req, board, scope, state, search)

    @guarded(Output("my-tickets", "children"), Input("version", "data"), Input("worker-clock", "n_intervals"))
    def my_tickets(req: Req, _v: Any, _n: Any) -> Any:
        return _my_tickets(req, board)


# -- content ---------------------------------------------------------------------------------------------


def _ticket_board(req: Req, board: Dashboard, scope: Any = "open", state: Any = "", search: Any = "") -> Any:
    lang = req.lang
    scope = scope if scope in SCOPES else "open"
    state = state if state in STATES else ""
    if search is not None and not isinstance(search, str):
        search = ""
    if search and len(search) > MAX_SEARCH:
        return html.P(t(lang, "tk.filter.search_long", n=MAX_SEARCH), className="msg warn", id="board-bad-search")
    needle = (search or "").strip().lstrip("#").casefold()
    try:
        tickets = [tk for tk in board.data.tickets(req.user, include_closed=scope != "open")
                   if may_see_ticket(req.user, board, tk)]
    except DataUnavailable as exc:
        return html.P(unavailable_text(lang, exc), className="msg warn", id="tickets-unavailable")
    tickets = [tk for tk in tickets if (scope == "all" or tk.open == (scope == "open"))
               and (not state or tk.status == state)]
    places = {tk.id: place_text(req, board, tk.building, tk.floor, tk.device, tk.unit) for tk in tickets}
    names = people(board.community(), lang)  # supervisors in the reader's language (the service names them in Chinese)
    titles = {tk.id: ticket_title(req, board, tk) for tk in tickets}
    if needle:
        tickets = [tk for tk in tickets if needle == tk.id or needle in tk.title.casefold()
                   or needle in titles[tk.id].casefold() or needle in places[tk.id].casefold()]
    if not tickets:
        none = "tickets.none" if scope == "open" and not state and not needle else "tk.none_match"
        return html.P(t(lang, none), className="muted", id="board-empty")
    if scope == "open":
        tickets.sort(key=lambda tk: (-an.sla_clock(tk, req.now).used, tk.created_at))
    else:  # closed and mixed lists: newest first
        tickets.sort(key=lambda tk: tk.created_at, reverse=True)
    cols = ["id", "title", "priority", "status", "place", "assignee", "sla", "created"]
    head = html.Tr([html.Th(t(lang, f"tickets.col.{c}")) for c in cols]
                   + ([html.Th(t(lang, "tk.col.outcome"))] if scope != "open" else []))

    def cells(tk: Any) -> list[Any]:
        out: list[Any] = [f"#{tk.id}", titles[tk.id], priority_label(lang, tk.priority), status_label(lang, tk.status),
                          places[tk.id], names.get(tk.assignee or "") or tk.assignee_name or tk.assignee
                          or t(lang, "tickets.unassigned"),
                          sla_cell(req, tk), board.local(tk.created_at)]
        if scope != "open":
            out.append("" if tk.open else outcome_text(lang, tk, board))
        return out

    rows = [with_data(html.Tr([html.Td(_link(tk.id, c, lang)) for c in cells(tk)], className="ticket-row"),
                      ticket=tk.id, status=tk.status) for tk in tickets]
    return [html.P(t(lang, "tk.count", n=len(tickets)), className="small muted", id="board-count"),
            html.Div(html.Table([html.Thead(head), html.Tbody(rows)], className="table", id="ticket-table"),
                     className="table-scroll")]  # a phone scrolls the table, not the page


def _link(ticket_id: str, content: str | Component, lang: str) -> dcc.Link:
    """A cell of a board row: all of it a link to the ticket's page (the whole row opens the ticket)."""
    return dcc.Link(content, href=f"/worker/ticket/{quote(ticket_id)}", className="row-link",
                    title=t(lang, "tk.open_ticket", id=ticket_id))


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
                       html.Div(ticket_title(req, board, tk), className="title"),
                       html.Div(place_text(req, board, tk.building, tk.floor, tk.device, tk.unit), className="small"),
                   ]) for tk in tickets]
