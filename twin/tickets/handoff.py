"""Hand-offs to partners (issue 15): whom the worker called for a ticket (96333 elevator rescue, the gas company's
emergency line, 119, the property company...), when, and when they arrived; and the partners' arrival times for
the KPIs. Pure: validates and folds the ticket's events (``ticket_events`` actions :data:`HANDOFF` and
:data:`PARTNER_ARRIVED`, detail ``{"role", "name", "phone"}``); :mod:`gateway.tickets.handoff` stores them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from twin.contacts import CALL_ROLES, RESIDENT
from twin.tickets.model import InvalidInput

HANDOFF = "handoff"  # a partner was called
PARTNER_ARRIVED = "partner_arrived"  # the partner called is on site
PARTNER_ROLES: tuple[str, ...] = tuple(r for r in CALL_ROLES if r != RESIDENT)


@dataclass(frozen=True, slots=True)
class Handoff:
    """One call to a partner and, once recorded, their arrival."""

    role: str
    called_at: datetime
    called_by: str
    name: str | None = None
    phone: str | None = None
    arrived_at: datetime | None = None
    arrived_by: str | None = None

    @property
    def arrive_s(self) -> float | None:
        return None if self.arrived_at is None else (self.arrived_at - self.called_at).total_seconds()


def check_role(role: Any) -> str:
    """``role`` as a partner role; :class:`InvalidInput` naming the known ones if it is not one."""
    if not isinstance(role, str) or role not in PARTNER_ROLES:
        raise InvalidInput(f"unknown partner {str(role)[:40]!r}; partners: {', '.join(PARTNER_ROLES)}")
    return role


def handoffs(events: Iterable[tuple[str, Mapping[str, Any], str, datetime]]) -> list[Handoff]:
    """The ticket's hand-offs from its events ``(action, detail, actor, at)`` in order: each call starts one; an
    arrival completes the latest open call to that partner (an arrival without a call is ignored)."""
    out: list[Handoff] = []
    for action, detail, actor, at in events:
        role = detail.get("role")
        if role not in PARTNER_ROLES:
            continue
        if action == HANDOFF:
            out.append(Handoff(str(role), at, actor, detail.get("name"), detail.get("phone")))
        elif action == PARTNER_ARRIVED:
            n = next((i for i in range(len(out) - 1, -1, -1) if out[i].role == role and out[i].arrived_at is None),
                     None)
            if n is not None:
                out[n] = replace(out[n], arrived_at=at, arrived_by=actor)
    return out


def arrival_problem(current: Iterable[Handoff], role: str) -> str | None:
    """Why the arrival of ``role`` cannot be recorded now (None: it can)."""
    mine = [h for h in current if h.role == role]
    if not mine:
        return f"no call to {role} is recorded on this ticket: record the call first"
    if all(h.arrived_at is not None for h in mine):
        return f"{role} already arrived at {mine[-1].arrived_at.isoformat() if mine[-1].arrived_at else ''}"
    return None


@dataclass(frozen=True, slots=True)
class PartnerKpi:
    """A partner's calls over a period: how many, how many arrived, and how long they took (seconds)."""

    role: str
    calls: int
    arrived: int
    median_arrive_s: float | None
    max_arrive_s: float | None


def partner_kpis(all_handoffs: Iterable[Handoff]) -> list[PartnerKpi]:
    """One row per partner called, in :data:`PARTNER_ROLES` order."""
    by_role: dict[str, list[Handoff]] = {}
    for h in all_handoffs:
        by_role.setdefault(h.role, []).append(h)
    rows = []
    for role in PARTNER_ROLES:
        hs = by_role.get(role)
        if not hs:
            continue
        times = [s for s in (h.arrive_s for h in hs) if s is not None]
        rows.append(PartnerKpi(role, len(hs), len(times), statistics.median(times) if times else None,
                               max(times) if times else None))
    return rows
