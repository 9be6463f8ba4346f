"""Community leases against the real database: acquire, renew, expiry takeover, fencing epoch, fair share,
and the fence on a spool's replay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway import settings as settings_mod
from gateway.cluster.leases import Fenced, LeaseStore, check_fence
from gateway.cluster.ownership import Ownership
from gateway.cluster.sessions import client_id, filters, pause_silence
from gateway.ingest.batch import WriteBatch
from gateway.ingest.pipeline import Gateway, Item
from gateway.ingest.validate import Accepted
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, Storage
from tests.support.brokers import wait_until
from twin import contract

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


GAS = "B3-B1-GAS"  # a combustible-gas detector of the sample community


@pytest.mark.parametrize("moved", [False, True], ids=["lease-kept", "lease-moved"])
def test_a_spool_replay_passes_the_fence_at_the_epoch_it_was_spooled_under(
        moved: bool, settings: Settings, storage: Storage, db_url: str, schema: str, tmp_path: Path) -> None:
    """Cluster mode, database down: g1 spools a gas reading with the alarms its rules raised (announced, and
    the message acknowledged), then stops the community at its deadline. When the database is back the
    replay writes the reading and the alarm events in every case (the only copy; once each, however often
    the line is replayed), and the alarm rows and rule state only if g1 still holds the lease at the epoch
    it spooled under; after a takeover those are the new owner's and stay as it left them."""
    assert settings.db.url and settings.mqtt.url
    s = settings_mod.load(env={}, mqtt=settings.mqtt.model_dump(),
                          db={"url": settings.db.url, "schema": settings.db.schema_name},
                          cluster={"enabled": True, "node_id": "g1"}, data_dir=str(tmp_path / "data"))
    g1 = LeaseStore(db_url, schema=schema, holder="g1", lease_s=10.0)
    g2 = LeaseStore(db_url, schema=schema, holder="g2", lease_s=10.0)
    gw = Gateway(s, settings.mqtt.url, settings.db.url)  # never started: the test thread plays the writer
    try:
        epoch = g1.acquire("sunshine")
        assert epoch == 1 and gw._take_now("sunshine", epoch)
        before = gw.alarms["sunshine"].engine.snapshot()  # what a new owner restores from, saved before the outage
        storage.save_rule_state("sunshine", before, datetime.now(UTC) - timedelta(minutes=5))
        # the database goes down (no reconnect until the test says so): the batch is spooled with its alarms
        gw._db_down(DatabaseUnavailable(settings.db.url, "cut by the test"))
        gw._last_db_try = time.monotonic() + 3600
        topic = contract.topic(s.mqtt.topic_root, "sunshine", GAS, contract.Channel.TELEMETRY)
        payload = b'{"v":1,"ts":%d,"seq":1,"values":{"lel":58.0}}' % int(time.time() * 1000)
        accepted = gw._validator.check(topic, payload, datetime.now(UTC))
        assert isinstance(accepted, Accepted)
        gw._flush([Item(accepted, 1, 1, time.monotonic(), "sunshine")])
        assert gw.stats.spooled == 1 and gw.stats.alarm_events == 2, gw.stats.snapshot()
        (segment,) = sorted((tmp_path / "data" / "spool").rglob("*.jsonl"))
        line = segment.read_bytes()
        spooled = WriteBatch.decode(line)
        assert spooled.fence == {"sunshine": 1} and [a.community for a in spooled.alarms] == ["sunshine"]
        segment.write_bytes(line * 2)  # a replay cut off after its commit: the same line comes again
        gw._drop_now("sunshine", save=False)  # g1's deadline passed while the database was away
        if moved:  # a peer takes the community over (new epoch) and restores from the database
            assert g1.release("sunshine", 1) and g2.acquire("sunshine") == 2
        # a gateway with a spool to replay takes nothing first (a restore must see what the spool commits)
        gw._db_down_since, down_since = None, gw._db_down_since
        assert not gw._take_now("sunshine", 3)
        gw._db_down_since = down_since
        gw._last_db_try = 0.0
        assert gw._drain_spool() and not gw._spool.pending()
        conn = storage.conn
        assert conn.execute("SELECT count(*) FROM telemetry t JOIN devices d ON d.id = t.device_id "
                            "WHERE d.code = %s", (GAS,)).fetchone() == (1,)
        events = conn.execute("SELECT key, kind, dispatched_at IS NULL FROM alarm_events "
                              "WHERE community = 'sunshine' ORDER BY key").fetchall()
        assert events == [(f"gas_level1@{GAS}", "raised", True), (f"gas_level2@{GAS}", "raised", True)]
        rows = conn.execute("SELECT key, status FROM alarms WHERE community = 'sunshine' ORDER BY key").fetchall()
        state = conn.execute("SELECT snapshot FROM rule_state WHERE community = 'sunshine'").fetchone()
        assert state is not None
        if moved:  # the new owner's alarm rows and rule state, untouched
            assert rows == [] and state[0] == before
            assert gw.stats.spool_fenced == 2  # the line and its repeat
            assert "gridtwin_spool_alarm_writes_fenced_total 2.0" in gw.metrics.text()
        else:  # still g1's at epoch 1 (expired or not, nobody took it): everything, under the lease's lock
            assert rows == [(f"gas_level1@{GAS}", "active_unack"), (f"gas_level2@{GAS}", "active_unack")]
            assert state[0] != before and gw.stats.spool_fenced == 0
    finally:
        gw.stop()
        g1.close()
        g2.close()
