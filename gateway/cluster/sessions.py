"""One persistent MQTT session per community, and what a new owner does to a community's saved state. Pure.

A community's messages reach whichever gateway holds its lease through one MQTT session whose client id
is derived from the community alone (:func:`client_id`), with ``clean_session`` false and QoS 1. While
no gateway holds it (the old owner died, the lease has not expired yet) the broker keeps queuing that
community's messages in the session; the next owner connects with the same client id, resumes the
session and receives them, unacknowledged ones included. If a stale owner were still connected, the
broker's client-id takeover disconnects it.

Silence at takeover (:func:`pause_silence`): the rules measure no-data silence from when each device
was last received. Between the old owner's last saved snapshot and the new owner's first message no
gateway received anything for that community, so the engine's silence clocks are paused for that gap:
shifted forward by it. A device that was silent before the gap still raises its alarm, only later by
the gap; no device raises one because of the gap.
"""

from __future__ import annotations

import copy
from typing import Any

from twin import contract

MAX_PAUSE_S = 3600.0  # a snapshot older than this is not a takeover gap: silence is real then


def client_id(root: str, community: str) -> str:
    """The MQTT client id of ``community``'s session: the same on every gateway (``gridtwin-c-{id}`` by default)."""
    return f"{root}-c-{community}"


def filters(root: str, community: str) -> list[str]:
    """What a community's session subscribes to: its devices' inbound channels and its alarm commands."""
    prefix = f"{root}/v{contract.SCHEMA_VERSION}/{community}/+/"
    return [f"{prefix}{c.value}" for c in sorted(contract.DEVICE_TO_SERVER)] + [
        contract.alarm_commands_topic(root, community)]


def pause_silence(snapshot: dict[str, Any] | None, now_s: float) -> dict[str, Any] | None:
    """``snapshot`` (a rules engine snapshot) with every silence clock shifted by the gap between its
    engine time and ``now_s`` (epoch seconds), so the takeover gap counts as no silence."""
    if not snapshot or snapshot.get("now") is None:
        return snapshot
    gap = now_s - float(snapshot["now"])
    if gap <= 0 or gap > MAX_PAUSE_S:
        return snapshot
    out = copy.deepcopy(snapshot)
    if out.get("epoch") is not None:
        out["epoch"] = float(out["epoch"]) + gap
    for dev in out.get("devices", {}).values():
        if dev.get("last_seen") is not None:
            dev["last_seen"] = float(dev["last_seen"]) + gap
        if dev.get("offline_since") is not None:
            dev["offline_since"] = float(dev["offline_since"]) + gap
    out["now"] = now_s
    return out
