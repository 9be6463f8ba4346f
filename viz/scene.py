"""Plotly 3D figures of a community: the overview and one building with its floors pulled apart. Pure.

Geometry comes from :mod:`twin.geometry` merged by colour class, so a community is a handful of
``Mesh3d`` traces however many buildings it has. Figures are plain dicts; vertex and index arrays are
sent as Plotly typed arrays (``{"dtype", "bdata"}``: base64 of the raw little-endian bytes), which
is about 3x smaller than JSON numbers and needs no parsing in the browser.

Each mesh vertex carries the index of its building in ``customdata`` so that hover and click can say
which building the pointer is on; device markers carry the device id. The keyed community mesh is
computed once per :class:`Scene` (and once per exploded building), colouring is a cheap regrouping.
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from twin import geometry as geo
from twin.community import Building, Community, centroid

Figure = dict[str, Any]

BACKGROUND = "#0F172A"
SHAFT_COLOUR = "#5B6B7C"
DEVICE_UNKNOWN = "#CBD5E1"
CLASS_ORDER = ("critical", "major", "minor", "offline", "warning", "normal")
MAX_LABELS = 40  # beyond this many buildings, only buildings with something to see are named
MARKER_LIFT = 0.6  # metres a device marker floats above its floor slab in the exploded view
RESIDENT_STEP = 2.0  # metres between the markers of residents of one floor (the register has no position)
RESIDENT_COLOUR = "#F97316"  # people to evacuate first: unlike every alarm class colour and the selection
BEACON_BASE = 8.0  # metres above the roof of the lowest beacon of a building in the overview
BEACON_STEP = 9.0  # metres between the beacons stacked over one building (the worst is the highest)
BAND_OUT = 0.8  # metres a floor band (an affected floor's outline) stands off the building's walls
LABEL_OUT = 2.5  # metres a floor label stands off its slab's screen-left corner in the exploded view
SELECTED = "#D63AF9"  # the selected alarm: twin.geometry.PALETTE["selected"], unlike every alarm colour
BAND_COLOUR = "#FFFFFF"


def typed(a: npt.NDArray[Any]) -> dict[str, str]:
    """A numpy array as a Plotly typed-array spec (little-endian raw bytes, base64)."""
    arr = np.ascontiguousarray(a)
    dtype = {np.dtype(np.float32): "f4", np.dtype(np.float64): "f8", np.dtype(np.int32): "i4",
             np.dtype(np.int16): "i2", np.dtype(np.uint32): "u4", np.dtype(np.int8): "i1"}[arr.dtype]
    return {"dtype": dtype, "bdata": base64.b64encode(arr.astype(arr.dtype.newbyteorder("<")).tobytes()).decode()}


@dataclass(frozen=True, slots=True)
class Marker:
    """A point drawn over the model: a device, an elevator car, an alarm beacon."""

    id: str
    x: float
    y: float
    z: float
    colour: str
    text: str
    symbol: str = "circle"
    size: int = 6
    label: str = ""  # text drawn beside the marker (e.g. the floor an alarm is on); none when empty
    building: str = ""  # the building it stands for, if any (a beacon names its building)


@dataclass(frozen=True, slots=True)
class Band:
    """An outline around one floor of a building in the overview: the floor an alarm is on."""

    building: str
    floor: int
    colour: str = BAND_COLOUR


class Scene:
    """Figures of one community. Thread-safe for reading; caches the keyed meshes it builds."""

    def __init__(self, community: Community, *, max_exploded_cache: int = 16) -> None:
        self.community = community
        self.buildings: tuple[Building, ...] = tuple(community.buildings)
        self.index = {b.id: n for n, b in enumerate(self.buildings)}
        self._mesh = geo.community_mesh(community, ground=True)
        self._exploded: OrderedDict[str, geo.Mesh] = OrderedDict()
        self._max_exploded = max_exploded_cache
        self._points = geo.device_points(community)
        self._point_index = {d: n for n, d in enumerate(self._points.ids)}
        self.tops = {b.id: geo.building_top(b) for b in self.buildings}
        self.centres = {b.id: centroid(b.footprint) for b in self.buildings}

    # -- meshes -------------------------------------------------------------------------------------

    def _exploded_mesh(self, building: str) -> geo.Mesh:
        m = self._exploded.get(building)
        if m is None:
            m = geo.community_mesh(self.community, exploded=building, buildings=[building], ground=False)
            self._exploded[building] = m
            while len(self._exploded) > self._max_exploded:
                self._exploded.popitem(last=False)
        else:
            self._exploded.move_to_end(building)
        return m

    def _mesh_traces(self, mesh: geo.Mesh, classify: Callable[[geo.FloorKey], str], labels: Mapping[str, str],
                     *, opacity: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
        groups = geo.group_by(mesh, classify)
        traces = []
        order = [*CLASS_ORDER, "shaft", "selected", "ground"]
        for cls in sorted(groups, key=lambda c: order.index(c) if c in order else len(order)):
            m = groups[cls]
            arr = geo.to_arrays(m)
            # building index of each vertex (slabs share no vertices across keys)
            key_building = np.array([self.index.get(k[0], -1) for k in m.keys], dtype=np.int16)
            vb = np.full(len(m.vertices), -1, dtype=np.int16)
            vb[m.triangles.reshape(-1)] = np.repeat(key_building[m.triangle_key], 3)
            colour = SHAFT_COLOUR if cls == "shaft" else geo.PALETTE[cls]
            trace: dict[str, Any] = {
                "type": "mesh3d", "name": labels.get(cls, cls), "color": colour,
                "x": typed(arr["x"]), "y": typed(arr["y"]), "z": typed(arr["z"]),
                "i": typed(arr["i"]), "j": typed(arr["j"]), "k": typed(arr["k"]),
                # a plain list, not a typed array: dcc.Graph looks customdata up by index in the trace's input
                # data for hover/click events, which fails on a typed-array spec (gzip makes the list small)
                "flatshading": True, "customdata": vb.tolist(),
                "lighting": {"ambient": 0.55, "diffuse": 0.8, "specular": 0.05, "roughness": 0.9},
                "lightposition": {"x": 1000, "y": 2000, "z": 5000},
                "hoverinfo": "none", "showlegend": cls not in ("ground", "shaft"), "legendgroup": cls,
            }
            if cls == "ground":
                trace["hoverinfo"] = "skip"
            if opacity and cls in opacity:
                trace["opacity"] = opacity[cls]
            traces.append(trace)
        return traces

    # -- figures ------------------------------------------------------------------------------------

    def overview(self, building_class: Mapping[str, str], labels: Mapping[str, str], *,
                 beacons: Sequence[Marker] = (), names: Mapping[str, str] | None = None,
                 bands: Sequence[Band] = (), selected: Sequence[Marker] = ()) -> Figure:
        """The whole community, each building in the colour of its class (default ``normal``).

        ``beacons``: alarm markers over the roofs (their ``label`` beside them); a building with a beacon
        is named by its beacons' labels, not again by its name. ``bands``: outlines around the floors the
        alarms are on. ``selected``: the selected alarm's markers (a big ring with its label).
        """

        def classify(key: geo.FloorKey) -> str:
            return "ground" if key == geo.GROUND_KEY else building_class.get(key[0], "normal")

        traces = self._mesh_traces(self._mesh, classify, labels)
        named = names or {}
        beaconed = {m.building for m in beacons if m.building}
        show = [b for b in self.buildings if b.id not in beaconed
                and (len(self.buildings) <= MAX_LABELS or building_class.get(b.id, "normal") != "normal")]
        notes: list[dict[str, Any]] = []
        if show and named:
            notes += [_note(self.centres[b.id][0], self.centres[b.id][1], self.tops[b.id] + 4, named.get(b.id, b.id),
                            "#E2E8F0", 12, "center") for b in show]
        rings = [self._band(band) for band in bands if band.building in self.index]
        for colour in dict.fromkeys(band.colour for band in bands if band.building in self.index):
            traces.append(_lines_trace([r for r, band in zip(rings, bands, strict=True) if band.colour == colour],
                                       colour, width=7 if colour == SELECTED else 5))
        if beacons:
            traces.append(_marker_trace(beacons, labels.get("beacon", "beacon"), showlegend=True))
        if selected:
            traces.append(_marker_trace(selected, labels.get("selected", "selected"), showlegend=True))
        notes += _marker_notes([*beacons, *selected])
        return _figure(traces, "overview", _bounds(self._mesh), "scene", notes)

    def _band(self, band: Band) -> list[tuple[float, float, float]]:
        """A closed outline around the walls of one floor (at its mid-height) of a building."""
        b = self.buildings[self.index[band.building]]
        cx, cy = self.centres[band.building]
        z = sum(geo.floor_span(b, band.floor)) / 2
        ring = []
        for x, y in [*b.footprint, b.footprint[0]]:
            dx, dy = x - cx, y - cy
            d = max((dx * dx + dy * dy) ** 0.5, 1e-6)
            ring.append((x + dx / d * BAND_OUT, y + dy / d * BAND_OUT, z))
        return ring

    def exploded(self, building: str, floor_class: Mapping[int, str], labels: Mapping[str, str], *,
                 devices: Sequence[Marker] = (), cars: Sequence[Marker] = (),
                 floor_names: Mapping[int, str] | None = None, selected: Sequence[Marker] = (),
                 selected_floor: int | None = None, residents: Sequence[Marker] = ()) -> Figure:
        """One building with its floors pulled apart, floors coloured on their own, devices and cars.

        Each floor is named beside its own slab, at the slab's mid-height, off the corner that is leftmost
        on screen from the default camera (the label runs leftwards, away from the slab), in the colour
        of the floor's class. ``selected``: the selected alarm's markers; ``selected_floor``: its floor
        (outlined, its label in the selection colour). ``residents``: people to evacuate first (limited
        mobility), on their floors (:meth:`resident_xyz`)."""
        if building not in self.index:
            raise KeyError(building)

        def classify(key: geo.FloorKey) -> str:
            if key[1] == geo.SHAFTS:
                return "shaft"
            return floor_class.get(key[1], "normal")

        mesh = self._exploded_mesh(building)
        traces = self._mesh_traces(mesh, classify, labels, opacity={"shaft": 0.25})
        b = self.buildings[self.index[building]]
        notes: list[dict[str, Any]] = []
        if floor_names:
            x0, y0 = _label_anchor(b.footprint)
            floors = list(b.floors)

            def colour(f: int) -> str:
                if f == selected_floor:
                    return SELECTED
                cls = floor_class.get(f, "normal")
                return "#CBD5E1" if cls == "normal" else geo.PALETTE.get(cls, "#CBD5E1")

            notes += [_note(x0, y0, sum(geo.floor_span(b, f, exploded=True)) / 2, floor_names.get(f, str(f)),
                            colour(f), 11, "right") for f in floors]
        if selected_floor is not None and selected_floor in b.floors:
            z = geo.floor_span(b, selected_floor, exploded=True).top + 0.1
            ring = [(x, y, z) for x, y in [*b.footprint, b.footprint[0]]]
            traces.append(_lines_trace([ring], SELECTED, width=7))
        if devices:
            traces.append(_marker_trace(devices, labels.get("devices", "devices"), showlegend=True))
        if cars:
            traces.append(_marker_trace(cars, labels.get("cars", "cars"), showlegend=True))
        if residents:
            traces.append(_marker_trace(residents, labels.get("residents", "residents"), showlegend=True))
            notes += _marker_notes(residents)
        if selected:
            traces.append(_marker_trace(selected, labels.get("selected", "selected"), showlegend=True))
            ax, ay = _label_anchor(b.footprint, right=True)  # beside the building, not over its slabs
            notes += _marker_notes([replace(m, x=ax, y=ay) for m in selected], offset=False)
        # each building its own 3D subplot: Plotly then builds a fresh WebGL scene when the view changes
        # (as a reload does) instead of reusing the previous one, whose markers and texts it draws at half size
        return _figure(traces, f"building:{building}", _bounds(mesh), f"scene{self.index[building] + 2}", notes)

    def heat(self, values: Mapping[geo.FloorKey, float], hover: Mapping[geo.FloorKey, str], *,
             colorscale: Sequence[tuple[float, str]], cmax: float, title: str, building: str | None = None,
             notes: Mapping[int, str] | None = None) -> Figure:
        """Floor slabs coloured by ``values`` (missing: 0) on the sequential ``colorscale`` from 0 to ``cmax``,
        with a colour bar titled ``title``: the community, or ``building`` with its floors pulled apart (and
        ``notes``: labels beside some of its floors). ``hover``: each floor's hover text. One mesh trace
        for all slabs (a value per vertex; slabs share no vertices), the ground and shafts plain."""
        if building is not None and building not in self.index:
            raise KeyError(building)
        mesh = self._mesh if building is None else self._exploded_mesh(building)

        def plain(k: geo.FloorKey) -> bool:
            return k == geo.GROUND_KEY or k[1] == geo.SHAFTS

        traces = self._mesh_traces(mesh.select(plain), lambda k: "ground" if k == geo.GROUND_KEY else "shaft", {},
                                   opacity={"shaft": 0.25} if building else None)
        slabs = mesh.select(lambda k: not plain(k))
        if slabs.keys:
            arr = geo.to_arrays(slabs)
            vk = np.zeros(len(slabs.vertices), dtype=np.int32)
            vk[slabs.triangles.reshape(-1)] = np.repeat(slabs.triangle_key, 3)
            key_value = np.array([values.get(k, 0.0) for k in slabs.keys], dtype=np.float32)
            key_text = [hover.get(k, "") for k in slabs.keys]
            traces.append({
                "type": "mesh3d", "name": title, "x": typed(arr["x"]), "y": typed(arr["y"]), "z": typed(arr["z"]),
                "i": typed(arr["i"]), "j": typed(arr["j"]), "k": typed(arr["k"]),
                "intensity": typed(key_value[vk]), "intensitymode": "vertex",
                "colorscale": [list(c) for c in colorscale],
                "cmin": 0, "cmax": max(cmax, 1.0), "showscale": True,
                "colorbar": {"title": {"text": title}, "thickness": 14, "len": 0.6, "x": 1.0, "xanchor": "right",
                             "bgcolor": "rgba(15,23,42,0.7)", "tickfont": {"color": "#E2E8F0"}},
                "hovertext": [key_text[n] for n in vk.tolist()], "hoverinfo": "text",
                "customdata": [self.index.get(slabs.keys[n][0], -1) for n in vk.tolist()],
                "flatshading": True, "lighting": {"ambient": 0.6, "diffuse": 0.7, "specular": 0.05, "roughness": 0.9},
                "lightposition": {"x": 1000, "y": 2000, "z": 5000}, "showlegend": False,
            })
        marks: list[dict[str, Any]] = []
        if building is not None and notes:
            b = self.buildings[self.index[building]]
            x0, y0 = _label_anchor(b.footprint)
            marks = [_note(x0, y0, sum(geo.floor_span(b, f, exploded=True)) / 2, text, "#E2E8F0", 11, "right")
                     for f, text in notes.items() if f in b.floors]
        scene_id = "scene" if building is None else f"scene{self.index[building] + 2}"
        return _figure(traces, f"heat:{building or ''}", _bounds(mesh), scene_id, marks)

    # -- positions ----------------------------------------------------------------------------------

    def device_xyz(self, device_id: str, *, exploded: str | None = None) -> tuple[float, float, float] | None:
        """Where a device is drawn; above its floor slab when its building is exploded."""
        n = self._point_index.get(device_id)
        if n is None:
            return None
        x, y, z = (float(v) for v in self._points.xyz[n])
        key = self._points.keys[n]
        if exploded is not None and key is not None and key[0] == exploded:
            b = self.buildings[self.index[exploded]]
            z = geo.floor_span(b, key[1], exploded=True)[1] + MARKER_LIFT
        return x, y, z

    def resident_xyz(self, building: str, floor: int, slot: int = 0) -> tuple[float, float, float] | None:
        """Where a resident of ``floor`` is drawn in the building's exploded view: the register knows the unit,
        not where in the floor it is, so residents of one floor stand in a row from the footprint's centre
        (``slot``: their place in the row); None when the building has no such floor."""
        if building not in self.index:
            return None
        b = self.buildings[self.index[building]]
        if floor not in b.floors:
            return None
        cx, cy = self.centres[building]
        return cx + RESIDENT_STEP * slot, cy, geo.floor_span(b, floor, exploded=True).top + MARKER_LIFT

    def car_z(self, building: str, floor: float) -> float | None:
        """Height of an elevator car at (possibly fractional) ``floor`` in the exploded building."""
        b = self.buildings[self.index[building]]
        floors = list(b.floors)
        if not floors:
            return None
        f = min(max(floor, floors[0]), floors[-1])
        lo = max((x for x in floors if x <= f), default=floors[0])
        hi = min((x for x in floors if x >= f), default=floors[-1])
        z_lo = sum(geo.floor_span(b, lo, exploded=True)) / 2
        if hi == lo:
            return z_lo
        z_hi = sum(geo.floor_span(b, hi, exploded=True)) / 2
        return z_lo + (z_hi - z_lo) * (f - lo) / (hi - lo)

    def beacon_z(self, building: str | None, slot: int = 0) -> float:
        """Height of the ``slot``-th beacon (from the bottom) stacked over a building's roof."""
        return (self.tops.get(building, 0.0) if building else 0.0) + BEACON_BASE + slot * BEACON_STEP


