"""3D geometry of a community as numpy triangle meshes: floors, elevator shafts, devices, ground. Pure.

Everything here is a function of a :class:`~twin.community.Community` and returns numpy arrays; no
rendering library is imported (the renderers in ``viz/`` turn these arrays into pyvista or Plotly
objects). Coordinates are the community's local metres: x east, y north, z up, z = 0 at ground level.

- Each building floor is its own closed prism ("slab") so that a floor can be coloured on its own:
  floor ``f`` of a building with floor height ``h`` spans ``z = idx * h`` to ``idx * h + h - gap``,
  where ``idx`` is ``f - 1`` above ground and ``f`` below it (no floor 0: B1 = -1 spans ``-h..0``).
  The small ``gap`` leaves a visible seam between floors.
- Footprints may be concave (L- and T-shaped towers are common); caps are triangulated by ear clipping.
- Every triangle carries a key ``(building id, floor)``. Elevator shafts are keyed ``(building id,
  SHAFTS)``: there is no floor 0 in Chinese floor numbering, so the key cannot collide with a floor.
  The ground plane is keyed :data:`GROUND_KEY`.
- :func:`meshes_by_class` merges the whole community into one mesh per colour class (a handful of
  meshes, whatever the number of buildings), which is what keeps rendering fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

import numpy as np
import numpy.typing as npt

from twin.community import Building, Community, Point

FloorKey = tuple[str, int]
F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]

# Colour classes and their RGB hex colours. The alarm classes follow the severities of the live state
# (twin.state.Level); "selected" marks what the user picked or the alarm being shown.
PALETTE: Mapping[str, str] = {
    "normal": "#8EA4BA",    # calm blue-grey: nothing to see
    "warning": "#F2E35C",   # pale yellow: a value outside its normal range
    "minor": "#F5B800",     # amber
    "major": "#F57C00",     # orange
    "critical": "#E3161B",  # red: fire alarm, entrapment, gas level 2
    "offline": "#6B6F76",   # grey: no heartbeat
    "selected": "#D63AF9",  # magenta: unlike every alarm colour
    "ground": "#3A4A3F",    # dark muted green
}

SHAFTS = 0  # floor number in a key that means "this building's elevator shafts" (there is no floor 0)
GROUND_KEY: FloorKey = ("", SHAFTS)
FLOOR_GAP = 0.25  # metres between one floor slab and the next, so floors read as separate
EXPLODE_GAP = 4.0  # metres added between floors of an exploded building
SHAFT_SIZE = 2.2  # metres, side of an elevator shaft box (a typical passenger lift shaft)
SHAFT_OVERRUN = 1.8  # metres a shaft rises above its top served floor (overhead / machine room)
GROUND_MARGIN = 20.0  # metres of ground around the outermost building
OUTDOOR_DEVICE_Z = 1.0  # metres above ground for a device with no floor


class GeometryError(ValueError):
    """A geometry request that does not fit the community (unknown class, degenerate footprint)."""


@dataclass(frozen=True, slots=True, eq=False)
class Mesh:
    """Triangles with a ``(building, floor)`` key each; arrays are read-only.

    ``vertices`` float32 (N, 3); ``triangles`` int32 (M, 3) indices into ``vertices``;
    ``triangle_key`` int32 (M,) indices into ``keys``; ``keys`` the distinct keys in this mesh.
    """

    vertices: F32
    triangles: I32
    triangle_key: I32
    keys: tuple[FloorKey, ...]

    def __post_init__(self) -> None:
        for a in (self.vertices, self.triangles, self.triangle_key):
            a.setflags(write=False)

    @property
    def n_triangles(self) -> int:
        return int(self.triangles.shape[0])

    def key_set(self) -> set[FloorKey]:
        """The keys some triangle of this mesh actually carries."""
        return {self.keys[i] for i in np.unique(self.triangle_key).tolist()}

    def select(self, keep: Callable[[FloorKey], bool]) -> Mesh:
        """The triangles whose key satisfies ``keep``, with unused vertices dropped."""
        wanted = np.array([keep(k) for k in self.keys], dtype=bool)
        if not wanted.size:
            return empty_mesh()
        return _subset(self, wanted[self.triangle_key])


class Mesh3dArrays(TypedDict):
    """Keyword arguments of ``plotly.graph_objects.Mesh3d``: ``go.Mesh3d(**to_arrays(mesh))``."""

    x: F32
    y: F32
    z: F32
    i: I32
    j: I32
    k: I32


@dataclass(frozen=True, slots=True, eq=False)
class DevicePoints:
    """Device positions: ``ids[n]`` sits at ``xyz[n]`` (float32, mid-height of its floor), key ``keys[n]``."""

    ids: tuple[str, ...]
    xyz: F32
    keys: tuple[FloorKey | None, ...]

    def __post_init__(self) -> None:
        self.xyz.setflags(write=False)

    def index(self, device_id: str) -> int:
        return self.ids.index(device_id)


def empty_mesh() -> Mesh:
    return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros(0, np.int32), ())


# -- plane: footprints and ear clipping ------------------------------------------------------------------


def clean_polygon(poly: Iterable[Point]) -> list[Point]:
    """Drop a repeated closing point, consecutive duplicates and collinear points; make it counter-clockwise."""
    pts: list[Point] = []
    for p in poly:
        q = (float(p[0]), float(p[1]))
        if not pts or q != pts[-1]:
            pts.append(q)
    while len(pts) > 1 and pts[0] == pts[-1]:
        pts.pop()
    changed = True
    while changed and len(pts) > 3:
        changed = False
        for i in range(len(pts)):
            a, b, c = pts[i - 1], pts[i], pts[(i + 1) % len(pts)]
            if abs(_cross(a, b, c)) < 1e-9:
                del pts[i]
                changed = True
                break
    if len(pts) < 3 or abs(polygon_area(pts)) < 1e-9:
        raise GeometryError("polygon has fewer than 3 distinct corners or no area")
    if polygon_area(pts) < 0:
        pts.reverse()
    return pts


def polygon_area(poly: list[Point]) -> float:
    """Signed area (shoelace): positive when counter-clockwise."""
    n = len(poly)
    return 0.5 * sum(poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1] for i in range(n))


def _cross(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _inside_triangle(p: Point, a: Point, b: Point, c: Point) -> bool:
    """p inside or on the border of the counter-clockwise triangle abc."""
    return _cross(a, b, p) >= 0 and _cross(b, c, p) >= 0 and _cross(c, a, p) >= 0


def triangulate(poly: list[Point]) -> list[tuple[int, int, int]]:
    """Ear clipping of a simple counter-clockwise polygon (convex or concave, no holes).

    Returns ``n - 2`` counter-clockwise triangles as indices into ``poly``. O(n^2) per ear, which is
    nothing for building footprints (a few dozen corners at most).
    """
    n = len(poly)
    if n < 3:
        raise GeometryError("a polygon needs at least 3 corners")
    idx = list(range(n))
    tris: list[tuple[int, int, int]] = []
    while len(idx) > 3:
        m = len(idx)
        for k in range(m):
            i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % m]
            a, b, c = poly[i0], poly[i1], poly[i2]
            if _cross(a, b, c) <= 1e-12:
                continue  # reflex or flat corner: not an ear
            others = (poly[j] for j in idx if j not in (i0, i1, i2))
            if any(_inside_triangle(p, a, b, c) for p in others):
                continue
            tris.append((i0, i1, i2))
            del idx[k]
            break
        else:
            # Only flat corners left (or a self-touching input): clip the flattest one so we always finish.
            k = min(range(m), key=lambda k: abs(_cross(poly[idx[k - 1]], poly[idx[k]], poly[idx[(k + 1) % m]])))
            tris.append((idx[k - 1], idx[k], idx[(k + 1) % m]))
            del idx[k]
    tris.append((idx[0], idx[1], idx[2]))
    return tris


# -- floors ---------------------------------------------------------------------------------------------


def floor_index(floor: int) -> int:
    """Storey index from the ground: floor 1 -> 0, floor 2 -> 1, B1 (-1) -> -1, B2 (-2) -> -2."""
    if floor == 0:
        raise GeometryError("there is no floor 0")
    return floor - 1 if floor > 0 else floor


class FloorSpan(NamedTuple):
    """Bottom and top z of a floor slab, in metres."""

    bottom: float
    top: float


def floor_span(
    building: Building, floor: int, *, exploded: bool = False, gap: float = FLOOR_GAP,
    explode_gap: float = EXPLODE_GAP,
) -> FloorSpan:
    """(bottom z, top z) of a floor slab in metres; ``exploded`` pulls the building's floors apart."""
    h = building.floor_height
    step = h + (explode_gap if exploded else 0.0)
    z0 = floor_index(floor) * step
    return FloorSpan(z0, z0 + h - gap)


