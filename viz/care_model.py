"""What the care register pages (:mod:`viz.pages.care_register`) read and do: the protocol the composition root's
data source implements (``gateway/care/dashboard.py``). The views come from :mod:`twin.care`, already masked as the
user's rights require (personal data only for the grid's workers and supervisors, and admins)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from twin.care import LevelChangeView, ResidentView, VisitView
from twin.people import User
from viz.data import Photo

__all__ = ["CareRegisterData", "LevelChangeView", "ResidentView", "VisitView"]


class CareRegisterData(Protocol):
    """The care register as one user may see it. Refusals raise :class:`viz.data.ActionRefused` with a code
    (``care_not_found``, ``care_forbidden``, ``care_invalid``) and the reason; an unreachable database
    :class:`viz.data.DataUnavailable`."""

    def residents(self, user: User, *, level: str | None = None, grid: str | None = None) -> Sequence[ResidentView]:
        """Overdue first, then red, yellow, green, by due date."""
        ...

    def resident(self, user: User, resident_id: int) -> ResidentView | None: ...

    def visits(self, user: User, resident_id: int) -> Sequence[VisitView]: ...

    def level_changes(self, user: User, resident_id: int) -> Sequence[LevelChangeView]: ...

    def log_visit(self, user: User, resident_id: int, *, note: str, checks: Mapping[str, bool],
                  visited_at: datetime | None, photo: Photo | None) -> None: ...

    def change_level(self, user: User, resident_id: int, level: str, reason: str) -> None: ...

    def evacuation(self, user: User, building: str) -> Sequence[ResidentView]:
        """Residents with limited mobility in ``building``, top floors first (a fire ticket's page)."""
        ...

    def for_unit(self, user: User, unit: str) -> ResidentView | None:
        """The resident of a care unit, if the register holds one the user may see (a care alarm's ticket)."""
        ...
