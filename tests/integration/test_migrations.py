"""Numbered SQL migrations against the real PostgreSQL: checksums, concurrent migrators, old databases."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.storage import MIGRATIONS, MigrationError, Storage, load_migrations
from gateway.storage.migrate import MIGRATIONS_DIR

pytestmark = pytest.mark.integration


@pytest.fixture
def st(db_url: str, schema: str) -> Iterator[Storage]:
    s = Storage.connect(db_url, schema=schema)
    yield s
    s.close()


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A copy of the shipped migrations that a test may edit."""
    return Path(shutil.copytree(MIGRATIONS_DIR, tmp_path / "migrations"))


def test_files_load_in_order_with_backend_parts() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    telemetry = next(m for m in MIGRATIONS if m.name == "telemetry")
    assert telemetry.files("postgres") == ["0002_telemetry.sql", "0002_telemetry.postgres.sql"]
    assert "PARTITION BY RANGE" in telemetry.text("postgres") and "hypertable" not in telemetry.text("postgres")
    assert "{retention_days}" in telemetry.text("timescaledb")
    assert "days => 9)" in telemetry.statement("timescaledb", 9)
    leases = next(m for m in MIGRATIONS if m.name == "community_leases")
    assert leases.files("timescaledb") == [f"{leases.version:04d}_community_leases.sql"]


def test_misnamed_file_is_refused(migrations_dir: Path) -> None:
    (migrations_dir / "0011-oops.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match=r"0011-oops\.sql"):
        load_migrations(migrations_dir)
    (migrations_dir / "0011-oops.sql").unlink()
    (migrations_dir / "0003_other_name.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="two names"):
        load_migrations(migrations_dir)


def test_changed_applied_migration_is_refused(st: Storage, migrations_dir: Path) -> None:
    st.migrate(load_migrations(migrations_dir))
    recorded = dict(st.conn.execute("SELECT version, checksum FROM schema_version").fetchall())
    assert recorded == {m.version: m.checksum("postgres") for m in MIGRATIONS}

    # the other backend's file is not what ran here: changing it is no concern of this database
    (migrations_dir / "0002_telemetry.timescaledb.sql").write_text("-- reworded\n", encoding="utf-8")
    assert st.migrate(load_migrations(migrations_dir)) == []

    latest = migrations_dir / "0003_latest_values.sql"
    original = latest.read_text(encoding="utf-8")
    latest.write_text(original + "CREATE INDEX latest_values_ts ON latest_values (ts);\n", encoding="utf-8")
    with pytest.raises(MigrationError, match=r"0003_latest_values\.sql changed after it was applied"):
        st.migrate(load_migrations(migrations_dir))
    latest.write_text(original, encoding="utf-8")

    part = migrations_dir / "0002_telemetry.postgres.sql"
    part.write_text(part.read_text(encoding="utf-8").replace("flags      smallint", "flags      integer"),
                    encoding="utf-8")
    with pytest.raises(MigrationError, match=r"0002_telemetry\.sql, 0002_telemetry\.postgres\.sql changed"):
        st.migrate(load_migrations(migrations_dir))

    # nothing was applied by the refused runs; a restored file and a new migration go through
    part.write_text((MIGRATIONS_DIR / part.name).read_text(encoding="utf-8"), encoding="utf-8")
    (migrations_dir / "0099_extra.sql").write_text("CREATE TABLE extra (id integer);\n", encoding="utf-8")
    assert st.migrate(load_migrations(migrations_dir)) == ["0099_extra (postgres)"]
    assert st.schema_version() == 99


def test_failed_migration_names_its_file_and_keeps_earlier_ones(st: Storage, migrations_dir: Path) -> None:
    (migrations_dir / "0099_broken.sql").write_text("CREATE TABLE fine (id integer);\nSELECT nonsense;\n")
    with pytest.raises(MigrationError, match=r"0099_broken\.sql failed"):
        st.migrate(load_migrations(migrations_dir))
    assert st.schema_version() == MIGRATIONS[-1].version
    assert st.conn.execute("SELECT to_regclass('fine')").fetchone() == (None,)  # rolled back whole


def test_concurrent_migrators_apply_once(db_url: str, schema: str) -> None:
    """Two gateways starting together: one migrates, the other waits and finds nothing left to do."""
    stores = [Storage.connect(db_url, schema=schema) for _ in range(2)]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run(s: Storage) -> None:
        try:
            results.append(s.migrate())
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with psycopg.connect(db_url, autocommit=True) as holder:
        # hold the migration lock so both migrators are surely waiting at the same time
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"gridtwin-migrate:{schema}",))
        threads = [threading.Thread(target=run, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        pids = [s.conn.info.backend_pid for s in stores]
        deadline = time.monotonic() + 10
        waiting = 0
        while waiting < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            row = holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                                 "AND pid = ANY(%s)", (pids,)).fetchone()
            waiting = row[0] if row else 0
        assert waiting == 2, "the migrators did not wait for the migration lock"
        holder.execute("SELECT pg_advisory_unlock(hashtext(%s))", (f"gridtwin-migrate:{schema}",))
        for t in threads:
            t.join(60)
    for s in stores:
        s.close()
    assert not errors, errors
    assert sorted(results, key=len) == [[], [f"{m.label} (postgres)" for m in MIGRATIONS]]
    with psycopg.connect(db_url) as conn:
        row = conn.execute(f"SELECT count(*), count(DISTINCT version) FROM {schema}.schema_version").fetchone()
    assert row == (len(MIGRATIONS), len(MIGRATIONS))


def test_database_migrated_by_the_old_code_upgrades(st: Storage) -> None:
    """A schema_version without checksums (migrations 1-9 applied before files existed) upgrades cleanly."""
    old = [m for m in MIGRATIONS if m.version <= 9]
    st.conn.execute(f"CREATE SCHEMA {st.schema}")
    st.conn.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, "
                    "backend text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
    with st.conn.transaction():
        for m in old:
            st.conn.execute(m.statement("postgres", 30).encode())
            st.conn.execute("INSERT INTO schema_version (version, name, backend) VALUES (%s, %s, 'postgres')",
                            (m.version, m.name))
        st.conn.execute("INSERT INTO communities (code, name, origin_lat, origin_lon, document) "
                        "VALUES ('old', 'Old', 0, 0, '{}')")

    applied = st.migrate()

    assert applied == [f"{m.label} (postgres)" for m in MIGRATIONS if m.version > 9]
    rows = st.conn.execute("SELECT version, checksum FROM schema_version ORDER BY version").fetchall()
    assert rows == [(m.version, m.checksum("postgres")) for m in MIGRATIONS]
    assert st.community_codes() == ["old"]
    columns = st.conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name = 'community_leases' ORDER BY ordinal_position", (st.schema,)).fetchall()
    assert columns == [("community", "text", "NO"), ("holder", "text", "NO"), ("epoch", "bigint", "NO"),
                       ("acquired_at", "timestamp with time zone", "NO"),
                       ("renewed_at", "timestamp with time zone", "NO"),
                       ("expires_at", "timestamp with time zone", "NO")]
    assert st.migrate() == []
