"""KPIs per worker, grid and community over a period (the seed's online assessment), and their Markdown table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Literal

from twin.tickets.model import Ticket, TicketState

Scope = Literal["worker", "grid", "community"]


@dataclass(frozen=True, slots=True)
class KpiRow:
    """The seed's online assessment for one worker, grid or community over a period."""

    scope: Scope
    key: str
    name: str
    tickets: int  # workload: tickets created in the period
    open: int
    resolved: int
    cancelled: int
    mean_respond_min: float | None
    mean_resolve_h: float | None
    on_time_rate: float | None  # resolved without a missed deadline / resolved
    rated: int
    satisfaction: float | None  # mean rating 1..5
    satisfied_rate: float | None  # ratings of 4 or 5 / ratings
    reopen_rate: float | None  # reopened at least once / resolved
    escalations: int

    def as_dict(self) -> dict[str, object]:
        return {f: getattr(self, f) for f in KPI_FIELDS}


KPI_FIELDS = ("scope", "key", "name", "tickets", "open", "resolved", "cancelled", "mean_respond_min",
              "mean_resolve_h", "on_time_rate", "rated", "satisfaction", "satisfied_rate", "reopen_rate",
              "escalations")


def _kpi_row(scope: Scope, key: str, name: str, ts: Sequence[Ticket]) -> KpiRow:
    live = [t for t in ts if t.state is not TicketState.CANCELLED]
    done = [t for t in live if t.resolved_at is not None or t.reopens > 0]
    responded = [(t.responded_at - t.created_at).total_seconds() for t in live if t.responded_at is not None]
    resolved = [(t.resolved_at - t.created_at).total_seconds() for t in live if t.resolved_at is not None]
    ratings = [t.rating for t in live if t.rating is not None]
    return KpiRow(
        scope=scope, key=key, name=name, tickets=len(ts), open=sum(t.open for t in ts),
        resolved=sum(t.resolved_at is not None for t in live), cancelled=len(ts) - len(live),
        mean_respond_min=round(fmean(responded) / 60, 1) if responded else None,
        mean_resolve_h=round(fmean(resolved) / 3600, 2) if resolved else None,
        on_time_rate=_ratio(sum(t.breaches == 0 for t in done), len(done)),
        rated=len(ratings), satisfaction=round(fmean(ratings), 2) if ratings else None,
        satisfied_rate=_ratio(sum(r >= 4 for r in ratings), len(ratings)),
        reopen_rate=_ratio(sum(t.reopens > 0 for t in done), len(done)),
        escalations=sum(t.escalations for t in ts),
    )


def _ratio(n: int, d: int) -> float | None:
    return round(n / d, 3) if d else None


def kpis(tickets: Iterable[Ticket], *, names: Mapping[str, str] | None = None,
         scopes: Sequence[str] = ("worker", "grid", "community")) -> list[KpiRow]:
    """KPI rows per worker (the ticket's final assignee), per grid and per community, in that order."""
    ts = list(tickets)
    nm = names or {}
    rows: list[KpiRow] = []
    groups: dict[tuple[Scope, str], list[Ticket]] = {}
    for t in ts:
        if t.assignee:
            groups.setdefault(("worker", t.assignee), []).append(t)
        groups.setdefault(("grid", t.grid or "(none)"), []).append(t)
        groups.setdefault(("community", t.community), []).append(t)
    order = {"worker": 0, "grid": 1, "community": 2}
    for (scope, key), group in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        if scope in scopes:
            rows.append(_kpi_row(scope, key, nm.get(key, key), group))
    return rows


def kpi_markdown(rows: Sequence[KpiRow], title: str) -> str:
    head = ["scope", "id", "name", "tickets", "open", "resolved", "respond (min)", "resolve (h)", "on time",
            "rated", "satisfaction", "satisfied", "reopened", "escalations"]
    lines = [f"# {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.scope, r.key, r.name, str(r.tickets), str(r.open), str(r.resolved),
                 _number_cell(r.mean_respond_min), _number_cell(r.mean_resolve_h), _percent_cell(r.on_time_rate),
                 str(r.rated), _number_cell(r.satisfaction), _percent_cell(r.satisfied_rate),
                 _percent_cell(r.reopen_rate), str(r.escalations)]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _number_cell(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _percent_cell(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


# -- false alarms -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FalseAlarmRow:
    """What the alarms of one device and rule turned out to be, by the reasons workers gave when they resolved or
    closed tickets while those alarms were active (twin.tickets.CLOSE_REASONS)."""

    device: str  # the device (or the subject of an alarm without one)
    kind: str | None  # the device's kind (catalogue), if known
    rule: str
    alarms: int  # alarms of this device and rule on tickets of the period
    false_alarm: int
    device_fault: int
    other: int

    @property
    def false_alarm_rate(self) -> float | None:
        return _ratio(self.false_alarm, self.alarms)

    def as_dict(self) -> dict[str, object]:
        return {"device": self.device, "kind": self.kind, "rule": self.rule, "alarms": self.alarms,
                "false_alarm": self.false_alarm, "device_fault": self.device_fault, "other": self.other,
                "false_alarm_rate": self.false_alarm_rate}


def false_alarm_stats(records: Iterable[tuple[str, str | None, str, str | None]]) -> list[FalseAlarmRow]:
    """Per device and rule, from ``(device, kind, rule, reason)`` per alarm of a ticket (reason None: none given):
    the rows with at least one reason, most false alarms first."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    kinds: dict[str, str | None] = {}
    for device, kind, rule, reason in records:
        c = counts.setdefault((device, rule), {"alarms": 0, "false_alarm": 0, "device_fault": 0, "other": 0})
        c["alarms"] += 1
        if reason in ("false_alarm", "device_fault", "other"):
            c[reason] += 1
        kinds[device] = kinds.get(device) or kind
    rows = [FalseAlarmRow(device, kinds.get(device), rule, c["alarms"], c["false_alarm"], c["device_fault"],
                          c["other"]) for (device, rule), c in counts.items()
            if c["false_alarm"] or c["device_fault"] or c["other"]]
    return sorted(rows, key=lambda r: (-r.false_alarm, -r.device_fault, -r.other, r.device, r.rule))
