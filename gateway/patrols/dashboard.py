"""Patrols for the dashboard: :class:`viz.patrol_model.PatrolData` on the dashboard's ticket desk (one ticket service
per pooled connection: a problem found on patrol raises a ticket the same way the REST API does). Does I/O.

Refusals become :class:`viz.data.ActionRefused` (``forbidden``, ``bad_input``) through the desk's own error mapping;
database failures :class:`viz.data.DataUnavailable`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from gateway.patrols.api import CHECKIN_BURST, CHECKIN_EVERY_S, POSITION_BURST, POSITION_EVERY_S
from gateway.patrols.store import Patrols, signing_key
from gateway.ratelimit import PerKeyLimiter
from twin import patrols as pt
from twin.community import Community
from twin.people import User
from twin.tickets import InvalidInput
from viz.data import ActionRefused, DataUnavailable, Position
from viz.patrol_model import Done

# the pages post through here rather than the REST API: the same limits per user, per process
_POSITIONS = PerKeyLimiter(POSITION_BURST, POSITION_EVERY_S)
_CHECKINS = PerKeyLimiter(CHECKIN_BURST, CHECKIN_EVERY_S)


def _limited(limiter: PerKeyLimiter, user: User, every_s: float) -> None:
    if not limiter.take(user.username):
        raise ActionRefused("rate_limited", f"too many requests; try again in {every_s:g} s")


class DashboardPatrols:
    def __init__(self, community: Community, desk: Any) -> None:
        self.community = community
        self.desk = desk
        self._plans = pt.default_plans()
        self._points = pt.checkpoints(community, self._plans)

    @contextlib.contextmanager
    def _patrols(self, what: str) -> Iterator[Patrols]:
        service = getattr(self.desk, "_service", None)
        if service is None:
            raise DataUnavailable("patrols need the ticket desk (gateway/web/ticket_desk.py)")
        with service(what) as svc:
            yield Patrols(svc, self.community, self._plans)

    def plans(self) -> pt.Plans:
        return self._plans

    def checkpoints(self) -> Sequence[pt.Checkpoint]:
        return self._points

    def status(self, user: User) -> Sequence[pt.CheckpointStatus]:
        with self._patrols("reading patrols") as p:
            return p.status(user)

    def by_token(self, token: str) -> pt.Checkpoint | None:
        with self._patrols("reading a checkpoint") as p:
            try:
                return pt.read_token(signing_key(p.conn), self.community.id, token, p.by_id)
            except InvalidInput:
                return None

    def check_in(self, user: User, *, token: str | None, checkpoint: str | None, position: Position | None,
                 result: str, note: str) -> Done:
        _limited(_CHECKINS, user, CHECKIN_EVERY_S)
        with self._patrols("checking in") as p:
            where = None if position is None else (position.lat, position.lon, position.accuracy_m)
            row = p.check_in(user, token=token, checkpoint=checkpoint, position=where, note=note,
                             result="problem" if result == "problem" else "ok")
            return Done(p.by_id[row.checkpoint], row.ticket_id, row.distance_m)

    def post_position(self, user: User, position: Position) -> None:
        _limited(_POSITIONS, user, POSITION_EVERY_S)
        with self._patrols("storing a position") as p:
            p.post_position(user, position.lat, position.lon, position.accuracy_m)

    def trails(self, user: User, hours: float = 12) -> Sequence[pt.Fix]:
        with self._patrols("reading positions") as p:
            return [r.fix() for r in p.trails(user, hours=hours)]

    def nearest(self, user: User, building: str) -> Sequence[tuple[float, pt.Fix]]:
        with self._patrols("finding the nearest worker") as p:
            return p.nearest(user, building)
