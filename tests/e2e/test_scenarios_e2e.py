"""Every simulator scenario through the real broker, gateway and database raises exactly the alarms
the pure engine raises replaying the same messages offline: no more, no fewer, no duplicates, and
the ones the offline replay clears are cleared."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from gateway.cli import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.ops.procs import Mosquitto
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import publisher
from simulators.engine import plan_messages
from simulators.scenario import compile_plan
from tests.support.brokers import wait_until
from twin import community as community_mod
from twin.alarms import EventKind
from twin.rules import DEFAULTS_FILE, Engine, load_rules, replay

pytestmark = pytest.mark.integration
SAMPLE = community_mod.parse(sample_community_path().read_text(encoding="utf-8"))
RULES = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], SAMPLE)
SCENARIOS = ["fire", "gas-leak", "elevator-entrapment", "hydrant-pressure-loss", "device-offline",
             "flapping-sensor", "care-inactivity", "baseline"]
# What each scenario is for: the offline replay must raise these (so the comparison below means something).
SHOWS = {
    "fire": {("panel_fire_alarm", "B1-F3-SD1"), ("panel_fire_alarm", "B1-F3-SD2"), ("fire_confirmed", "B1/F3")},
    "hydrant-pressure-loss": {("jockey_pump_cycling", "B1-JP"), ("hydrant_pressure_below_normal", "B1-HYD"),
                              ("hydrant_pressure_low", "B1-HYD"), ("hydrant_pressure_low", "B1-HYD-F1")},
    "baseline": set(),
}


def _wait(pred: Callable[[], object], timeout: float) -> bool:
    return wait_until(pred, timeout, 0.1)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """Our own broker: the system one keeps Mosquitto's default of 1000 queued messages per client."""
    b = Mosquitto(tmp_path_factory.mktemp("scenario-broker"))
    yield b
    b.stop()


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_raises_the_same_alarms_through_the_gateway(name: str, settings: Settings,
                                                              broker: Mosquitto) -> None:
    assert settings.db.url
    settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update={"url": broker.url})})
    assert settings.mqtt.url
    root = settings.mqtt.topic_root
    plan = compile_plan(name, SAMPLE)
    start = time.time() - plan.duration - 120  # the whole scenario in the recent past
    messages = [(m.t, m.topic, m.payload) for m in plan_messages(plan, SAMPLE, root, start=start, seed=1)]
    offline = list(replay(Engine(RULES, SAMPLE), messages, root=root, until=messages[-1][0]))
    want_raised = Counter((e.rule, e.subject) for e in offline if e.kind is EventKind.RAISED)
    want_cleared = Counter((e.rule, e.subject) for e in offline if e.kind is EventKind.CLEARED)
    assert SHOWS.get(name, set()) <= set(want_raised), want_raised
    if name == "baseline":
        assert not want_raised  # a day's normal life raises nothing (no riser sensor alarms at its height)

    st = Storage.connect(settings.db.url, schema=settings.db.schema_name)
    st.migrate()
    st.load_community(SAMPLE)
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"scn-{root}", qos=1)
    try:
        for _t, topic, payload in messages:
            while len(pub.client._out_messages) > 2000:  # keep paho's queue short
                time.sleep(0.001)
            pub.publish(publisher.Message(topic, payload))
        pub.flush(120)
        assert _wait(lambda: gw.stats.received >= len(messages), 120), gw.stats.snapshot()
        assert gw.wait_idle(60)
        assert not gw.stats.rejected, gw.stats.rejected

        def got(kind: str) -> Counter[tuple[str, str]]:
            rows = st.conn.execute(
                "SELECT e.event->>'rule', e.event->>'subject' FROM alarm_events e WHERE e.kind = %s", (kind,))
            return Counter((r[0], r[1]) for r in rows.fetchall())

        assert _wait(lambda: got("raised") == want_raised, 20), (got("raised"), want_raised)
        assert _wait(lambda: got("cleared") == want_cleared, 20), (got("cleared"), want_cleared)
    finally:
        pub.close()
        gw.stop()
        st.close()
