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

Thread-safe: a small pool of :class:`~gateway.storage.Storage` connections serves the dashboard's
request threads.

Database failures reach the dashboard as :class:`viz.data.DatabaseDown` (unreachable) or a
:class:`viz.data.DataUnavailable` that names only what was being done: connection details (host,
port, user) go to the server log, never to a browser.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast
from urllib.parse import unquote, urlsplit

import orjson
import psycopg
import yaml
from psycopg.types.json import Jsonb

from gateway.ratelimit import EveryFewSeconds
from gateway.storage import DatabaseUnavailable, Storage, StorageError
from twin import contract
from twin.alarms import AlarmEvent, AlarmStatus, Dispatch, EventKind, Severity, SubjectType
from twin.community import Community
from twin.people import Role, User
from twin.state import Level, LiveState, Rollup
from viz.data import (
    ActionRefused,
    AlarmView,
    CareUnitView,
    DatabaseDown,
    DataUnavailable,
    HistoryPoint,
    IncidentCount,
    KpiRow,
    LiveView,
    Photo,
    Session,
    SignInRefused,
    TicketStep,
    TicketView,
)

if TYPE_CHECKING:
    from gateway.api.auth import LoginGuard

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int], None]
ACTIVE_STATUSES = ("active_unack", "active_ack", "cleared_unack")
SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3}
RAW_HISTORY_MAX = timedelta(hours=2)  # longer ranges read the 1-minute rollup (plus the raw tail after it)
VERSION_TTL_S = 0.05  # several browsers polling within this share one alarm digest query
CARE_TTL_S = 10.0
ACTIVITY_FIELDS = ("opened", "flow")  # care sensor fields whose positive value means someone is active
CARE_LOOKBACK = timedelta(days=7)
ALARM_COLUMNS = ("key, rule, severity, status, subject, subject_type, building, floor, device, raised_at, last_seen, "
                 "count, detail, acked_at, acked_by, ack_comment, shelved_until, dispatch")


class TicketDesk(Protocol):
    """What the dashboard needs from the dispatch service (gateway/tickets/service.py), in the dashboard's terms."""

    def version(self) -> str: ...

    def tickets(self, user: User, *, include_closed: bool = False) -> Sequence[TicketView]: ...

    def ticket(self, user: User, ticket_id: str) -> TicketView | None: ...

    def accept(self, user: User, ticket_id: str) -> None: ...

    def feedback(self, user: User, ticket_id: str, note: str, photo: Photo | None) -> None: ...

    def resolve(self, user: User, ticket_id: str, note: str) -> None: ...

    def snapshot(self, user: User, ticket_id: str) -> bytes | None: ...

    def photo(self, user: User, photo_id: str) -> tuple[bytes, str] | None: ...

    def dispatch_alarm(self, user: User, alarm: AlarmView, note: str) -> str: ...

    def kpis(self, since: datetime, until: datetime) -> Sequence[KpiRow]: ...


class SignInService(Protocol):
    """Sign-in shared with the REST API (gateway/api/auth.py): an expiring token per session."""

    def sign_in(self, username: str, password: str, client: str = "") -> Session | None: ...

    def user_for_token(self, token: str) -> User | None: ...

    def sign_out(self, token: str) -> None: ...


_db_log = EveryFewSeconds(10.0)
DOWN_FOR_S = 1.0  # after a failed connect, report the database down without trying again for this long


def rule_names(path: Path | None = None) -> dict[str, str]:
    """Rule id -> display name ("中文 / English") from the shipped rules file; empty if it is not there."""
    path = path or Path(__file__).resolve().parent.parent / "twin" / "rules_defaults.yaml"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    rules = doc.get("rules", []) if isinstance(doc, dict) else []
    return {str(r["id"]): str(r.get("name") or r["id"]) for r in rules if isinstance(r, dict) and "id" in r}


