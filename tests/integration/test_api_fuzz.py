"""Fuzz the REST API with schemathesis against its own OpenAPI spec: whatever arrives, never a 5xx.

Requests carry an admin's token (the role that reaches every route); a few tickets exist so that ids,
actions and the rating link meet real rows. Bounded: 12 examples per operation in the suite;
``GRIDTWIN_FUZZ_EXAMPLES=500`` runs a deeper search on demand.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from gateway import settings as settings_mod
from gateway.api.app import create_api
from gateway.api.auth import Users, configure_hashing
from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL, MQTT_URL
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity
from twin.community import parse
from twin.people import Role

FUZZ_EXAMPLES = int(os.environ.get("GRIDTWIN_FUZZ_EXAMPLES", "12"))

if TYPE_CHECKING:
    import schemathesis

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fuzz_env() -> Iterator[dict[str, Any]]:
    configure_hashing(time_cost=1, memory_kib=1024, parallelism=1)  # argon2's real cost is tested elsewhere
    schema = f"t_fuzz_{uuid.uuid4().hex[:10]}"
    s = settings_mod.load(env={}, mqtt={"url": MQTT_URL, "topic_root": f"gt-test-{uuid.uuid4().hex[:10]}"},
                          db={"url": DB_URL, "schema": schema}, tickets={"photo_max_bytes": 4096})
    community = parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))
    st = Storage.connect(DB_URL, schema=schema)
    st.migrate()
    st.load_community(community)
    Users(st.conn).add("admin", "fuzz-password", Role.ADMIN)
    svc = TicketService(st, s, community, clock=lambda: T0)
    for i, (rule, dev, b, f) in enumerate([("elevator_entrapment", "B1-E1-M", "B1", 1),
                                          ("gas_level1", "B3-F3-GAS", "B3", 3), ("water_leak", "B2-F2-WL", "B2", 2)]):
        ev = AlarmEvent(EventKind.RAISED, rule, dev, "device", Severity.MAJOR, AlarmStatus.ACTIVE_UNACK, T0, T0, 1,
                        b, f, dev, "fuzz", Dispatch.URGENT if i < 2 else Dispatch.GENERAL)
        svc.on_alarm_event(community, ev)
    app = create_api(s, community, db_url=DB_URL, schema=schema)
    token, _ = Users(st.conn).issue_token("admin", datetime.now(UTC), timedelta(hours=1))
    yield {"app": app, "headers": {"Authorization": f"Bearer {token}"}}
    app.state.close()
    st.close()
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    configure_hashing()


def test_no_server_errors(fuzz_env: dict[str, Any]) -> None:
    # imported here: importing schemathesis takes seconds, which no other test file should pay (its pytest
    # plugin is off in pyproject.toml for the same reason; this test drives schemathesis itself)
    import schemathesis
    from schemathesis.checks import not_a_server_error

    # logging out would end the session the fuzzer uses for everything else
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_env["app"]).exclude(
        path="/api/v1/auth/logout")
    seen: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=fuzz_env["headers"], checks=[not_a_server_error])
            seen.setdefault(case.operation.label, []).append(response.status_code)

        run()
    assert len(seen) >= 20, sorted(seen)
    # not only refusals: a good share of the cases reach a handler and succeed
    assert sum(code < 300 for codes in seen.values() for code in codes) >= 4 * FUZZ_EXAMPLES
