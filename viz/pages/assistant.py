"""The knowledge assistant on the dashboard: the page ``/assistant`` (知识助手, operators and supervisors: ask as a
resident, a worker or anyone would, the top three answers with their scores and sources, the residents' answers of
the last 30 days (how many, how sure, how often they helped, which entries to improve), and the recent questions
residents or staff handed to a grid worker), and the worker's compact knowledge box on the ticket page (folded
under the ticket's actions, so it never pushes the next action down).

Answers come from the data source (``DashboardData.assistant()``, :mod:`viz.assistant_model`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dash import Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from viz.data import ActionRefused, DataUnavailable
from viz.i18n import STRINGS, floor_label, t
from viz.quotes import unwrap
from viz.shell import SUPERVISORS, Dashboard, Req, guarded_callbacks, unavailable_text
from viz.ticket_text import people, person
from viz.widgets import status_label, with_data

MAX_QUESTION = 500
AUDIENCES = ("all", "resident", "worker")
DOC_TYPES = ("faq", "sop", "policy", "case")
QUOTE_CHARS = 180  # the worker's box: a quote's first characters (the page shows it whole)

# -- layout ----------------------------------------------------------------------------------------------


def assistant_page(req: Req, board: Dashboard, _arg: str | None = None) -> html.Div:
    """Ask, the answers, and the recent handoffs (the ``as-handoffs`` callback fills and refreshes them)."""
    lang = req.lang
    return html.Div(className="panel wide as-page", children=[
        html.H2(t(lang, "as.title")),
        html.P(t(lang, "as.lead"), className="small muted as-lead"),
        html.Div(className="as-ask", children=[
            dcc.Input(id="as-q", type="text", maxLength=MAX_QUESTION, debounce=False, n_submit=0,
                      placeholder=t(lang, "ask.box.hint"), className="as-q"),
            html.Button(t(lang, "as.ask"), id="as-go", className="primary", n_clicks=0),
        ]),
        html.Div(className="as-aud", children=[
            html.Span(t(lang, "as.audience"), className="small muted"),
            dcc.RadioItems(id="as-aud", value="all", inline=True,
                           options=[{"label": t(lang, f"as.aud.{a}"), "value": a} for a in AUDIENCES]),
        ]),
        html.Div(id="as-msg", className="msg", role="status"),
        html.Div(id="as-answer"),
        html.Div(id="as-summary"),
        html.H3(t(lang, "as.handoffs")),
        html.Div(id="as-handoffs"),
    ])


def knowledge_box(req: Req) -> html.Details:
    """The worker's knowledge search (all entries), folded: one line under the ticket's actions."""
    lang = req.lang
    return html.Details(id="kb-box", className="wt-actions kb-box", open=False, children=[
        html.Summary(t(lang, "kb.title"), id="kb-summary"),
        html.Div(className="kb-ask", children=[
            dcc.Input(id="kb-q", type="text", maxLength=MAX_QUESTION, n_submit=0, placeholder=t(lang, "kb.hint"),
                      className="kb-q"),
            html.Button(t(lang, "kb.search"), id="kb-go", n_clicks=0),
        ]),
        html.Div(id="kb-out", role="status"),
    ])


# -- content ---------------------------------------------------------------------------------------------


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def matches_view(lang: str, answer: dict[str, Any], *, compact: bool) -> list[Any]:
    """The answer's matches, best first: title, score, the quote, the source (``compact``: the quote clipped)."""
    matches = answer.get("matches") or []
    if not matches:
        return [html.P(t(lang, "kb.none"), className="muted", id="as-none" if not compact else "kb-none")]
    out: list[Any] = []
    if not answer.get("confident"):
        out.append(html.P(t(lang, "kb.unsure" if compact else "as.unsure"), className="msg warn as-unsure"))
    elif not compact:
        out.append(html.P(t(lang, "as.confident"), className="msg ok as-confident"))
    for n, m in enumerate(matches):
        quote = unwrap(str(m.get("quote") or ""))
        score = float(m.get("score") or 0.0)
        head = [html.Span(str(m.get("title") or ""), className="as-title"),
                html.Span(t(lang, f"as.type.{m.get('type')}") if m.get("type") in DOC_TYPES else "",
                          className="tag as-type"),
                html.Span(f"{score:.2f}", className="as-score", title=t(lang, "ask.score", score=f"{score:.2f}"))]
        parts: list[Any] = [html.Div(head, className="as-head"),
                            html.Div(_clip(quote, QUOTE_CHARS) if compact else quote, className="as-quote")]
        if not compact:
            parts.append(html.Div(html.Div(className="as-bar-fill", style={"width": f"{round(score * 100)}%"}),
                                  className="as-bar"))
        if m.get("source"):
            parts.append(html.Div(t(lang, "ask.source", source=m["source"]), className="small muted as-source"))
        who = f"call.{m.get('handoff')}"  # who helps beyond the answer, when the catalogue names them
        if m.get("handoff") and not compact and who in STRINGS:
            parts.append(html.Div(t(lang, "as.handoff_hint", what=t(lang, who)), className="small muted as-who"))
        out.append(with_data(html.Div(parts, className="as-match" + (" as-best" if n == 0 else "")),
                             doc=str(m.get("id") or "")))
    return out


