"""What the patrol pages (:mod:`viz.pages.patrols`) read and do: the protocol the composition root's data source
implements (``gateway/patrols/dashboard.py``). Plans, checkpoints and statuses come from :mod:`twin.patrols`; what a
user may see (their grids; a worker their own trail) is decided on the data source's side."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from twin.patrols import CheckIn, Checkpoint, CheckpointStatus, Fix, Plans
from twin.people import User
from viz.data import Position

__all__ = ["CheckIn", "Checkpoint", "CheckpointStatus", "Done", "Fix", "PatrolData", "Plans"]


@dataclass(frozen=True, slots=True)
class Done:
    """A stored check-in: where, and the ticket a problem raised."""

    checkpoint: Checkpoint
    ticket: int | None
    distance_m: float | None


class PatrolData(Protocol):
    """Patrols as one user may see them. Refusals raise :class:`viz.data.ActionRefused` (``forbidden``,
    ``bad_input``) with the reason; an unreachable database :class:`viz.data.DataUnavailable`."""

    def plans(self) -> Plans: ...

    def checkpoints(self) -> Sequence[Checkpoint]: ...

    def status(self, user: User) -> Sequence[CheckpointStatus]:
        """Each checkpoint of the user's grids (everyone's for operators) in its current period."""
        ...

    def by_token(self, token: str) -> Checkpoint | None:
        """The checkpoint a QR code's token names, if its signature is right."""
        ...

    def check_in(self, user: User, *, token: str | None, checkpoint: str | None, position: Position | None,
                 result: str, note: str) -> Done: ...

    def post_position(self, user: User, position: Position) -> None: ...

    def trails(self, user: User, hours: float = 12) -> Sequence[Fix]:
        """Positions of the workers the user may see, oldest first."""
        ...

    def nearest(self, user: User, building: str) -> Sequence[tuple[float, Fix]]:
        """On-duty workers with a fresh position, nearest to ``building`` first."""
        ...