def _label_anchor(footprint: Sequence[tuple[float, float]], *, right: bool = False) -> tuple[float, float]:
    """Where a floor's label stands: off the footprint corner leftmost (``right``: rightmost) on screen
    from the default camera."""
    ex, ey = EYE_DIRECTION[0], EYE_DIRECTION[1]
    left = (-ey, ex) if right else (ey, -ex)  # screen-left of a camera looking along -EYE_DIRECTION
    n = (left[0] ** 2 + left[1] ** 2) ** 0.5
    lx, ly = left[0] / n, left[1] / n
    x, y = max(footprint, key=lambda p: p[0] * lx + p[1] * ly)
    return x + lx * LABEL_OUT, y + ly * LABEL_OUT


def _lines_trace(rings: Sequence[Sequence[tuple[float, float, float]]], colour: str, *, width: int) -> dict[str, Any]:
    xs: list[float | None] = []
    ys: list[float | None] = []
    zs: list[float | None] = []
    for ring in rings:
        for x, y, z in ring:
            xs.append(x)
            ys.append(y)
            zs.append(z)
        xs.append(None)
        ys.append(None)
        zs.append(None)
    return {"type": "scatter3d", "mode": "lines", "showlegend": False, "hoverinfo": "skip", "connectgaps": False,
            "x": xs, "y": ys, "z": zs, "line": {"color": colour, "width": width}}


