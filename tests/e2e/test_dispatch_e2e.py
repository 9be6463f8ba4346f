"""The closed loop from a device to a person: the elevator-entrapment scenario through the real broker
and gateway opens one urgent ticket for the on-duty grid worker of that building, delivered on the
worker's MQTT topic with the SOP and the 3D snapshot, and posted to the configured webhook (signed JSON)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.cli_base import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.notify import formats
from gateway.ops.procs import Mosquitto
from gateway.settings import NotifySettings, Settings, WebhookSettings
from gateway.storage import Storage
from simulators import publisher
from simulators.engine import plan_messages
from simulators.scenario import compile_plan
from tests.support.brokers import wait_until
from tests.support.webhook import Receiver
from twin import community as community_mod
from twin import contract

pytestmark = pytest.mark.integration
SAMPLE = community_mod.parse(sample_community_path().read_text(encoding="utf-8"))
SECRET = "webhook-test-secret"


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path_factory.mktemp("dispatch-broker"))
    yield b
    b.stop()


def _wait(pred: Callable[[], object], timeout: float) -> bool:
    return wait_until(pred, timeout, 0.1)


def test_entrapment_reaches_the_grid_worker(settings: Settings, broker: Mosquitto) -> None:
    assert settings.db.url
    hook = Receiver()
    s = settings.model_copy(update={
        "mqtt": settings.mqtt.model_copy(update={"url": broker.url}),
        "tickets": settings.tickets.model_copy(update={"watchdog_interval_s": 0.5, "snapshots": True}),
        "notify": NotifySettings(webhooks=[WebhookSettings(name="ops", url=f"{hook.url}/hook", secret=SECRET)]),
    })
    root = s.mqtt.topic_root
    plan = compile_plan("elevator-entrapment", SAMPLE)
    lift = next(d for d in (SAMPLE.device(i) for i in plan.roles.values() if i) if d and d.kind == "elevator")
    building = SAMPLE.building(lift.building or "")
    assert building is not None
    grid = next(g for g in SAMPLE.grids if g.id == SAMPLE.grid_of(building))

    inbox: list[dict[str, object]] = []
    ready = threading.Event()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"phone-{root}")
    sub.on_message = lambda _c, _u, m: inbox.append({"topic": m.topic, **orjson.loads(m.payload)})
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sub.subscribe(f"{root}/v1/workers/+/tickets", qos=1)
    assert ready.wait(5)

    st = Storage.connect(settings.db.url, schema=s.db.schema_name)
    st.migrate()
    st.load_community(SAMPLE)
    gw = Gateway(s, broker.url, settings.db.url)
    gw.start()
    pub = publisher.Publisher(broker.url, client_id=f"scn-{root}", qos=1)
    try:
        for m in plan_messages(plan, SAMPLE, root, start=time.time() - plan.duration - 60, seed=1):
            while len(pub.client._out_messages) > 2000:
                time.sleep(0.001)
            pub.publish(publisher.Message(m.topic, m.payload))
        pub.flush(120)
        assert _wait(lambda: st.conn.execute(
            "SELECT count(*) FROM tickets WHERE rule = 'elevator_entrapment'").fetchone()[0] == 1, 60)
        row = st.conn.execute("SELECT priority, assignee, grid, building, life_safety, id FROM tickets "
                              "WHERE rule = 'elevator_entrapment'").fetchone()
        assert row is not None
        priority, assignee, ticket_grid, ticket_building, life_safety, ticket_id = row
        assert (priority, ticket_grid, ticket_building, life_safety) == ("urgent", grid.id, building.id, True)
        assert assignee in {w.id for w in grid.workers} | {grid.backup, grid.supervisor}
        # one ticket per incident: the stop-outside-door-zone alarm on the same lift joined it
        assert st.conn.execute("SELECT count(*) FROM tickets WHERE device = %s", (lift.id,)).fetchone()[0] == 1
        worker_topic = contract.worker_topic(root, assignee)
        assert _wait(lambda: any(m["topic"] == worker_topic for m in inbox), 20), inbox
        msg = next(m for m in inbox if m["topic"] == worker_topic)
        assert str(ticket_id) in orjson.dumps(msg).decode()
        # the same message reached the webhook, signed, with a Chinese summary for a phone
        assert _wait(lambda: any(orjson.loads(r.body)["ticket"]["id"] == ticket_id for r in hook.got), 20)
        post = next(r for r in hook.got if orjson.loads(r.body)["ticket"]["id"] == ticket_id)
        assert formats.verify_json(SECRET, post.body, post.headers["x-gridtwin-signature"])
        assert post.headers["x-gridtwin-event"] == "created" and post.path == "/hook"
        summary = orjson.loads(post.body)["summary"]
        assert "新工单（紧急）" in summary and building.name in summary and f"#{ticket_id}" in summary
        # the watchdog renders the 3D snapshot off the alarm path
        assert _wait(lambda: st.conn.execute(
            "SELECT count(*) FROM ticket_photos WHERE ticket_id = %s AND kind = 'snapshot'",
            (ticket_id,)).fetchone()[0] == 1, 60)
        # the scenario happened minutes ago (replayed flat out), but its ticket runs on server time: the
        # watchdog (every 0.5 s) finds nothing overdue, and the device's time of the alarm is kept
        state, breaches, received, occurred, respond_by = st.conn.execute(
            "SELECT state, breaches, received_at, occurred_at, respond_by FROM tickets WHERE id = %s",
            (ticket_id,)).fetchone()
        assert (state, breaches) == ("dispatched", 0)
        assert timedelta(minutes=5) <= respond_by - received < timedelta(minutes=6)  # the entrapment joined later
        assert respond_by > datetime.now(UTC) and occurred < received - timedelta(minutes=1)
    finally:
        pub.close()
        gw.stop()
        st.close()
        sub.loop_stop()
        sub.disconnect()
        hook.close()
