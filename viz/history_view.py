"""What the history and audit pages share: the time-range controls, the pager, labels of categories, states and
actions, users by name, and the query string of a CSV export. Pure functions of their input (and the catalogue)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from dash import dcc, html

from viz.history_model import PAGE_SIZES, PRESETS, QueryError
from viz.i18n import person_label, t

DATE_HINT = "YYYY-MM-DD"


def label(lang: str, prefix: str, value: str) -> str:
    """``t(lang, prefix + value)``, or the value itself when the catalogue has no such key."""
    try:
        return t(lang, prefix + value)
    except KeyError:
        return value


def who(lang: str, user: str | None, names: Mapping[str, str]) -> str:
    """A user by name: ``值班员 (operator)``; ``system``/``watchdog`` as the system; unknown ids as they are."""
    if not user or user in SYSTEM_ACTORS:
        return t(lang, "inc.system")
    name = person_label(lang, names.get(user) or "")
    return f"{name} ({user})" if name and name != user else user


SYSTEM_ACTORS = frozenset({"", "system", "watchdog"})
MACHINE_NOTES = frozenset({"cleared by hand", "unshelved", "cleared"})  # what the alarm service writes by itself


def person_note(by: str | None, note: str | None) -> str:
    """A note a person wrote; the system's own notes (stored in English, the action already says it) are left out."""
    if not note or (by or "") in SYSTEM_ACTORS or note in MACHINE_NOTES:
        return ""
    return note


def error_text(lang: str, exc: QueryError) -> str:
    return t(lang, f"hist.err.{exc.key}", **exc.values)


def range_controls(lang: str, prefix: str) -> list[Any]:
    """Preset dropdown and two local-date inputs (used when the preset is ``custom``)."""
    options = [{"label": t(lang, f"hist.range.{p}"), "value": p} for p in PRESETS]
    options.append({"label": t(lang, "hist.range.custom"), "value": "custom"})
    return [
        html.Label([t(lang, "hist.range"),
                    dcc.Dropdown(id=f"{prefix}-range", options=options, value="7d", clearable=False,
                                 className="hist-pick")]),
        html.Label([t(lang, "hist.from"), dcc.Input(id=f"{prefix}-start", type="text", debounce=True, maxLength=10,
                                                    placeholder=DATE_HINT, className="hist-date")]),
        html.Label([t(lang, "hist.to"), dcc.Input(id=f"{prefix}-end", type="text", debounce=True, maxLength=10,
                                                  placeholder=DATE_HINT, className="hist-date")]),
    ]


def size_control(lang: str, prefix: str) -> html.Label:
    return html.Label([t(lang, "hist.size"), dcc.Dropdown(
        id=f"{prefix}-size", value=PAGE_SIZES[0], clearable=False, className="hist-pick narrow",
        options=[{"label": t(lang, "hist.size_n", n=n), "value": n} for n in PAGE_SIZES])])


def pager(lang: str, prefix: str, href: str) -> html.Div:
    return html.Div([
        html.Button(t(lang, "hist.prev"), id=f"{prefix}-prev", n_clicks=0),
        html.Span(id=f"{prefix}-pager", className="muted"),
        html.Button(t(lang, "hist.next"), id=f"{prefix}-next", n_clicks=0),
        html.A(t(lang, "hist.export"), id=f"{prefix}-export", href=href, className="button-link"),
    ], className="hist-pager")


def params(values: Mapping[str, Any]) -> dict[str, str]:
    """The non-empty parameters of a query, as the pages and the CSV routes read them."""
    out: dict[str, str] = {}
    for k, v in values.items():
        if v is None or v == "" or v is False:
            continue
        out[k] = str(v)
    if out.get("range") != "custom":
        out.pop("start", None)
        out.pop("end", None)
    return out


def export_href(path: str, values: Mapping[str, Any]) -> str:
    q = {k: v for k, v in params(values).items() if k not in ("page", "size")}
    return f"{path}?{urlencode(q)}" if q else path


def step_page(trigger: Any, page: Any, pages_total: int | None = None) -> int:
    """The page after a click on previous/next (``trigger`` ends in ``-prev`` or ``-next``); anything else: 0."""
    current = page if isinstance(page, int) and page >= 0 else 0
    if isinstance(trigger, str) and trigger.endswith("-prev"):
        return max(0, current - 1)
    if isinstance(trigger, str) and trigger.endswith("-next"):
        nxt = current + 1
        return min(nxt, pages_total - 1) if pages_total is not None else nxt
    return 0
