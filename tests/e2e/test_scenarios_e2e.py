"""Every simulator scenario through the real broker, gateway and database raises exactly the alarms
the pure engine raises replaying the same messages offline: no more, no fewer, no duplicates, and
the ones the offline replay clears are cleared. The gateway's dispatcher (tickets on, as shipped) turns
them into exactly the tickets the scenario's ``expect:`` block states, one per incident, each with the
title, category, priority and alarms of the offline replay's incident (twin.tickets.incidents_of)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from gateway.ingest.pipeline import Gateway
from gateway.ops.procs import Mosquitto
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import publisher
from simulators.scenario import Observed, available, check_expect, compile_plan
from tests.support.brokers import wait_until
from tests.support.scenarios import (
    KNOWN_RULES,
    SAMPLE,
    local_midnight_before,
    messages,
    offline_events,
    offline_incidents,
)
from twin.alarms import EventKind

pytestmark = pytest.mark.integration
SCENARIOS = list(available())  # every shipped one, overlapping emergencies and the power cut included
# What each scenario is for: the offline replay must raise these (so the comparison below means something).
SHOWS = {
    "fire": {("panel_fire_alarm", "B1-F3-SD1"), ("panel_fire_alarm", "B1-F3-SD2"), ("fire_confirmed", "B1/F3")},
    "hydrant-pressure-loss": {("jockey_pump_cycling", "B1-JP"), ("hydrant_pressure_below_normal", "B1-HYD"),
                              ("hydrant_pressure_low", "B1-HYD"), ("hydrant_pressure_low", "B1-HYD-F1")},
    "baseline": set(),
    "power-loss": {("panel_mains_lost", "B1-FACP"), ("elevator_offline", "B1-E1-M"), ("sensor_offline", "B1-B1-GAS")},
}


# through the gateway (the whole of each is replayed offline in tests/unit/test_scenario_expect.py), the long ones
# shortened to keep the suite's time down: the baseline's first 6 hours from midnight (the night's noise limit
# included); care-inactivity up to an hour past its red home's 12 h alarm
E2E_DURATION = {"baseline": 6 * 3600.0, "care-inactivity": 13 * 3600.0}


def _wait(pred: Callable[[], object], timeout: float) -> bool:
    return wait_until(pred, timeout, 0.1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """Our own broker: the system one keeps Mosquitto's default of 1000 queued messages per client."""
    b = Mosquitto(tmp_path_factory.mktemp("scenario-broker"))
    yield b
    b.stop()


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_raises_the_same_alarms_and_tickets_through_the_gateway(name: str, settings: Settings,
                                                              broker: Mosquitto) -> None:
    assert settings.db.url
    settings = settings.model_copy(update={
        "mqtt": settings.mqtt.model_copy(update={"url": broker.url}),
        # the SLA watchdog (and the 3D snapshots it renders for new tickets) waits past the test: its CPU would
        # slow the replay (test_dispatch_e2e covers both)
        "tickets": settings.tickets.model_copy(update={"watchdog_interval_s": 3600}),
    })
    assert settings.mqtt.url
    root = settings.mqtt.topic_root
    plan = compile_plan(name, SAMPLE, duration=E2E_DURATION.get(name))
    # the whole scenario in the recent past, from a local midnight: the time of day its expectation is stated for
    start = local_midnight_before(time.time() - plan.duration - 120)
    msgs = messages(plan, start, root=root)
    offline = offline_events(msgs, root=root, until=msgs[-1][0])
    want_raised = Counter((e.rule, e.subject) for e in offline if e.kind is EventKind.RAISED)
    want_cleared = Counter((e.rule, e.subject) for e in offline if e.kind is EventKind.CLEARED)
    assert SHOWS.get(name, set()) <= set(want_raised), want_raised
    if name == "baseline":
        assert not want_raised  # a day's normal life raises nothing (no riser sensor alarms at its height)
    incidents = offline_incidents(offline)
    assert not check_expect(plan, [Observed.of_incident(i) for i in incidents], known_rules=KNOWN_RULES)
    # the title's place follows the worst alarm, ties going to the first to come: in a burst (replayed flat out)
    # the gateway may see another first, so titles are held to the expectation (exact or its stable prefix)
    want_tickets = sorted((i.category, i.priority.value, tuple(sorted(a.key for a in i.alarms))) for i in incidents)

    st = Storage.connect(settings.db.url, schema=settings.db.schema_name)
    st.migrate()
    st.load_community(SAMPLE)
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"scn-{root}", qos=1)
    try:
        for _t, topic, payload in msgs:
            while len(pub.client._out_messages) > 2000:  # keep paho's queue short
                time.sleep(0.001)
            pub.publish(publisher.Message(topic, payload))
        pub.flush(120)
        assert _wait(lambda: gw.stats.received >= len(msgs), 120), gw.stats.snapshot()
        assert gw.wait_idle(60)
        assert not gw.stats.rejected, gw.stats.rejected

        def got(kind: str) -> Counter[tuple[str, str]]:
            rows = st.conn.execute(
                "SELECT e.event->>'rule', e.event->>'subject' FROM alarm_events e WHERE e.kind = %s", (kind,))
            return Counter((r[0], r[1]) for r in rows.fetchall())

        assert _wait(lambda: got("raised") == want_raised, 20), \
            ("raised through the gateway only:", got("raised") - want_raised, "offline only:",
             want_raised - got("raised"))
        assert _wait(lambda: got("cleared") == want_cleared, 20), \
            ("cleared through the gateway only:", got("cleared") - want_cleared, "offline only:",
             want_cleared - got("cleared"))

        def tickets() -> list[Observed]:
            """The stored tickets, each with its alarms."""
            rows = st.conn.execute("SELECT t.id, t.title, t.category, t.priority, a.rule, a.subject, a.device "
                                   "FROM tickets t JOIN ticket_alarms a ON a.ticket_id = t.id "
                                   "ORDER BY t.id, a.first_at, a.alarm_key").fetchall()
            by_ticket: dict[int, Observed] = {}
            for tid, title, category, priority, rule, subject, device in rows:
                o = by_ticket.get(tid, Observed(title, category, priority, ()))
                by_ticket[tid] = Observed(title, category, priority, (*o.alarms, (rule, subject, device)))
            return list(by_ticket.values())

        def stored() -> list[tuple[str, str, tuple[str, ...]]]:
            rows = st.conn.execute("SELECT t.category, t.priority, array_agg(a.alarm_key ORDER BY a.alarm_key) "
                                   "FROM tickets t JOIN ticket_alarms a ON a.ticket_id = t.id "
                                   "GROUP BY t.id ORDER BY t.id").fetchall()
            return sorted((r[0], r[1], tuple(r[2])) for r in rows)

        # one ticket per incident: the offline replay's incidents, with their alarms, and the scenario's expect:
        assert _wait(lambda: not st.conn.execute("SELECT count(*) FROM alarm_events WHERE dispatched_at IS NULL")
                     .fetchone()[0] and stored() == want_tickets, 30), (stored(), want_tickets)
        assert not st.conn.execute("SELECT count(*) FROM alarm_events WHERE dispatch_error IS NOT NULL").fetchone()[0]
        assert st.conn.execute("SELECT count(*) FROM tickets").fetchone()[0] == len(want_tickets)
        problems = check_expect(plan, tickets(), known_rules=KNOWN_RULES)
        assert not problems, "\n".join(problems)
    finally:
        pub.close()
        gw.stop()
        st.close()