def _note(x: float, y: float, z: float, text: str, colour: str, size: int, anchor: str) -> dict[str, Any]:
    """A text label at a point of the 3D scene: a scene annotation, which Plotly draws as SVG over the
    WebGL canvas (a ``scatter3d`` text trace is tessellated glyph by glyph into WebGL meshes, which took
    about half of the first draw of the sample community on software WebGL). ``anchor``: which side of
    the text is at the point (``left``: the text runs to the right of it)."""
    return {"x": x, "y": y, "z": z, "text": text, "showarrow": False, "xanchor": anchor,
            "font": {"color": colour, "size": size}}


def _marker_notes(markers: Sequence[Marker], *, offset: bool = True) -> list[dict[str, Any]]:
    """The markers' labels, each a little to the right on screen of its marker (not over it)."""
    rx, ry = -EYE_DIRECTION[1], EYE_DIRECTION[0]  # screen-right of the default camera (horizontal part)
    n = (rx * rx + ry * ry) ** 0.5
    dx, dy = (rx / n * LABEL_OUT, ry / n * LABEL_OUT) if offset else (0.0, 0.0)
    return [_note(m.x + dx, m.y + dy, m.z, m.label, m.colour, 13, "left") for m in markers if m.label]


def _marker_trace(markers: Sequence[Marker], name: str, *, showlegend: bool) -> dict[str, Any]:
    return {
        "type": "scatter3d", "mode": "markers", "name": name, "showlegend": showlegend,
        "x": [m.x for m in markers], "y": [m.y for m in markers], "z": [m.z for m in markers],
        "customdata": [m.id for m in markers], "hovertext": [m.text for m in markers], "hoverinfo": "text",
        "marker": {"color": [m.colour for m in markers], "size": [m.size for m in markers],
                   "symbol": [m.symbol for m in markers], "line": {"color": "#0F172A", "width": 1}},
    }


