"""Shared fixtures: the real PostgreSQL and Mosquitto, each test with its own schema and topic root.

GRIDTWIN_TEST_DB_URL (default postgresql://postgres@127.0.0.1:5432/test) and GRIDTWIN_TEST_MQTT_URL
(default mqtt://127.0.0.1:1883) point the suite at other services.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from gateway import settings as settings_mod
from gateway.cli_base import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from twin import community as community_mod

DB_URL = os.environ.get("GRIDTWIN_TEST_DB_URL", "postgresql://postgres@127.0.0.1:5432/test")
MQTT_URL = os.environ.get("GRIDTWIN_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


@pytest.fixture
def db_url() -> str:
    return DB_URL


@pytest.fixture
def mqtt_url() -> str:
    return MQTT_URL


@pytest.fixture
def schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def topic_root() -> str:
    return f"gt-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(schema: str, topic_root: str) -> Settings:
    return settings_mod.load(
        env={},
        mqtt={"url": MQTT_URL, "topic_root": topic_root, "client_id": f"gw-{topic_root}"},
        db={"url": DB_URL, "schema": schema},
        gateway={"flush_interval_s": 0.05},
        # no 3D snapshots of new tickets (seconds of CPU each, and a stopping gateway waits for one in progress);
        # the tests of snapshots turn them back on
        tickets={"snapshots": False},
    )


@pytest.fixture(scope="session")
def sample() -> community_mod.Community:
    """The bundled sample community (parsed once per session; it is immutable)."""
    return community_mod.parse(sample_community_path().read_text(encoding="utf-8"))


@pytest.fixture
def storage(settings: Settings, sample: community_mod.Community) -> Iterator[Storage]:
    """The test's schema, migrated, with the sample community loaded."""
    assert settings.db.url
    st = Storage.connect(settings.db.url, schema=settings.db.schema_name)
    st.migrate()
    st.load_community(sample)
    yield st
    st.close()


@pytest.fixture
def gateway(settings: Settings, storage: Storage) -> Iterator[Gateway]:
    """A running gateway on the test's topic root and schema."""
    assert settings.mqtt.url and settings.db.url
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(autouse=True)
def _no_logged_exceptions(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail any test during which our code logged an exception (a swallowed bug is still a bug)."""
    yield
    bad = [r for r in caplog.get_records("call") if r.exc_info and r.levelno >= logging.ERROR]
    if bad:
        pytest.fail("logged exceptions: " + "; ".join(r.getMessage() for r in bad))
