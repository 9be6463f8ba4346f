"""Reading what :func:`outcomes` measures. Does I/O (one pooled connection per call)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Literal

from gateway.api.pool import StoragePool
from twin.community import Community
from twin.outcomes import Outcomes


def outcomes(pool: StoragePool, community: Community, start: datetime, end: datetime, *,
             bucket: Literal["day", "week", "month"] = "week", grids: Collection[str] | None = None,
             now: datetime | None = None) -> Outcomes:
    """The community's outcomes over ``[start, end)`` (aware), bucketed in its local time; ``grids``: only these
    grids (a supervisor's); ``now``: the time that decides what is still open (default: the clock)."""
    raise NotImplementedError
