"""Hotspot data of a community over a period: device alarms and one-click reports per place, category, hour of
day and device, ranked with a hint each (:mod:`twin.hotspots`). Does I/O.

Other code (the hotspots page, ``GET /api/v1/hotspots``, the monthly report) calls :func:`hotspots`::

    from gateway.web.hotspots_data import Hotspot, hotspots
    rows = hotspots(pool, community, start, end)  # worst place first

Sources: every ``raised`` event in ``alarm_events`` (one per time an alarm was raised; its place, rule and
device from the event), with whether the ticket alarm it became was closed or cancelled as a false alarm
(``ticket_alarms.close_reason``); every one-click report (``ticket_reports`` with its ticket's building and
floor). Hours of day are the community's local time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache

from gateway.api.pool import StoragePool
from gateway.storage import Storage
from twin.community import Community
from twin.hotspots import Hotspot, IncidentGroup, Labeller, rank
from twin.tickets.reports import default_categories

__all__ = ["MAX_DAYS", "Hotspot", "IncidentGroup", "groups", "hotspots", "labeller", "labels", "read_groups"]

MAX_DAYS = 366  # longest period read at once

_SENSOR = (
    "SELECT coalesce(e.event->>'building', a.building), coalesce((e.event->>'floor')::int, a.floor), "
    "coalesce(e.event->>'rule', a.rule), extract(hour FROM e.at AT TIME ZONE %(tz)s)::int, "
    "coalesce(e.event->>'device', a.device), count(*), count(*) FILTER (WHERE f.close_reason = 'false_alarm') "
    "FROM alarm_events e LEFT JOIN alarms a ON a.key = e.key "
    # the ticket alarm this raise became: the newest of the key's that began by then (a re-raise of an alarm
    # still on its ticket counts with it)
    "LEFT JOIN LATERAL (SELECT ta.close_reason FROM ticket_alarms ta JOIN tickets t ON t.id = ta.ticket_id "
    "  WHERE ta.alarm_key = e.key AND t.community = e.community AND ta.first_at <= e.at + interval '1 minute' "
    "  ORDER BY ta.first_at DESC LIMIT 1) f ON true "
    "WHERE e.community = %(c)s AND e.kind = 'raised' AND e.at >= %(a)s AND e.at < %(b)s "
    "GROUP BY 1, 2, 3, 4, 5")
_REPORTS = (
    "SELECT t.building, t.floor, r.category, extract(hour FROM r.created_at AT TIME ZONE %(tz)s)::int, count(*) "
    "FROM ticket_reports r JOIN tickets t ON t.id = r.ticket_id "
    "WHERE r.community = %(c)s AND r.created_at >= %(a)s AND r.created_at < %(b)s GROUP BY 1, 2, 3, 4")


def check_period(start: datetime, end: datetime) -> None:
    """Raises ValueError unless [start, end) is a period of aware times at most ``MAX_DAYS`` long."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone")
    if end <= start:
        raise ValueError(f"the period must end after it starts (from {start.isoformat()} to {end.isoformat()})")
    if end - start > timedelta(days=MAX_DAYS):
        raise ValueError(f"the period is longer than {MAX_DAYS} days")


def read_groups(st: Storage, community: Community, start: datetime, end: datetime) -> list[IncidentGroup]:
    """Incidents in [start, end) counted by source, place, category, local hour and device, on ``st``."""
    check_period(start, end)
    args = {"c": community.id, "a": start, "b": end, "tz": community.timezone}
    out = [IncidentGroup("sensor", b, f, rule or "?", int(h), int(n), dev, int(false))
           for b, f, rule, h, dev, n, false in st.conn.execute(_SENSOR, args).fetchall()]
    out += [IncidentGroup("report", b, f, cat, int(h), int(n))
            for b, f, cat, h, n in st.conn.execute(_REPORTS, args).fetchall()]
    return out


def groups(pool: StoragePool, community: Community, start: datetime, end: datetime) -> list[IncidentGroup]:
    """:func:`read_groups` on a pooled connection."""
    with pool.storage() as st:
        return read_groups(st, community, start, end)


@lru_cache(maxsize=1)
def labels() -> Mapping[str, str]:
    """Category id -> ``中文 / English``: the shipped alarm rules and one-click report categories."""
    from gateway.web.dashboard_data import rule_names  # here: that module imports this one

    out = dict(rule_names())
    out.update({c.id: f"{c.zh} / {c.en}" for c in default_categories().items})
    return out


def labeller(extra: Mapping[str, str] | None = None) -> Labeller:
    """A :data:`twin.hotspots.Labeller` over :func:`labels` (plus ``extra``: e.g. a community's own rule names)."""
    names = {**labels(), **(extra or {})}
    return lambda cat: names.get(cat, cat)


def hotspots(pool: StoragePool, community: Community, start: datetime, end: datetime, *,
             top: int | None = None) -> list[Hotspot]:
    """Places of ``community`` by incidents (alarms + reports) in [start, end), worst first, with hints.

    ``start``/``end``: aware datetimes, at most ``MAX_DAYS`` apart (ValueError otherwise). Storage errors
    (:class:`gateway.storage.DatabaseUnavailable`, :class:`gateway.storage.StorageError`) pass through."""
    return rank(groups(pool, community, start, end), labeller(), top=top)