def _bounds(mesh: geo.Mesh) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    lo = mesh.vertices.min(axis=0)
    hi = mesh.vertices.max(axis=0)
    return (float(lo[0]), float(lo[1]), float(lo[2])), (float(hi[0]), float(hi[1]), float(hi[2]))


EYE_DIRECTION = (-0.53, -0.72, 0.45)  # from the south-west, looking down a little
EYE_NEAR, EYE_FAR = 1.15, 1.0  # eye distance = near + far * (second largest side), largest side = 1


def _figure(traces: list[dict[str, Any]], revision: str,
            bounds: tuple[tuple[float, float, float], tuple[float, float, float]], scene_id: str,
            notes: Sequence[dict[str, Any]] = ()) -> Figure:
    """True proportions (a 33-storey tower is tall and thin), with the camera far enough to see it all.

    Every trace is drawn in the 3D subplot ``scene_id`` (``scene``, ``scene2``, ...); ``notes`` are its
    text labels (:func:`_note`)."""
    for tr in traces:
        tr["scene"] = scene_id
    axis = {"visible": False, "showspikes": False}
    lo, hi = bounds
    span = [max(h - low, 1.0) for low, h in zip(lo, hi, strict=True)]
    biggest = max(span)
    ratio = {"x": span[0] / biggest, "y": span[1] / biggest, "z": span[2] / biggest}
    norm = sum(c * c for c in EYE_DIRECTION) ** 0.5
    second = sorted(ratio.values())[1]  # a thin tower can be looked at from closer than a wide estate
    distance = EYE_NEAR + EYE_FAR * second
    eye = {k: c / norm * distance for k, c in zip("xyz", EYE_DIRECTION, strict=True)}
    return {
        "data": traces,
        "layout": {
            # a transparent paper: the server-drawn first frame (viz.poster) under the graph shows until the
            # scene's own background (bgcolor, drawn by WebGL with the meshes) covers it
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": BACKGROUND, "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "uirevision": revision, "hovermode": "closest", "font": {"color": "#E2E8F0"},
            "legend": {"x": 0.01, "y": 0.02, "bgcolor": "rgba(15,23,42,0.7)", "font": {"size": 12}},
            scene_id: {"xaxis": axis, "yaxis": axis, "zaxis": axis, "aspectmode": "manual", "aspectratio": ratio,
                      "bgcolor": BACKGROUND, "dragmode": "turntable", "camera": {"eye": eye},
                      "annotations": list(notes)},
        },
    }
