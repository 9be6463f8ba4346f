"""The residents' ask box and answer page (plain HTML fragments for :mod:`gateway.reports.public`'s frame). Pure
rendering: no I/O, and nothing of :mod:`gateway.reports.public` (which imports :func:`ask_box` from here).

No script: the answer page's "did this help?" is a "yes" button (a form: the outcome is counted) and a ``<details>``
"no" that opens the handoff form (open from the start when the assistant is not sure, found nothing, or the answer
is about an emergency) and a "no, but no need to hand it off" button. An emergency's card
(:func:`urgent_card`: what to do now, the numbers to call) comes before everything.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from twin.contacts import Call
from viz.i18n import floor_label, t
from viz.quotes import unwrap

MAX_QUESTION = 500  # gateway.assistant.core.MAX_QUESTION (not imported: core imports the engine)
MAX_NOTE = 300
STYLE = (
    ".ask h2{margin-top:0}.ask form{display:flex;gap:8px;align-items:stretch}.ask form input{flex:1}"
    ".ask form button{width:auto;margin:0;padding:10px 16px;white-space:nowrap}"
    ".as-q{color:#5b6775}.as-best h2{margin:.2em 0 .5em}blockquote{margin:.4em 0;padding:8px 12px;"
    "border-left:4px solid #1565c0;background:#f6f9fe;white-space:pre-wrap;border-radius:0 8px 8px 0}"
    ".as-src{color:#5b6775;font-size:.85rem;margin:.4em 0 0}.as-warn{background:#fff4e5;color:#7a4100;"
    "border-radius:8px;padding:10px 12px}.as-more summary{cursor:pointer;color:#1565c0}"
    ".as-more blockquote{font-size:.92rem}.as-fb{display:flex;gap:8px;flex-wrap:wrap;align-items:flex-start}"
    ".as-fb>details{flex:1 1 40%}.as-fb>details.as-no[open]{flex-basis:100%}.as-fb summary{list-style:none;"
    "cursor:pointer;text-align:center;font-weight:600;padding:10px;border-radius:8px;border:1px solid #1565c0;"
    "color:#1565c0;background:#fff}.as-fb summary::-webkit-details-marker{display:none}"
    ".as-fb details[open] summary{background:#e8f0fc}.as-fb details>div,.as-fb details>form{padding-top:8px}"
    ".as-links{display:flex;justify-content:space-between;gap:8px;flex-wrap:wrap}.as-links a{color:#1565c0}"
    ".as-fb form{margin:0}.as-fb form button{margin:0}.as-fb>form{flex:1 1 40%}"
    ".as-fb button.as-yes{background:#fff;color:#1565c0;border:1px solid #1565c0;padding:10px}"
    "button.as-plain{background:none;color:#1565c0;border:0;font-weight:400;text-decoration:underline;padding:6px 0;"
    "margin-top:4px}.as-sos{border:2px solid #c62828;background:#fff5f5}.as-sos h2{color:#b71c1c;margin-top:0}"
    ".as-sos ol{margin:.3em 0 .6em;padding-left:1.3em}.as-sos li{margin:.25em 0}.as-calls{display:flex;gap:8px;"
    "flex-wrap:wrap}.as-calls a{flex:1 1 45%;display:block;text-align:center;padding:10px 8px;border-radius:8px;"
    "background:#c62828;color:#fff;font-weight:600;text-decoration:none}.as-calls a small{display:block;"
    "font-weight:400;opacity:.9}.as-tel{white-space:nowrap}"
)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _q(lang: str) -> str:
    return "?lang=en" if lang == "en" else ""


def ask_box(lang: str, building_path: str, token: str, value: str = "", *, heading: str | None = None) -> str:
    """The ask card: one line and a button, posting to ``{building_path}/ask``."""
    return (f'<section class="card ask" id="ask"><h2>{_e(heading or t(lang, "ask.box.title"))}</h2>'
            f'<p class="muted">{_e(t(lang, "ask.box.lead"))}</p>'
            f'<form id="ask-form" method="post" action="{_e(building_path)}/ask{_q(lang)}">'
            f'<input type="hidden" name="form_token" value="{_e(token)}">'
            f'<input id="ask-q" name="question" required maxlength="{MAX_QUESTION}" value="{_e(value)}" '
            f'aria-label="{_e(t(lang, "ask.box.label"))}" placeholder="{_e(t(lang, "ask.box.hint"))}">'
            f'<button id="ask-submit">{_e(t(lang, "ask.box.submit"))}</button></form></section>')


def _match(lang: str, m: Mapping[str, Any], *, best: bool) -> str:
    src = f'<p class="as-src">{_e(t(lang, "ask.source", source=m["source"]))}</p>' if m.get("source") else ""
    score = _e(t(lang, "ask.score", score=f"{float(m['score']):.2f}"))
    if best:
        return (f'<div class="as-best" id="ask-best" data-doc="{_e(m["id"])}"><h2>{_e(m["title"])}</h2>'
                f'<blockquote id="ask-quote">{_e(unwrap(m["quote"]))}</blockquote>{src}</div>')
    return (f'<details class="as-more" data-doc="{_e(m["id"])}"><summary>{_e(m["title"])} '
            f'<span class="muted">· {score}</span></summary><blockquote>{_e(unwrap(m["quote"]))}</blockquote>{src}'
            "</details>")


def urgent_card(lang: str, kind: str, calls: Iterable[Call]) -> str:
    """What to do now about an emergency of ``kind`` (:data:`twin.assistant.urgent.KINDS`), and ``calls`` as
    ``tel:`` links (the community's numbers for the kind's roles)."""
    steps = "".join(f"<li>{_e(s)}</li>" for s in t(lang, f"ask.urgent.{kind}").split("\n") if s.strip())
    links = "".join(
        f'<a href="{_e(c.href)}" data-role="{_e(c.role)}">'
        f'{_e(t(lang, "ask.urgent.call", who=t(lang, f"call.{c.role}")))}'
        f'<small>{_e((c.name_en if lang == "en" and c.name_en else c.name) or "")}'
        f'{" · " if c.name else ""}<span class="as-tel">{_e(c.phone)}</span></small></a>' for c in calls)
    return (f'<section class="card as-sos" id="ask-urgent" data-kind="{_e(kind)}" role="alert">'
            f'<h2>{_e(t(lang, "ask.urgent.title"))}</h2><ol>{steps}</ol>'
            + (f'<div class="as-calls" id="ask-calls">{links}</div>' if links else "")
            + f'<p class="muted">{_e(t(lang, "ask.urgent.then"))}</p></section>')


def _feedback(lang: str, building_path: str, token: str, ref: str, helped: bool, label: str, cls: str) -> str:
    return (f'<form method="post" action="{_e(building_path)}/feedback{_q(lang)}">'
            f'<input type="hidden" name="form_token" value="{_e(token)}">'
            f'<input type="hidden" name="answer" value="{_e(ref)}"><input type="hidden" name="helped" '
            f'value="{"1" if helped else "0"}"><button class="{cls}" id="ask-{"yes" if helped else "no-only"}">'
            f"{_e(label)}</button></form>")


def thanks(lang: str, helped: bool) -> str:
    """The page after "did this help?"."""
    return (f'<div class="card" id="ask-thanks"><p>{_e(t(lang, "ask.yes_done" if helped else "ask.no_done"))}</p>'
            "</div>")


def answer_body(lang: str, building_path: str, floors: Iterable[int], token: str, answer: Mapping[str, Any], *,
                error: str | None = None, values: Mapping[str, str] | None = None, ref: str | None = None,
                urgent: bool = False) -> str:
    """The answer page's body: the question, the best answer quoted with its source (others folded), "did this
    help?", and the handoff form (open when the assistant is not sure, found nothing, the answer is ``urgent``, or
    the form came back with ``error``). ``ref``: the counted answer (:mod:`gateway.assistant.outcomes`; None: not
    counted, "did this help?" records nothing)."""
    v = values or {}
    matches = list(answer.get("matches") or [])
    sure = bool(answer.get("confident")) and bool(matches)
    parts = [f'<p class="as-q">{_e(t(lang, "ask.you_asked"))}<strong id="ask-asked">{_e(answer["question"])}'
             "</strong></p>"]
    if error:
        parts.append(f'<div class="err" id="pub-error" role="alert">{_e(error)}</div>')
    card: list[str] = []
    if not matches:
        card.append(f'<p class="as-warn" id="ask-none">{_e(t(lang, "ask.none"))}</p>')
    else:
        if not sure:
            card.append(f'<p class="as-warn" id="ask-unsure">{_e(t(lang, "ask.unsure"))}</p>')
        card.append(_match(lang, matches[0], best=True))
        if len(matches) > 1:
            card.append(f'<p class="muted">{_e(t(lang, "ask.more"))}</p>'
                        + "".join(_match(lang, m, best=False) for m in matches[1:]))
    parts.append(f'<div class="card" id="ask-answer" data-confident="{"1" if sure else "0"}">{"".join(card)}</div>')
    opts = f'<option value="">{_e(t(lang, "report.any_floor"))}</option>' + "".join(
        f'<option value="{f}"{" selected" if v.get("floor") == str(f) else ""}>{_e(floor_label(lang, f))}</option>'
        for f in floors)
    form = (
        f'<form id="handoff-form" method="post" action="{_e(building_path)}/handoff{_q(lang)}">'
        f'<input type="hidden" name="form_token" value="{_e(token)}">'
        f'<input type="hidden" name="question" value="{_e(answer["question"])}">'
        f'<input type="hidden" name="answer" value="{_e(ref or "")}">'
        f'<p class="muted">{_e(t(lang, "ask.handoff.lead_urgent" if urgent else "ask.handoff.lead"))}</p>'
        f'<label for="floor">{_e(t(lang, "pub.floor"))}</label><select id="floor" name="floor">{opts}</select>'
        f'<label for="unit">{_e(t(lang, "pub.unit"))}</label><input id="unit" name="unit" maxlength="32" '
        f'value="{_e(v.get("unit", ""))}">'
        f'<label for="note">{_e(t(lang, "ask.handoff.note", n=MAX_NOTE))}</label><textarea id="note" name="note" '
        f'maxlength="{MAX_NOTE}">{_e(v.get("note", ""))}</textarea>'
        f'<label for="phone">{_e(t(lang, "ask.handoff.phone"))}</label><input id="phone" name="phone" type="tel" '
        f'maxlength="20" inputmode="tel" value="{_e(v.get("phone", ""))}">'
        f'<button id="handoff-submit">{_e(t(lang, "ask.handoff.submit"))}</button>'
        f'<p class="muted">{_e(t(lang, "pub.privacy"))}</p></form>')
    open_form = " open" if (not sure or error or urgent) else ""
    if matches:
        yes = (_feedback(lang, building_path, token, ref, True, t(lang, "ask.yes"), "as-yes") if ref else
               f'<details class="as-yes" id="ask-yes"><summary>{_e(t(lang, "ask.yes"))}</summary>'
               f'<div id="ask-yes-done">{_e(t(lang, "ask.yes_done"))}</div></details>')
        no_only = _feedback(lang, building_path, token, ref, False, t(lang, "ask.no_only"), "as-plain") if ref else ""
        parts.append(
            f'<div class="card"><h2>{_e(t(lang, "ask.solved_q"))}</h2><div class="as-fb">{yes}'
            f'<details class="as-no" id="ask-no"{open_form}><summary id="ask-no-summary">{_e(t(lang, "ask.no"))} · '
            f'{_e(t(lang, "ask.handoff.title"))}</summary>{form}{no_only}</details></div></div>')
    else:
        parts.append(f'<div class="card" id="ask-no"><h2>{_e(t(lang, "ask.handoff.title"))}</h2>{form}</div>')
    return "".join(parts)


def links(lang: str, building_path: str) -> str:
    return (f'<p class="as-links"><a id="ask-back" href="{_e(building_path)}{_q(lang)}">{_e(t(lang, "ask.back"))}</a>'
            "</p>")