def handoffs_view(req: Req, board: Dashboard) -> Any:
    lang = req.lang
    items = board.data.assistant().handoffs(req.user, 20)
    if not items:
        return html.P(t(lang, "as.no_handoffs"), className="muted", id="as-no-handoffs")
    names = people(board.community(), lang)
    c = board.community()
    head = html.Tr([html.Th(t(lang, f"as.col.{k}")) for k in
                    ("when", "ticket", "where", "question", "guess", "state", "assignee")])
    rows = []
    for h in items:
        b = c.building(h.building) if h.building else None
        where = " ".join(x for x in ((b.name if b else h.building or ""),
                                     floor_label(lang, h.floor) if h.floor is not None else "") if x)
        guess = (h.guess_en if lang == "en" else h.guess_zh) or h.guess_id or "—"
        rows.append(html.Tr([
            html.Td(board.local(h.created_at)),
            html.Td(dcc.Link(f"#{h.ticket_id}", href=f"/worker/ticket/{h.ticket_id}")),
            html.Td(where),
            html.Td([_clip(h.question, 80)] + ([html.Span(f" · {t(lang, 'as.by_resident')}", className="small muted")]
                                               if h.by_resident else [])),
            html.Td(guess, className="" if h.confident else "muted"),
            html.Td(status_label(lang, h.state)),
            html.Td(person(lang, h.assignee, names) if h.assignee else "—"),
        ]))
    return html.Div(html.Table([html.Thead(head), html.Tbody(rows)], className="table", id="as-handoff-table"),
                    className="as-scroll")


def _share(n: int, of: int) -> str:
    return f"{round(100 * n / of)} %" if of else "—"


