"""The worker on site (issue 15): where the phone was when the worker pressed 到场 (arrived), and the ticks of the
SOP checklist. Pure: validates and folds; the service stores them (migration 0014, ``ticket_events``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twin.tickets.model import InvalidInput

MAX_ACCURACY_M = 100_000.0  # a phone's fix vaguer than 100 km says nothing about being on site
SOP_CHECK = "sop_check"  # the ticket_events action of a tick or an untick


@dataclass(frozen=True, slots=True)
class Position:
    """WGS 84 degrees as a browser's geolocation gives them; ``accuracy_m``: its radius in metres, if known."""

    lat: float
    lon: float
    accuracy_m: float | None = None

    @classmethod
    def checked(cls, lat: Any, lon: Any, accuracy_m: Any = None) -> Position:
        """A position from outside input; :class:`InvalidInput` saying what is wrong with it."""
        def number(name: str, v: Any, low: float, high: float) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InvalidInput(f"position {name} must be a finite number, not {v!r}"[:200])
            if not low <= v <= high:
                raise InvalidInput(f"position {name} {v} is outside {low:g}..{high:g}")
            return float(v)

        return cls(number("lat", lat, -90.0, 90.0), number("lon", lon, -180.0, 180.0),
                   None if accuracy_m is None else number("accuracy_m", accuracy_m, 0.0, MAX_ACCURACY_M))

    def as_json(self) -> dict[str, float | None]:
        return {"lat": self.lat, "lon": self.lon, "accuracy_m": self.accuracy_m}


@dataclass(frozen=True, slots=True)
class SopCheck:
    """The last tick or untick of one step of a ticket's SOP checklist."""

    step: int
    done: bool
    by: str
    at: datetime


def check_step(steps: int, step: Any) -> int:
    """``step`` as an index into a checklist of ``steps`` steps; :class:`InvalidInput` if it is not one."""
    if steps <= 0:
        raise InvalidInput("this ticket has no SOP checklist to tick")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < steps:
        raise InvalidInput(f"SOP step {step!r} does not exist: the checklist has steps 0..{steps - 1}"[:200])
    return step


def sop_checks(events: Iterable[tuple[Mapping[str, Any], str, datetime]], sop: str | None,
               since: datetime | None = None) -> dict[int, SopCheck]:
    """Step -> its last tick or untick, from the ``sop_check`` events ``(detail, actor, at)`` in order, counting
    only those of the checklist ``sop`` (the SOP changes when the incident does) from ``since`` on (the start of
    the ticket's current cycle: a reopened ticket is worked through again)."""
    out: dict[int, SopCheck] = {}
    for detail, by, at in events:
        step = detail.get("step")
        if detail.get("sop") != sop or not isinstance(step, int) or (since is not None and at < since):
            continue
        out[step] = SopCheck(step, bool(detail.get("done")), by, at)
    return out


def ticked(checks: Mapping[int, SopCheck]) -> list[int]:
    """The steps ticked now, in order."""
    return sorted(s for s, c in checks.items() if c.done)
