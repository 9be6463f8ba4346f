"""The interlock rule: a residential gas alarm closes the gas shut-off valve and starts the exhaust fan of its
place (GB 50028-2006 §10.8.2-10.8.4, docs/alarms.md), and a target that does not acknowledge in time raises
"联动未响应 / interlock not acknowledged".

Pure: commands go to the engine's outbox (:attr:`Engine.commands`) as :class:`CommandOut`; the gateway
publishes them on each target's ``command`` channel after the alarm is committed. A target answers with its
kind's acknowledgement event (catalogue :class:`~twin.catalogue.CommandSpec`), which clears the wait. Every
time is the engine's clock.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, NamedTuple

from twin import catalogue
from twin.alarms import format_duration
from twin.community import Community
from twin.rules.evaluators.base import Evaluator, TrackedDevice, iso_utc
from twin.rules.schema import InterlockRule

if TYPE_CHECKING:
    from twin.rules.engine import Engine

LOG_KEPT = 200  # acknowledged or timed-out commands kept in the snapshot (the record of recent interlocks)


class CommandOut(NamedTuple):
    """A command for the gateway to publish: ``command`` to ``device``, ``id`` to match its answer, sent at engine
    time ``at`` because of ``reason`` (the alarm key that drove it)."""

    device: str
    command: str
    id: str
    at: float
    reason: str


class Waiting(NamedTuple):
    """A command sent and not yet acknowledged."""

    id: str
    source: str  # the alarm key that drove it
    sent: float
    due: float
    ack_event: str


class InterlockEvaluator(Evaluator):
    def __init__(self, rule: InterlockRule, community: Community) -> None:
        super().__init__(rule)
        self.interlock = rule
        self.commands = [(c.kind, c.command) for c in rule.commands]
        self.ack_events: dict[tuple[str, str], str] = {}  # (kind, command) -> the event that acknowledges it
        for c in rule.commands:
            spec = catalogue.KINDS[c.kind].command(c.command)
            if spec is not None:
                self.ack_events[(c.kind, c.command)] = spec.ack_event
        self._place_of = {d.id: _place(d.unit, d.building, d.floor) for d in community.devices}
        self._at_place: dict[tuple[str | None, ...], list[tuple[str, str]]] = {}
        for d in community.devices:
            self._at_place.setdefault(self._place_of[d.id], []).append((d.id, d.kind))
        self.active: dict[str, set[str]] = {}  # source device -> its driving rules that are on
        self.waiting: dict[tuple[str, str], Waiting] = {}  # (target, command) -> what it waits for
        self.raised: set[tuple[str, str]] = set()  # waits that timed out (their alarm is raised)
        self.log: deque[list[Any]] = deque(maxlen=LOG_KEPT)  # [id, target, command, sent, outcome, at, source]
        self.sent = 0

    def targets(self, source: str) -> list[tuple[str, str]]:
        """(device, command) pairs the interlock drives for an alarm at ``source``."""
        place = self._place_of.get(source)
        if place is None:
            return []
        here = self._at_place.get(place, [])
        return [(d, cmd) for kind, cmd in self.commands for d, k in here if k == kind and d != source]

    def triggered(self, eng: Engine, dev: TrackedDevice, rule: str, t: float, on: bool) -> None:
        """A driving rule's condition at ``dev`` went on or off at engine time ``t``."""
        rules = self.active.setdefault(dev.id, set())
        if not on:
            rules.discard(rule)
            return
        first = not rules
        rules.add(rule)
        if not first:
            return  # one episode at a place sends each command once
        reason = f"{rule}@{dev.id}"
        for target, command in self.targets(dev.id):
            self.sent += 1
            cid = f"{self.id}-{self.sent}"
            kind = eng._devices[target].kind
            ack = self.ack_events[(kind, command)]
            self.waiting[(target, command)] = Waiting(cid, reason, t, t + self.interlock.ack_within, ack)
            eng.commands.append(CommandOut(target, command, cid, t, reason))
            eng._next_interlock_check = min(eng._next_interlock_check, t + self.interlock.ack_within)

    def acknowledged(self, eng: Engine, dev: TrackedDevice, code: str, t: float) -> None:
        """``dev`` sent event ``code`` at engine time ``t``: the acknowledgement of a command it was waiting on?"""
        for key in [k for k, w in self.waiting.items() if k[0] == dev.id and w.ack_event == code]:
            w = self.waiting.pop(key)
            self.log.append([w.id, dev.id, key[1], w.sent, "acknowledged", t, w.source])
            if key in self.raised:
                self.raised.discard(key)
                eng._raise_or_clear(self, dev.subject, t, False,
                                    f"{key[1]} acknowledged ({code}) after {format_duration(t - w.sent)}")

    def check(self, eng: Engine, now: float) -> float:
        """Raise for every wait past its deadline; return the next deadline."""
        nxt = float("inf")
        for key, w in self.waiting.items():
            if key in self.raised:
                continue
            if now >= w.due:
                self.raised.add(key)
                target, command = key
                self.log.append([w.id, target, command, w.sent, "not acknowledged", w.due, w.source])
                eng._raise_or_clear(self, eng._devices[target].subject, w.due, True,
                                    f"{command} not acknowledged within {format_duration(self.interlock.ack_within)}"
                                    f" (command {w.id} sent {iso_utc(w.sent)} for {w.source}; expected {w.ack_event})")
            else:
                nxt = min(nxt, w.due)
        return nxt

    def snapshot(self) -> Any:
        return {"active": {d: sorted(r) for d, r in self.active.items() if r},
                "waiting": [[t, c, *w] for (t, c), w in self.waiting.items()],
                "raised": sorted([t, c] for t, c in self.raised), "sent": self.sent, "log": list(self.log)}

    def restore(self, data: Any, engine: Engine) -> None:
        self.active = {d: set(r) for d, r in data.get("active", {}).items() if d in engine._devices}
        for t, c, cid, source, sent, due, ack in data.get("waiting", []):
            if t in engine._devices:
                self.waiting[(t, c)] = Waiting(cid, source, float(sent), float(due), ack)
                engine._next_interlock_check = min(engine._next_interlock_check, float(due))
        self.raised = {(t, c) for t, c in data.get("raised", []) if (t, c) in self.waiting}
        self.sent = int(data.get("sent", 0))
        self.log.extend(data.get("log", []))

    def is_on(self, device_id: str) -> bool:
        return any(t == device_id for t, _c in self.raised)


def _place(unit: str | None, building: str | None, floor: int | None) -> tuple[str | None, ...]:
    """Where a device is, for interlocks: its home (``unit``) if it has one, else its building floor."""
    return ("unit", unit) if unit is not None else ("floor", building, str(floor))
