"""Outcome analytics against the real database: two weeks of seeded handling (tests/integration/outcomes_seed.py)
read back by gateway.outcomes and checked against plain SQL counts, a supervisor's grids, and the REST route's
answers to good and bad requests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway.outcomes import outcomes
from gateway.settings import Settings
from gateway.storage import Storage
from tests.integration.outcomes_seed import Seeded, sample_community, seed
from tests.support.api_env import ApiEnv, Clock, api_env
from twin.community import Community
from twin.outcomes import METRICS
from twin.people import Role

pytestmark = pytest.mark.integration
USERS = {"op": (Role.OPERATOR, [], None), "sup": (Role.SUPERVISOR, ["G1"], "s-1"),
         "ma": (Role.WORKER, ["G1"], "w1-1")}
DAYS = 14


@dataclass
class Env(ApiEnv):
    start: datetime
    end: datetime
    seeded: Seeded

    def route(self, user: str | None, **params: Any) -> Any:
        """``GET /api/v1/outcomes`` as ``user`` (None: without a token)."""
        return self.get(user, "/outcomes", params=params)

    def scalar(self, query: str, *args: Any) -> int:
        row = self.storage.conn.execute(query, args).fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    c = sample_community()
    start = datetime(2026, 3, 2, 8, tzinfo=c.tz)  # a Monday
    period_start = start.replace(hour=0)
    end = period_start + timedelta(days=DAYS)

    def two_weeks(storage: Storage, settings: Settings, community: Community) -> dict[str, Any]:
        return {"seeded": seed(storage, settings, community, start, DAYS), "start": period_start, "end": end}

    with api_env(Env, "t_outcomes", USERS, community=c, clock=Clock(end + timedelta(hours=9)), prepare=two_weeks) as e:
        yield e


def test_the_store_reads_what_the_database_holds(env: Env) -> None:
    now = env.end + timedelta(hours=9)
    o = outcomes(env.pool, env.community, env.start, env.end, bucket="week", now=now)
    v = o.values
    created = "created_at >= %s AND created_at < %s"
    assert v["tickets"] == env.scalar(f"SELECT count(*) FROM tickets WHERE {created}", env.start, env.end) > 0
    assert v["reports"] == env.scalar(f"SELECT count(*) FROM ticket_reports WHERE {created}", env.start, env.end) > 0
    rated = env.scalar(f"SELECT count(*) FROM tickets WHERE rating IS NOT NULL AND {created}", env.start, env.end)
    good = env.scalar(f"SELECT count(*) FROM tickets WHERE rating >= 4 AND {created}", env.start, env.end)
    assert v["rated"] == rated and v["satisfaction"] == round(good / rated, 3)
    row = env.storage.conn.execute(
        "SELECT avg(extract(epoch FROM resolved_at - created_at)) / 86400 FROM tickets WHERE resolved_at IS NOT NULL "
        f"AND state <> 'cancelled' AND {created}", (env.start, env.end)).fetchone()
    assert row is not None and v["close_days"] == pytest.approx(float(row[0]), abs=0.006)
    false = env.scalar(f"SELECT count(*) FROM tickets WHERE close_reason = 'false_alarm' AND {created}",
                      env.start, env.end)
    assert sum(f for _n, f in o.false_alarms_by_kind.values()) == false
    assert sum(n for _n, n in o.repeats) <= v["tickets"]
    # daily patrols (fire doors and fire lanes per building) every day after the first (recording began at 08:00 on
    # it: its rounds count only where done)
    daily = 2 * len(env.community.buildings)
    assert v["patrol_rounds"] is not None and daily * (DAYS - 1) <= v["patrol_rounds"] <= daily * DAYS + 40
    assert v["care_due"] is not None and v["care_due"] > 0 and v["care_on_time"] is not None
    assert all(v[m] is not None for m in METRICS)
    assert [s.date().isoformat() for s, _ in o.series] == ["2026-03-02", "2026-03-09"]
    assert sum(x["tickets"] or 0 for _, x in o.series) == v["tickets"]
    assert set(o.by_grid) == {"G1", "G2", "G3"}
    assert sum(g["tickets"] or 0 for g in o.by_grid.values()) == v["tickets"]

    mine = outcomes(env.pool, env.community, env.start, env.end, bucket="day", grids=["G1"], now=now)
    assert set(mine.by_grid) == {"G1"} and len(mine.series) == DAYS
    assert mine.values["tickets"] == env.scalar(f"SELECT count(*) FROM tickets WHERE grid = 'G1' AND {created}",
                                               env.start, env.end)
    assert set(mine.by_worker) <= {"w1-1", "w1-2", "s-1"}


def test_the_route_answers_with_targets(env: Env) -> None:
    resp = env.route("op", **{"from": "2026-03-02", "to": "2026-03-15", "bucket": "week"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["from"] == "2026-03-02" and body["to"] == "2026-03-15" and body["timezone"] == "Asia/Shanghai"
    close = body["targets"]["close_days"]
    assert (close["baseline"], close["target"], close["lower_is_better"]) == (5.2, 1.8, True)
    assert close["met"] == (close["value"] <= 1.8)
    assert [s["start"][:10] for s in body["series"]] == ["2026-03-02", "2026-03-09"]
    assert {g["grid"] for g in body["by_grid"]} == {"G1", "G2", "G3"}
    assert any(w["worker"] == "w1-1" and w["grids"] == ["G1"] for w in body["by_worker"])
    sup = env.route("sup", **{"from": "2026-03-02", "to": "2026-03-15"}).json()
    assert {g["grid"] for g in sup["by_grid"]} == {"G1"}
    assert sup["values"]["tickets"] < body["values"]["tickets"]
    assert env.route("op").status_code == 200  # the last 12 weeks by default


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"from": "2026-03-15", "to": "2026-03-02"}, 422, "must not be after"),
    ({"bucket": "year"}, 422, "bucket"),
    ({"community": "nowhere"}, 422, "unknown community"),
    ({"from": "2026-01-01", "to": "2026-12-31", "bucket": "day"}, 422, "at most 120 days"),
    ({"from": "2020-01-01", "to": "2026-12-31"}, 422, "at most 732 days"),
    ({"from": "yesterday"}, 422, "from"),
])
def test_bad_requests_say_what_is_wrong(env: Env, params: dict[str, str], status: int, says: str) -> None:
    resp = env.route("op", **params)
    assert resp.status_code == status and says in resp.json()["detail"], resp.text


def test_workers_and_strangers_are_refused(env: Env) -> None:
    assert env.route("ma").status_code == 403
    assert env.route(None).status_code == 401
