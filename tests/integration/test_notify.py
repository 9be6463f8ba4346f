"""The notifier against the real broker and a real local HTTP receiver: filters, the robot formats, retries
of a failing receiver, a receiver's refusal, bad messages, and messages published while it was down."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.notify import formats
from gateway.notify.service import Notifier
from gateway.settings import NotifySettings, Settings, WebhookSettings
from tests.conftest import MQTT_URL
from tests.support.brokers import wait_until
from tests.support.webhook import Receiver
from twin import contract

pytestmark = pytest.mark.integration
SECRET = "notify-test-secret"


def _message(ticket_id: int, *, event: str = "created", priority: str = "urgent", grid: str = "G1",
             life_safety: bool = True) -> dict[str, Any]:
    """A worker's ticket message as the ticket service publishes it (the fields a webhook uses)."""
    return {"v": 1, "type": "ticket", "event": event, "at": "2026-12-02T10:00:00+08:00", "ticket": {
        "id": ticket_id, "version": 1, "title": "电梯困人", "priority": priority,
        "priority_zh": {"urgent": "紧急", "general": "一般", "complex": "复杂"}[priority], "life_safety": life_safety,
        "location": {"community": "sunshine", "grid": grid, "text": "阳光社区 3号楼 1层"},
        "assignee": {"id": "w1-1", "name": "马刚", "role": "on_duty"},
        "deadlines": {"respond_by": "2026-12-02T10:05:00+08:00"}}}


def _publish(root: str, payloads: list[bytes], worker: str = "w1-1") -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"svc-{root}"[:64], protocol=paho.MQTTv311)
    client.connect("127.0.0.1", int(MQTT_URL.rsplit(":", 1)[1]))
    client.loop_start()
    try:
        for p in payloads:
            client.publish(contract.worker_topic(root, worker), p, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


@pytest.fixture
def hooks() -> Iterator[tuple[Receiver, Receiver]]:
    ops, robot = Receiver(), Receiver()
    yield ops, robot
    ops.close()
    robot.close()


def _with_hooks(settings: Settings, *webhooks: WebhookSettings) -> Settings:
    return settings.model_copy(update={"notify": NotifySettings(webhooks=list(webhooks))})


def test_each_channel_gets_what_it_asked_for_in_its_format(settings: Settings,
                                                            hooks: tuple[Receiver, Receiver]) -> None:
    ops, robot = hooks
    s = _with_hooks(settings,
                    WebhookSettings(name="ops", url=f"{ops.url}/in", secret=SECRET),
                    WebhookSettings(name="robot", url=f"{robot.url}/robot/send?access_token=abc", format="dingtalk",
                                    secret="SECdingtalk-secret", priorities=["urgent"], grids=["G1"]))
    n = Notifier(s, MQTT_URL, clock=lambda: 1_700_000_000.0)
    n.start()
    try:
        root = s.mqtt.topic_root
        _publish(root, [orjson.dumps(_message(1)), orjson.dumps(_message(2, priority="general")),
                        orjson.dumps(_message(3, grid="G2")), orjson.dumps(_message(4, event="accept")),
                        b"not json", orjson.dumps({"v": 1, "type": "ticket"}), orjson.dumps(_message(5))])
        assert wait_until(lambda: n.counts["sent:ops"] == 4 and n.counts["bad"] == 2, 15), n.counts
        # ops: every default event (created) of every ticket, signed JSON; the bad messages stopped nothing
        got = [orjson.loads(r.body) for r in ops.got]
        assert [m["ticket"]["id"] for m in got] == [1, 2, 3, 5]
        assert all(formats.verify_json(SECRET, r.body, r.headers["x-gridtwin-signature"]) for r in ops.got)
        assert not formats.verify_json(SECRET, ops.got[0].body + b" ", ops.got[0].headers["x-gridtwin-signature"])
        # the robot: urgent tickets of G1 only, as DingTalk's signed text message
        assert wait_until(lambda: n.counts["sent:robot"] == 2, 10), n.counts
        first = robot.got[0]
        query = parse_qs(urlsplit(first.path).query)
        assert query["access_token"] == ["abc"] and query["timestamp"] == ["1700000000000"]
        expected = formats.request("dingtalk", robot.url, _message(1), secret="SECdingtalk-secret",
                                   now_ms=1_700_000_000_000).url
        assert parse_qs(urlsplit(expected).query)["sign"] == query["sign"]
        body = orjson.loads(first.body)
        assert body["msgtype"] == "text"
        assert body["text"]["content"].splitlines()[:2] == ["【生命安全】新工单（紧急）：#1 电梯困人",
                                                           "地点：阳光社区 3号楼 1层"]
        assert "/worker/ticket/1" in body["text"]["content"]
    finally:
        n.stop()


def test_a_failing_receiver_is_retried_and_a_refusal_is_not(settings: Settings,
                                                            hooks: tuple[Receiver, Receiver]) -> None:
    ops, robot = hooks
    ops.statuses.extend([500, 503])  # down twice, then up: the message arrives once
    robot.statuses.extend([400])  # the robot refuses the message: no retry
    s = _with_hooks(settings, WebhookSettings(name="ops", url=ops.url, attempts=3),
                    WebhookSettings(name="robot", url=robot.url, format="wecom"))
    n = Notifier(s, MQTT_URL)
    n.start()
    try:
        _publish(s.mqtt.topic_root, [orjson.dumps(_message(7))])
        assert wait_until(lambda: n.counts["sent:ops"] == 1 and n.counts["refused:robot"] == 1, 20), n.counts
        assert ops.answered == [500, 503, 200] and robot.answered == [400]
        assert orjson.loads(robot.got[0].body)["msgtype"] == "text"
    finally:
        n.stop()


def test_messages_published_while_it_is_down_are_delivered_when_it_is_back(settings: Settings,
                                                                          hooks: tuple[Receiver, Receiver]) -> None:
    ops, _ = hooks
    s = _with_hooks(settings, WebhookSettings(name="ops", url=ops.url))
    first = Notifier(s, MQTT_URL)
    first.start()
    try:  # a sentinel through it: the subscription (the persistent session) is on the broker
        _publish(s.mqtt.topic_root, [orjson.dumps(_message(10))])
        assert wait_until(lambda: first.counts["sent:ops"] == 1, 15), first.counts
    finally:
        first.stop()
    _publish(s.mqtt.topic_root, [orjson.dumps(_message(11)), orjson.dumps(_message(12))])
    again = Notifier(s, MQTT_URL)
    again.start()
    try:
        assert wait_until(lambda: again.counts["sent:ops"] == 2, 15), again.counts
        assert sorted(orjson.loads(r.body)["ticket"]["id"] for r in ops.got) == [10, 11, 12]
    finally:
        again.stop()


def test_the_summary_fits_a_robot_message() -> None:
    long = _message(9)
    long["ticket"]["title"] = "很长的描述" * 1000
    text = formats.summary(long, "https://twin.example.cn")
    assert len(text) <= formats.MAX_TEXT and text.endswith("…")
    withdrawn = {"v": 1, "type": "ticket_withdrawn", "ticket": {"id": 3, "title": "漏水"}}
    assert formats.summary(withdrawn).startswith("工单已转给他人：#3 漏水")
