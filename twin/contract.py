"""The MQTT message contract shared by devices, simulators and the gateway. Pure: no I/O.

Topic grammar (the only module that builds or parses topics)::

    {root}/v1/{community_id}/{device_id}/{channel}

``channel`` is one of ``telemetry`` (readings), ``event`` (state changes and faults), ``status``
(online/offline, also the last will), ``batch`` (many telemetry items in one message), ``error``
(gateway -> device: why a message was rejected) and ``command`` (server -> device: interlock commands
such as closing a gas valve; the payload and the device's answer are in :mod:`twin.commands`).

Payloads are JSON objects with a schema version ``v`` (currently 1), a timestamp ``ts`` (epoch
milliseconds or an ISO-8601 string with offset) and a per-device sequence number ``seq``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION = 1
_M = TypeVar("_M", bound=BaseModel)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# C0 controls (U+0000 NUL included: PostgreSQL text cannot hold it), DEL and C1 controls, and
# Unicode non-characters. Text fields never need them; a line break or tab is allowed only in
# free-text fields an operator types (comments).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffe\uffff]")


def _no_controls(pattern: re.Pattern[str]) -> Any:
    def check(v: str) -> str:
        m = pattern.search(v)
        if m is not None:
            raise ValueError(f"contains control character U+{ord(m.group()):04X} at position {m.start()}")
        return v

    return AfterValidator(check)


def control_characters(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` is not acceptable text (a control character and where), or None."""
    m = (_CONTROL_MULTILINE if multiline else _CONTROL).search(value)
    return None if m is None else f"control character U+{ord(m.group()):04X} at position {m.start()}"


# Every string field of every message in or out is one of these two.
Text = Annotated[str, _no_controls(_CONTROL)]
MultilineText = Annotated[str, _no_controls(_CONTROL_MULTILINE)]


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"
    BATCH = "batch"
    ERROR = "error"
    COMMAND = "command"


DEVICE_TO_SERVER = frozenset({Channel.TELEMETRY, Channel.EVENT, Channel.STATUS, Channel.BATCH})


class ContractError(ValueError):
    """A topic or payload does not follow the contract. ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def valid_id(value: str) -> bool:
    """Community and device ids: 1-64 chars of letters, digits, '_', '-', '.', not starting with punctuation."""
    return bool(_ID.match(value))


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed gridtwin topic."""

    root: str
    community_id: str
    device_id: str
    channel: Channel

    def __str__(self) -> str:
        return f"{self.root}/v{SCHEMA_VERSION}/{self.community_id}/{self.device_id}/{self.channel.value}"


def topic(root: str, community_id: str, device_id: str, channel: Channel | str) -> str:
    """Build a topic string; raises ContractError for ids outside the grammar."""
    for name, value in (("community id", community_id), ("device id", device_id)):
        if not valid_id(value):
            raise ContractError("bad_id", f"{name} {value!r} must be 1-64 of [A-Za-z0-9_.-]")
    return str(Topic(root, community_id, device_id, Channel(channel)))


def alarms_topic(root: str, community_id: str) -> str:
    """Where the gateway publishes alarm events of a community (dashboards and other consumers)."""
    return f"{root}/v{SCHEMA_VERSION}/alarms/{community_id}"


def alarm_commands_topic(root: str, community_id: str) -> str:
    """Where operators' consoles send alarm actions (acknowledge, shelve, ...) to the gateway."""
    return f"{root}/v{SCHEMA_VERSION}/alarms/{community_id}/commands"


def alarm_events_filter(root: str) -> str:
    """The filter matching every community's alarm-events topic (and none of their commands topics)."""
    return f"{root}/v{SCHEMA_VERSION}/alarms/+"


def parse_alarms_topic(root: str, value: str) -> str | None:
    """The community id if ``value`` is an alarm-events topic under ``root`` (not a commands topic), else None."""
    prefix = f"{root}/v{SCHEMA_VERSION}/alarms/"
    if not value.startswith(prefix):
        return None
    community = value[len(prefix) :]
    return community if valid_id(community) else None