class _Pool:
    """A few Storage connections for request threads; a connection that failed is dropped, not reused."""

    def __init__(self, factory: Callable[[], Storage], size: int) -> None:
        self._factory = factory
        self._free: list[Storage] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._down_until = 0.0

    @contextlib.contextmanager
    def get(self) -> Iterator[Storage]:
        if not self._slots.acquire(timeout=10):
            raise DataUnavailable("all database connections are busy")
        st: Storage | None = None
        try:
            with self._lock:
                st = self._free.pop() if self._free else None
            if st is None:
                if time.monotonic() < self._down_until:  # it was unreachable a moment ago: do not wait again
                    raise DatabaseDown()
                try:
                    st = self._factory()
                except DatabaseUnavailable:
                    self._down_until = time.monotonic() + DOWN_FOR_S
                    raise
            yield st
        except (DatabaseUnavailable, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if st is not None:
                with contextlib.suppress(Exception):
                    st.close()
                st = None
            if _db_log.due():
                log.warning("dashboard: database unavailable: %s", _first_line(exc))
            raise DatabaseDown() from exc
        finally:
            if st is not None and not st.conn.closed and not st.conn.broken:
                with self._lock:
                    self._free.append(st)
            elif st is not None:
                with contextlib.suppress(Exception):
                    st.close()
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            for st in self._free:
                with contextlib.suppress(Exception):
                    st.close()
            self._free.clear()


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
                 pool_size: int = 4, connect_timeout_s: float = 5.0) -> None:
        self._community = community
        self._code = community.id
        self._desk = tickets
        self._auth = sign_in
        self._publish = publish
        self._root = topic_root
        self._rule_names = rule_names()
        self._pool = _Pool(lambda: Storage.connect(db_url, schema=schema, connect_timeout_s=connect_timeout_s),
                           pool_size)
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
        self._metric_ids: dict[str, int] | None = None
        self._device_ids: dict[str, int] | None = None

    def close(self) -> None:
        """Stop the live refresh and close the connections, the ticket desk's and the sign-in's included."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.close()
        for part in (self._desk, self._auth):
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
                    log.warning("dashboard live state not refreshed: %s", _first_line(exc))
                    warned = True
            finally:
                self._live_ready.set()
            took = time.perf_counter() - t0
            self._stop.wait(max(self._refresh_min_s, 10 * took))

    def refresh_live(self) -> None:
        """Rebuild the live state from the database now (the background thread calls this)."""
        with self._pool.get() as st:
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
        with self._pool.get() as st, _errors("reading alarm digest"):
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
        with self._pool.get() as st, _errors("reading alarms"):
            rows = st.conn.execute(
                f"SELECT {ALARM_COLUMNS} FROM alarms WHERE community = %s AND status = ANY(%s)",
                (self._code, list(ACTIVE_STATUSES)),
            ).fetchall()
        alarms = [self._alarm_view(r) for r in rows]
        alarms.sort(key=lambda a: (not a.status.active, SEVERITY_RANK.get(a.severity.value, 9),
                                   -a.raised_at.timestamp()))
        self._alarms = _Cached(time.monotonic(), tag, alarms)
        return alarms

    def _alarm_view(self, r: Sequence[Any]) -> AlarmView:
        return AlarmView(
            key=r[0], rule=r[1], rule_name=self._rule_names.get(r[1], r[1]), severity=Severity(r[2]),
            status=AlarmStatus(r[3]), subject=r[4], subject_type=r[5], building=r[6], floor=r[7], device=r[8],
            raised_at=r[9], last_seen=r[10], count=r[11], detail=r[12], acked_at=r[13], acked_by=r[14],
            ack_comment=r[15], shelved_until=r[16], dispatch=r[17],
        )

    def _alarm_row(self, st: Storage, key: str) -> tuple[Any, ...] | None:
        row = st.conn.execute(f"SELECT {ALARM_COLUMNS} FROM alarms WHERE community = %s AND key = %s",
                              (self._code, key)).fetchone()
        return tuple(row) if row else None

    def acknowledge(self, user: User, key: str, comment: str) -> None:
        _need_operator(user)
        with self._pool.get() as st, _errors("acknowledging an alarm"):
            row = self._alarm_row(st, key)
            if row is None:
                raise ActionRefused("not_found", key)
            status = AlarmStatus(row[3])
            if status.acknowledged:
                raise ActionRefused("already_acknowledged", f"{row[14] or '?'}")
            if self._publish is not None:
                self._command("acknowledge", key, user, comment=comment)
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
        with self._pool.get() as st, _errors("shelving an alarm"):
            row = self._alarm_row(st, key)
            if row is None:
                raise ActionRefused("not_found", key)
            if not AlarmStatus(row[3]).active:
                raise ActionRefused("not_active", key)
            if self._publish is not None:
                self._command("shelve", key, user, until=until)
                return
            with st.conn.transaction():
                done = st.conn.execute(
                    "UPDATE alarms SET shelved_until = %s, updated_at = now() WHERE community = %s AND key = %s "
                    "AND status IN ('active_unack', 'active_ack') RETURNING now()", (until, self._code, key),
                ).fetchone()
                if done is None:
                    raise ActionRefused("not_active", key)
                self._history(st, row, EventKind.SHELVED, AlarmStatus(row[3]), done[0], user.username,
                              f"shelved until {until.isoformat()}", shelved=True)
        self._version = None

    def _command(self, action: str, key: str, user: User, *, comment: str | None = None,
                 until: datetime | None = None) -> None:
        """Hand an alarm action to the gateway's alarm service (the single writer of alarm state)."""
        assert self._publish is not None
        cmd = contract.AlarmCommand(v=1, action=cast(Any, action), key=key, by=user.username[:64],
                                    comment=comment[:1000] if comment else None, until=until)
        self._publish(contract.alarm_commands_topic(self._root, self._code),
                      orjson.dumps(cmd.model_dump(mode="json", exclude_none=True)), 1)

    def _history(self, st: Storage, row: Sequence[Any], kind: EventKind, status: AlarmStatus, at: datetime,
                 by: str, detail: str, *, shelved: bool) -> None:
        ev = AlarmEvent(kind, row[1], row[4], cast(SubjectType, row[5]), Severity(row[2]), status, at, row[9],
                        row[11], row[6], row[7], row[8], detail, Dispatch(row[17]), by, shelved)
        st.conn.execute(
            "INSERT INTO alarm_events (at, community, key, kind, severity, status, by, detail, event) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (at, self._code, row[0], kind.value, row[2], status.value, by, detail, Jsonb(ev.to_json())))

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

    def resolve_ticket(self, user: User, ticket_id: str, note: str) -> None:
        self._need_desk().resolve(user, ticket_id, note)
        self._version = None

    def ticket_snapshot(self, user: User, ticket_id: str) -> bytes | None:
        return self._need_desk().snapshot(user, ticket_id)

    def ticket_photo(self, user: User, photo_id: str) -> tuple[bytes, str] | None:
        return self._need_desk().photo(user, photo_id)

    def kpis(self, since: datetime, until: datetime) -> Sequence[KpiRow]:
        return self._need_desk().kpis(since, until)

    # -- devices -------------------------------------------------------------------------------------

    def _ids(self, st: Storage) -> tuple[dict[str, int], dict[str, int]]:
        if self._device_ids is None or self._metric_ids is None:
            self._device_ids = dict(st.conn.execute(
                "SELECT d.code, d.id FROM devices d JOIN communities c ON c.id = d.community_id WHERE c.code = %s",
                (self._code,)).fetchall())
            self._metric_ids = st.metric_ids()
        return self._device_ids, self._metric_ids

    def device_latest(self, device_id: str) -> Mapping[str, tuple[float, datetime]]:
        with self._pool.get() as st, _errors(f"reading latest values of {device_id}"):
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
        with self._pool.get() as st, _errors(f"reading history of {device_id}.{field}"):
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

    # -- analysis ------------------------------------------------------------------------------------

    def hotspots(self, days: int) -> Sequence[IncidentCount]:
        """Alarms raised per (building, floor, rule) in the last ``days`` days (``alarm_events``)."""
        days = max(1, min(int(days), 366))
        with self._pool.get() as st, _errors("reading hotspots"):
            rows = st.conn.execute(
                "SELECT coalesce(e.event->>'building', a.building), "
                "coalesce((e.event->>'floor')::int, a.floor), coalesce(e.event->>'rule', a.rule), count(*) "
                "FROM alarm_events e LEFT JOIN alarms a ON a.key = e.key "
                "WHERE e.community = %s AND e.kind = 'raised' AND e.at >= now() - make_interval(days => %s) "
                "GROUP BY 1, 2, 3", (self._code, days)).fetchall()
        return [IncidentCount(r[0], r[1], r[2] or "?", int(r[3])) for r in rows]

    def care_overview(self) -> Sequence[CareUnitView]:
        units = self._community.care_units
        now = time.monotonic()
        cached = self._care
        if cached is not None and now - cached.at < CARE_TTL_S:
            return cast(Sequence[CareUnitView], cached.value)
        sensors = sorted({s for u in units for s in u.sensors})
        last: dict[str, datetime] = {}
        with self._pool.get() as st, _errors("reading care activity"):
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


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """A database failure becomes :class:`DatabaseDown` (unreachable) or :class:`DataUnavailable` naming
    only ``what`` failed (the dashboard says so instead of failing); the details go to the log."""
    try:
        yield
    except (DatabaseUnavailable, psycopg.OperationalError, psycopg.InterfaceError) as exc:
        if _db_log.due():
            log.warning("dashboard: %s: database unavailable: %s", what, _first_line(exc))
        raise DatabaseDown() from exc
    except (StorageError, psycopg.Error) as exc:
        log.warning("dashboard: %s failed: %s", what, _first_line(exc))
        raise DataUnavailable(f"{what} failed") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _digest(rollup: Rollup, cars: Mapping[str, float]) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in (rollup.devices, rollup.floors, rollup.buildings):
        for k, v in sorted(part.items(), key=lambda kv: str(kv[0])):
            h.update(f"{k}={int(v)};".encode())
    for e, f in sorted(cars.items()):
        h.update(f"{e}@{f:g};".encode())
    return h.hexdigest()


# -- adapters to the ticket service and the users table (gateway/tickets/service.py, gateway/api/auth.py) -------------


class DatabaseSignIn:
    """:class:`SignInService` on the ``users`` / ``api_tokens`` tables (gateway/api/auth.py): the same accounts
    and tokens as the REST API, so a token from ``POST /api/v1/login`` is a dashboard session too."""

    def __init__(self, db_url: str, *, schema: str = "gridtwin", ttl: timedelta = timedelta(hours=12),
                 pool_size: int = 2, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 guard: LoginGuard | None = None) -> None:
        from gateway.api.auth import LoginGuard

        self._pool = _Pool(lambda: Storage.connect(db_url, schema=schema), pool_size)
        self._ttl = ttl
        self._clock = clock
        self.guard = guard or LoginGuard()  # share it with the REST API's login when both run in one process

    def sign_in(self, username: str, password: str, client: str = "") -> Session | None:
        from gateway.api.auth import AuthError, LoginRefused, Users

        def check() -> Session | None:
            with self._pool.get() as st, _errors("signing in"):
                users = Users(st.conn)
                try:
                    user = users.authenticate(username, password)
                except AuthError:
                    return None
                if user is None:
                    return None
                token, expires = users.issue_token(user.username, self._clock(), self._ttl)
            return Session(token, user, expires)

        try:
            return self.guard.run(username, client, check)
        except LoginRefused as exc:
            raise SignInRefused(exc.reason, exc.retry_after_s, exc.retry_at) from None

    def user_for_token(self, token: str) -> User | None:
        from gateway.api.auth import AuthError, Users

        with self._pool.get() as st, _errors("checking a session"):
            try:
                return Users(st.conn).user_for_token(token, self._clock())
            except AuthError:
                return None

    def sign_out(self, token: str) -> None:
        from gateway.api.auth import Users

        with self._pool.get() as st, _errors("signing out"):
            Users(st.conn).revoke(token)

    def close(self) -> None:
        self._pool.close()


class ServiceTicketDesk:
    """:class:`TicketDesk` on :class:`gateway.tickets.service.TicketService` (one service per pooled connection).

    ``make_service(storage)`` builds a service on a connection (the composition root decides its
    settings, MQTT delivery and snapshot renderer). Ticket-service errors become the dashboard's
    :class:`~viz.data.ActionRefused` codes; database errors :class:`~viz.data.DataUnavailable`.
    """

    def __init__(self, community: Community, db_url: str, make_service: Callable[[Storage], Any], *,
                 schema: str = "gridtwin", pool_size: int = 3) -> None:
        self._community = community
        self._make = make_service
        self._pool = _Pool(lambda: Storage.connect(db_url, schema=schema), pool_size)

    @contextlib.contextmanager
    def _service(self, what: str) -> Iterator[Any]:
        from gateway.tickets.service import Forbidden, PhotoRejected, TicketConflict, TicketNotFound
        from twin.tickets import InvalidInput, TicketError

        with self._pool.get() as st, _errors(what):
            try:
                yield self._make(st)
            except TicketNotFound as exc:
                raise ActionRefused("not_found", str(exc)) from exc
            except Forbidden as exc:
                raise ActionRefused("forbidden", str(exc)) from exc
            except TicketConflict as exc:
                raise ActionRefused("conflict", str(exc)) from exc
            except PhotoRejected as exc:
                raise ActionRefused("too_large" if exc.status == 413 else "bad_input", str(exc)) from exc
            except InvalidInput as exc:
                raise ActionRefused("bad_input", str(exc)) from exc
            except TicketError as exc:
                raise ActionRefused("illegal_transition", str(exc)) from exc

    def version(self) -> str:
        with self._pool.get() as st, _errors("reading the ticket digest"):
            row = st.conn.execute("SELECT count(*), coalesce(sum(version), 0), max(updated_at) FROM tickets "
                                  "WHERE community = %s", (self._community.id,)).fetchone()
        return f"{row[0]}.{row[1]}.{row[2].timestamp() if row and row[2] else 0:.3f}" if row else "0"

    def _view(self, t: Any, names: Mapping[str, str]) -> TicketView:
        return TicketView(
            id=str(t.id), title=t.title, priority=t.priority.value, status=t.state.value, created_at=t.created_at,
            respond_by=t.respond_by, resolve_by=t.resolve_by, responded_at=t.accepted_at, resolved_at=t.resolved_at,
            grid=t.grid, building=t.building, floor=t.floor, unit=t.unit, device=t.device, assignee=t.assignee,
            assignee_name=names.get(t.assignee or "", t.assignee), category=t.category, description=t.description,
            clock_start=t.clock_start,
        )

    def tickets(self, user: User, *, include_closed: bool = False) -> Sequence[TicketView]:
        from twin.tickets import known_people

        names = known_people(self._community)
        with self._service("listing tickets") as svc:
            return [self._view(t, names) for t in svc.list_for(user, open_only=not include_closed, limit=500)
                    if t.community == self._community.id]

    def ticket(self, user: User, ticket_id: str) -> TicketView | None:
        from twin.tickets import known_people

        tid = _ticket_id(ticket_id)
        if tid is None:
            return None
        with self._service(f"reading ticket {ticket_id}") as svc:
            try:
                t = svc.get(tid, user)
            except ActionRefused:
                return None
            view = svc.view(t)
            steps = tuple(svc.timeline(t.id))
        base = self._view(t, known_people(self._community))
        sop = view.get("sop") or {}
        latest = {f"{r.get('device', '')} {r['metric']}".strip(): float(r["value"]) for r in view.get("readings", [])
                  if isinstance(r.get("value"), int | float)}
        history = tuple(
            TicketStep(datetime.fromisoformat(s["at"]), str(s["by"]), str(s["action"]), str(s.get("note") or ""),
                       _photo_ref(t.id, s.get("photo_url"))) for s in steps if s.get("at"))
        return TicketView(**{**_fields(base), "sop": tuple(str(x) for x in sop.get("steps", ())), "latest": latest,
                             "history": history, "has_snapshot": bool(view.get("snapshot_url")),
                             "alarm_key": next((a["key"] for a in view.get("alarms", [])), None)})

    def accept(self, user: User, ticket_id: str) -> None:
        with self._service(f"accepting ticket {ticket_id}") as svc:
            svc.accept(user, _need_ticket_id(ticket_id))

    def feedback(self, user: User, ticket_id: str, note: str, photo: Photo | None) -> None:
        from gateway.tickets.service import Photo as ServicePhoto

        with self._service(f"feedback on ticket {ticket_id}") as svc:
            svc.progress(user, _need_ticket_id(ticket_id), note,
                         photo=ServicePhoto(photo.content_type, photo.content) if photo else None)

    def resolve(self, user: User, ticket_id: str, note: str) -> None:
        with self._service(f"resolving ticket {ticket_id}") as svc:
            svc.resolve(user, _need_ticket_id(ticket_id), note)

    def snapshot(self, user: User, ticket_id: str) -> bytes | None:
        tid = _ticket_id(ticket_id)
        if tid is None:
            return None
        with self._service(f"reading the snapshot of ticket {ticket_id}") as svc:
            svc.get(tid, user)  # may the user see it?
            try:
                return bytes(svc.photo(tid, kind="snapshot").data)
            except ActionRefused:
                return None

    def photo(self, user: User, photo_id: str) -> tuple[bytes, str] | None:
        ticket_part, _, photo_part = photo_id.partition("-")
        tid, pid = _ticket_id(ticket_part), _ticket_id(photo_part)
        if tid is None or pid is None:
            return None
        with self._service(f"reading photo {photo_id}") as svc:
            svc.get(tid, user)
            p = svc.photo(tid, pid)
            return bytes(p.data), str(p.content_type)

    def dispatch_alarm(self, user: User, alarm: AlarmView, note: str) -> str:
        """The operator dispatches an alarm: the service opens a ticket (or joins the incident's open one)."""
        if user.role not in (Role.OPERATOR, Role.ADMIN):
            raise ActionRefused("forbidden", user.role.value)
        dispatch = Dispatch(alarm.dispatch) if alarm.dispatch not in ("", "none") else Dispatch.GENERAL
        now = datetime.now(UTC)
        detail = f"{alarm.detail} · {user.username}: {note}" if note else alarm.detail
        event = AlarmEvent(EventKind.RAISED, alarm.rule, alarm.subject, cast(SubjectType, alarm.subject_type),
                           alarm.severity, alarm.status, now, alarm.raised_at, alarm.count, alarm.building,
                           alarm.floor, alarm.device, detail, dispatch, user.username)
        with self._service(f"dispatching alarm {alarm.key}") as svc:
            t = svc.on_alarm_event(self._community, event)
        if t is None:
            raise ActionRefused("illegal_transition", alarm.key)
        return str(t.id)

    def kpis(self, since: datetime, until: datetime) -> Sequence[KpiRow]:
        with self._service("reading KPIs") as svc:
            rows = svc.kpis(since, until, community=self._community.id)
        return [KpiRow(r.scope, r.key, r.name, r.tickets, r.open,
                       None if r.mean_respond_min is None else r.mean_respond_min * 60,
                       None if r.mean_resolve_h is None else r.mean_resolve_h * 3600,
                       r.on_time_rate, r.satisfaction, r.reopen_rate) for r in rows]

    def close(self) -> None:
        self._pool.close()


def _ticket_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < len(text) <= 18 else None


def _need_ticket_id(text: str) -> int:
    tid = _ticket_id(text)
    if tid is None:
        raise ActionRefused("not_found", text[:40])
    return tid


def _photo_ref(ticket_id: int, url: Any) -> str | None:
    """``/api/v1/tickets/7/photos/3`` -> ``7-3`` (the dashboard serves it at /media/photos/7-3)."""
    if not isinstance(url, str):
        return None
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return f"{ticket_id}-{last}" if last.isdigit() else None


def _fields(v: TicketView) -> dict[str, Any]:
    return {f: getattr(v, f) for f in v.__dataclass_fields__}


# -- composition -------------------------------------------------------------------------------------------


class MqttPublisher:
    """A small MQTT client that only publishes (alarm commands to the gateway's alarm service)."""

    def __init__(self, url: str, *, client_id: str, timeout_s: float = 5.0) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        u = urlsplit(url)
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        if u.username:
            self._client.username_pw_set(unquote(u.username), unquote(u.password) if u.password else None)
        if u.scheme == "mqtts":
            self._client.tls_set()
        try:
            self._client.connect(u.hostname or "127.0.0.1", u.port or (8883 if u.scheme == "mqtts" else 1883),
                                 keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the MQTT broker at {u.hostname}:{u.port}: {exc}") from None
        self._client.loop_start()

    def __call__(self, topic: str, payload: bytes, qos: int) -> None:
        self._client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def build_dashboard_data(settings: Any, community: Community, db_url: str, *,
                         publish: Publish | None = None, login_guard: LoginGuard | None = None
                         ) -> StorageDashboardData:
    """The real data source: database, ticket service (with MQTT delivery and 3D snapshots), users table.

    ``settings``: :class:`gateway.settings.Settings`. ``publish``: MQTT publishing (alarm commands to the
    gateway's alarm service, tickets to workers' topics); None when no broker is reachable.
    ``login_guard``: sign-in throttling, shared with the REST API's login when both run in one process.
    """
    from gateway.tickets.service import TicketService, render_snapshot

    schema = settings.db.schema_name
    snapshot = render_snapshot()

    def make_service(st: Storage) -> Any:
        return TicketService(st, settings, community, publish=publish, snapshot=snapshot)

    desk = ServiceTicketDesk(community, db_url, make_service, schema=schema)
    auth = DatabaseSignIn(db_url, schema=schema, ttl=timedelta(minutes=settings.api.token_ttl_min),
                          guard=login_guard)
    return StorageDashboardData(community, db_url, schema=schema, tickets=desk, sign_in=auth, publish=publish,
                                topic_root=settings.mqtt.topic_root)


def seed_demo_users(db_url: str, community: Community, password: str, *, schema: str = "gridtwin") -> list[str]:
    """Demo accounts (``operator``, ``admin``, each grid's supervisor and workers), all with ``password``.

    For ``gridtwin demo`` and the tests; a real site adds its users through the REST API or the CLI.
    Returns the usernames.
    """
    from gateway.api.auth import Users

    accounts: list[tuple[str, Role, str, tuple[str, ...], str | None]] = [
        ("operator", Role.OPERATOR, "值班员", (), None), ("admin", Role.ADMIN, "管理员", (), None)]
    supervisors: dict[str, list[str]] = {}
    workers: dict[str, tuple[str, list[str]]] = {}
    for g in community.grids:
        supervisors.setdefault(g.supervisor, []).append(g.id)
        for w in g.workers:
            workers.setdefault(w.id, (w.name, []))[1].append(g.id)
    accounts += [(sid, Role.SUPERVISOR, f"网格长 {sid}", tuple(grids), None) for sid, grids in supervisors.items()]
    accounts += [(wid, Role.WORKER, name, tuple(grids), wid) for wid, (name, grids) in workers.items()]
    with Storage.connect(db_url, schema=schema) as st:
        users = Users(st.conn)
        for username, role, name, grids, worker_id in accounts:
            users.add(username, password, role, display_name=name, grids=grids, worker_id=worker_id, update=True)
    return [a[0] for a in accounts]


DEMO_PASSWORD = "gridtwin-demo"  # noqa: S105 - the demo's accounts only (`gridtwin demo` on 127.0.0.1)


class DashboardHandle:
    """The running dashboard and what it holds open; ``shutdown()`` stops and closes it all."""

    def __init__(self, server: Any, data: StorageDashboardData, publish: MqttPublisher | None,
                 api: Any = None) -> None:
        self.server = server
        self.data = data
        self.publish = publish
        self.api = api
        self.server_port: int = server.server_port

    def shutdown(self) -> None:
        self.server.shutdown()
        self.data.close()
        if self.api is not None:
            self.api.state.close()
        if self.publish is not None:
            self.publish.close()


def mount_api(flask_app: Any, api: Any) -> None:
    """Serve the REST API (ASGI, routes under /api/) from the dashboard's WSGI server: one port for both."""
    from a2wsgi import ASGIMiddleware

    api_wsgi: Any = ASGIMiddleware(api)
    dash_wsgi = flask_app.wsgi_app

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("PATH_INFO", "")).startswith("/api/"):
            return api_wsgi(environ, start_response)
        return dash_wsgi(environ, start_response)

    flask_app.wsgi_app = dispatch


def start_dashboard(settings: Any, community: Community, db_url: str, mqtt_url: str | None, *,
                    host: str = "127.0.0.1", port: int = 8050) -> DashboardHandle:
    """Composition for ``gridtwin serve`` / ``gridtwin demo``: data source + Dash app on a threaded server.

    Without a reachable broker the dashboard still runs; alarm actions then update the database directly
    (fine when no gateway runs the alarm engine) and tickets are not pushed to workers' phones. The
    dashboard's sign-in form and the REST API's login share one :class:`gateway.api.auth.LoginGuard`
    (throttling, lockout, bounded password hashing). Cookies are marked ``Secure`` when
    ``api.public_url`` is ``https://`` (and per request behind a proxy sending ``X-Forwarded-Proto: https``).
    """
    from viz import app as dashboard
    publish: MqttPublisher | None = None
    if mqtt_url:
        try:
            publish = MqttPublisher(mqtt_url, client_id=f"gridtwin-dashboard-{secrets.token_hex(4)}")
        except ConnectionError as exc:
            log.warning("dashboard without MQTT (alarm actions go straight to the database): %s", exc)
    from gateway.api.app import create_api
    from gateway.api.auth import LoginGuard
    from gateway.tickets.service import render_snapshot

    guard = LoginGuard()
    data = build_dashboard_data(settings, community, db_url, publish=publish, login_guard=guard)
    api = create_api(settings, [community], db_url=db_url, schema=settings.db.schema_name, publish=publish,
                     snapshot=render_snapshot(), login_guard=guard)
    app = dashboard.create_app(data, secure_cookies=str(settings.api.public_url).startswith("https://"))
    mount_api(app.server, api)
    try:
        server = dashboard.serve(app, host=host, port=port)
    except OSError:
        data.close()
        api.state.close()
        if publish is not None:
            publish.close()
        raise
    return DashboardHandle(server, data, publish, api)


def community_in_database(db_url: str, *, schema: str = "gridtwin", code: str | None = None) -> Community | None:
    """The community the registry holds (the most recently loaded one unless ``code`` names it)."""
    with Storage.connect(db_url, schema=schema) as st:
        if st.schema_version() == 0:
            return None
        doc = st.community_document(code)
    return None if doc is None else Community.model_validate(doc)
