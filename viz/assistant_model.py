"""What the dashboard's assistant page (``/assistant``) and the worker's knowledge box need from the data source: a
small typed interface (:class:`AssistantData`, reached through ``DashboardData.assistant()``). Pure (no I/O).

The real one is ``gateway.assistant.dashboard.StorageAssistant``. Methods may raise
:class:`viz.data.DataUnavailable` or :class:`viz.data.ActionRefused` (``bad_input`` with what is wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from twin.people import User


@dataclass(frozen=True, slots=True)
class HandoffItem:
    """A question handed to a grid worker (a ticket of report category ``question``)."""

    ticket_id: str
    created_at: datetime
    state: str
    building: str | None
    floor: int | None
    assignee: str | None
    by_resident: bool
    question: str
    guess_id: str | None  # the knowledge base entry the assistant offered (None: it found nothing)
    guess_zh: str | None  # its title
    guess_en: str | None
    confident: bool | None


@runtime_checkable
class AssistantData(Protocol):
    def ask(self, question: str, audience: str, lang: str, limit: int = 3) -> dict[str, Any]:
        """The answer as ``twin.assistant.Answer.as_dict(lang)``: ``question``, ``confident`` and ``matches``
        (``id``, ``type``, ``title``, ``quote``, ``source``, ``score``, ``handoff``), best first."""
        ...

    def handoffs(self, user: User, limit: int = 20) -> Sequence[HandoffItem]:
        """The latest handed-off questions ``user`` may see (a supervisor: their grids'), newest first."""
        ...