def parse_alarm_commands_topic(root: str, value: str) -> str | None:
    """The community id if ``value`` is an alarm-commands topic under ``root``, else None."""
    prefix = f"{root}/v{SCHEMA_VERSION}/alarms/"
    if not value.startswith(prefix) or not value.endswith("/commands"):
        return None
    community = value[len(prefix) : -len("/commands")]
    return community if valid_id(community) else None


class AlarmCommand(BaseModel):
    """An operator's action on one alarm: ``{"v":1,"action":"acknowledge","key":"gas_l2@B3-B1-GAS","by":"op1"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    action: Literal["acknowledge", "shelve", "unshelve", "clear"]
    key: Text = Field(min_length=3, max_length=200)
    by: Text = Field(min_length=1, max_length=64)
    comment: MultilineText | None = Field(default=None, max_length=1000)
    until: datetime | None = None  # shelve: until when

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, v: Any) -> datetime | None:
        # The dashboard builds commands with a datetime; the wire carries an ISO-8601 string or epoch ms.
        if isinstance(v, datetime):
            if v.tzinfo is None:
                raise ValueError("until must carry a UTC offset")
            return v.astimezone(UTC)
        return None if v is None else _to_datetime(v)


def worker_topic(root: str, worker_id: str) -> str:
    """Where a grid worker's phone app receives its tickets."""
    if not valid_id(worker_id):
        raise ContractError("bad_id", f"worker id {worker_id!r} must be 1-64 of [A-Za-z0-9_.-]")
    return f"{root}/v{SCHEMA_VERSION}/workers/{worker_id}/tickets"


def worker_tickets_filter(root: str) -> str:
    """The filter matching every worker's tickets topic (what the web server relays to browsers)."""
    return f"{root}/v{SCHEMA_VERSION}/workers/+/tickets"


def parse_worker_topic(root: str, value: str) -> str | None:
    """The worker id if ``value`` is a worker's tickets topic under ``root``, else None."""
    prefix = f"{root}/v{SCHEMA_VERSION}/workers/"
    if not value.startswith(prefix) or not value.endswith("/tickets"):
        return None
    worker = value[len(prefix) : -len("/tickets")]
    return worker if valid_id(worker) else None


