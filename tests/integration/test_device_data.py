"""The device page's and the inventory's reads on the real database: a device's alarm changes, events and alarm
periods within a range, and every device's last-heard time in one query (timed on the sample community)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from gateway.storage import Storage
from gateway.web.dashboard_data import StorageDashboardData
from tests.conftest import DB_URL
from twin.community import Community

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
GAS = "B3-B1-GAS"
COMMUNITY = "sunshine"  # the sample community's id


@pytest.fixture
def data(storage: Storage, schema: str, sample: Community) -> Iterator[StorageDashboardData]:
    d = StorageDashboardData(sample, DB_URL, schema=schema)
    yield d
    d.close()


def _ids(st: Storage) -> dict[str, int]:
    return dict(st.conn.execute("SELECT code, id FROM devices").fetchall())


def _alarm_event(st: Storage, key: str, kind: str, at: datetime, by: str | None = None) -> None:
    rule, _, device = key.partition("@")
    st.conn.execute(
        "INSERT INTO alarms (key, community, rule, subject, subject_type, severity, status, dispatch, device, "
        "raised_at, last_seen, count, detail) VALUES (%s, %s, %s, %s, 'device', 'critical', 'active_unack', "
        "'urgent', %s, %s, %s, 1, '') ON CONFLICT (key) DO NOTHING", (key, COMMUNITY, rule, device, device, at, at))
    st.conn.execute(
        "INSERT INTO alarm_events (at, community, key, kind, severity, status, by, detail, event) "
        "VALUES (%s, %s, %s, %s, 'critical', 'active_unack', %s, '', %s)", (at, COMMUNITY, key, kind, by, Jsonb({})))


def test_a_devices_alarm_periods_events_and_log_within_a_range(storage: Storage, data: StorageDashboardData,
                                                               sample: Community) -> None:
    code = sample.id
    since, until = NOW - timedelta(hours=1), NOW
    old, new = f"gas_level2@{GAS}", f"gas_level1@{GAS}"
    _alarm_event(storage, old, "raised", NOW - timedelta(hours=3))  # raised before the range, still active
    _alarm_event(storage, new, "raised", NOW - timedelta(minutes=40))
    _alarm_event(storage, new, "updated", NOW - timedelta(minutes=35))
    _alarm_event(storage, new, "acknowledged", NOW - timedelta(minutes=30), by="operator")
    _alarm_event(storage, new, "cleared", NOW - timedelta(minutes=20))
    _alarm_event(storage, "gas_level1@B3-F1-GAS", "raised", NOW - timedelta(minutes=10))  # another device
    assert code == COMMUNITY
    dev = _ids(storage)[GAS]
    storage.conn.execute(
        "INSERT INTO device_events (ts, device_id, code, state, seq) VALUES (%s, %s, 'fault', 'active', 1), "
        "(%s, %s, 'fault', 'cleared', 2), (%s, %s, 'fault', 'active', 3)",
        (NOW - timedelta(minutes=50), dev, NOW - timedelta(minutes=45), dev, NOW - timedelta(hours=2), dev))
    storage.conn.commit()
    tl = data.device_timeline(GAS, since, until)
    assert [(s.key, s.start, s.end) for s in tl.spans] == [
        (old, since, None), (new, NOW - timedelta(minutes=40), NOW - timedelta(minutes=20))]
    assert [(a.kind, a.by) for a in tl.alarm_events] == [("cleared", None), ("acknowledged", "operator"),
                                                         ("raised", None)]  # newest first, repeats left out
    assert [(e.code, e.state) for e in tl.events] == [("fault", "cleared"), ("fault", "active")]
    assert not tl.truncated
    short = data.device_timeline(GAS, since, until, limit=1)
    assert len(short.alarm_events) == 1 and short.truncated
    assert not data.device_timeline(GAS, until, since).spans


def test_the_inventory_reads_every_device_in_one_query(storage: Storage, data: StorageDashboardData,
                                                       sample: Community) -> None:
    ids = _ids(storage)
    metric = storage.metric_ids()["lel"]
    # a reading for every device, an event for every third, a status for every fifth: the sample's full load
    storage.conn.execute(
        "INSERT INTO latest_values (device_id, metric_id, value, ts) SELECT id, %s, 1, %s FROM devices",
        (metric, NOW - timedelta(hours=2)))
    storage.conn.execute(
        "INSERT INTO device_events (ts, device_id, code, state, seq) SELECT %s - make_interval(mins => g), id, "
        "'fault', 'pulse', g FROM devices, generate_series(1, 20) g WHERE id %% 3 = 0", (NOW,))
    storage.conn.execute(
        "INSERT INTO device_status (device_id, state, changed_at, last_seen) SELECT id, 'offline', %s, %s "
        "FROM devices WHERE id %% 5 = 0", (NOW - timedelta(hours=5), NOW - timedelta(minutes=30)))
    storage.conn.execute("DELETE FROM latest_values WHERE device_id = %s", (ids[GAS],))
    storage.conn.commit()
    t0 = time.perf_counter()
    rows = data.device_inventory()
    took = time.perf_counter() - t0
    by = {r.device: r for r in rows}
    assert len(rows) == len(sample.devices) == len(ids)
    for code, i in ids.items():
        r = by[code]
        want = NOW - timedelta(minutes=1) if i % 3 == 0 else NOW - timedelta(minutes=30) if i % 5 == 0 else (
            None if code == GAS else NOW - timedelta(hours=2))
        assert r.last_seen == want, code
        assert r.status == ("offline" if i % 5 == 0 else None)
    assert data.device_inventory() is rows  # reused for a moment: paging does not read again
    print(f"inventory of {len(rows)} devices ({len(rows) // 3 * 20} events): {took * 1000:.1f} ms")
    assert took < 2.0