def building_top(building: Building, *, exploded: bool = False, explode_gap: float = EXPLODE_GAP) -> float:
    """z of the roof (top of the highest floor slab)."""
    return floor_span(building, building.floors_above, exploded=exploded, explode_gap=explode_gap, gap=0.0).top


def _prism_template(n: int, cap: list[tuple[int, int, int]]) -> npt.NDArray[np.int64]:
    """Triangles of one closed prism over an n-gon: vertices 0..n-1 bottom ring, n..2n-1 top ring."""
    top = np.asarray(cap, dtype=np.int64) + n
    bottom = np.asarray(cap, dtype=np.int64)[:, ::-1]  # reversed: the bottom faces down
    i = np.arange(n)
    j = (i + 1) % n
    # Side of edge i->j, outward for a counter-clockwise footprint: (b_i, b_j, t_j), (b_i, t_j, t_i).
    side = np.concatenate([np.stack([i, j, j + n], axis=1), np.stack([i, j + n, i + n], axis=1)])
    return np.concatenate([bottom, top, side])


def _prisms(ring: npt.NDArray[np.float64], cap: list[tuple[int, int, int]],
            z0: npt.NDArray[np.float64], z1: npt.NDArray[np.float64]) -> tuple[F32, npt.NDArray[np.int64]]:
    """k stacked prisms over one footprint ring: vertices (k*2n, 3) and triangles (k*T, 3), vectorised."""
    n, k = ring.shape[0], z0.shape[0]
    verts = np.empty((k, 2, n, 3), dtype=np.float32)
    verts[:, :, :, 0] = ring[:, 0]
    verts[:, :, :, 1] = ring[:, 1]
    verts[:, 0, :, 2] = z0[:, None]
    verts[:, 1, :, 2] = z1[:, None]
    tmpl = _prism_template(n, cap)
    tris = tmpl[None, :, :] + (np.arange(k, dtype=np.int64) * 2 * n)[:, None, None]
    return verts.reshape(-1, 3), tris.reshape(-1, 3)