class AlarmRejected(BaseModel):
    """What the gateway publishes on a community's alarm-events topic when it cannot apply an operator's
    command: ``{"kind":"rejected","key":"gas_l2@B3-B1-GAS","detail":"..."}`` (``key`` is null for a command
    it could not parse). Besides these and :class:`CareStatusNotice`, every message there is an alarm event
    (:meth:`twin.alarms.AlarmEvent.to_json`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rejected"]
    key: str | None = Field(max_length=1000)
    detail: str = Field(max_length=4000)


class CareStatusNotice(BaseModel):
    """What the gateway publishes on a community's alarm-events topic when an operator sets a care unit's
    resident away or back: ``{"kind":"care_status","unit":"B3-1201","away":true,"by":"op-li","comment":"住院",
    "until":null,"at":"2025-06-02T02:00:00+00:00"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["care_status"]
    unit: str = Field(min_length=1, max_length=64)
    away: StrictBool
    by: str = Field(max_length=64)
    comment: str | None = Field(default=None, max_length=1000)
    until: str | None = Field(default=None, max_length=64)
    at: str = Field(max_length=64)


class _Open(BaseModel):
    """A message part whose other fields are passed on as they are (the worker's view of a ticket)."""

    model_config = ConfigDict(extra="allow", frozen=True)


class TicketPlace(_Open):
    community: Text | None = Field(default=None, max_length=64)
    grid: Text | None = Field(default=None, max_length=64)


class TicketRef(_Open):
    id: StrictInt = Field(ge=1)
    version: StrictInt | None = Field(default=None, ge=1)
    title: str = Field(max_length=1000)  # as the producer stored it (the API lets operators type line breaks)
    location: TicketPlace | None = None  # "ticket": the whole view
    community: Text | None = Field(default=None, max_length=64)  # "ticket_withdrawn": id, title and these
    grid: Text | None = Field(default=None, max_length=64)


class TicketMessage(_Open):
    """What a worker's phone receives on :func:`worker_topic`: ``{"v":1,"type":"ticket","event":"created",
    "at":"...","ticket":{...the worker's view...}}``, or ``{"v":1,"type":"ticket_withdrawn","at":"...",
    "ticket":{"id":..,"title":..,"community":..,"grid":..},"reason":"..."}`` for its previous assignee.
    Only the fields that route the message are checked; the rest of the view is passed on as it is."""

    v: Literal[1]
    type: Literal["ticket", "ticket_withdrawn"]
    event: Text | None = Field(default=None, max_length=64)
    at: Text | None = Field(default=None, max_length=64)
    ticket: TicketRef

    @property
    def community(self) -> str | None:
        loc = self.ticket.location
        return loc.community if loc is not None and loc.community else self.ticket.community

    @property
    def grid(self) -> str | None:
        loc = self.ticket.location
        return loc.grid if loc is not None and loc.grid else self.ticket.grid


def subscription(root: str, channels: frozenset[Channel] = DEVICE_TO_SERVER) -> list[str]:
    """Topic filters the gateway subscribes to (one per inbound channel)."""
    return [f"{root}/v{SCHEMA_VERSION}/+/+/{c.value}" for c in sorted(channels)]


def parse_topic(root: str, value: str) -> Topic:
    """Parse a concrete topic under ``root``; raises ContractError(reason='bad_topic')."""
    prefix = f"{root}/v{SCHEMA_VERSION}/"
    if not value.startswith(prefix):
        raise ContractError("bad_topic", f"{value!r} is not under {prefix!r}")
    parts = value[len(prefix) :].split("/")
    if len(parts) != 3:
        raise ContractError("bad_topic", f"{value!r} must be {prefix}<community>/<device>/<channel>")
    community_id, device_id, channel = parts
    if not valid_id(community_id) or not valid_id(device_id):
        raise ContractError("bad_topic", f"{value!r} has an invalid community or device id")
    try:
        ch = Channel(channel)
    except ValueError:
        raise ContractError("bad_topic", f"unknown channel {channel!r} in {value!r}") from None
    return Topic(root, community_id, device_id, ch)


# --- payloads -------------------------------------------------------------------------------------

MIN_TS_MS = 946_684_800_000  # 2000-01-01: anything earlier is a device clock that was never set
MAX_TS_MS = 32_503_680_000_000  # year 3000
MAX_SEQ = 2**63 - 1


def _to_datetime(v: Any) -> datetime:
    if isinstance(v, bool):
        raise ValueError("ts must be epoch milliseconds or an ISO-8601 string")
    if isinstance(v, int | float):
        if not math.isfinite(v) or v < MIN_TS_MS or v > MAX_TS_MS:
            raise ValueError("ts must be epoch milliseconds after 2000-01-01")
        return datetime.fromtimestamp(v / 1000.0, tz=UTC)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError("ts string must be ISO-8601") from None
        if dt.tzinfo is None:
            raise ValueError("ts string must carry a UTC offset")
        return dt.astimezone(UTC)
    raise ValueError("ts must be epoch milliseconds or an ISO-8601 string")


Value = StrictBool | StrictInt | StrictFloat


def _check_values(v: dict[str, Value]) -> dict[str, Value]:
    for name, x in v.items():
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError(f"values.{name} is not a finite number")
    return v


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    v: Literal[1]
    ts: datetime
    seq: int = Field(ge=0, le=MAX_SEQ)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        return _to_datetime(v)


class Telemetry(_Payload):
    """Readings of one device at one instant: ``{"v":1,"ts":...,"seq":7,"values":{"pressure":0.32}}``."""

    values: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], Value] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _finite(cls, v: dict[str, Value]) -> dict[str, Value]:
        return _check_values(v)


class EventState(StrEnum):
    ACTIVE = "active"
    CLEARED = "cleared"
    PULSE = "pulse"  # a one-off event with no cleared state (e.g. a door cycle)


class Event(_Payload):
    """A state change or fault: ``{"v":1,"ts":...,"seq":8,"code":"fire_alarm","state":"active"}``."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    state: EventState = EventState.PULSE
    detail: Text | None = Field(default=None, max_length=512)


class DeviceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class Status(BaseModel):
    """Online/offline, also used as the MQTT last will (then ``seq`` may be absent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    ts: datetime | None = None
    seq: int | None = Field(default=None, ge=0)
    state: DeviceState
    reason: Text | None = Field(default=None, max_length=128)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime | None:
        return None if v is None else _to_datetime(v)


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: datetime
    seq: int = Field(ge=0, le=MAX_SEQ)
    values: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], Value] = Field(min_length=1)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        return _to_datetime(v)

    @field_validator("values")
    @classmethod
    def _finite(cls, v: dict[str, Value]) -> dict[str, Value]:
        return _check_values(v)