def summary_view(req: Req, board: Dashboard) -> Any:
    """The residents' answers of the last 30 days: figures, then the entries shown most and the least helpful."""
    lang = req.lang
    s = board.data.assistant().outcomes(30)
    head = [html.H3(t(lang, "as.sum.title", days=s.days)), html.P(t(lang, "as.sum.lead"), className="small muted")]
    if not s.answered:
        return html.Div([*head, html.P(t(lang, "as.sum.none", days=s.days), className="muted", id="as-sum-none")])
    feedback = s.helped + s.not_helped

    def tile(key: str, n: int, sub: str = "") -> html.Div:
        return html.Div([html.Div(str(n), className="as-sum-n"), html.Div(t(lang, f"as.sum.{key}"), className="small"),
                         html.Div(sub, className="small muted")], className="as-sum-tile", id=f"as-sum-{key}")

    tiles = html.Div(className="as-sum-tiles", children=[
        tile("answered", s.answered),
        tile("confident", s.confident, t(lang, "as.sum.of", share=_share(s.confident, s.answered))),
        tile("helped", s.helped, t(lang, "as.sum.of_feedback", share=_share(s.helped, feedback))),
        tile("handoffs", s.handoffs, t(lang, "as.sum.of", share=_share(s.handoffs, s.answered))),
        tile("urgent", s.urgent)])

    def table(key: str, items: Any) -> html.Div:
        rows = [html.Tr([html.Td(((e.title_en if lang == "en" else e.title_zh) or e.entry), title=e.entry),
                         html.Td(str(e.shown)), html.Td(str(e.not_helped))]) for e in items]
        head_row = html.Tr([html.Th(t(lang, f"as.sum.col.{k}")) for k in ("entry", "shown", "not_helped")])
        return html.Div([html.H4(t(lang, f"as.sum.{key}")),
                         html.Table([html.Thead(head_row), html.Tbody(rows)], className="table", id=f"as-sum-{key}")]
                        if rows else [], className="as-sum-table")

    tables = html.Div([table("top", s.top), table("unhelpful", s.unhelpful)], className="as-sum-tables")
    return html.Div([*head, tiles, tables])


def _ask(req: Req, board: Dashboard, question: Any, audience: str, *, compact: bool) -> tuple[Any, str, str]:
    """(the answer's view, message, message class) for what was typed."""
    lang = req.lang
    q = question.strip() if isinstance(question, str) else ""
    if not q or len(q) > MAX_QUESTION:
        return [], t(lang, "as.need_question", n=MAX_QUESTION), "msg warn"
    try:
        answer = board.data.assistant().ask(q, audience, lang, 3)
    except ActionRefused as exc:
        return [], f"{t(lang, 'refused.bad_input')}: {exc.detail}", "msg warn"
    except DataUnavailable as exc:
        return [], unavailable_text(lang, exc), "msg warn"
    return matches_view(lang, answer, compact=compact), "", "msg"


# -- callbacks -------------------------------------------------------------------------------------------


def register_callbacks(app: Dash, board: Dashboard) -> None:
    guarded = guarded_callbacks(app, board)

    @guarded(Output("as-answer", "children"), Output("as-msg", "children"), Output("as-msg", "className"),
             Input("as-go", "n_clicks"), Input("as-q", "n_submit"), Input("as-aud", "value"), State("as-q", "value"),
             roles=SUPERVISORS, prevent_initial_call=True)
    def ask_page(req: Req, _n: Any, _s: Any, audience: Any, question: Any) -> Any:
        if not question:
            raise PreventUpdate
        return _ask(req, board, question, audience if audience in AUDIENCES else "all", compact=False)

    @guarded(Output("as-handoffs", "children"), Input("version", "data"), Input("url", "pathname"),
             roles=SUPERVISORS)
    def handoffs(req: Req, _v: Any, path: Any) -> Any:
        return _section(req, path, handoffs_view)

    @guarded(Output("as-summary", "children"), Input("version", "data"), Input("url", "pathname"),
             roles=SUPERVISORS)
    def summary(req: Req, _v: Any, path: Any) -> Any:
        return _section(req, path, summary_view)

    def _section(req: Req, path: Any, view: Callable[[Req, Dashboard], Any]) -> Any:
        """One of the /assistant page's live sections, redrawn with the data; a note when it cannot be read."""
        if path != "/assistant":
            raise PreventUpdate
        try:
            return view(req, board)
        except DataUnavailable as exc:
            return html.P(unavailable_text(req.lang, exc), className="msg warn")

    @guarded(Output("kb-out", "children"), Input("kb-go", "n_clicks"), Input("kb-q", "n_submit"),
             State("kb-q", "value"), prevent_initial_call=True)
    def ask_box(req: Req, _n: Any, _s: Any, question: Any) -> Any:
        view, msg, cls = _ask(req, board, question, "all", compact=True)
        return [html.P(msg, className=cls)] if msg else view
