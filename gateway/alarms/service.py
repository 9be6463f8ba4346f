"""The alarm service: runs the pure rules engine on committed facts and does its I/O. Does I/O.

Per community: feed what the writer committed to :class:`twin.rules.Engine`, tick it on an event
clock, persist every alarm change (``alarms`` current row + ``alarm_events`` history) in one
transaction, publish each change on ``{root}/v1/alarms/{community}``, paint it on the live state,
apply operators' commands from ``.../alarms/{community}/commands`` (alarm actions, and a care unit's resident
away or back), publish the device commands interlocks decide (``{root}/v1/{community}/{device}/command``, after
the alarm that drove them is committed), save the engine snapshot
(``rule_state``) so a restart forgets nothing, and hot-reload rule files (a bad file keeps the
previous rule set in force and says why).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gateway.ingest.batch import AlarmWrites, ClosedRow
from gateway.storage import Storage
from twin import commands, contract
from twin.alarms import AlarmError, AlarmEvent, EventKind
from twin.community import Community
from twin.rules import DEFAULTS_FILE, Engine, RulesError, RuleSet, load_rules
from twin.rules.evaluators.interlock import CommandOut
from twin.state import LiveState

log = logging.getLogger(__name__)
Publish = Callable[[str, bytes, int], None]


class EventClock:
    """Now, for the rules engine: the newest device time seen, advanced by wall time since it arrived,
    and never ahead of server time.

    Live, this is the server clock: a device whose clock runs fast cannot drag it forward (the gateway
    accepts timestamps up to 5 min ahead), so it cannot make every other device look silent. When a
    simulator replays a scenario in the past (``--speed 60``, the tests), it is the replayed time, so
    durations and no-data rules behave as in an offline replay. The engine measures silence from when
    each message was received on this clock, so a device whose clock runs behind is not silent either.
    ``server()`` is the wall clock itself: what tickets, SLA deadlines and the duty roster run on.
    """

    def __init__(self, wall: Callable[[], datetime] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.newest: datetime | None = None
        self._wall_at_newest = 0.0
        self._server = wall or (lambda: datetime.now(UTC))
        self._monotonic = monotonic

    def server(self) -> datetime:
        return self._server()

    def saw(self, ts: datetime) -> None:
        """A device said it is ``ts``; a time ahead of the server clock counts as the server's now."""
        ts = min(ts, self._server())
        if self.newest is None or ts > self.newest:
            self.newest = ts
            self._wall_at_newest = self._monotonic()

    def now(self) -> datetime | None:
        if self.newest is None:
            return None
        return min(self.newest + timedelta(seconds=self._monotonic() - self._wall_at_newest), self._server())

    def received(self, events: list[AlarmEvent]) -> list[AlarmEvent]:
        """``events`` stamped with the server time the gateway got what caused them (tickets start there)."""
        if not events:
            return events
        at = self._server()
        return [e if e.received_at is not None else replace(e, received_at=at) for e in events]


def rule_files(extra: Sequence[Path]) -> list[Path]:
    return [DEFAULTS_FILE, *extra]


def read_rules(files: Sequence[Path], community: Community) -> RuleSet:
    texts = []
    for f in files:
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except OSError as exc:
            raise RulesError([f"{f}: cannot read it ({exc.strerror})"]) from None
    return load_rules(texts, community)


@dataclass
class _Files:
    paths: list[Path]
    mtimes: list[float]

    @classmethod
    def of(cls, paths: list[Path]) -> _Files:
        return cls(paths, [_mtime(p) for p in paths])

    def changed(self) -> bool:
        now = [_mtime(p) for p in self.paths]
        if now != self.mtimes:
            self.mtimes = now
            return True
        return False


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return -1.0


