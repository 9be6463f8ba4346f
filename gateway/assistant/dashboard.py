"""The dashboard's assistant (:class:`viz.assistant_model.AssistantData`): answers from the process's assistant,
the recent handoffs from ``ticket_reports`` and the tickets' context. Does I/O (the dashboard's pool)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.api.pool import StoragePool
from gateway.assistant import outcomes
from gateway.assistant.core import AUDIENCES, QUESTION_CATEGORY, ask
from gateway.tickets.views import knowledge_base
from gateway.web.database import connection
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput
from viz.assistant_model import EntryOutcome, HandoffItem, OutcomeSummary
from viz.data import ActionRefused

MAX_LIMIT = 100


class StorageAssistant:
    def __init__(self, community: Community, pool: StoragePool,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._community = community
        self._pool = pool
        self._clock = clock  # the outcomes' days: the ticket service's clock (UTC) counts them

    def ask(self, question: str, audience: str, lang: str, limit: int = 3) -> dict[str, Any]:
        if audience not in AUDIENCES:
            raise ActionRefused("bad_input", f"audience: one of {', '.join(AUDIENCES)}")
        try:
            answer = ask(question, audience, limit=max(1, min(limit, 10)))
        except InvalidInput as exc:
            raise ActionRefused("bad_input", str(exc)) from None
        return answer.as_dict("en" if lang == "en" else "zh")

    def handoffs(self, user: User, limit: int = 20) -> Sequence[HandoffItem]:

        kb = knowledge_base()
        everything = user.sees_everything()
        with connection(self._pool, "reading the assistant's handoffs") as st:
            rows = st.conn.execute(
                "SELECT t.id, t.created_at, t.state, t.building, t.floor, t.assignee, r.kind, "
                "t.context -> 'assistant' FROM ticket_reports r JOIN tickets t ON t.id = r.ticket_id "
                "WHERE (r.category = %s OR t.context ? 'assistant') AND r.community = %s AND (%s OR t.grid = ANY(%s)) "
                "ORDER BY r.created_at DESC, t.id DESC LIMIT %s",
                (QUESTION_CATEGORY, self._community.id, everything, list(user.grids),
                 max(1, min(limit, MAX_LIMIT)))).fetchall()
        out = []
        for tid, created, state, building, floor, assignee, kind, stored in rows:
            about = stored if isinstance(stored, dict) else {}
            best = about.get("best") if isinstance(about.get("best"), str) else None
            doc = kb.get(best) if best else None
            out.append(HandoffItem(str(tid), created, str(state), building, floor, assignee, kind == "resident",
                                   str(about.get("question") or ""), best, doc.title_zh if doc else None,
                                   doc.title if doc else None,
                                   about["confident"] if isinstance(about.get("confident"), bool) else None))
        return out

    def outcomes(self, days: int = outcomes.SUMMARY_DAYS) -> OutcomeSummary:
        kb = knowledge_base()
        today = self._clock().date()
        with connection(self._pool, "reading the assistant's outcomes") as st:
            s = outcomes.summary(st.conn, self._community.id, today, max(1, min(days, 366)))

        def rows(items: Sequence[outcomes.EntryCount]) -> tuple[EntryOutcome, ...]:
            docs = [kb.get(e.entry) for e in items]
            return tuple(EntryOutcome(e.entry, d.title_zh if d else None, d.title if d else None, e.shown,
                                      e.not_helped) for e, d in zip(items, docs, strict=True))

        return OutcomeSummary(s.days, s.answered, s.confident, s.helped, s.not_helped, s.handoffs, s.urgent,
                              rows(s.top), rows(s.unhelpful))
