"""Every class of the simulators' hostile mode through the real broker and gateway: each message is
rejected for the right reason (or stored, flagged late, or dropped as a duplicate), and the gateway
stays healthy."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from gateway.cli_base import sample_community_path
from gateway.ingest.pipeline import Gateway
from gateway.settings import Settings
from gateway.storage import Storage
from simulators import hostile, publisher
from tests.support.brokers import wait_until
from twin import community as community_mod
from twin import contract

pytestmark = pytest.mark.integration


def _wait(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    return wait_until(pred, timeout, 0.05)


def test_hostile_messages_are_each_handled_for_the_right_reason(settings: Settings) -> None:
    assert settings.mqtt.url and settings.db.url
    sample = community_mod.parse(sample_community_path().read_text(encoding="utf-8"))
    st = Storage.connect(settings.db.url, schema=settings.db.schema_name)
    st.migrate()
    st.load_community(sample)
    gw = Gateway(settings, settings.mqtt.url, settings.db.url)
    gw.start()
    msgs = hostile.generate(sample, settings.mqtt.topic_root, 230, seed=3)
    assert len({m.category for m in msgs}) >= 20  # every category is in the run
    pub = publisher.Publisher(settings.mqtt.url, client_id=f"hostile-{settings.mqtt.topic_root}", qos=1)
    try:
        for m in msgs:
            pub.publish(publisher.Message(m.topic, m.payload))
        pub.flush()
        assert _wait(lambda: gw.stats.received == len(msgs)), gw.stats.snapshot()
        assert gw.wait_idle()
        expected = Counter(m.expected for m in msgs)
        rejected = Counter({k: v for k, v in expected.items() if k not in ("accepted", "duplicate", "late")})
        assert Counter(gw.stats.rejected) == rejected, (gw.stats.rejected, rejected)
        assert Counter(st.dead_letter_counts()) == rejected
        # each rejected message is in the dead letters under its own expected reason
        stored = {(t, bytes(p)): r for t, p, r in st.conn.execute(
            "SELECT topic, payload, reason FROM dead_letters").fetchall()}
        for m in msgs:
            if m.expected in rejected:
                assert stored.get((m.topic, m.payload[:1024])) == m.expected, (m.category, m.note)
        assert gw.stats.duplicates == expected["duplicate"]
        late = st.conn.execute("SELECT count(DISTINCT (device_id, ts)) FROM telemetry WHERE flags & 1 = 1").fetchone()
        assert late is not None and late[0] == expected["late"]
        # still healthy: an ordinary reading after the storm is stored
        t = contract.topic(settings.mqtt.topic_root, "sunshine", "B1-HYD", contract.Channel.TELEMETRY)
        pub.publish(publisher.Message(t, contract.telemetry_bytes(int(time.time() * 1000), 1, {"pressure": 0.33})))
        pub.flush()
        assert _wait(lambda: any(r.value == 0.33 for r in st.latest("B1-HYD")))
    finally:
        pub.close()
        gw.stop()
        st.close()