class AlarmService:
    """Alarms of one community. Not thread-safe: the gateway's writer thread owns it."""

    def __init__(self, community: Community, storage: Storage | dict[str, Any] | None, *, root: str, publish: Publish,
                 live: LiveState | None, site_rules: Sequence[Path] = ()) -> None:
        self.community = community
        self.root = root
        self.publish = publish
        self.live = live
        self.clock = EventClock()
        self._files = _Files.of(rule_files(site_rules))
        self.ruleset = read_rules(self._files.paths, community)  # a bad file at start is fatal
        snap = storage.load_rule_state(community.id) if isinstance(storage, Storage) else storage
        self.engine = Engine.restore(self.ruleset, community, snap) if snap else Engine(self.ruleset, community)
        self.raised = 0
        self.commands_sent = 0
        self._outbox: list[CommandOut] = []  # device commands to publish once their alarm is committed
        self.reload_errors: list[str] = []
        for a in self.engine.alarms():  # paint what was active before the restart
            if a.status.active:
                self._paint_key(a.key, a.subject.building, a.subject.floor, a.subject.device,
                                a.severity.level if not a.shelved_until else None)

    # -- facts in --------------------------------------------------------------------------------

    def _took(self, events: list[AlarmEvent]) -> list[AlarmEvent]:
        """``events`` stamped with their receipt; the device commands the engine decided go to the outbox."""
        if self.engine.commands:
            self._outbox += self.engine.take_commands()
        return self.clock.received(events)

    def on_readings(self, device: str, samples: Sequence[tuple[datetime, dict[str, Any]]]) -> list[AlarmEvent]:
        """Readings at their device times, received now on the event clock."""
        out: list[AlarmEvent] = []
        for ts, values in samples:
            self.clock.saw(ts)
            out += self.engine.on_reading(device, ts, values, received=self.clock.now())
        return self._took(out)

    def on_event(self, device: str, ts: datetime, code: str, state: str,
                 detail: str | None = None) -> list[AlarmEvent]:
        """An event at its device time, received now on the event clock. Pass the event's ``detail``: a fire
        panel names the component that tripped there (its alarm is placed at that component)."""
        self.clock.saw(ts)
        return self._took(self.engine.on_event(device, ts, code, state, received=self.clock.now(), detail=detail))

    def on_status(self, device: str, ts: datetime, online: bool) -> list[AlarmEvent]:
        return self._took(self.engine.on_status(device, ts, online, received=self.clock.now()))

    def tick(self) -> list[AlarmEvent]:
        now = self.clock.now()
        return self._took(self.engine.tick(now)) if now is not None else []

    def command(self, raw: bytes) -> list[AlarmEvent]:
        """Apply an operator's command; a bad or illegal one is logged and published as rejected."""
        try:
            data = orjson.loads(raw)
            if isinstance(data, dict) and data.get("action") in commands.CARE_ACTIONS:
                return self._care_status(commands.CareStatusCommand.model_validate(data))
            cmd = contract.AlarmCommand.model_validate(data)
        except (orjson.JSONDecodeError, ValueError) as exc:
            self._reject(None, f"bad command: {str(exc).splitlines()[0]}")
            return []
        at = self.clock.now() or self.clock.server()
        try:
            if cmd.action == "acknowledge":
                return self.clock.received([self.engine.acknowledge(cmd.key, cmd.by, at, cmd.comment)])
            if cmd.action == "clear":
                return self.clock.received([self.engine.clear(cmd.key, cmd.by, at, cmd.comment)])
            if cmd.action == "shelve":
                if cmd.until is None:
                    self._reject(cmd.key, "shelve needs `until`")
                    return []
                return self.clock.received([self.engine.shelve(cmd.key, cmd.until, cmd.by, at)])
            return self.clock.received([self.engine.unshelve(cmd.key, cmd.by, at)])
        except (AlarmError, KeyError) as exc:
            self._reject(cmd.key, str(exc))
            return []

    def _care_status(self, cmd: commands.CareStatusCommand) -> list[AlarmEvent]:
        """A care unit's resident away (suspends care inactivity) or back; announced on the alarms topic."""
        at = self.clock.now() or self.clock.server()
        away = cmd.action == "care_away"
        try:
            events = self.engine.set_care_away(cmd.unit, away, cmd.by, at, cmd.comment, cmd.until)
        except AlarmError as exc:
            self._reject(cmd.unit, str(exc))
            return []
        log.info("care unit %s: resident %s (by %s%s)", cmd.unit, "away" if away else "back", cmd.by,
                 f": {cmd.comment}" if cmd.comment else "")
        self.publish(contract.alarms_topic(self.root, self.community.id), orjson.dumps(
            {"kind": "care_status", "unit": cmd.unit, "away": away, "by": cmd.by, "comment": cmd.comment,
             "until": cmd.until.isoformat() if cmd.until else None, "at": at.isoformat()}), 1)
        return self._took(events)

    def _reject(self, key: str | None, why: str) -> None:
        log.warning("alarm command rejected (%s): %s", key, why)
        self.publish(contract.alarms_topic(self.root, self.community.id),
                     orjson.dumps({"kind": "rejected", "key": key, "detail": why}), 1)

    # -- rules files -----------------------------------------------------------------------------

    def maybe_reload(self) -> bool:
        """Hot reload when a rules file changed; keep the old set (and say why) if the new one is bad."""
        if not self._files.changed():
            return False
        try:
            new = read_rules(self._files.paths, self.community)
        except RulesError as exc:
            self.reload_errors = list(exc.problems)
            log.error("rules not reloaded, previous rule set stays in force:\n  %s", "\n  ".join(exc.problems))
            return False
        self.engine = Engine.restore(new, self.community, self.engine.snapshot())
        self.ruleset = new
        self.reload_errors = []
        log.info("rules reloaded: %d rules", len(new.rules))
        return True

    # -- persistence and delivery ----------------------------------------------------------------

    def writes(self, events: Sequence[AlarmEvent]) -> AlarmWrites | None:
        """What to commit for ``events`` (current alarm rows, history with a uid each, the engine
        snapshot), in the same transaction as the facts that caused them (the outbox)."""
        if not events:
            return None
        rows = []
        closed: list[ClosedRow] = []  # alarms the engine forgot once cleared and acknowledged
        for e in events:
            a = self.engine.alarm(e.rule, e.subject)
            if a is None:
                if e.status is not None:
                    closed.append((e.key, e.status.value, e.kind.value, e.at, e.by, e.detail))
                continue
            rows.append({
                "key": a.key, "community": self.community.id, "rule": a.rule, "subject": a.subject.id,
                "subject_type": str(a.subject.type), "severity": a.severity.value, "status": a.status.value,
                "dispatch": a.dispatch.value, "building": a.subject.building, "floor": a.subject.floor,
                "device": a.subject.device, "raised_at": a.raised_at, "last_seen": a.last_seen, "count": a.count,
                "detail": a.detail, "acked_at": a.acked_at, "acked_by": a.acked_by, "ack_comment": a.ack_comment,
                "cleared_at": a.cleared_at, "cleared_by": a.cleared_by, "shelved_until": a.shelved_until,
                "flapping": a.flapping,
            })
        return AlarmWrites(self.community.id, rows, closed, [(str(uuid.uuid4()), e.to_json()) for e in events],
                           state=self.engine.snapshot(), state_at=datetime.now(UTC))

    def persist(self, storage: Storage, events: Sequence[AlarmEvent]) -> None:
        """Commit ``events`` on their own (no readings with them), then announce them."""
        w = self.writes(events)
        if w is not None:
            storage.write_alarms([w])
            self.announce(events)

    def announce(self, events: Sequence[AlarmEvent]) -> None:
        """After commit (or spooling): publish each change on the alarms topic and paint it on the live state."""
        self.send_commands()
        topic = contract.alarms_topic(self.root, self.community.id)
        for e in events:
            if e.kind is EventKind.RAISED:
                self.raised += 1
            try:
                self.publish(topic, orjson.dumps(e.to_json()), 1)
            except (OSError, RuntimeError, ValueError) as exc:  # stored: dashboards also read the table
                log.warning("alarm event not published: %s", exc)
            self._paint(e)

    def send_commands(self) -> None:
        """Publish the interlocks' device commands (after their alarm is committed or spooled). One that cannot be
        published is logged: its target then does not acknowledge, and the interlock raises its own alarm."""
        out, self._outbox = self._outbox, []
        for c in out:
            topic = contract.topic(self.root, self.community.id, c.device, contract.Channel.COMMAND)
            try:
                self.publish(topic, commands.command_bytes(c.id, c.command, c.at, c.reason), 1)
            except (OSError, RuntimeError, ValueError) as exc:
                log.warning("command %s (%s to %s) not published: %s", c.id, c.command, c.device, exc)
                continue
            self.commands_sent += 1
            log.info("interlock: %s sent to %s (command %s, for %s)", c.command, c.device, c.id, c.reason)

    def _paint(self, e: AlarmEvent) -> None:
        a = self.engine.alarm(e.rule, e.subject)
        level = a.severity.level if a is not None and a.status.active and not e.shelved else None
        self._paint_key(e.key, e.building, e.floor, e.device, level)

    def _paint_key(self, key: str, building: str | None, floor: int | None, device: str | None,
                   level: Any) -> None:
        if self.live is None:
            return
        if device is not None:
            self.live.alarm(device, key, level)
        else:
            self.live.place_alarm(key, building, floor, level)

    def save_state(self, storage: Storage) -> None:
        storage.save_rule_state(self.community.id, self.engine.snapshot(), datetime.now(UTC))
