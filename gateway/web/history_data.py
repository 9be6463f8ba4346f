"""Incident, alarm and audit history from PostgreSQL: implements :class:`viz.history_model.HistoryData`. Does I/O.

- **incidents** are tickets (one per emergency, ``tickets`` with ``ticket_alarms``), their severity the worst of
  their alarms;
- **alarms** are the ``raised`` events of ``alarm_events`` (an alarm raised again later is another row), each with
  the first acknowledgement and clearing that followed it before the next raising;
- **the audit log** joins who did what: operator actions on alarms (``alarm_events`` with a ``by``), ticket actions
  (``ticket_events``) and sign-ins (``sign_in_events``, migration 0013).

Filters, sorting and paging run in the database (the sort column comes from a fixed table, never from the
request); text search looks in titles, places (building ids and names), devices and rules (ids and names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway.api.pool import StoragePool
from gateway.web.database import connection
from twin.community import Community
from twin.tickets.assign import known_people
from twin.tickets.incidents import category_of
from viz.history_model import (
    OPEN_TICKET_STATES,
    AlarmRow,
    AlarmStep,
    AuditEntry,
    AuditQuery,
    HistoryQuery,
    IncidentRow,
    Paged,
)

SEV_RANK_SQL = ("CASE {col} WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 WHEN 'warning' THEN 3 "
                "ELSE 9 END")
SEV_NAMES = ("critical", "major", "minor", "warning")
INCIDENT_ORDER: Mapping[str, str] = {
    "created": "created_at", "title": "title", "category": "category", "severity": "sev_rank", "state": "state",
    "place": "building, floor", "assignee": "assignee", "resolved": "resolved_at",
}
ALARM_ORDER: Mapping[str, str] = {
    "raised": "raised_at", "rule": "rule", "severity": "sev_rank", "state": "cleared_at IS NULL",
    "place": "building, floor", "cleared": "cleared_at", "count": "count",
}
FATE_SORTS = ("state", "cleared", "count")  # sorting by these needs every row's fate before the page
STEP_MARGIN = timedelta(minutes=30)  # an incident's alarm events: from this long before it opened to after it closed


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class StorageHistoryData:
    """:class:`viz.history_model.HistoryData` for one community, on the dashboard's connection pool."""

    def __init__(self, community: Community, pool: StoragePool, rule_names: Mapping[str, str]) -> None:
        self._community = community
        self._code = community.id
        self._pool = pool
        self._rule_names = rule_names

    # -- helpers -------------------------------------------------------------------------------------

    def _text_terms(self, text: str) -> tuple[str, list[str], list[str]]:
        """(ILIKE pattern, building ids whose name holds the text, rule ids whose name holds it)."""
        low = text.lower()
        buildings = [b.id for b in self._community.buildings if low in b.name.lower()]
        rules = [r for r, name in self._rule_names.items() if low in name.lower()]
        return _like(text), buildings, rules

    def _grid_buildings(self, grids: tuple[str, ...]) -> list[str]:
        return [b.id for b in self._community.buildings if self._community.grid_of(b) in grids]

    def _category_devices(self, category: str) -> tuple[list[str], list[str]]:
        """(device ids, rule ids) of an alarm category (as the ticket service files them)."""
        devices = [d.id for d in self._community.devices if category_of(None, d.kind) == category]
        rules = [r for r in self._rule_names if category_of(r) == category]
        return devices, rules

    # -- incidents -----------------------------------------------------------------------------------

    def incidents(self, q: HistoryQuery) -> Paged[IncidentRow]:
        where = ["t.community = %s", "t.created_at >= %s", "t.created_at < %s"]
        args: list[Any] = [self._code, q.since, q.until]
        if q.grids is not None:
            where.append("(t.grid = ANY(%s) OR (t.grid IS NULL AND t.building = ANY(%s)))")
            args += [list(q.grids), self._grid_buildings(q.grids)]
        if q.category:
            where.append("t.category = %s")
            args.append(q.category)
        if q.state == "open":
            where.append("t.state = ANY(%s)")
            args.append(list(OPEN_TICKET_STATES))
        elif q.state == "closed":
            where.append("NOT (t.state = ANY(%s))")
            args.append(list(OPEN_TICKET_STATES))
        elif q.state:
            where.append("t.state = %s")
            args.append(q.state)
        if q.text:
            pattern, buildings, rules = self._text_terms(q.text)
            where.append(
                "(t.title ILIKE %s OR t.building ILIKE %s OR t.device ILIKE %s OR t.rule ILIKE %s OR t.unit ILIKE %s "
                "OR t.building = ANY(%s) OR t.rule = ANY(%s) OR t.id::text = %s OR EXISTS (SELECT 1 FROM ticket_alarms "
                "x WHERE x.ticket_id = t.id AND (x.device ILIKE %s OR x.rule ILIKE %s OR x.rule = ANY(%s))))")
            args += [pattern] * 5 + [buildings, rules, q.text, pattern, pattern, rules]
        sev = SEV_RANK_SQL.format(col="a.severity")
        outer = ""
        if q.severity:
            outer = "WHERE sev_rank = %s"
        order = INCIDENT_ORDER.get(q.sort, "created_at")
        direction = "DESC" if q.desc else "ASC"
        sql = (
            "SELECT *, count(*) OVER () AS total FROM ("
            "SELECT t.id, t.created_at, t.title, t.category, t.priority, t.state, t.building, t.floor, t.device, "
            "t.assignee, coalesce(t.resolved_at, t.closed_at) AS resolved_at, "
            f"(SELECT min({sev}) FROM ticket_alarms a WHERE a.ticket_id = t.id) AS sev_rank, "
            "(SELECT count(*) FROM ticket_alarms a WHERE a.ticket_id = t.id) AS alarms, t.rule "
            f"FROM tickets t WHERE {' AND '.join(where)}) i {outer} "
            f"ORDER BY {', '.join(f'{c.strip()} {direction} NULLS LAST' for c in order.split(','))}, id {direction} "
            "LIMIT %s OFFSET %s")
        if q.severity:
            args.append(SEV_NAMES.index(q.severity))
        args += [q.size, q.page * q.size]
        with connection(self._pool, "reading the incident history") as st:
            rows = st.conn.execute(sql, args).fetchall()
            total = int(rows[0][-1]) if rows else self._count_beyond(st, q, rows)
        out = tuple(IncidentRow(
            id=int(r[0]), created_at=r[1], title=r[2], category=r[3], priority=r[4], state=r[5], building=r[6],
            floor=r[7], device=r[8], assignee=r[9], resolved_at=r[10],
            severity=SEV_NAMES[r[11]] if r[11] is not None and r[11] < len(SEV_NAMES) else "", alarms=int(r[12]),
            rule_name=self._rule_names.get(r[13] or "", ""),
        ) for r in rows)
        return Paged(out, total)

    def _count_beyond(self, st: Any, q: HistoryQuery, rows: Sequence[Any]) -> int:
        """A page past the end has no rows to carry the total: ask for the first page's."""
        if q.page == 0 or rows:
            return 0
        from dataclasses import replace

        first = replace(q, page=0, size=1)
        return (self.incidents(first) if q.kind == "incidents" else self.alarm_history(first)).total

    # -- alarms --------------------------------------------------------------------------------------

    def alarm_history(self, q: HistoryQuery) -> Paged[AlarmRow]:
        where = ["e.community = %s", "e.kind = 'raised'", "e.at >= %s", "e.at < %s"]
        args: list[Any] = [self._code, q.since, q.until]
        building = "coalesce(e.event->>'building', '')"
        device = "coalesce(e.event->>'device', '')"
        rule = "coalesce(e.event->>'rule', '')"
        if q.grids is not None:
            where.append(f"{building} = ANY(%s)")
            args.append(self._grid_buildings(q.grids))
        if q.severity:
            where.append("e.severity = %s")
            args.append(q.severity)
        if q.category:
            devices, rules = self._category_devices(q.category)
            where.append(f"({device} = ANY(%s) OR ({device} = '' AND {rule} = ANY(%s)))")
            args += [devices, rules]
        if q.text:
            pattern, buildings, rules = self._text_terms(q.text)
            where.append(f"({building} ILIKE %s OR {device} ILIKE %s OR {rule} ILIKE %s OR e.key ILIKE %s "
                         f"OR e.detail ILIKE %s OR {building} = ANY(%s) OR {rule} = ANY(%s))")
            args += [pattern] * 5 + [buildings, rules]
        outer = ""
        if q.state:  # ended: a clearing (or, had one been lost, a later raising) of the same alarm followed it
            ended = ("EXISTS (SELECT 1 FROM alarm_events x WHERE x.key = e.key AND x.kind IN ('cleared', 'raised') "
                     "AND (x.at > e.at OR (x.at = e.at AND x.id > e.id)))")
            where.append(ended if q.state == "cleared" else f"NOT {ended}")
        order = ALARM_ORDER.get(q.sort, "raised_at")
        direction = "DESC" if q.desc else "ASC"
        sev = SEV_RANK_SQL.format(col="e.severity")
        ordering = (f"ORDER BY {', '.join(f'{c.strip()} {direction} NULLS LAST' for c in order.split(','))}, "
                    f"id {direction}")
        base = (f"WITH base AS (SELECT e.id, e.key, {rule} AS rule, e.severity, e.at AS raised_at, "
                "e.event->>'building' AS building, (e.event->>'floor')::int AS floor, e.event->>'device' AS device, "
                f"coalesce((e.event->>'count')::int, 1) AS first_count, {sev} AS sev_rank FROM alarm_events e "
                f"WHERE {' AND '.join(where)})")
        # what became of each raising: the next raising of the same alarm bounds its acknowledgement and clearing
        fates = (
            "SELECT b.id, b.key, b.rule, b.severity, b.raised_at, c.at AS cleared_at, c.by AS cleared_by, "
            "k.at AS acked_at, k.by AS acked_by, b.building, b.floor, b.device, "
            "greatest(coalesce((SELECT max((u.event->>'count')::int) FROM alarm_events u WHERE u.key = b.key "
            "AND u.at >= b.raised_at AND u.at < coalesce(n.at, 'infinity')), 1), b.first_count) AS count, "
            "b.sev_rank, (SELECT max(ta.ticket_id) FROM ticket_alarms ta WHERE ta.alarm_key = b.key AND ta.first_at "
            "<= coalesce(c.at, 'infinity') AND ta.last_at >= b.raised_at - interval '1 minute') AS ticket "
            "FROM {src} b "
            "LEFT JOIN LATERAL (SELECT at FROM alarm_events x WHERE x.key = b.key AND x.kind = 'raised' "
            "AND x.at > b.raised_at ORDER BY x.at LIMIT 1) n ON true "
            "LEFT JOIN LATERAL (SELECT at, by FROM alarm_events x WHERE x.key = b.key AND x.kind = 'cleared' "
            "AND x.at >= b.raised_at AND x.at < coalesce(n.at, 'infinity') ORDER BY x.at LIMIT 1) c ON true "
            "LEFT JOIN LATERAL (SELECT at, by FROM alarm_events x WHERE x.key = b.key AND x.kind = 'acknowledged' "
            "AND x.at >= b.raised_at AND x.at < coalesce(n.at, 'infinity') ORDER BY x.at LIMIT 1) k ON true")
        if not outer and q.sort not in FATE_SORTS:
            # the page first (on the stored columns), then the fate of its rows only
            sql = (f"{base}, page AS (SELECT * FROM base {ordering} LIMIT %s OFFSET %s) "
                   f"SELECT *, (SELECT count(*) FROM base) FROM ({fates.format(src='page')}) a {ordering}")
        else:
            sql = (f"{base} SELECT *, count(*) OVER () AS total FROM ({fates.format(src='base')}) a {outer} "
                   f"{ordering} LIMIT %s OFFSET %s")
        args += [q.size, q.page * q.size]
        with connection(self._pool, "reading the alarm history") as st:
            rows = st.conn.execute(sql, args).fetchall()
            total = int(rows[0][-1]) if rows else self._count_beyond(st, q, rows)
        out = tuple(AlarmRow(
            id=int(r[0]), key=r[1], rule=r[2], severity=r[3], raised_at=r[4], cleared_at=r[5],
            cleared_by=r[6], acked_at=r[7], acked_by=r[8], building=r[9], floor=r[10], device=r[11],
            count=int(r[12]), ticket=int(r[14]) if r[14] is not None else None,
            rule_name=self._rule_names.get(r[2], r[2])) for r in rows)
        return Paged(out, total)

    # -- one incident --------------------------------------------------------------------------------

    def incident_window(self, ticket_id: int) -> tuple[datetime, datetime] | None:
        with connection(self._pool, f"reading the time of incident {ticket_id}") as st:
            row = st.conn.execute(
                "SELECT least(t.created_at, (SELECT min(first_at) FROM ticket_alarms a WHERE a.ticket_id = t.id)), "
                "greatest(coalesce(t.closed_at, t.resolved_at, now()), (SELECT max(coalesce(cleared_at, last_at)) "
                "FROM ticket_alarms a WHERE a.ticket_id = t.id)) FROM tickets t WHERE t.id = %s AND t.community = %s",
                (ticket_id, self._code)).fetchone()
        return None if row is None else (row[0], row[1])

    def incident_steps(self, ticket_id: int) -> Sequence[AlarmStep]:
        window = self.incident_window(ticket_id)
        if window is None:
            return []
        with connection(self._pool, f"reading the alarms of incident {ticket_id}") as st:
            rows = st.conn.execute(
                "SELECT e.at, e.key, coalesce(e.event->>'rule', ''), e.kind, e.severity, e.by, e.detail, "
                "e.event->>'device' FROM alarm_events e WHERE e.community = %s AND e.key IN (SELECT alarm_key FROM "
                "ticket_alarms WHERE ticket_id = %s) AND e.at >= %s AND e.at <= %s AND e.kind <> 'updated' "
                "ORDER BY e.at, e.id LIMIT 500",
                (self._code, ticket_id, window[0] - STEP_MARGIN, window[1] + STEP_MARGIN)).fetchall()
        return [AlarmStep(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], self._rule_names.get(r[2], r[2]))
                for r in rows]

    # -- audit ---------------------------------------------------------------------------------------

    def audit(self, q: AuditQuery) -> Paged[AuditEntry]:
        parts: list[str] = []
        args: list[Any] = []
        action = q.action
        user_like = _like(q.user) if q.user else None
        names = [u for u, n in self.people().items() if q.user and q.user.lower() in n.lower()]

        def who(col: str) -> str:
            if user_like is None:
                return ""
            args.extend([user_like, names])
            return f" AND ({col} ILIKE %s OR {col} = ANY(%s))"

        from viz.history_model import ALARM_ACTIONS, SIGN_IN_ACTIONS, TICKET_ACTIONS

        if not action or action in ALARM_ACTIONS:
            args += [self._code, q.since, q.until, [action] if action else list(ALARM_ACTIONS)]
            parts.append("SELECT e.at, e.by AS actor, e.kind AS action, 'alarm' AS source, e.key AS target, e.detail, "
                         "NULL::bigint AS ticket FROM alarm_events e WHERE e.community = %s AND e.at >= %s "
                         "AND e.at < %s AND e.kind = ANY(%s) AND e.by IS NOT NULL AND e.by <> ''" + who("e.by"))
        if not action or action in TICKET_ACTIONS:
            args += [self._code, q.since, q.until, [action] if action else list(TICKET_ACTIONS)]
            parts.append("SELECT v.at, v.actor, v.action, 'ticket', t.id::text, v.note, t.id FROM ticket_events v "
                         "JOIN tickets t ON t.id = v.ticket_id WHERE t.community = %s AND v.at >= %s AND v.at < %s "
                         "AND v.action = ANY(%s)" + who("v.actor"))
        if not action or action in SIGN_IN_ACTIONS:
            oks = [True, False] if not action else [action == "sign_in"]
            args += [q.since, q.until, oks]
            parts.append("SELECT s.at, s.username, CASE WHEN s.ok THEN 'sign_in' ELSE 'sign_in_failed' END, 'sign_in', "
                         "'', s.via || ' ' || s.client, NULL::bigint FROM sign_in_events s WHERE s.at >= %s "
                         "AND s.at < %s AND s.ok = ANY(%s)" + who("s.username"))
        sql = (f"SELECT *, count(*) OVER () FROM ({' UNION ALL '.join(parts)}) u ORDER BY at DESC "
               "LIMIT %s OFFSET %s")
        args += [q.size, q.page * q.size]
        with connection(self._pool, "reading the audit log") as st:
            rows = st.conn.execute(sql, args).fetchall()
        total = int(rows[0][-1]) if rows else 0
        if not rows and q.page > 0:
            from dataclasses import replace

            total = self.audit(replace(q, page=0, size=1)).total
        return Paged(tuple(AuditEntry(r[0], r[1] or "", r[2], r[3], r[4] or "", r[5] or "",
                                      int(r[6]) if r[6] is not None else None,
                                      self._rule_names.get((r[4] or "").partition("@")[0], "") if r[3] == "alarm"
                                      else "") for r in rows), total)

    def people(self) -> Mapping[str, str]:
        names = dict(known_people(self._community))
        with connection(self._pool, "reading user names") as st:
            for username, display, worker in st.conn.execute(
                    "SELECT username, display_name, worker_id FROM users").fetchall():
                names[username] = display
                if worker:
                    names.setdefault(worker, display)
        return names
