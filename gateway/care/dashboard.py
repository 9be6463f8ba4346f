"""The care register for the dashboard: :class:`viz.care_model.CareRegisterData` on the dashboard's pool. Does I/O.

Each call takes a pooled connection and applies :class:`gateway.care.store.CareRegister`'s rules (listing the
register first adds the community file's care units it does not hold yet);
database failures become :class:`viz.data.DatabaseDown` / :class:`viz.data.DataUnavailable`, refusals
:class:`viz.data.ActionRefused` (``care_not_found``, ``care_forbidden``, ``care_invalid``) with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime

from gateway.api.pool import StoragePool
from gateway.care.store import CareForbidden, CareRegister, ResidentNotFound
from gateway.tickets.photos import Photo, PhotoRejected
from gateway.web.database import connection
from twin import care
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput
from viz.data import ActionRefused
from viz.data import Photo as UploadedPhoto


class DashboardCareRegister:
    def __init__(self, community: Community, pool: StoragePool,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.community = community
        self.pool = pool
        self.clock = clock
        self._seeded = False  # evacuation(): the register holds the community file's residents

    @contextlib.contextmanager
    def _register(self, what: str) -> Iterator[CareRegister]:
        with connection(self.pool, what) as st:
            try:
                yield CareRegister(st.conn, {self.community.id: self.community}, self.clock())
            except ResidentNotFound as exc:
                raise ActionRefused("care_not_found", str(exc)) from None
            except CareForbidden as exc:
                raise ActionRefused("care_forbidden", str(exc)) from None
            except (InvalidInput, PhotoRejected) as exc:
                raise ActionRefused("care_invalid", str(exc)) from None

    def residents(self, user: User, *, level: str | None = None,
                  grid: str | None = None) -> Sequence[care.ResidentView]:
        with self._register("reading the care register") as reg:
            reg.seed(self.community)
            return reg.residents(user, community=self.community.id, level=level, grid=grid)

    def resident(self, user: User, resident_id: int) -> care.ResidentView | None:
        with self._register("reading a resident") as reg:
            try:
                return reg.resident(user, resident_id)
            except ResidentNotFound:
                return None

    def visits(self, user: User, resident_id: int) -> Sequence[care.VisitView]:
        with self._register("reading visits") as reg:
            return reg.visits(user, resident_id)

    def level_changes(self, user: User, resident_id: int) -> Sequence[care.LevelChangeView]:
        with self._register("reading level changes") as reg:
            return reg.level_changes(user, resident_id)

    def log_visit(self, user: User, resident_id: int, *, note: str, checks: Mapping[str, bool],
                  visited_at: datetime | None, photo: UploadedPhoto | None) -> None:
        with self._register("logging a visit") as reg:
            reg.log_visit(user, resident_id, note=note, checks=checks, visited_at=visited_at,
                          photo=Photo(photo.content_type, photo.content) if photo is not None else None)

    def change_level(self, user: User, resident_id: int, level: str, reason: str) -> None:
        with self._register("changing a care level") as reg:
            reg.change_level(user, resident_id, level, reason)

    def evacuation(self, user: User, building: str) -> Sequence[care.ResidentView]:
        """Seeds the register from the community file first (once per process): a fire ticket or the 3D view may be
        the first thing to read it, and the people to evacuate must be there."""
        with self._register("reading residents to evacuate") as reg:
            if not self._seeded:
                reg.seed(self.community)
                self._seeded = True
            return reg.evacuation(user, self.community.id, building)

    def for_unit(self, user: User, unit: str) -> care.ResidentView | None:
        with self._register("reading a care unit's resident") as reg:
            return reg.for_unit(user, self.community.id, unit)
