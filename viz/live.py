"""The page side of live updates: the top bar's "last updated" indicator and the alarm panel's alert toggles.
Pure layout; ``viz/assets/live.js`` brings them to life.

The browser opens ``GET /api/v1/stream`` (Server-Sent Events, authenticated by the session cookie) and, on
each alarm or ticket event, bumps the frame's ``version`` store, so the scene and the alarm list refresh
at once instead of waiting for the (slow, fallback) poll. The indicator shows the time of the last event or
heartbeat in the community's time zone and turns red when nothing came for a while; its texts, in the
page's language, travel as ``data-*`` attributes (``{time}`` is filled in by the script). The toggles
(sound, browser notification on a new critical alarm) are remembered in the browser's localStorage and
are off until the operator turns them on.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Any, cast

from dash import Dash, Input, Output, html

from viz.i18n import t

SLOW_POLL_MS = 15_000  # the poll while the stream is live: a resync and the session's expiry, nothing more
FAST_POLL_MS = 2_000  # the poll while the stream is down (the page keeps working without push)


def bump_button() -> html.Button:
    """A hidden button ``live.js`` clicks when the stream brought a change (a component's own event is what
    makes Dash run callbacks; ``set_props`` from outside a callback changes the prop but triggers nothing)."""
    return html.Button(id="live-bump", n_clicks=0, hidden=True, tabIndex="-1")


def register_callbacks(app: Dash) -> None:
    """A click on the hidden button moves the frame's ``version`` store: the scene, the alarm list and
    whatever else follows ``version`` refresh, as after a poll that found a change."""
    cast(Any, app).clientside_callback(
        """function(n) {
            return n ? "live-" + n + "-" + Date.now() : window.dash_clientside.no_update;
        }""",
        Output("version", "data", allow_duplicate=True), Input("live-bump", "n_clicks"), prevent_initial_call=True,
    )


def live_indicator(lang: str, tz: tzinfo) -> html.Span:
    """The top bar's indicator (``#live-status``); the script keeps its text and colour current."""
    offset = tz.utcoffset(datetime.now(UTC))
    span = html.Span(t(lang, "live.connecting"), id="live-status", className="live-status", title=t(lang, "live.hint"),
                     role="status")
    attrs: dict[str, Any] = {
        "data-lang": lang, "data-offset-min": str(int(offset.total_seconds() // 60) if offset else 0),
        "data-updated": t(lang, "live.updated"), "data-stalled": t(lang, "live.stalled"),
        "data-never": t(lang, "live.never"), "data-broker-down": t(lang, "live.broker_down"),
        "data-connecting": t(lang, "live.connecting"), "data-slow-poll-ms": str(SLOW_POLL_MS),
        "data-fast-poll-ms": str(FAST_POLL_MS),
    }
    for k, v in attrs.items():
        setattr(span, k, v)
    return span


def alert_toggles(lang: str) -> html.Div:
    """Sound and browser-notification toggles for new critical alarms (off by default, kept per browser)."""
    box = html.Div(className="alert-toggles small", title=t(lang, "live.alerts_hint"), children=[
        _toggle("alert-sound", t(lang, "live.sound")),
        _toggle("alert-notify", t(lang, "live.notify")),
        html.Span(id="alert-note", className="muted"),
    ])
    for k, v in {"data-denied": t(lang, "live.notify_denied"), "data-title": t(lang, "live.notify_title"),
                 "data-body": t(lang, "live.notify_body")}.items():
        setattr(box, k, v)
    return box


def _toggle(id_: str, label: str) -> html.Button:
    button = html.Button(label, id=id_, className="alert-toggle", n_clicks=0)
    setattr(button, "aria-pressed", "false")
    return button
