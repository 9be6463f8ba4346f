"""The incident page's readings around an incident (pure: a stand-in data source hands out the points): a chart per
involved device with stored readings, local times on its axis, a dotted line at each raising and clearing, and a
note instead of a chart when no involved device has any."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.cli_base import sample_community_path
from twin.community import Community, parse
from twin.people import Role, User
from viz.data import HistoryPoint, TicketAlarm, TicketView
from viz.history_model import AlarmStep
from viz.pages.incident import _readings
from viz.shell import CHINA, Dashboard, Req

T0 = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)


class Points:
    def __init__(self, community: Community) -> None:
        self._community = community
        self.asked: list[tuple[str, str, datetime, datetime]] = []

    def community(self) -> Community:
        return self._community

    def device_history(self, device: str, field: str, since: datetime, until: datetime,
                       bucket: timedelta) -> list[HistoryPoint]:
        self.asked.append((device, field, since, until))
        if not device.endswith("GAS"):
            return []  # nothing stored for the others
        return [HistoryPoint(since + i * bucket, float(i), float(i), float(i), 1) for i in range(10)]


def _find(node: Any, cls: str) -> list[Any]:
    found = [node] if cls in str(getattr(node, "className", "") or "").split() else []
    children = getattr(node, "children", None)
    for c in children if isinstance(children, list) else [children] if children is not None else []:
        found += _find(c, cls)
    return found


def test_readings_chart_each_involved_device_around_the_incident_in_local_time() -> None:
    community = parse(sample_community_path().read_text(encoding="utf-8"))
    gas = next(d for d in community.devices if d.kind == "gas")
    panel = next(d for d in community.devices if d.kind == "fire_panel")
    data = Points(community)
    board = Dashboard(data, poll_ms=500, tz=CHINA, secure_cookies=False, clock=lambda: T0 + timedelta(hours=2))
    req = Req(User("operator", "值班员", Role.OPERATOR), "zh", T0 + timedelta(hours=2))
    tk = TicketView(id="7", title="燃气", priority="urgent", status="handling", created_at=T0, respond_by=None,
                    resolve_by=None, alarms=(TicketAlarm("gas_level2@" + gas.id, "gas_level2", "x", "critical", gas.id,
                                                         T0),
                                             TicketAlarm("panel_fire_alarm@" + panel.id, "panel_fire_alarm", "x",
                                                         "critical", panel.id, T0)))
    steps = [AlarmStep(T0, "gas_level2@" + gas.id, "gas_level2", "raised", "critical", None, "x", gas.id),
             AlarmStep(T0 + timedelta(minutes=10), "gas_level2@" + gas.id, "gas_level2", "cleared", "critical", None,
                       "x", gas.id)]
    out = _readings(req, board, tk, steps, T0, T0 + timedelta(minutes=10))
    charts = _find(out, "inc-chart")
    assert [getattr(c, "data-device") for c in charts] == [gas.id]  # nothing stored for the panel
    device, _field, since, until = data.asked[0]
    assert device == gas.id and since == T0 - timedelta(minutes=30) and until == T0 + timedelta(minutes=40)
    fig = charts[0].figure
    assert fig["data"][0]["x"][0] == "2026-06-01 11:30:00"  # 03:30 UTC in the community's time
    assert len(fig["layout"]["shapes"]) == 2
    assert _find(_readings(req, board, TicketView(id="8", title="火警", priority="urgent", status="handling",
                                                  created_at=T0, respond_by=None, resolve_by=None, device=panel.id),
                           [], T0, T0), "muted")[0].id == "incident-no-readings"