def _box_ring(center: Point, size: float) -> npt.NDArray[np.float64]:
    x, y, s = center[0], center[1], size / 2
    return np.array([(x - s, y - s), (x + s, y - s), (x + s, y + s), (x - s, y + s)], dtype=np.float64)


_BOX_CAP = [(0, 1, 2), (0, 2, 3)]


@dataclass(frozen=True, slots=True)
class _MeshPart:
    """The triangles of one building (or of the ground), before the parts are merged into one mesh."""

    vertices: F32
    triangles: npt.NDArray[np.int64]
    tri_keys: npt.NDArray[np.int64]  # per triangle, index into keys
    keys: list[FloorKey]


def _building_part(b: Building, community: Community, *, exploded: bool, gap: float, explode_gap: float,
                   shafts: bool) -> _MeshPart:
    ring_pts = clean_polygon(b.footprint)
    cap = triangulate(ring_pts)
    ring = np.asarray(ring_pts, dtype=np.float64)
    floors = b.floors
    spans = np.array([floor_span(b, f, exploded=exploded, gap=gap, explode_gap=explode_gap) for f in floors])
    verts, tris = _prisms(ring, cap, spans[:, 0], spans[:, 1])
    per_floor = len(tris) // len(floors)
    keys: list[FloorKey] = [(b.id, f) for f in floors]
    tri_keys = np.repeat(np.arange(len(floors), dtype=np.int64), per_floor)
    if shafts:
        lifts = [e for e in community.elevators if e.building == b.id]
        if lifts:
            lowest, highest = (e.serves[0] for e in lifts), (e.serves[1] for e in lifts)
            z0 = np.array([floor_span(b, f, exploded=exploded, explode_gap=explode_gap).bottom for f in lowest])
            z1 = np.array([floor_span(b, f, exploded=exploded, explode_gap=explode_gap, gap=0.0).top
                           + SHAFT_OVERRUN for f in highest])
            sv, st = [], []
            for n, e in enumerate(lifts):
                v, t = _prisms(_box_ring(e.shaft, SHAFT_SIZE), _BOX_CAP, z0[n:n + 1], z1[n:n + 1])
                sv.append(v)
                st.append(t + len(verts) + 8 * n)
            verts = np.concatenate([verts, *sv])
            shaft_tris = np.concatenate(st)
            tris = np.concatenate([tris, shaft_tris])
            tri_keys = np.concatenate([tri_keys, np.full(len(shaft_tris), len(keys), dtype=np.int64)])
            keys.append((b.id, SHAFTS))
    return _MeshPart(verts, tris, tri_keys, keys)