class Batch(BaseModel):
    """Many telemetry items of one device in one message: ``{"v":1,"items":[{"ts":..,"seq":..,"values":{..}}]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    items: list[BatchItem] = Field(min_length=1, max_length=1000)


Payload = Telemetry | Event | Status | Batch
_MODELS: dict[Channel, type[BaseModel]] = {
    Channel.TELEMETRY: Telemetry,
    Channel.EVENT: Event,
    Channel.STATUS: Status,
    Channel.BATCH: Batch,
}


def decode(channel: Channel, raw: bytes, *, max_bytes: int = 16_384) -> Payload:
    """Validate raw bytes from ``channel`` into a typed payload, or raise ContractError with a reason."""
    if len(raw) > max_bytes:
        raise ContractError("too_large", f"payload is {len(raw)} bytes, limit {max_bytes}")
    model = _MODELS.get(channel)
    if model is None:
        raise ContractError("bad_topic", f"devices may not publish on channel {channel.value!r}")
    data = json_object(raw)
    version = data.get("v")
    if version != SCHEMA_VERSION:
        raise ContractError("bad_version", f"schema version v={version!r} is not supported (use v=1)")
    return validate(model, data)  # type: ignore[return-value]


def json_object(raw: bytes) -> dict[str, Any]:
    """Parse a payload that must be one JSON object; raises ContractError (``bad_json``, ``bad_schema``)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson rejects NaN/Infinity literals and invalid UTF-8 here as well
        raise ContractError("bad_json", f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError("bad_schema", f"payload must be a JSON object, got {type(data).__name__}")
    return data


def validate(model: type[_M], data: dict[str, Any]) -> _M:
    """``model`` from ``data``, or ContractError(``bad_schema``) naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise ContractError("bad_schema", f"{where}: {first['msg']}") from None


def decode_ticket_message(raw: bytes, *, max_bytes: int = 262_144) -> tuple[TicketMessage, dict[str, Any]]:
    """Validate a message from a worker's tickets topic: the model (routing fields) and the whole object."""
    if len(raw) > max_bytes:
        raise ContractError("too_large", f"payload is {len(raw)} bytes, limit {max_bytes}")
    data = json_object(raw)
    return validate(TicketMessage, data), data


def encode(payload: Payload) -> bytes:
    """Serialise a payload the way devices should send it (ts as epoch ms)."""
    data = payload.model_dump(mode="python", exclude_none=True)
    _ts_to_ms(data)
    return orjson.dumps(data)


def _ts_to_ms(data: dict[str, Any]) -> None:
    ts = data.get("ts")
    if isinstance(ts, datetime):
        data["ts"] = round(ts.timestamp() * 1000)
    for item in data.get("items", ()):
        _ts_to_ms(item)


def telemetry_bytes(ts_ms: int, seq: int, values: dict[str, Value]) -> bytes:
    """Fast path for simulators: build a v1 telemetry payload without model validation."""
    return orjson.dumps({"v": SCHEMA_VERSION, "ts": ts_ms, "seq": seq, "values": values})


def error_bytes(reason: str, detail: str, *, topic: str, seq: int | None, at: datetime) -> bytes:
    """What the gateway publishes on a device's error topic when it rejects a message."""
    return orjson.dumps(
        {
            "v": SCHEMA_VERSION,
            "ts": round(at.timestamp() * 1000),
            "reason": reason,
            "detail": detail,
            "topic": topic,
            "seq": seq,
        }
    )


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where an MQTT broker is, parsed from ``mqtt://[user[:password]@]host[:port]``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ContractError("bad_url", f"{url!r} must look like mqtt://[user:password@]host[:port]")
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError:
            raise ContractError("bad_url", f"{url!r} has an invalid port") from None
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=parts.scheme == "mqtts",
        )

    def redacted(self) -> str:
        user = f"{self.username}{':***' if self.password else ''}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"
