"""Storage against the real PostgreSQL: migrations, partitions, retention, rollup, registry diffs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from gateway.cli_base import sample_community_path
from gateway.storage import MIGRATIONS, DatabaseUnavailable, Storage, StorageError, UnknownDevice
from twin.community import parse

pytestmark = pytest.mark.integration


@pytest.fixture
def st(db_url: str, schema: str) -> Iterator[Storage]:
    s = Storage.connect(db_url, schema=schema, retention_days=7, partitions_ahead_days=2)
    yield s
    s.close()


def _dump_schema(st: Storage) -> list[tuple[object, ...]]:
    return st.conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = %s "
        "ORDER BY 1, 2", (st.schema,)).fetchall()


def test_migrate_is_idempotent(st: Storage) -> None:
    assert st.schema_version() == 0
    applied = st.migrate()
    assert [a.split(" ")[0] for a in applied] == [f"{m.version:04d}_{m.name}" for m in MIGRATIONS]
    assert st.backend == "postgres"  # no timescaledb here; the plain-PostgreSQL path is what runs
    before = _dump_schema(st)
    versions = st.conn.execute("SELECT version, applied_at FROM schema_version ORDER BY 1").fetchall()
    assert st.migrate() == []
    assert _dump_schema(st) == before
    assert st.conn.execute("SELECT version, applied_at FROM schema_version ORDER BY 1").fetchall() == versions
    assert st.schema_version() == MIGRATIONS[-1].version


def test_partitions_ahead_and_retention(st: Storage) -> None:
    st.migrate()
    now = datetime.now(UTC)
    names = set(st._existing_partitions())
    for i in range(-1, 3):
        assert f"telemetry_p{now.date() + timedelta(days=i):%Y%m%d}" in names
    # a late reading 5 days back gets its partition on demand; 10 days back is dropped by retention
    mid = st.metric_ids()["pressure"]
    st.write_readings([(now - timedelta(days=5), 1, mid, 0.3, 1), (now - timedelta(days=10), 1, mid, 0.2, 1)])
    assert st.count_readings() == 2
    done = st.maintain(now)
    assert done["dropped"] == [f"telemetry_p{(now - timedelta(days=10)).date():%Y%m%d}"]
    assert st.count_readings() == 1
    assert st.maintain(now) == {"created": [], "dropped": []}


def test_rollup_one_minute_buckets(st: Storage) -> None:
    st.migrate()
    mid = st.metric_ids()["temperature"]
    t0 = datetime(2026, 11, 29, 3, 0, 0, tzinfo=UTC)
    now = datetime.now(UTC)
    base = now.replace(hour=t0.hour, minute=0, second=0, microsecond=0) - timedelta(days=1)
    rows = [(base + timedelta(seconds=10 * i), 7, mid, float(i), 0) for i in range(12)]  # two minutes
    st.write_readings(rows)
    assert st.refresh_rollup(since=base - timedelta(minutes=1)) == 2
    got = st.conn.execute("SELECT bucket, samples, avg_value, min_value, max_value FROM telemetry_1m "
                          "WHERE device_id = 7 ORDER BY bucket").fetchall()
    assert got == [(base, 6, 2.5, 0.0, 5.0), (base + timedelta(minutes=1), 6, 8.5, 6.0, 11.0)]
    # late data for the first minute is folded in by the next refresh from the watermark
    st.write_readings([(base + timedelta(seconds=30), 7, mid, 100.0, 1)])
    st.refresh_rollup(since=base)
    first = st.conn.execute("SELECT samples, max_value FROM telemetry_1m WHERE device_id = 7 ORDER BY bucket "
                            "LIMIT 1").fetchone()
    assert first == (7, 100.0)


def test_load_community_reports_added_changed_removed(st: Storage) -> None:
    st.migrate()
    text = sample_community_path().read_text(encoding="utf-8")
    c = parse(text)
    first = st.load_community(c)
    assert len(first.added["devices"]) == len(c.devices) and not first.changed["devices"]
    again = st.load_community(c)
    assert again.added == {"buildings": [], "devices": []} and again.changed == again.added
    assert again.removed == again.added
    doc = yaml.safe_load(text)
    doc["devices"] = [d for d in doc["devices"] if d["id"] != "NOISE-1"]
    next(d for d in doc["devices"] if d["id"] == "B1-HYD")["floor"] = 17
    third = st.load_community(parse(yaml.safe_dump(doc, allow_unicode=True)))
    assert third.changed["devices"] == ["B1-HYD"] and third.removed["devices"] == ["NOISE-1"]
    assert "NOISE-1" not in {d.code for d in st.devices()}
    assert any("1 changed, 1 removed" in line for line in third.lines())


def test_latest_unknown_device_and_empty(st: Storage) -> None:
    st.migrate()
    st.load_community(parse(sample_community_path().read_text(encoding="utf-8")))
    with pytest.raises(UnknownDevice, match="NOPE"):
        st.latest("NOPE")
    assert st.latest("B1-HYD") == []


def test_unreachable_database_is_one_clear_error() -> None:
    with pytest.raises(DatabaseUnavailable) as e:
        Storage.connect("postgresql://nobody:secret@127.0.0.1:1/nothing", connect_timeout_s=1)
    assert "127.0.0.1:1" in str(e.value) and "secret" not in str(e.value)
    with pytest.raises(StorageError):
        Storage.connect("postgresql://x@127.0.0.1:5432/db?bogus_option=1", connect_timeout_s=1)
