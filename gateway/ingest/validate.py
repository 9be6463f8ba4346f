"""Edge validation: one MQTT message in, an Accepted (rows to write) or a Rejected (why) out. Pure.

Checks, in order: topic grammar, known device (and the topic's community), payload size, JSON and
schema (:func:`twin.contract.decode`), field count, each field known to the device's kind and inside
its valid range, timestamp not far in the future nor older than retention. Readings older than the
newest already seen from the same device are accepted and flagged late.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

from gateway.ingest.batch import MAX_DEAD_PAYLOAD, EventRow, KeyRow, StatusRow
from gateway.storage import FLAG_LATE, DeviceRef
from twin import catalogue, contract

Row = tuple[datetime, int, int, float, int, int]  # (ts, device id, metric id, value, flags, seq)
MAX_DEAD_LETTER_BYTES = MAX_DEAD_PAYLOAD


@dataclass(frozen=True, slots=True)
class Accepted:
    topic: str
    device: DeviceRef
    readings: list[Row]
    events: list[EventRow]
    statuses: list[StatusRow]
    samples: list[tuple[datetime, dict[str, float]]] = field(default_factory=list)  # for the live state
    keys: list[KeyRow] = field(default_factory=list)  # (device id, seq, ts) of each message item, for dedup


@dataclass(frozen=True, slots=True)
class Rejected:
    topic: str
    device_topic: str | None  # where to tell the device why (None: the topic names no device of ours)
    reason: str
    detail: str
    payload: bytes
    seq: int | None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Registry:
    """Known devices by (community, device code), and metric ids by field name."""

    devices: dict[tuple[str, str], DeviceRef]
    metrics: dict[str, int]

    @classmethod
    def build(cls, devices: Iterable[DeviceRef], metrics: dict[str, int]) -> Registry:
        return cls({(d.community, d.code): d for d in devices}, dict(metrics))


class Validator:
    def __init__(self, registry: Registry, *, root: str, max_bytes: int, max_fields: int, max_future_s: float,
                 max_age_s: float, newest: dict[int, datetime] | None = None) -> None:
        self._registry = registry
        self.root = root
        self.max_bytes = max_bytes
        self.max_fields = max_fields
        self.max_future = timedelta(seconds=max_future_s)
        self.max_age = timedelta(seconds=max_age_s)
        self._newest: dict[int, datetime] = dict(newest or {})  # newest ts seen per device, to flag late data
        # topic -> (device, channel, kind) for topics already seen with a registered device
        self._routes: dict[str, tuple[DeviceRef, contract.Channel, catalogue.DeviceKind]] = {}

    @property
    def registry(self) -> Registry:
        return self._registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        """A new registry (devices loaded, changed or retired): forget every cached topic route with it."""
        self._registry = registry
        self._routes = {}

    def check(self, topic: str, payload: bytes, now: datetime) -> Accepted | Rejected:
        raw = bytes(payload)
        hit = self._routes.get(topic)
        if hit is not None and hit[1] is contract.Channel.TELEMETRY:
            fast = self._fast_telemetry(topic, hit[0], hit[2], raw, now)
            if fast is not None:
                return fast
        try:
            t = contract.parse_topic(self.root, topic)
        except contract.ContractError as exc:
            return self._reject(topic, None, exc.reason, exc.detail, raw, None, now)
        error_topic = contract.topic(self.root, t.community_id, t.device_id, contract.Channel.ERROR)
        if t.channel not in contract.DEVICE_TO_SERVER:
            return self._reject(topic, None, "bad_topic", f"devices may not publish on {t.channel.value}", raw,
                                None, now)
        dev = self.registry.devices.get((t.community_id, t.device_id))
        if dev is None:  # no error reply: there is no device of ours to tell (docs/mqtt.md)
            return self._reject(topic, None, "unknown_device",
                                f"device {t.device_id!r} is not registered in community {t.community_id!r}",
                                raw, None, now)
        if len(self._routes) > 500_000:  # bounded: hostile topic floods cannot grow it without limit
            self._routes.clear()
        self._routes[topic] = (dev, t.channel, catalogue.KINDS[dev.kind])
        try:
            msg = contract.decode(t.channel, raw, max_bytes=self.max_bytes)
        except contract.ContractError as exc:
            return self._reject(topic, error_topic, exc.reason, exc.detail, raw, None, now)
        kind = catalogue.KINDS[dev.kind]

        if isinstance(msg, contract.Status):
            at = msg.ts or now
            return Accepted(topic, dev, [], [], [(dev.id, msg.state.value, msg.reason, min(at, now))])
        if isinstance(msg, contract.Event):
            problem = self._check_time(msg.ts, now)
            if problem is None and kind.event(msg.code) is None:
                known = ", ".join(e.code for e in kind.events) or "none"
                problem = ("unknown_event", f"{dev.kind} has no event code {msg.code!r} (known: {known})")
            if problem:
                return self._reject(topic, error_topic, *problem, raw, msg.seq, now)
            return Accepted(topic, dev, [], [(msg.ts, dev.id, msg.code, msg.state.value, msg.detail, msg.seq)],
                            [(dev.id, "online", None, min(msg.ts, now))], keys=[(dev.id, msg.seq, msg.ts)])
        items = msg.items if isinstance(msg, contract.Batch) else [msg]
        rows: list[Row] = []
        newest = self._newest.get(dev.id)
        latest_ts = newest
        for item in items:
            problem = self._check_time(item.ts, now) or self._check_values(kind, item.values)
            if problem:
                return self._reject(topic, error_topic, *problem, raw, item.seq, now)
            flags = FLAG_LATE if newest is not None and item.ts < newest else 0
            for name, value in item.values.items():
                rows.append((item.ts, dev.id, self.registry.metrics[name], float(value), flags, item.seq))
            if latest_ts is None or item.ts > latest_ts:
                latest_ts = item.ts
        if latest_ts is not None:
            self._newest[dev.id] = latest_ts
        samples = [(item.ts, {k: float(v) for k, v in item.values.items()}) for item in items]
        return Accepted(topic, dev, rows, [], [(dev.id, "online", None, min(latest_ts or now, now))], samples,
                        [(dev.id, item.seq, item.ts) for item in items])

    def _fast_telemetry(
        self, topic: str, dev: DeviceRef, kind: catalogue.DeviceKind, raw: bytes, now: datetime
    ) -> Accepted | None:
        """The common case (a well-formed v1 telemetry object with epoch-ms ts) without pydantic.

        Returns None for anything unusual, and the full path then decides, with its precise errors.
        """
        if len(raw) > self.max_bytes:
            return None
        try:
            d = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(d) is not dict or len(d) != 4 or d.get("v") != 1:
            return None
        ts_ms, seq, values = d.get("ts"), d.get("seq"), d.get("values")
        if type(ts_ms) is not int or not contract.MIN_TS_MS <= ts_ms <= contract.MAX_TS_MS:
            return None
        if type(seq) is not int or not 0 <= seq <= contract.MAX_SEQ or type(values) is not dict or not values:
            return None
        if len(values) > self.max_fields:
            return None
        metrics = self.registry.metrics
        for name, x in values.items():
            f = kind.field(name)
            if f is None or type(x) not in (int, float, bool) or f.check(x) is not None:
                return None
        ts = datetime.fromtimestamp(ts_ms / 1000.0, tz=UTC)
        if self._check_time(ts, now) is not None:
            return None
        newest = self._newest.get(dev.id)
        flags = FLAG_LATE if newest is not None and ts < newest else 0
        if newest is None or ts > newest:
            self._newest[dev.id] = ts
        rows: list[Row] = [(ts, dev.id, metrics[name], float(x), flags, seq) for name, x in values.items()]
        return Accepted(topic, dev, rows, [], [(dev.id, "online", None, min(ts, now))], [(ts, values)],
                        [(dev.id, seq, ts)])

    def _check_time(self, ts: datetime, now: datetime) -> tuple[str, str] | None:
        if ts > now + self.max_future:
            return "future_ts", f"ts {ts.isoformat()} is more than {self.max_future} ahead of the gateway clock"
        if ts < now - self.max_age:
            return "too_old", f"ts {ts.isoformat()} is older than the retention period"
        return None

    def _check_values(
        self, kind: catalogue.DeviceKind, values: dict[str, bool | int | float]
    ) -> tuple[str, str] | None:
        if len(values) > self.max_fields:
            return "too_many_fields", f"{len(values)} fields, limit {self.max_fields}"
        for name, value in values.items():
            f = kind.field(name)
            if f is None or name not in self.registry.metrics:
                known = ", ".join(x.name for x in kind.fields) or "none"
                return "unknown_field", f"{kind.kind} has no field {name!r} (known: {known})"
            problem = f.check(value)
            if problem:
                return problem
        return None

    def _reject(self, topic: str, device_topic: str | None, reason: str, detail: str, raw: bytes,
                seq: int | None, now: datetime) -> Rejected:
        return Rejected(topic, device_topic, reason, detail, raw[:MAX_DEAD_LETTER_BYTES], seq, now)
