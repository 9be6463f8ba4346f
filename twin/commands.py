"""Device commands: the payload the gateway sends on a device's ``command`` channel (server -> device, topic
from :func:`twin.contract.topic`), how a device answers it, and the operator's care-unit status command on the
alarm commands topic. Pure: no I/O.

A command: ``{"v":1,"ts":1717286400000,"id":"gas_interlock-3","command":"close","reason":"gas_level1@B1-B1-GAS"}``.
The device carries it out and answers on its own ``event`` channel with the acknowledgement event its kind
declares (catalogue ``CommandSpec.ack_event``, e.g. ``valve_closed`` for ``close``), ``detail`` naming the
command id. An unknown command is answered with nothing: the interlock's deadline raises an alarm.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from twin import catalogue, contract


class DeviceCommand(BaseModel):
    """What the gateway tells one device to do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    ts: datetime
    id: contract.Text = Field(min_length=1, max_length=64)
    command: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    reason: contract.Text | None = Field(default=None, max_length=200)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        return contract._to_datetime(v)


def command_bytes(command_id: str, command: str, at: float, reason: str | None = None) -> bytes:
    """The payload of a command sent at epoch seconds ``at``."""
    return orjson.dumps({"v": contract.SCHEMA_VERSION, "ts": round(at * 1000), "id": command_id, "command": command,
                         **({"reason": reason} if reason else {})})


def decode_command(raw: bytes) -> DeviceCommand:
    """Validate a command payload; raises :class:`~twin.contract.ContractError`."""
    try:
        return DeviceCommand.model_validate(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise contract.ContractError("bad_json", f"not valid UTF-8 JSON: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(payload)"
        raise contract.ContractError("bad_schema", f"{where}: {first['msg']}") from None


def ack_event(kind: str, command: str) -> str | None:
    """The event a device of ``kind`` answers ``command`` with, or None if it takes no such command."""
    spec = catalogue.KINDS.get(kind)
    cmd = spec.command(command) if spec is not None else None
    return cmd.ack_event if cmd is not None else None


def ack_bytes(cmd: DeviceCommand, kind: str, seq: int, at: datetime | None = None) -> bytes | None:
    """A device's answer to ``cmd`` on its event channel, or None if its kind takes no such command."""
    code = ack_event(kind, cmd.command)
    if code is None:
        return None
    when = at or datetime.now(UTC)
    return orjson.dumps({"v": contract.SCHEMA_VERSION, "ts": round(when.timestamp() * 1000), "seq": seq, "code": code,
                         "state": contract.EventState.PULSE.value, "detail": f"command {cmd.id}"})


CARE_ACTIONS = frozenset({"care_away", "care_back"})


class CareStatusCommand(BaseModel):
    """An operator says a care unit's resident is away (in hospital, with family; optionally ``until``) or back:
    ``{"v":1,"action":"care_away","unit":"B3-1201","by":"op-li","comment":"住院"}``, on the alarm commands topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1]
    action: Literal["care_away", "care_back"]
    unit: contract.Text = Field(min_length=1, max_length=64)
    by: contract.Text = Field(min_length=1, max_length=64)
    comment: contract.MultilineText | None = Field(default=None, max_length=1000)
    until: datetime | None = None

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, v: Any) -> datetime | None:
        return None if v is None else contract._to_datetime(v)
