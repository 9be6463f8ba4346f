"""Replaying contract messages (a scenario, a recording) through an :class:`~twin.rules.engine.Engine`
offline, on simulated time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from twin import contract
from twin.alarms import AlarmEvent
from twin.rules.engine import Engine
from twin.rules.evaluators.base import utc_datetime

# --- replaying contract messages ------------------------------------------------------------------


def replay(engine: Engine, messages: Iterable[tuple[float, str, bytes]], *, root: str, tick_every: float = 5.0,
           until: float | None = None, rejected: list[str] | None = None) -> Iterator[AlarmEvent]:
    """Feed ``(t, topic, payload)`` messages (time-ordered, ``t`` in epoch seconds) through the contract into
    ``engine``, ticking every ``tick_every`` simulated seconds (and up to ``until``); yield every alarm event.
    Each fact counts as received at its own device time (the simulated clock is the engine's clock).
    Messages the contract rejects are skipped (and described in ``rejected`` if given)."""
    next_tick: float | None = None
    for t, topic_text, payload in messages:
        if next_tick is None:
            next_tick = t
        while t >= next_tick:
            yield from engine.tick(utc_datetime(next_tick))
            next_tick += tick_every
        try:
            topic = contract.parse_topic(root, topic_text)
            msg = contract.decode(topic.channel, payload)
        except contract.ContractError as exc:
            if rejected is not None:
                rejected.append(f"{topic_text}: {exc}")
            continue
        dev = topic.device_id
        if isinstance(msg, contract.Telemetry):
            yield from engine.on_reading(dev, msg.ts, msg.values)
        elif isinstance(msg, contract.Event):
            yield from engine.on_event(dev, msg.ts, msg.code, msg.state.value, detail=msg.detail)
        elif isinstance(msg, contract.Status):
            yield from engine.on_status(dev, msg.ts or utc_datetime(t), msg.state is contract.DeviceState.ONLINE)
        else:
            for item in msg.items:
                yield from engine.on_reading(dev, item.ts, item.values)
    if until is not None and next_tick is not None:
        while next_tick <= until:
            yield from engine.tick(utc_datetime(next_tick))
            next_tick += tick_every
