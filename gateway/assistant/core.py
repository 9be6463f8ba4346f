"""The process's assistant, the checks every question and note passes, and the handoff to a person. Does I/O.

A handoff is a one-click report of category :data:`QUESTION_CATEGORY` (``twin/report_categories.yaml``:
居民咨询/求助), or, when the question or the assistant's match is about an emergency (:mod:`twin.assistant.urgent`:
gas smell, fire, someone trapped in a lift...), of that emergency's category (``gas_smell``...: its clock and SOP);
the building's grid worker gets it through the same dispatch, SLA and rating loop as any report.
The ticket's description holds the question, the asker's note and the assistant's best guess (what was offered and
did not help), so the worker starts from there; the ticket's context keeps the same under ``assistant``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from gateway.reports.store import NewReport, submit
from gateway.tickets import views
from gateway.tickets.service import TicketService
from twin.assistant import Answer, Assistant
from twin.assistant.urgent import urgent
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput, Ticket

QUESTION_CATEGORY = "question"
MAX_QUESTION = 500
MAX_NOTE = 300
Audience = Literal["resident", "worker", "all"]
AUDIENCES: tuple[Audience, ...] = ("resident", "worker", "all")
_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A))  # direction overrides: hide text


def assistant() -> Assistant:
    """The assistant over the shipped knowledge base (built once per process: the ticket views' loader)."""
    return views.assistant()


def bad_char(text: str) -> str | None:
    """The first character of ``text`` no person types (a control character other than tab and line breaks, a
    lone surrogate, a direction override), None when there is none."""
    for ch in text:
        cat = unicodedata.category(ch)
        if (cat == "Cc" and ch not in "\t\n\r") or cat == "Cs" or ord(ch) in _BIDI:
            return ch
    return None


def clean_text(text: object, field: str, limit: int, *, required: bool, one_line: bool = True) -> str:
    """``text`` trimmed (``one_line``: every run of white space one space); :class:`InvalidInput` naming the field
    and what is wrong with it."""
    if not isinstance(text, str):
        raise InvalidInput(f"{field}: expected text, got {type(text).__name__}")
    bad = bad_char(text)
    if bad is not None:
        raise InvalidInput(f"{field}: holds a control character (U+{ord(bad):04X}); send plain text")
    text = " ".join(text.split()) if one_line else "\n".join(" ".join(x.split()) for x in text.strip().splitlines())
    if required and not text:
        raise InvalidInput(f"{field}: empty; type the question")
    if len(text) > limit:
        raise InvalidInput(f"{field}: {len(text)} characters, at most {limit}")
    return text


def ask(question: object, audience: Audience, *, limit: int = 3) -> Answer:
    """The assistant's answer to a checked question (:class:`InvalidInput` for one that is not)."""
    q = clean_text(question, "question", MAX_QUESTION, required=True)
    if audience not in AUDIENCES:
        raise InvalidInput(f"audience: one of {', '.join(AUDIENCES)}")
    try:
        return assistant().ask(q, audience=audience, limit=limit)
    except ValueError as exc:  # the engine's own checks (the same limits)
        raise InvalidInput(f"question: {exc}") from None


@dataclass(frozen=True, slots=True)
class Handoff:
    """A question handed to a person, as sent (unchecked): :func:`hand_off` checks every field."""

    question: str
    building: str | None = None
    floor: int | None = None
    unit: str | None = None
    note: str = ""
    phone: str | None = None


def default_building(c: Community, user: User | None, building: str | None) -> str:
    """The building a handoff goes to: the one named; else (staff) the first of the user's grids'."""
    if building:
        return building
    if user is not None and not user.sees_everything():
        found = next((b.id for b in c.buildings if c.grid_of(b) in user.grids), None)
        if found is not None:
            return found
    raise InvalidInput("building: name the building the question is about (its grid worker gets it)")


def description(question: str, note: str, answer: Answer | None) -> str:
    """What the grid worker reads: the question, the note, and what the assistant offered (Chinese, stored)."""
    lines = [f"问题：{question}"]
    if note:
        lines.append(f"补充：{note}")
    best = answer.best if answer is not None else None
    if best is not None:
        sure = answer is not None and answer.confident  # the entry's id and score: in the ticket's context
        lines.append(f"小助手的参考答案：《{best.document.title_zh[:60]}》{'' if sure else '（把握不大）'}，未能解决")
    else:
        lines.append("小助手没有找到相关答案")
    return "\n".join(lines)


def hand_off(svc: TicketService, c: Community, h: Handoff, *, reporter: User | None,
             audience: Audience) -> tuple[Ticket, str | None, Answer]:
    """Store the handoff as a report of :data:`QUESTION_CATEGORY`, or of the emergency's category when it is about
    one (:func:`twin.assistant.urgent.urgent`), dispatched to the building's grid worker:
    the ticket, the resident's tracking token (``reporter`` None) and the answer that was offered."""
    question = clean_text(h.question, "question", MAX_QUESTION, required=True)
    note = clean_text(h.note, "note", MAX_NOTE, required=False, one_line=False)
    building = default_building(c, reporter, h.building)
    answer = ask(question, audience)
    best = answer.best
    kind = urgent(answer)
    context: dict[str, Any] = {"assistant": {
        "question": question, "audience": audience, "confident": answer.confident,
        "best": best.document.id if best is not None else None,
        "score": round(float(best.score), 3) if best is not None else None,
        "urgent": kind.id if kind is not None else None}}
    category = kind.category if kind is not None else QUESTION_CATEGORY
    report = NewReport(category, building, h.floor, h.unit, description(question, note, answer), h.phone)
    t, token = submit(svc, c, report, reporter=reporter, context=context)
    return t, token, answer
