"""Static head in fire-water pipes: how much higher a pressure sensor reads than the riser's most unfavourable
point (its top), from the sensor's place in the community. Pure.

A column of water weighs 1000 kg/m³ x 9.80665 m/s² = 9806.65 Pa per metre: 0.00980665 MPa/m, about 0.01 MPa a
metre. A sensor ``h`` metres below the top of its riser reads ``h x 0.0098`` MPa more than the top while the
water stands still (standby), so the pressure at the most unfavourable point is the reading minus that. Heights
come from floors (:meth:`twin.community.Building.elevation`); the sensor and the top outlet are taken at the same
height above their floors (hydrant outlets sit about 1.1 m above the floor), so that height cancels out.
"""

from __future__ import annotations

from twin.community import Community, Device

MPA_PER_METRE = 0.00980665  # water, standard gravity


def riser_top_floor(community: Community, device: Device) -> int | None:
    """The highest floor of the device's riser: its own ``riser_top``, else its building's top floor."""
    b = community.building(device.building) if device.building is not None else None
    if b is None:
        return None
    return device.riser_top if device.riser_top is not None else b.floors_above


def head_below_top(community: Community, device: Device) -> float | None:
    """Metres of water between ``device`` and the top of its riser (the most unfavourable point), or None when
    the device has no building or floor."""
    b = community.building(device.building) if device.building is not None else None
    top = riser_top_floor(community, device)
    if b is None or top is None or device.floor is None:
        return None
    return b.elevation(top) - b.elevation(device.floor)


def static_offset(head_m: float) -> float:
    """MPa a sensor ``head_m`` metres below the top reads above it (standby, water at rest)."""
    return head_m * MPA_PER_METRE
