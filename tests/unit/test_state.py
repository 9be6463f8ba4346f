"""Live state: worst-wins roll-up, late readings, heartbeat offline, restore from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.cli_base import sample_community_path
from gateway.storage import Storage
from twin import contract
from twin.community import Community, parse
from twin.state import Level, LiveState

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def sample() -> Community:
    return parse(sample_community_path().read_text(encoding="utf-8"))


def test_fresh_state_is_unknown_then_normal(sample: Community) -> None:
    s = LiveState(sample)
    assert s.rollup().community is Level.UNKNOWN
    s.reading("B1-HYD", T0, {"pressure": 0.5})
    r = s.rollup()
    assert r.devices["B1-HYD"] is Level.NORMAL
    assert r.floors[("B1", 18)] is Level.NORMAL and r.buildings["B1"] is Level.NORMAL


def test_worst_wins_up_the_tree(sample: Community) -> None:
    s = LiveState(sample)
    for d in sample.devices:
        s.reading(d.id, T0, {})
        s.status(d.id, T0, online=True)
    s.reading("B2-HYD", T0, {"pressure": 0.05})  # below normal 0.14 -> warning
    s.event("B1-F9-SD1", T0, "fire_alarm", "active")
    r = s.rollup()
    assert r.devices["B1-F9-SD1"] is Level.CRITICAL
    assert r.floors[("B1", 9)] is Level.CRITICAL and r.floors[("B1", 1)] is Level.NORMAL
    assert r.buildings["B1"] is Level.CRITICAL and r.buildings["B2"] is Level.WARNING
    assert r.grids["G1"] is Level.CRITICAL and r.grids["G2"] is Level.NORMAL
    assert r.community is Level.CRITICAL
    s.event("B1-F9-SD1", T0 + timedelta(minutes=1), "fire_alarm", "cleared")
    assert s.rollup().buildings["B1"] is Level.NORMAL


def test_late_reading_does_not_overwrite_newer(sample: Community) -> None:
    s = LiveState(sample)
    s.reading("B1-HYD", T0, {"pressure": 0.5})
    s.reading("B1-HYD", T0 - timedelta(minutes=5), {"pressure": 0.1})
    assert s.devices["B1-HYD"].values["pressure"].value == 0.5


def test_heartbeat_timeout_marks_offline(sample: Community) -> None:
    s = LiveState(sample)
    s.reading("B1-F1-TH", T0, {"temperature": 20.0})  # heartbeat 600 s -> offline after 1200 s
    assert s.tick(T0 + timedelta(seconds=1100)) == []
    assert s.tick(T0 + timedelta(seconds=1300)) == ["B1-F1-TH"]
    assert s.rollup().devices["B1-F1-TH"] is Level.OFFLINE
    s.reading("B1-F1-TH", T0 + timedelta(seconds=1400), {"temperature": 20.0})
    assert s.rollup().devices["B1-F1-TH"] is Level.NORMAL


@pytest.mark.integration
def test_restore_from_database_after_restart(db_url: str, schema: str, sample: Community) -> None:
    """No blank cold start: what the gateway stored rebuilds the same roll-up."""
    from gateway.ingest.validate import Accepted, Registry, Validator

    with Storage.connect(db_url, schema=schema) as st:
        st.migrate()
        st.load_community(sample)
        v = Validator(Registry.build(st.devices(), st.metric_ids()), root="r", max_bytes=16384, max_fields=64,
                      max_future_s=300, max_age_s=30 * 86400)
        now = datetime.now(UTC)
        ms = int(now.timestamp() * 1000)
        msgs = [
            ("B3-HYD", "telemetry", contract.telemetry_bytes(ms, 1, {"pressure": 0.05})),
            ("B1-F9-SD1", "event", b'{"v":1,"ts":%d,"seq":2,"code":"fire_alarm","state":"active"}' % ms),
            ("B1-F1-SD1", "event", b'{"v":1,"ts":%d,"seq":3,"code":"fault","state":"active"}' % ms),
            ("B1-F1-SD1", "event", b'{"v":1,"ts":%d,"seq":4,"code":"fault","state":"cleared"}' % (ms + 1)),
            ("B2-F1-TH", "status", b'{"v":1,"state":"offline","reason":"last will"}'),
        ]
        live = LiveState(sample)
        for dev, ch, raw in msgs:
            res = v.check(f"r/v1/sunshine/{dev}/{ch}", raw, now)
            assert isinstance(res, Accepted), res
            st.write_readings(res.readings)
            st.write_events(res.events)
            st.write_status(res.statuses)
        live.reading("B3-HYD", now, {"pressure": 0.05})
        live.event("B1-F9-SD1", now, "fire_alarm", "active")
        live.status("B2-F1-TH", now, online=False)
        restored = LiveState(sample)
        restored.restore(*st.live_snapshot("sunshine"))
    r = restored.rollup()
    assert r.devices["B1-F9-SD1"] is Level.CRITICAL and r.devices["B1-F1-SD1"] is Level.NORMAL
    assert r.devices["B3-HYD"] is Level.WARNING and r.devices["B2-F1-TH"] is Level.OFFLINE
    assert r.buildings == live.rollup().buildings


def test_a_device_whose_clock_runs_behind_is_not_silent(sample: Community) -> None:
    state = LiveState(sample)
    now = datetime.now(UTC)
    slow = now - timedelta(hours=1)  # its clock is an hour behind; it reports on time
    state.reading("B1-HYD", slow, {"pressure": 0.4}, received=now)
    state.reading("B2-HYD", slow, {"pressure": 0.4})  # without a receipt time: device time counts
    assert state.tick(now) == ["B2-HYD"]
    assert state.devices["B1-HYD"].online is True