def community_bounds(community: Community) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of all building footprints."""
    pts = np.array([p for b in community.buildings for p in b.footprint], dtype=np.float64)
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def ground_mesh(community: Community, *, margin: float = GROUND_MARGIN, z: float = -0.02) -> Mesh:
    """A rectangle under the whole community (slightly below 0 so building bottoms do not flicker)."""
    x0, y0, x1, y1 = community_bounds(community)
    v = np.array([(x0 - margin, y0 - margin, z), (x1 + margin, y0 - margin, z),
                  (x1 + margin, y1 + margin, z), (x0 - margin, y1 + margin, z)], dtype=np.float32)
    return Mesh(v, np.array(_BOX_CAP, dtype=np.int32), np.zeros(2, np.int32), (GROUND_KEY,))


def community_mesh(
    community: Community, *, exploded: str | None = None, gap: float = FLOOR_GAP,
    explode_gap: float = EXPLODE_GAP, shafts: bool = True, ground: bool = False,
    buildings: Iterable[str] | None = None,
) -> Mesh:
    """Every floor slab (and elevator shaft) of the community in one keyed mesh.

    ``exploded``: id of one building whose floors are pulled apart by ``explode_gap`` metres.
    ``buildings``: only these building ids (default all). ``ground``: include the ground plane.
    """
    wanted = None if buildings is None else set(buildings)
    parts = [_building_part(b, community, exploded=b.id == exploded, gap=gap, explode_gap=explode_gap,
                            shafts=shafts)
             for b in community.buildings if wanted is None or b.id in wanted]
    if ground:
        g = ground_mesh(community)
        parts.append(_MeshPart(g.vertices, g.triangles.astype(np.int64), g.triangle_key.astype(np.int64), list(g.keys)))
    return _merge(parts)


def _merge(parts: list[_MeshPart]) -> Mesh:
    if not parts:
        return empty_mesh()
    v_off = np.cumsum([0] + [len(p.vertices) for p in parts])
    k_off = np.cumsum([0] + [len(p.keys) for p in parts])
    verts = np.concatenate([p.vertices for p in parts]).astype(np.float32, copy=False)
    tris = np.concatenate([p.triangles + v_off[n] for n, p in enumerate(parts)])
    tri_keys = np.concatenate([p.tri_keys + k_off[n] for n, p in enumerate(parts)])
    keys = tuple(k for p in parts for k in p.keys)
    return Mesh(verts, tris.astype(np.int32), tri_keys.astype(np.int32), keys)


def _subset(mesh: Mesh, tri_mask: npt.NDArray[np.bool_]) -> Mesh:
    """The triangles selected by ``tri_mask``, with vertices and keys compacted."""
    tris = mesh.triangles[tri_mask]
    used, inverse = np.unique(tris, return_inverse=True)
    tri_keys = mesh.triangle_key[tri_mask]
    used_keys, key_inverse = np.unique(tri_keys, return_inverse=True)
    return Mesh(
        mesh.vertices[used],
        inverse.reshape(tris.shape).astype(np.int32),
        key_inverse.reshape(-1).astype(np.int32),
        tuple(mesh.keys[i] for i in used_keys.tolist()),
    )


def group_by(mesh: Mesh, classify: Callable[[FloorKey], str]) -> dict[str, Mesh]:
    """Split a keyed mesh into one mesh per class, ``classify`` called once per key (not per triangle)."""
    if not mesh.keys:
        return {}
    names = [classify(k) for k in mesh.keys]
    classes = sorted(set(names))
    key_class = np.array([classes.index(c) for c in names], dtype=np.int32)
    tri_class = key_class[mesh.triangle_key]
    return {c: _subset(mesh, tri_class == n) for n, c in enumerate(classes) if np.any(tri_class == n)}


def meshes_by_class(
    community: Community, floor_class: Mapping[FloorKey, str], default: str = "normal", *,
    exploded: str | None = None, ground: bool = True, gap: float = FLOOR_GAP, explode_gap: float = EXPLODE_GAP,
) -> dict[str, Mesh]:
    """The whole community merged into one mesh per colour class of :data:`PALETTE`.

    ``floor_class`` maps ``(building id, floor)`` to a class; floors not in it get ``default``.
    A building's elevator shafts take the class of key ``(building id, SHAFTS)`` (default otherwise);
    the ground plane is class ``"ground"``. At most ``len(PALETTE)`` meshes, however big the community.
    """
    bad = sorted({c for c in floor_class.values() if c not in PALETTE} | ({default} - PALETTE.keys()))
    if bad:
        raise GeometryError(f"unknown colour class {', '.join(map(repr, bad))}; known: {', '.join(PALETTE)}")
    mesh = community_mesh(community, exploded=exploded, ground=ground, gap=gap, explode_gap=explode_gap)
    return group_by(mesh, lambda k: "ground" if k == GROUND_KEY else floor_class.get(k, default))


def to_arrays(mesh: Mesh) -> Mesh3dArrays:
    """x, y, z (float32, per vertex) and i, j, k (int32, per triangle) as Plotly ``Mesh3d`` takes them."""
    v, t = mesh.vertices, mesh.triangles
    return Mesh3dArrays(x=v[:, 0].copy(), y=v[:, 1].copy(), z=v[:, 2].copy(),
                        i=t[:, 0].copy(), j=t[:, 1].copy(), k=t[:, 2].copy())


# -- devices --------------------------------------------------------------------------------------------


def device_points(community: Community, *, exploded: str | None = None, explode_gap: float = EXPLODE_GAP,
                  gap: float = FLOOR_GAP) -> DevicePoints:
    """Where each device is drawn: its position at mid-height of its floor.

    A device without a position but with a building sits at the footprint's centroid; a device with a
    building but no floor on floor 1; one with neither building nor position is left out.
    """
    buildings = {b.id: b for b in community.buildings}
    ids: list[str] = []
    xyz: list[tuple[float, float, float]] = []
    keys: list[FloorKey | None] = []
    for d in community.devices:
        b = buildings.get(d.building) if d.building is not None else None
        if d.position is not None:
            x, y = d.position
        elif b is not None:
            c = np.asarray(b.footprint, dtype=np.float64).mean(axis=0)
            x, y = float(c[0]), float(c[1])
        else:
            continue
        if b is None:
            z, key = OUTDOOR_DEVICE_Z, None
        else:
            f = d.floor if d.floor is not None else 1
            z0, z1 = floor_span(b, f, exploded=b.id == exploded, gap=gap, explode_gap=explode_gap)
            z, key = (z0 + z1) / 2, (b.id, f)
        ids.append(d.id)
        xyz.append((float(x), float(y), z))
        keys.append(key)
    arr = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    return DevicePoints(tuple(ids), arr, tuple(keys))


def triangle_areas(vertices: npt.NDArray[np.floating], triangles: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]:
    """Area of each triangle (float64)."""
    p = vertices.astype(np.float64)[triangles]
    return np.asarray(0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1), dtype=np.float64)
