"""Fire panel events placed at the component that tripped. Pure.

A fire alarm control panel reports each component's state with the component's address (GB 26875.3 user
information transmission: loop-address); the community's address table (:attr:`twin.community.Device.components`)
says which detector or call point that is. The engine hands a panel's event carrying an address (in its detail:
``"component 1-23 ..."``, :func:`twin.community.address_in_detail`) to the panel's rules through a
:class:`ComponentView`: the panel's rules and index, but the component's building, floor and device as the
alarm's subject, so the alarm lands where the fire is, not at the panel on floor 1.

An address the table does not hold still alarms (a fire alarm is never dropped): at the panel, one subject per
address (``B1-FACP#1-99``) so that each is raised and cleared on its own, with the address in the detail. At most
:data:`MAX_UNKNOWN` such addresses are tracked per panel (the detail comes from outside); past that the panel's
own subject takes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twin.alarms import Subject
from twin.community import Community
from twin.rules.evaluators.base import TrackedDevice

MAX_UNKNOWN = 64


class ComponentView(TrackedDevice):
    """A panel's component as a subject of the panel's rules. ``note`` goes at the end of every alarm detail."""

    __slots__ = ("address", "note", "panel")

    def __init__(self, panel: TrackedDevice, address: str, subject: Subject, note: str) -> None:
        super().__init__(subject.id, panel.kind, subject.building, subject.floor, None)
        self.subject, self.panel, self.address, self.note = subject, panel.id, address, note
        self.by_event = panel.by_event  # the panel's rules (its building and device filters)


class PanelComponents:
    """The component views of every fire panel with an address table, and the unknown addresses seen."""

    def __init__(self, community: Community, devices: dict[str, TrackedDevice]) -> None:
        """``devices``: the engine's tracked devices (indexed already); unknown-address subjects join them."""
        self.views: dict[str, dict[str, ComponentView]] = {}  # panel -> address -> view
        self.unknown: dict[str, dict[str, ComponentView]] = {}  # panel -> address -> view (registered devices)
        self._devices = devices
        for d in community.devices:
            panel = devices.get(d.id)
            if d.kind != "fire_panel" or panel is None:
                continue
            table = self.views[d.id] = {}
            for address, comp_id in (d.components or {}).items():
                comp = community.device(comp_id)
                if comp is not None:
                    table[address] = ComponentView(
                        panel, address, Subject(comp.id, "device", comp.building, comp.floor, comp.id),
                        f"(reported by {d.id}, component {address})")

    def is_panel(self, device_id: str) -> bool:
        """Whether ``device_id`` is a fire panel (its events may name components)."""
        return device_id in self.views

    def view(self, panel: TrackedDevice, address: str) -> TrackedDevice:
        """Where a panel event naming ``address`` is placed: the component, else an unknown-address subject at the
        panel (registered with the engine's devices so that its state survives a restart), else the panel."""
        known = self.views.get(panel.id, {}).get(address)
        if known is not None:
            return known
        seen = self.unknown.setdefault(panel.id, {})
        view = seen.get(address)
        if view is None:
            if len(seen) >= MAX_UNKNOWN:
                return panel
            view = seen[address] = ComponentView(
                panel, address, Subject(f"{panel.id}#{address}", "device", panel.building, panel.floor, panel.id),
                f"(component {address}: not in {panel.id}'s address table, placed at the panel)")
            self._devices[view.id] = view
        return view

    def all_views(self, panel_id: str) -> list[ComponentView]:
        """Every component subject of a panel (what a panel reset clears)."""
        return [*self.views.get(panel_id, {}).values(), *self.unknown.get(panel_id, {}).values()]

    def snapshot(self) -> dict[str, list[str]]:
        return {p: sorted(seen) for p, seen in self.unknown.items() if seen}

    def restore(self, data: Mapping[str, Any]) -> None:
        for panel_id, addresses in data.items():
            panel = self._devices.get(panel_id)
            if panel is not None and self.is_panel(panel_id):
                for address in addresses:
                    self.view(panel, str(address))
