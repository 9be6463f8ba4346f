"""Outcomes (seed 4.2/6.3): the figures a community measures its handling against, each with the value before the
platform (baseline) and the goal (target), and :class:`Outcomes`, what was measured over a period. Pure: the targets
are a model read from the community file's ``targets:``; measuring is :mod:`twin.outcomes.compute` (docs/outcomes.md).

Defaults are the results the source article reports for a community like ours: mean time to close 5.2 → 1.8
days, residents' satisfaction 68 % → 94 %; the rest have a target only until a community sets its baseline::

    targets:
      close_days: {baseline: 5.2, target: 1.8}
      satisfaction: {baseline: 0.68, target: 0.94}
      response_sla: {target: 0.95}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

Metric = Literal["close_days", "satisfaction", "response_sla", "resolution_sla", "care_on_time", "patrols_done",
                 "false_alarm_rate", "repeat_rate"]
METRICS: tuple[Metric, ...] = get_args(Metric)
LOWER_IS_BETTER: frozenset[Metric] = frozenset({"close_days", "false_alarm_rate", "repeat_rate"})
# besides the metrics, Outcomes.values holds these (counts and figures without a target)
EXTRA = ("mean_rating", "tickets", "reports", "reports_per_worker", "rated", "care_due", "patrol_rounds",
         "alarm_tickets")
Bucket = Literal["day", "week", "month"]
BUCKETS: tuple[Bucket, ...] = get_args(Bucket)
Values = dict[str, float | None]


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: float | None = Field(default=None, ge=0, description="the value before the platform")
    target: float = Field(ge=0, description="the goal")


class OutcomeTargets(BaseModel):
    """Baseline and target per outcome; shares are 0..1, close_days in days."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    close_days: Target = Target(baseline=5.2, target=1.8)
    satisfaction: Target = Target(baseline=0.68, target=0.94)
    response_sla: Target = Target(target=0.95)
    resolution_sla: Target = Target(target=0.90)
    care_on_time: Target = Target(target=0.95)
    patrols_done: Target = Target(target=0.95)
    false_alarm_rate: Target = Target(target=0.10)
    repeat_rate: Target = Target(target=0.10)  # share of places with a repeated incident in the period

    @model_validator(mode="after")
    def _shares(self) -> OutcomeTargets:
        for m in METRICS:
            if m == "close_days":
                continue
            t: Target = getattr(self, m)
            for what, v in (("baseline", t.baseline), ("target", t.target)):
                if v is not None and v > 1:
                    raise ValueError(f"{m}.{what} is a share from 0 to 1 (e.g. 0.95 for 95 %), not {v:g}")
        return self

    def met(self, metric: Metric, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (None: no value)."""
        if value is None:
            return None
        goal: float = getattr(self, metric).target
        return value <= goal if metric in LOWER_IS_BETTER else value >= goal


@dataclass(frozen=True)
class Outcomes:
    """What a community measured over ``[start, end)`` (aware, the community's local midnights), overall, per grid,
    per worker and per bucket (day, week from Monday, or calendar month, in the community's local time)."""

    community: str
    start: datetime
    end: datetime
    bucket: str
    values: Values  # metric -> value over the whole period (METRICS and EXTRA; None: nothing to measure)
    by_grid: dict[str, Values]  # grid id -> metric -> value
    by_worker: dict[str, Values]  # worker id -> metric -> value
    series: list[tuple[datetime, Values]]  # bucket start -> metric -> value
    false_alarms_by_kind: dict[str, tuple[int, int]]  # device kind -> (alarm tickets, false alarms)
    repeats: list[tuple[str, int]]  # place label (building/floor) -> incidents, worst first (>= 2 only)
