"""The dashboard's data source backed by PostgreSQL: implements :class:`viz.data.DashboardData`. Does I/O.

:class:`StorageDashboardData` reads one community's live state, alarms, telemetry history, hotspots
and care activity from the database, and delegates the parts other services own:

- **tickets and KPIs** to a :class:`TicketDesk` (the dispatch service, ``gateway/tickets/service.py``);
- **sign-in** to a :class:`SignInService` (``gateway/api/auth.py``, shared with the REST API);
- **alarm actions** (acknowledge, shelve) to the gateway's alarm service as commands on
  ``{root}/v1/alarms/{community}/commands`` when a ``publish`` callable is given, so the alarm
  engine's book stays the single writer of alarm state. Without one (no alarm engine running) they
  update the ``alarms`` row directly with the same lifecycle rules (:mod:`twin.alarms`) and append
  the change to ``alarm_events``.

Live state: a background thread rebuilds :class:`twin.state.LiveState` from the stored facts
(``Storage.live_snapshot``) at an adaptive period (at least ``live_refresh_s``, at most 10% of the
time), and bumps a generation number only when the roll-up or an elevator car actually changed, so
the dashboard's cheap :meth:`version` poll redraws only on change. Alarm changes are seen at once:
:meth:`version` includes a digest of the active alarm rows.

Thread-safe: a :class:`~gateway.api.pool.StoragePool` (shared with the REST API when the composition
root gives one) serves the dashboard's request threads.

Database failures reach the dashboard as :class:`viz.data.DatabaseDown` (unreachable) or a
:class:`viz.data.DataUnavailable` that names only what was being done (:mod:`gateway.web.database`):
connection details (host, port, user) go to the server log, never to a browser.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
import yaml
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from gateway.api.pool import StoragePool
from gateway.assistant.dashboard import StorageAssistant
from gateway.care.dashboard import DashboardCareRegister
from gateway.outcomes.store import read_outcomes
from gateway.patrols.dashboard import DashboardPatrols
from gateway.storage import Storage, StorageError
from gateway.tickets.service import alarm_tickets
from gateway.web.database import connection, first_line
from gateway.web.history_data import StorageHistoryData
from gateway.web.hotspots_data import labels as hotspot_labels
from gateway.web.hotspots_data import read_groups
from gateway.web.sign_in import SignInService
from gateway.web.ticket_desk import TicketDesk
from twin import contract
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity, SubjectType
from twin.community import Community
from twin.hotspots import HotspotData
from twin.outcomes import Outcomes
from twin.people import Role, User
from twin.state import Level, LiveState, Rollup
from twin.tickets.handoff import PartnerKpi
from viz.data import (
    ActionRefused,
    AlarmSpan,
    AlarmView,
    CareUnitView,
    DatabaseDown,
    DataUnavailable,
    DeviceAlarmEvent,
    DeviceEvent,
    DeviceSeen,
    DeviceTimeline,
    HistoryPoint,
    KpiRow,
    LiveView,
    Photo,
    Position,
    Session,
    TicketView,
)
from viz.report_model import ReportsData

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int], None]
ACTIVE_STATUSES = ("active_unack", "active_ack", "cleared_unack")
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3}
RAW_HISTORY_MAX = timedelta(hours=2)  # longer ranges read the 1-minute rollup (plus the raw tail after it)
VERSION_TTL_S = 0.05  # several browsers polling within this share one alarm digest query
CARE_TTL_S = 10.0
INVENTORY_TTL_S = 2.0  # paging and sorting the device inventory reuse one read for this long
ACTIVITY_FIELDS = ("opened", "flow")  # care sensor fields whose positive value means someone is active
CARE_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class AlarmRow:
    """One row of the ``alarms`` table as the dashboard reads it (``class_row``: columns by name)."""

    key: str
    rule: str
    severity: str
    status: str
    subject: str
    subject_type: str
    building: str | None
    floor: int | None
    device: str | None
    raised_at: datetime
    last_seen: datetime
    count: int
    detail: str
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None
    shelved_until: datetime | None
    dispatch: str


ALARM_COLUMNS = ", ".join(f.name for f in fields(AlarmRow))


def rule_names(path: Path | None = None) -> dict[str, str]:
    """Rule id -> display name ("中文 / English") from the shipped rules file; empty if it is not there."""
    path = path or Path(__file__).resolve().parents[2] / "twin" / "rules_defaults.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    rules = doc.get("rules", []) if isinstance(doc, dict) else []
    return {str(r["id"]): str(r.get("name") or r["id"]) for r in rules if isinstance(r, dict) and "id" in r}


@dataclass
class _Cached:
    at: float
    key: str
    value: Any


class StorageDashboardData:
    """:class:`viz.data.DashboardData` for one community in one database schema."""

    def __init__(self, community: Community, db_url: str, *, schema: str = "gridtwin",
                 tickets: TicketDesk | None = None, sign_in: SignInService | None = None,
                 publish: Publish | None = None, topic_root: str = "gridtwin", live_refresh_s: float = 1.0,
                 pool_size: int = 4, connect_timeout_s: float = 5.0, pool: StoragePool | None = None,
                 confirm_timeout_s: float = 3.0, reports: ReportsData | None = None) -> None:
        self._community = community
        self._code = community.id
        self._desk = tickets
        self._auth = sign_in
        self._publish = publish
        self._root = topic_root
        self._confirm_s = confirm_timeout_s  # how long an action sent to the alarm service waits to be seen applied
        self._rule_names = rule_names()
        self._own_pool = pool is None  # a shared pool is closed by its owner
        self._pool = pool or StoragePool(db_url, schema=schema, max_size=pool_size, connect_timeout_s=connect_timeout_s,
                                         name="gridtwin-dashboard")
        self._refresh_min_s = live_refresh_s
        self._live_lock = threading.Lock()
        self._live: LiveView | None = None
        self._live_digest = ""
        self._live_gen = 0
        self._live_ready = threading.Event()
        self._live_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._version: _Cached | None = None
        self._alarms: _Cached | None = None
        self._care: _Cached | None = None
        self._inventory: _Cached | None = None
        self._metric_ids: dict[str, int] | None = None
        self._device_ids: dict[str, int] | None = None
        self._history_data: StorageHistoryData | None = None
        self._reports = reports  # one-click reports and checks (gateway/web/report_data.py)

    def close(self) -> None:
        """Stop the live refresh and close the connections, the ticket desk's and the sign-in's included."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._own_pool:
            self._pool.close()
        for part in (self._desk, self._auth, self._reports):
            close = getattr(part, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> StorageDashboardData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the community and its live state ------------------------------------------------------------

    def community(self) -> Community:
        return self._community

    def live(self) -> LiveView:
        self._start()
        if not self._live_ready.wait(timeout=30):
            raise DatabaseDown() if self._live_error else DataUnavailable("live state not loaded yet")
        with self._live_lock:
            if self._live is None:
                raise DatabaseDown() if self._live_error else DataUnavailable("live state not loaded yet")
            return self._live

    def _start(self) -> None:
        with self._live_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._refresh_loop, name="dashboard-live", daemon=True)
                self._thread.start()

    def _refresh_loop(self) -> None:
        warned = False
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                self.refresh_live()
                warned = False
            except (StorageError, DataUnavailable) as exc:
                self._live_error = "down"
                if not warned:
                    log.warning("dashboard live state not refreshed: %s", first_line(exc))
                    warned = True
            finally:
                self._live_ready.set()
            took = time.perf_counter() - t0
            self._stop.wait(max(self._refresh_min_s, 10 * took))

    def refresh_live(self) -> None:
        """Rebuild the live state from the database now (the background thread calls this)."""
        with connection(self._pool, "refreshing the live state") as st:
            latest, statuses, events = st.live_snapshot(self._code)
        state = LiveState(self._community)
        state.restore(latest, statuses, events)
        rollup = state.rollup()
        cars: dict[str, float] = {}
        for d in self._community.devices:
            if d.kind == "elevator" and d.elevator is not None:
                ds = state.devices.get(d.id)
                fv = ds.values.get("floor") if ds else None
                if fv is not None:
                    cars[d.elevator] = fv.value
        digest = _digest(rollup, cars)
        now = datetime.now(UTC)
        with self._live_lock:
            if digest != self._live_digest:
                self._live_gen += 1
                self._live_digest = digest
            self._live = LiveView(rollup, cars, now, f"{self._live_gen}")
            self._live_error = None

    def version(self) -> str:
        self._start()
        now = time.monotonic()
        cached = self._version
        if cached is not None and now - cached.at < VERSION_TTL_S:
            return cast(str, cached.value)
        with connection(self._pool, "reading alarm digest") as st:
            row = st.conn.execute(
                "SELECT count(*), coalesce(md5(string_agg(key || status || severity || count || last_seen::text "
                "|| coalesce(shelved_until::text, '') || coalesce(acked_by, ''), ',' ORDER BY key)), '') "
                "FROM alarms WHERE community = %s AND status = ANY(%s)", (self._code, list(ACTIVE_STATUSES)),
            ).fetchone()
        alarm_tag = f"{row[0]}.{str(row[1])[:12]}" if row else "0"
        ticket_tag = ""
        if self._desk is not None:
            with contextlib.suppress(DataUnavailable):
                ticket_tag = self._desk.version()
        with self._live_lock:
            live_tag = str(self._live_gen)
        v = f"a{alarm_tag}-l{live_tag}-t{ticket_tag}"
        self._version = _Cached(now, "", v)
        return v

    # -- alarms --------------------------------------------------------------------------------------

    def active_alarms(self) -> Sequence[AlarmView]:
        tag = self.version()
        cached = self._alarms
        if cached is not None and cached.key == tag:
            return cast(Sequence[AlarmView], cached.value)
        with connection(self._pool, "reading alarms") as st:
            with st.conn.cursor(row_factory=class_row(AlarmRow)) as cur:
                rows = cur.execute(
                    f"SELECT {ALARM_COLUMNS} FROM alarms WHERE community = %s AND status = ANY(%s)",
                    (self._code, list(ACTIVE_STATUSES)),
                ).fetchall()
            tickets = alarm_tickets(st.conn, self._code, [r.key for r in rows]) if rows else {}
            shelved = [r.key for r in rows if r.shelved_until is not None]
            shelvers: dict[str, str] = dict(st.conn.execute(
                "SELECT DISTINCT ON (key) key, by FROM alarm_events WHERE community = %s AND key = ANY(%s) "
                "AND kind = 'shelved' ORDER BY key, at DESC", (self._code, shelved)).fetchall()) if shelved else {}
        alarms = [self._alarm_view(r, tickets.get(r.key), shelvers.get(r.key)) for r in rows]
        alarms.sort(key=lambda a: (not a.status.active, SEVERITY_RANK.get(a.severity.value, 9),
                                   -a.raised_at.timestamp()))
        self._alarms = _Cached(time.monotonic(), tag, alarms)
        return alarms

    def _alarm_view(self, r: AlarmRow, ticket: int | None = None, shelved_by: str | None = None) -> AlarmView:
        return AlarmView(
            key=r.key, rule=r.rule, rule_name=self._rule_names.get(r.rule, r.rule), severity=Severity(r.severity),
            status=AlarmStatus(r.status), subject=r.subject, subject_type=r.subject_type, building=r.building,
            floor=r.floor, device=r.device, raised_at=r.raised_at, last_seen=r.last_seen, count=r.count,
            detail=r.detail, acked_at=r.acked_at, acked_by=r.acked_by, ack_comment=r.ack_comment,
            shelved_until=r.shelved_until, shelved_by=shelved_by, dispatch=r.dispatch,
            ticket=str(ticket) if ticket is not None else None,
        )

    def _alarm_row(self, st: Storage, key: str) -> AlarmRow | None:
        with st.conn.cursor(row_factory=class_row(AlarmRow)) as cur:
            return cur.execute(f"SELECT {ALARM_COLUMNS} FROM alarms WHERE community = %s AND key = %s",
                               (self._code, key)).fetchone()

    def acknowledge(self, user: User, key: str, comment: str) -> None:
        _need_operator(user)
        with connection(self._pool, "acknowledging an alarm") as st:
            row = self._alarm_row(st, key)
            if row is None:
                raise ActionRefused("not_found", key)
            status = AlarmStatus(row.status)
            if status.acknowledged:
                raise ActionRefused("already_acknowledged", f"{row.acked_by or '?'}")
            if self._publish is not None:
                self._command("acknowledge", key, user, comment=comment)
                self._confirm(st, key, lambda r: r is None or AlarmStatus(r.status).acknowledged)
                return
            new = AlarmStatus.ACTIVE_ACK if status is AlarmStatus.ACTIVE_UNACK else AlarmStatus.CLEARED_ACK
            with st.conn.transaction():
                done = st.conn.execute(
                    "UPDATE alarms SET status = %s, acked_at = now(), acked_by = %s, ack_comment = %s, "
                    "updated_at = now() WHERE community = %s AND key = %s AND status = %s RETURNING acked_at",
                    (new.value, user.username, comment, self._code, key, status.value)).fetchone()
                if done is None:
                    raise ActionRefused("conflict", key)
                self._history(st, row, EventKind.ACKNOWLEDGED, new, done[0], user.username, comment, shelved=False)
        self._version = None

    def shelve(self, user: User, key: str, until: datetime) -> None:
        _need_operator(user)
        with connection(self._pool, "shelving an alarm") as st:
            row = self._alarm_row(st, key)
            if row is None:
                raise ActionRefused("not_found", key)
            if not AlarmStatus(row.status).active:
                raise ActionRefused("not_active", key)
            if self._publish is not None:
                self._command("shelve", key, user, until=until)
                self._confirm(st, key, lambda r: r is None or (r.shelved_until is not None
                                                               and r.shelved_until >= until - timedelta(seconds=1)))
                return
            with st.conn.transaction():
                done = st.conn.execute(
                    "UPDATE alarms SET shelved_until = %s, updated_at = now() WHERE community = %s AND key = %s "
                    "AND status IN ('active_unack', 'active_ack') RETURNING now()", (until, self._code, key),
                ).fetchone()
                if done is None:
                    raise ActionRefused("not_active", key)
                self._history(st, row, EventKind.SHELVED, AlarmStatus(row.status), done[0], user.username,
                              f"shelved until {until.isoformat()}", shelved=True)
        self._version = None

    def clear(self, user: User, key: str, comment: str) -> None:
        _need_operator(user)
        with connection(self._pool, "clearing an alarm") as st:
            row = self._alarm_row(st, key)
            if row is None:
                raise ActionRefused("not_found", key)
            status = AlarmStatus(row.status)
            if not status.active:
                raise ActionRefused("not_active", key)
            if self._publish is not None:
                self._command("clear", key, user, comment=comment or None)
                self._confirm(st, key, lambda r: r is None or not AlarmStatus(r.status).active)
                return
            new = AlarmStatus.CLEARED_ACK if status.acknowledged else AlarmStatus.CLEARED_UNACK
            with st.conn.transaction():
                done = st.conn.execute(
                    "UPDATE alarms SET status = %s, cleared_at = now(), cleared_by = %s, shelved_until = NULL, "
                    "updated_at = now() WHERE community = %s AND key = %s AND status = %s RETURNING cleared_at",
                    (new.value, user.username, self._code, key, status.value)).fetchone()
                if done is None:
                    raise ActionRefused("conflict", key)
                self._history(st, row, EventKind.CLEARED, new, done[0], user.username, comment or "cleared by hand",
                              shelved=False)
        self._version = None

    def unshelve(self, user: User, key: str) -> None:
        _need_operator(user)
        with connection(self._pool, "unshelving an alarm") as st:
            row = self._alarm_row(st, key)
            if row is None:
                raise ActionRefused("not_found", key)
            if row.shelved_until is None or row.shelved_until <= datetime.now(UTC):
                raise ActionRefused("not_shelved", key)
            if self._publish is not None:
                self._command("unshelve", key, user)
                self._confirm(st, key, lambda r: r is None or r.shelved_until is None
                              or r.shelved_until <= datetime.now(UTC))
                return
            with st.conn.transaction():
                done = st.conn.execute(
                    "UPDATE alarms SET shelved_until = NULL, updated_at = now() WHERE community = %s AND key = %s "
                    "AND shelved_until IS NOT NULL RETURNING now()", (self._code, key)).fetchone()
                if done is None:
                    raise ActionRefused("not_shelved", key)
                self._history(st, row, EventKind.UNSHELVED, AlarmStatus(row.status), done[0], user.username,
                              "unshelved", shelved=False)
        self._version = None

    def _confirm(self, st: Storage, key: str, applied: Callable[[AlarmRow | None], bool]) -> None:
        """Wait (up to ``confirm_timeout_s``) until the alarm service has applied a command to the stored row, so the
        operator reads its outcome: not seen in time (the service refused it, or is not running) is a refusal."""
        self._version = None
        if self._confirm_s <= 0:
            return
        end = time.monotonic() + self._confirm_s
        while True:
            row = self._alarm_row(st, key)  # read committed: each read sees what the service committed since
            if applied(row):
                self._version = None
                return
            if time.monotonic() >= end:
                raise ActionRefused("not_confirmed", key)
            time.sleep(0.05)

    def _command(self, action: str, key: str, user: User, *, comment: str | None = None,
                 until: datetime | None = None) -> None:
        """Hand an alarm action to the gateway's alarm service (the single writer of alarm state)."""
        assert self._publish is not None
        cmd = contract.AlarmCommand(v=1, action=cast(Any, action), key=key, by=user.username[:64],
                                    comment=comment[:1000] if comment else None, until=until)
        self._publish(contract.alarm_commands_topic(self._root, self._code),
                      orjson.dumps(cmd.model_dump(mode="json", exclude_none=True)), 1)

    def _history(self, st: Storage, row: AlarmRow, kind: EventKind, status: AlarmStatus, at: datetime,
                 by: str, detail: str, *, shelved: bool) -> None:
        ev = AlarmEvent(kind=kind, rule=row.rule, subject=row.subject, subject_type=cast(SubjectType, row.subject_type),
                        severity=Severity(row.severity), status=status, at=at, raised_at=row.raised_at,
                        count=row.count, building=row.building, floor=row.floor, device=row.device, detail=detail,
                        dispatch=Dispatch(row.dispatch), by=by, shelved=shelved)
        st.conn.execute(
            "INSERT INTO alarm_events (at, community, key, kind, severity, status, by, detail, event) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (at, self._code, row.key, kind.value, row.severity, status.value, by, detail, Jsonb(ev.to_json())))

    def dispatch(self, user: User, key: str, note: str) -> str:
        _need_operator(user)
        desk = self._need_desk()
        alarm = next((a for a in self.active_alarms() if a.key == key), None)
        if alarm is None:
            raise ActionRefused("not_found", key)
        return desk.dispatch_alarm(user, alarm, note)

    # -- tickets -------------------------------------------------------------------------------------

    def _need_desk(self) -> TicketDesk:
        if self._desk is None:
            raise DataUnavailable("the dispatch ticket service (gateway/tickets/service.py) is not connected")
        return self._desk

    def tickets(self, user: User, *, include_closed: bool = False) -> Sequence[TicketView]:
        return self._need_desk().tickets(user, include_closed=include_closed)

    def ticket(self, user: User, ticket_id: str) -> TicketView | None:
        return self._need_desk().ticket(user, ticket_id)

    def accept_ticket(self, user: User, ticket_id: str) -> None:
        self._need_desk().accept(user, ticket_id)
        self._version = None

    def ticket_feedback(self, user: User, ticket_id: str, note: str, photo: Photo | None) -> None:
        self._need_desk().feedback(user, ticket_id, note, photo)
        self._version = None

    def arrive_ticket(self, user: User, ticket_id: str, position: Position | None = None) -> None:
        self._need_desk().arrive(user, ticket_id, position)
        self._version = None

    def check_sop_step(self, user: User, ticket_id: str, step: int, done: bool) -> None:
        self._need_desk().check_sop(user, ticket_id, step, done)
        self._version = None

    def resolve_ticket(self, user: User, ticket_id: str, note: str, reason: str | None = None) -> None:
        self._need_desk().resolve(user, ticket_id, note, reason)
        self._version = None

    def cancel_ticket(self, user: User, ticket_id: str, reason: str, code: str | None = None) -> None:
        self._need_desk().cancel(user, ticket_id, reason, code)
        self._version = None

    def reassign_ticket(self, user: User, ticket_id: str, assignee: str, reason: str) -> None:
        self._need_desk().reassign(user, ticket_id, assignee, reason)
        self._version = None

    def escalate_ticket(self, user: User, ticket_id: str, reason: str) -> None:
        self._need_desk().escalate(user, ticket_id, reason)
        self._version = None

    def reopen_ticket(self, user: User, ticket_id: str, reason: str) -> None:
        self._need_desk().reopen(user, ticket_id, reason)
        self._version = None

    def ticket_snapshot(self, user: User, ticket_id: str) -> bytes | None:
        return self._need_desk().snapshot(user, ticket_id)

    def ticket_photo(self, user: User, photo_id: str) -> tuple[bytes, str] | None:
        return self._need_desk().photo(user, photo_id)

    def kpis(self, since: datetime, until: datetime) -> Sequence[KpiRow]:
        return self._need_desk().kpis(since, until)

    def record_handoff(self, user: User, ticket_id: str, role: str, *, arrived: bool) -> None:
        self._need_desk().record_handoff(user, ticket_id, role, arrived=arrived)

    def partner_kpis(self, user: User, since: datetime, until: datetime) -> Sequence[PartnerKpi]:
        return self._need_desk().partner_kpis(user, since, until)

    # -- devices -------------------------------------------------------------------------------------

    def _ids(self, st: Storage) -> tuple[dict[str, int], dict[str, int]]:
        if self._device_ids is None or self._metric_ids is None:
            self._device_ids = dict(st.conn.execute(
                "SELECT d.code, d.id FROM devices d JOIN communities c ON c.id = d.community_id WHERE c.code = %s",
                (self._code,)).fetchall())
            self._metric_ids = st.metric_ids()
        return self._device_ids, self._metric_ids

    def device_latest(self, device_id: str) -> Mapping[str, tuple[float, datetime]]:
        with connection(self._pool, f"reading latest values of {device_id}") as st:
            rows = st.conn.execute(
                "SELECT m.name, l.value, l.ts FROM latest_values l JOIN metrics m ON m.id = l.metric_id "
                "JOIN devices d ON d.id = l.device_id JOIN communities c ON c.id = d.community_id "
                "WHERE c.code = %s AND d.code = %s", (self._code, device_id)).fetchall()
        return {r[0]: (float(r[1]), r[2]) for r in rows}

    def device_history(self, device_id: str, field: str, since: datetime, until: datetime,
                       bucket: timedelta) -> Sequence[HistoryPoint]:
        """Time-bucketed average/min/max of one field: raw telemetry for short ranges; the 1-minute
        rollup for long ones, with the raw tail after the rollup's newest minute."""
        if until <= since or bucket <= timedelta(0):
            return []
        with connection(self._pool, f"reading history of {device_id}.{field}") as st:
            devices, metrics = self._ids(st)
            dev, metric = devices.get(device_id), metrics.get(field)
            if dev is None or metric is None:
                return []
            raw_from = since
            merged: dict[datetime, list[float]] = {}
            if until - since > RAW_HISTORY_MAX and bucket >= timedelta(minutes=1):
                wm = st.conn.execute("SELECT max(bucket) FROM telemetry_1m WHERE device_id = %s AND metric_id = %s",
                                     (dev, metric)).fetchone()
                if wm and wm[0] is not None and wm[0] > since:
                    raw_from = min(wm[0], until)
                    for b, avg, lo, hi, n in st.conn.execute(
                        "SELECT date_bin(%s, bucket, timestamptz '2000-01-01') AS b, sum(avg_value * samples) / "
                        "sum(samples), min(min_value), max(max_value), sum(samples) FROM telemetry_1m "
                        "WHERE device_id = %s AND metric_id = %s AND bucket >= %s AND bucket < %s GROUP BY 1",
                        (bucket, dev, metric, since, raw_from),
                    ).fetchall():
                        merged[b] = [float(avg) * int(n), float(lo), float(hi), float(n)]
            for b, total, lo, hi, n in st.conn.execute(
                "SELECT date_bin(%s, ts, timestamptz '2000-01-01') AS b, sum(value), min(value), max(value), "
                "count(*) FROM telemetry WHERE device_id = %s AND metric_id = %s AND ts >= %s AND ts < %s "
                "GROUP BY 1", (bucket, dev, metric, raw_from, until),
            ).fetchall():
                cur = merged.get(b)
                if cur is None:
                    merged[b] = [float(total), float(lo), float(hi), float(n)]
                else:
                    merged[b] = [cur[0] + float(total), min(cur[1], float(lo)), max(cur[2], float(hi)),
                                 cur[3] + float(n)]
        return [HistoryPoint(b, v[0] / v[3], v[1], v[2], int(v[3])) for b, v in sorted(merged.items()) if v[3] > 0]

    def device_timeline(self, device_id: str, since: datetime, until: datetime, limit: int = 200) -> DeviceTimeline:
        """Alarm changes (not the repeats) and device events of one device in [since, until), newest first, and
        its alarms' active periods overlapping the range (from each alarm's last raise/clear before ``since`` on)."""
        limit = max(1, min(int(limit), 1000))
        if until <= since:
            return DeviceTimeline((), (), ())
        with connection(self._pool, f"reading alarms and events of {device_id}") as st:
            devices, _metrics = self._ids(st)
            changes = st.conn.execute(
                "SELECT e.at, e.key, a.rule, e.kind, e.severity, e.by, e.detail FROM alarm_events e "
                "JOIN alarms a ON a.key = e.key WHERE a.community = %s AND a.device = %s AND e.at >= %s "
                "AND e.at < %s AND e.kind <> 'updated' ORDER BY e.at DESC, e.id DESC LIMIT %s",
                (self._code, device_id, since, until, limit + 1)).fetchall()
            edges = st.conn.execute(
                "(SELECT DISTINCT ON (e.key) e.key, a.rule, e.kind, e.severity, e.at, e.id FROM alarm_events e "
                " JOIN alarms a ON a.key = e.key WHERE a.community = %s AND a.device = %s "
                " AND e.kind IN ('raised', 'cleared') AND e.at < %s ORDER BY e.key, e.at DESC, e.id DESC) "
                "UNION ALL (SELECT e.key, a.rule, e.kind, e.severity, e.at, e.id FROM alarm_events e "
                " JOIN alarms a ON a.key = e.key WHERE a.community = %s AND a.device = %s "
                " AND e.kind IN ('raised', 'cleared') AND e.at >= %s AND e.at < %s) ORDER BY 5, 6",
                (self._code, device_id, since, self._code, device_id, since, until)).fetchall()
            dev = devices.get(device_id)
            events = st.conn.execute(
                "SELECT ts, code, state, coalesce(detail, '') FROM device_events WHERE device_id = %s "
                "AND ts >= %s AND ts < %s ORDER BY ts DESC LIMIT %s", (dev, since, until, limit + 1),
            ).fetchall() if dev is not None else []
        spans: list[AlarmSpan] = []
        open_: dict[str, tuple[str, str, datetime]] = {}
        for key, rule, kind, severity, at, _id in edges:
            if kind == "raised":
                open_.setdefault(key, (rule, severity, at))
            elif key in open_:
                r, sev, start = open_.pop(key)
                if at > since:
                    spans.append(AlarmSpan(key, self._rule_names.get(r, r), sev, max(start, since), at))
        for key, (r, sev, start) in open_.items():
            spans.append(AlarmSpan(key, self._rule_names.get(r, r), sev, max(start, since), None))
        spans.sort(key=lambda sp: sp.start)
        return DeviceTimeline(
            [DeviceAlarmEvent(r[0], r[1], r[2], self._rule_names.get(r[2], r[2]), r[3], r[4], r[5], r[6] or "")
             for r in changes[:limit]],
            [DeviceEvent(r[0], r[1], r[2], r[3]) for r in events[:limit]],
            spans, truncated=len(changes) > limit or len(events) > limit)

    def device_inventory(self) -> Sequence[DeviceSeen]:
        """Every registered device with its stored status and its newest reading, event or status time: one query
        (an index probe per device for its newest event), reused for ``INVENTORY_TTL_S``."""
        now = time.monotonic()
        cached = self._inventory
        if cached is not None and now - cached.at < INVENTORY_TTL_S:
            return cast(Sequence[DeviceSeen], cached.value)
        with connection(self._pool, "reading the device inventory") as st, \
                st.conn.cursor(row_factory=class_row(DeviceSeen)) as cur:
            out = cur.execute(
                "SELECT d.code AS device, greatest(s.last_seen, lv.ts, ev.ts) AS last_seen, s.state AS status "
                "FROM devices d JOIN communities c ON c.id = d.community_id "
                "LEFT JOIN device_status s ON s.device_id = d.id "
                "LEFT JOIN (SELECT device_id, max(ts) AS ts FROM latest_values GROUP BY 1) lv ON lv.device_id = d.id "
                "LEFT JOIN LATERAL (SELECT e.ts FROM device_events e WHERE e.device_id = d.id ORDER BY e.ts DESC "
                "LIMIT 1) ev ON true WHERE c.code = %s AND d.retired_at IS NULL", (self._code,)).fetchall()
        self._inventory = _Cached(now, "", out)
        return out

    # -- analysis ------------------------------------------------------------------------------------

    def hotspot_data(self, since: datetime, until: datetime) -> HotspotData:
        with connection(self._pool, "reading hotspots") as st:
            groups = read_groups(st, self._community, since, until)
        return HotspotData(tuple(groups), {**hotspot_labels(), **self._rule_names})

    def care_overview(self) -> Sequence[CareUnitView]:
        units = self._community.care_units
        now = time.monotonic()
        cached = self._care
        if cached is not None and now - cached.at < CARE_TTL_S:
            return cast(Sequence[CareUnitView], cached.value)
        sensors = sorted({s for u in units for s in u.sensors})
        last: dict[str, datetime] = {}
        with connection(self._pool, "reading care activity") as st:
            devices, metrics = self._ids(st)
            ids = [devices[s] for s in sensors if s in devices]
            mids = [metrics[f] for f in ACTIVITY_FIELDS if f in metrics]
            if ids:
                for code, ts in st.conn.execute(
                    "SELECT d.code, max(t.ts) FROM telemetry t JOIN devices d ON d.id = t.device_id "
                    "WHERE t.device_id = ANY(%s) AND t.metric_id = ANY(%s) AND t.value > 0 AND t.ts >= %s "
                    "GROUP BY 1", (ids, mids, datetime.now(UTC) - CARE_LOOKBACK)).fetchall():
                    last[code] = ts
                for code, ts in st.conn.execute(
                    "SELECT d.code, max(e.ts) FROM device_events e JOIN devices d ON d.id = e.device_id "
                    "WHERE e.device_id = ANY(%s) AND e.code = 'door_cycle' GROUP BY 1", (ids,)).fetchall():
                    if code not in last or ts > last[code]:
                        last[code] = ts
        alarms = self.active_alarms()
        flagged_units = {a.subject for a in alarms if a.subject_type == "care_unit" and a.status.active}
        flagged_devices = {a.device for a in alarms if a.rule.startswith("care") and a.status.active and a.device}
        live = self.live() if self._live_ready.is_set() else None
        out = []
        for u in units:
            times = [last[s] for s in u.sensors if s in last]
            offline = 0
            if live is not None:
                offline = sum(1 for s in u.sensors if live.rollup.devices.get(s) is Level.OFFLINE)
            out.append(CareUnitView(u.unit, u.building, u.floor, u.level, max(times) if times else None,
                                    u.unit in flagged_units or any(s in flagged_devices for s in u.sensors), offline))
        self._care = _Cached(now, "", out)
        return out

    # -- history and audit (gateway/web/history_data.py) ---------------------------------------------

    def history(self) -> StorageHistoryData:
        if self._history_data is None:
            self._history_data = StorageHistoryData(self._community, self._pool, self._rule_names)
        return self._history_data

    def reports(self) -> ReportsData:
        if self._reports is None:
            raise DataUnavailable("one-click reports (gateway/web/report_data.py) are not connected")
        return self._reports

    def outcomes(self, user: User, start: datetime, end: datetime, bucket: str) -> Outcomes:
        grids = None if user.sees_everything() else list(user.grids)
        with connection(self._pool, "reading outcomes") as st:  # gateway/outcomes
            return read_outcomes(st.conn, self._community, start, end, bucket=cast(Any, bucket), grids=grids)

    def care_register(self) -> DashboardCareRegister:
        return DashboardCareRegister(self._community, self._pool)

    def patrols(self) -> DashboardPatrols:
        return DashboardPatrols(self._community, self._desk)  # gateway/patrols/dashboard.py

    def assistant(self) -> StorageAssistant:
        return StorageAssistant(self._community, self._pool)  # gateway/assistant/dashboard.py

    # -- sign-in -------------------------------------------------------------------------------------

    def _need_auth(self) -> SignInService:
        if self._auth is None:
            raise DataUnavailable("the sign-in service (gateway/api/auth.py) is not connected")
        return self._auth

    def sign_in(self, username: str, password: str, client: str = "") -> Session | None:
        return self._need_auth().sign_in(username, password, client)

    def user_for_token(self, token: str) -> User | None:
        return self._need_auth().user_for_token(token)

    def sign_out(self, token: str) -> None:
        self._need_auth().sign_out(token)


def _need_operator(user: User) -> None:
    if user.role not in (Role.OPERATOR, Role.ADMIN):
        raise ActionRefused("forbidden", user.role.value)


def _digest(rollup: Rollup, cars: Mapping[str, float]) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in (rollup.devices, rollup.floors, rollup.buildings):
        for k, v in sorted(part.items(), key=lambda kv: str(kv[0])):
            h.update(f"{k}={int(v)};".encode())
    for e, f in sorted(cars.items()):
        h.update(f"{e}@{f:g};".encode())
    return h.hexdigest()
