"""Community leases against the real database: acquire, renew, expiry takeover, fencing epoch, fair share."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from gateway.cluster.leases import Fenced, LeaseStore, check_fence
from gateway.cluster.ownership import Ownership
from gateway.cluster.sessions import client_id, filters, pause_silence
from tests.support.brokers import wait_until

pytestmark = pytest.mark.integration
COMMUNITIES = [f"c{i}" for i in range(6)]


@pytest.fixture
def stores(db_url: str, schema: str) -> Iterator[dict[str, LeaseStore]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.communities (code text PRIMARY KEY)")
        conn.execute(f"INSERT INTO {schema}.communities SELECT unnest(%s::text[])", (COMMUNITIES,))
    made = {n: LeaseStore(db_url, schema=schema, holder=n, lease_s=1.0) for n in ("a", "b", "c")}
    made["a"].ensure_tables()
    yield made
    for s in made.values():
        s.close()


def test_acquire_is_exclusive_until_expiry_then_a_takeover_bumps_the_epoch(stores: dict[str, LeaseStore]) -> None:
    a, b = stores["a"], stores["b"]
    assert a.acquire("c0") == 1
    assert b.acquire("c0") is None  # held
    assert a.renew({"c0": 1}) == {"c0"}
    assert wait_until(lambda: "c0" in b.free(), 5, 0.05)  # not renewed for lease_s: free
    assert b.acquire("c0") == 2
    assert a.renew({"c0": 1}) == set()  # the old holder learns it lost it
    assert b.renew({"c0": 2}) == {"c0"}


def test_release_frees_at_once_and_keeps_the_epoch_counting(stores: dict[str, LeaseStore]) -> None:
    a, b = stores["a"], stores["b"]
    assert a.acquire("c1") == 1
    assert not b.release("c1", 1)  # not b's
    assert a.release("c1", 1)
    assert b.acquire("c1") == 2


def test_the_fence_refuses_a_stale_holder_and_a_takeover_waits_for_a_fenced_write(
        stores: dict[str, LeaseStore], db_url: str, schema: str) -> None:
    a, b = stores["a"], stores["b"]
    assert a.acquire("c2") == 1
    with psycopg.connect(db_url, autocommit=True, options=f"-c search_path={schema}") as conn:
        with conn.transaction():
            check_fence(conn, "a", {"c2": 1})  # holds: passes, and share-locks the row
            took: list[Any] = []
            # b's takeover (after expiry) must wait for this transaction: run it in a thread
            time.sleep(1.1)
            t = threading.Thread(target=lambda: took.append(b.acquire("c2")))
            t.start()
            t.join(0.5)
            assert t.is_alive(), "the takeover did not wait for the fenced transaction"
        t.join(5)
        assert took == [2]
        with pytest.raises(Fenced) as err, conn.transaction():
            check_fence(conn, "a", {"c2": 1})
        assert err.value.communities == {"c2"}
        with conn.transaction():
            check_fence(conn, "b", {"c2": 2})
        with pytest.raises(Fenced), conn.transaction():
            check_fence(conn, "b", {"c2": 2, "c3": 1})  # never held


def test_fair_share_counts_live_gateways(stores: dict[str, LeaseStore]) -> None:
    a, b, c = stores["a"], stores["b"], stores["c"]
    a.heartbeat()
    assert a.fair_share() == 6
    b.heartbeat()
    c.heartbeat()
    assert a.fair_share() == 2
    c.leave()
    assert a.fair_share() == 3
    assert wait_until(lambda: b.live_nodes() == ["b"] or a.fair_share() == 6, 5, 0.05)  # heartbeats expire


class _Host:
    def __init__(self) -> None:
        self.running: set[str] = set()
        self.saved: list[str] = []

    def take(self, community: str, epoch: int) -> bool:
        self.running.add(community)
        return True

    def drop(self, community: str, *, save: bool) -> None:
        self.running.discard(community)
        if save:
            self.saved.append(community)


def test_three_ownerships_share_six_communities_and_take_over_from_a_dead_one(
        stores: dict[str, LeaseStore]) -> None:
    hosts = {n: _Host() for n in stores}
    owners = {n: Ownership(s, hosts[n], renew_s=0.2, lease_s=1.0) for n, s in stores.items()}
    for o in owners.values():
        o.start()
    try:
        assert wait_until(lambda: sorted(len(h.running) for h in hosts.values()) == [2, 2, 2], 10, 0.05), \
            {n: h.running for n, h in hosts.items()}
        all_running = set().union(*(h.running for h in hosts.values()))
        assert all_running == set(COMMUNITIES)
        # "c" dies without a word (its thread stops, nothing is released): the others split its two
        owners["c"]._stop.set()
        owners["c"]._thread.join(5)
        dead = set(hosts["c"].running)
        assert wait_until(lambda: dead <= hosts["a"].running | hosts["b"].running, 10, 0.05)
        assert sorted(len(hosts[n].running) for n in ("a", "b")) == [3, 3]
        # "b" stops cleanly: it saves and releases, "a" takes all six at once (no expiry wait)
        before = time.monotonic()
        owners["b"].stop(release=True)
        assert wait_until(lambda: hosts["a"].running == set(COMMUNITIES), 5, 0.05)
        assert time.monotonic() - before < 1.0 + 0.5
        assert len(hosts["b"].saved) == 3
    finally:
        for o in owners.values():
            o.stop(release=False)


def test_session_ids_filters_and_paused_silence() -> None:
    assert client_id("gridtwin", "sunshine") == "gridtwin-c-sunshine"
    assert "gridtwin/v1/sunshine/+/telemetry" in filters("gridtwin", "sunshine")
    assert "gridtwin/v1/alarms/sunshine/commands" in filters("gridtwin", "sunshine")
    snap: dict[str, Any] = {"now": 1000.0, "epoch": 10.0, "devices": {"d": {"last_seen": 990.0, "offline_since": None}}}
    out = pause_silence(snap, 1012.0)
    assert out is not None and out["devices"]["d"]["last_seen"] == 1002.0 and out["epoch"] == 22.0
    assert snap["devices"]["d"]["last_seen"] == 990.0  # the original is untouched
    assert pause_silence(snap, 999.0) is snap  # no gap
    assert pause_silence(None, 5.0) is None


def test_a_takeover_gap_raises_no_silence_alarm_once_the_snapshot_is_paused() -> None:
    """The engine alone: restored from a snapshot taken 12 s before takeover, with an 8 s no-data rule, a
    device heard just before the snapshot is 'silent' at once, unless the gap is paused."""
    from datetime import UTC, datetime, timedelta

    from benchmarks.scale import RULES, communities
    from twin.rules import DEFAULTS_FILE, Engine, load_rules

    community = communities(1)[0]
    rules = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8")), ("site.yaml", RULES)],
                       community)
    sensor = next(d.id for d in community.devices if d.kind == "noise")
    t0 = datetime.now(UTC) - timedelta(seconds=12)
    eng = Engine(rules, community)
    eng.on_reading(sensor, t0, {"db": 40.0}, received=t0)
    assert not [e for e in eng.tick(t0 + timedelta(seconds=1)) if e.rule == "sensor_offline"]
    snap = eng.snapshot()
    now = datetime.now(UTC)
    stale = Engine.restore(rules, community, snap)
    assert [e for e in stale.tick(now) if e.rule == "sensor_offline" and e.device == sensor]
    paused = Engine.restore(rules, community, pause_silence(snap, now.timestamp()) or {})
    assert not [e for e in paused.tick(now) if e.rule == "sensor_offline" and e.device == sensor]
    assert [e for e in paused.tick(now + timedelta(seconds=9)) if e.rule == "sensor_offline" and e.device == sensor]
