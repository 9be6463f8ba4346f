"""Web Push, with the test playing the phone: it makes a browser's subscription keys, stores the subscription
through the running web server (bearer token and the dashboard's cookie), and receives the notifier's push at a
local endpoint standing in for the push service; it checks the VAPID signature and decrypts the payload with
its own private key (RFC 8291, aes128gcm) as a browser would. A subscription the push service says is gone is
deleted."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import http_ece
import orjson
import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from paho.mqtt.enums import CallbackAPIVersion

from gateway.api.auth import Users
from gateway.notify.service import Notifier
from gateway.ops.procs import free_port
from gateway.settings import NotifySettings, Settings
from gateway.storage import Storage
from gateway.web.composition import start_dashboard
from tests.conftest import MQTT_URL
from tests.integration.test_serve import _loaded
from tests.support.brokers import wait_until
from tests.support.webhook import Receiver
from twin import contract
from twin.people import Role

pytestmark = pytest.mark.integration
USERNAME, WORKER, PASSWORD = "magang", "w1-1", "push-test-password"  # 马刚, worker w1-1 of G1


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Phone:
    """A browser's push subscription: its P-256 key pair and auth secret."""

    def __init__(self, endpoint: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        point = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)
        self.subscription = {"endpoint": endpoint, "expirationTime": None,
                             "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)}}

    def read(self, body: bytes) -> dict[str, Any]:
        out: dict[str, Any] = orjson.loads(http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth,
                                                            version="aes128gcm"))
        return out


def _vapid_ok(authorization: str, public_key: str, audience: str) -> bool:
    """``vapid t=<JWT>, k=<key>``: the key is the server's, the ES256 signature and the audience hold."""
    parts = dict(p.strip().split("=", 1) for p in authorization.removeprefix("vapid ").split(","))
    if parts["k"] != public_key:
        return False
    head, claims, sig = parts["t"].split(".")
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key))
    raw = unb64url(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    return bool(json.loads(unb64url(claims))["aud"] == audience)


def _call(url: str, *, token: str | None = None, cookie: str | None = None, body: Any = None,
          method: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if cookie:
        headers["Cookie"] = f"gridtwin_session={cookie}"
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), headers=headers,
                                 method=method or ("POST" if body is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        out = json.loads(e.read() or b"{}")
        e.close()
        return e.code, out


@pytest.fixture
def service(settings: Settings) -> Iterator[tuple[Settings, Receiver]]:
    s = settings.model_copy(update={"notify": NotifySettings(push_allow_http=True)})
    endpoint = Receiver(statuses=[201])
    yield s, endpoint
    endpoint.close()


def test_a_subscribed_phone_gets_the_ticket_encrypted_and_signed(service: tuple[Settings, Receiver]) -> None:
    s, push_service = service
    assert s.db.url
    community = _loaded(s)
    with Storage.connect(s.db.url, schema=s.db.schema_name) as st:
        Users(st.conn).add(USERNAME, PASSWORD, Role.WORKER, grids=["G1"], worker_id=WORKER)
    handle = start_dashboard(s, community, s.db.url, None, port=free_port())
    base = f"{handle.url.rstrip('/')}/api/v1"
    phone = Phone(f"{push_service.url}/push/phone-1")
    notifier = Notifier(s, MQTT_URL, db_url=s.db.url)
    try:
        status, login = _call(f"{base}/auth/login", body={"username": USERNAME, "password": PASSWORD})
        assert status == 200
        token = login["token"]
        # bad subscriptions say what is wrong, and nothing is stored
        assert _call(f"{base}/push/subscriptions", body=phone.subscription)[0] == 401
        bad = [({**phone.subscription, "endpoint": "http://push.example.com/x"}, "https://"),
               ({**phone.subscription, "keys": {**phone.subscription["keys"], "auth": b64url(b"x" * 15) + "AAA"}},
                "auth"),
               ({**phone.subscription, "keys": {"p256dh": "!" * 87, "auth": phone.subscription["keys"]["auth"]}},
                "p256dh"),
               ({"endpoint": phone.subscription["endpoint"]}, "keys"),
               ({**phone.subscription, "endpoint": phone.subscription["endpoint"] + "\x00"}, "printable"),
               ({**phone.subscription, "keys": {**phone.subscription["keys"],
                                                "auth": "\x00" + phone.subscription["keys"]["auth"]}}, "auth")]
        for body, why in bad:
            status, out = _call(f"{base}/push/subscriptions", token=token, body=body)
            assert status == 422 and why in json.dumps(out), (body, out)
        # the phone page stores it with the session cookie (the same token)
        status, key = _call(f"{base}/push/key", cookie=token)
        assert status == 200 and len(unb64url(key["public_key"])) == 65
        assert _call(f"{base}/push/subscriptions", cookie=token, body=phone.subscription)[0] == 201

        notifier.start()
        message = {"v": 1, "type": "ticket", "event": "created", "at": "2026-12-02T10:00:00+08:00", "ticket": {
            "id": 5, "title": "燃气泄漏", "priority": "urgent", "priority_zh": "紧急", "life_safety": True,
            "location": {"community": community.id, "grid": "G1", "text": "阳光社区 2号楼 B1层"}}}
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"svc-{s.mqtt.topic_root}"[:64])
        client.connect("127.0.0.1", int(MQTT_URL.rsplit(":", 1)[1]))
        client.loop_start()
        try:
            client.publish(contract.worker_topic(s.mqtt.topic_root, WORKER), orjson.dumps(message),
                           qos=1).wait_for_publish(5)
            assert wait_until(lambda: notifier.counts["sent:push"] == 1, 20), notifier.counts
            got = push_service.got[0]
            assert got.path == "/push/phone-1" and got.headers["content-encoding"] == "aes128gcm"
            assert int(got.headers["ttl"]) > 0
            assert _vapid_ok(got.headers["authorization"], key["public_key"], push_service.url)
            shown = phone.read(got.body)
            assert shown["title"] == "新工单 #5" and shown["url"] == "/worker/ticket/5"
            assert "燃气泄漏" in shown["body"] and "2号楼" in shown["body"]
            # the push service says the subscription is gone: it is deleted, not retried
            push_service.statuses.append(410)
            client.publish(contract.worker_topic(s.mqtt.topic_root, WORKER), orjson.dumps(
                {**message, "event": "escalated"}), qos=1).wait_for_publish(5)
            assert wait_until(lambda: notifier.counts["gone:push"] == 1, 20), notifier.counts
        finally:
            client.loop_stop()
            client.disconnect()
        with Storage.connect(s.db.url, schema=s.db.schema_name) as st:
            assert st.conn.execute("SELECT count(*) FROM push_subscriptions").fetchone() == (0,)
        # deleting someone else's (or a gone) subscription: not found
        assert _call(f"{base}/push/subscriptions", token=token, body={"endpoint": phone.subscription["endpoint"]},
                     method="DELETE")[0] == 404
    finally:
        notifier.stop()
        handle.shutdown()


def test_the_service_worker_is_served_for_the_whole_site(settings: Settings) -> None:
    community = _loaded(settings)
    assert settings.db.url
    handle = start_dashboard(settings, community, settings.db.url, None, port=free_port())
    try:
        with urllib.request.urlopen(f"{handle.url.rstrip('/')}/sw.js", timeout=10) as r:
            assert r.headers["Service-Worker-Allowed"] == "/" and "javascript" in r.headers["Content-Type"]
            assert b'addEventListener("push"' in r.read()
    finally:
        handle.shutdown()
