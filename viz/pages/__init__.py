"""The dashboard's pages, one module each: its layout builder(s) and ``register_callbacks(app, board)``
for its own callbacks. :mod:`viz.routing` maps paths to the builders; :mod:`viz.app` registers the
callbacks of every module in :data:`PAGE_MODULES`."""

from __future__ import annotations

from viz.pages import (
    analytics,
    assistant,
    audit,
    care,
    care_register,
    control,
    device,
    devices,
    handoffs,
    history,
    hotspots,
    incident,
    login,
    outcomes,
    patrols,
    report,
    tickets,
    verify,
    worker,
)

PAGE_MODULES = (control, tickets, worker, device, devices, analytics, assistant, care, history, incident, audit, login,
                report, verify, care_register, patrols, handoffs, outcomes, hotspots)
