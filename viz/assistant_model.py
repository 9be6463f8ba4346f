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


@dataclass(frozen=True, slots=True)
class EntryOutcome:
    """One knowledge base entry's answers to residents: how often it was shown first, how often it did not help."""

    entry: str
    title_zh: str | None
    title_en: str | None
    shown: int
    not_helped: int


@dataclass(frozen=True, slots=True)
class OutcomeSummary:
    """The residents' answers of the last ``days`` days (no personal data: gateway/assistant/outcomes.py)."""

    days: int
    answered: int
    confident: int
    helped: int
    not_helped: int  # "did not help" or handed off
    handoffs: int
    urgent: int
    top: tuple[EntryOutcome, ...]
    unhelpful: tuple[EntryOutcome, ...]


@runtime_checkable
class AssistantData(Protocol):
    def ask(self, question: str, audience: str, lang: str, limit: int = 3) -> dict[str, Any]:
        """The answer as ``twin.assistant.Answer.as_dict(lang)``: ``question``, ``confident`` and ``matches``
        (``id``, ``type``, ``title``, ``quote``, ``source``, ``score``, ``handoff``), best first."""
        ...

    def handoffs(self, user: User, limit: int = 20) -> Sequence[HandoffItem]:
        """The latest handed-off questions ``user`` may see (a supervisor: their grids'), newest first."""
        ...

    def outcomes(self, days: int = 30) -> OutcomeSummary:
        """The community's residents' answers of the last ``days`` days: counts, top and unhelpful entries."""
        ...
