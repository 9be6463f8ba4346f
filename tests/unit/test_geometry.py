"""Community geometry (twin/geometry.py): pure, no rendering library; numbers checked by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from twin import geometry as geo
from twin.community import Community, parse

ROOT = Path(__file__).resolve().parents[2]
SQUARE = [(0.0, 0.0), (20.0, 0.0), (20.0, 10.0), (0.0, 10.0)]
L_SHAPE = [(0.0, 0.0), (30.0, 0.0), (30.0, 24.0), (18.0, 24.0), (18.0, 14.0), (0.0, 14.0)]


def community(*buildings: dict[str, Any], elevators: list[dict[str, Any]] | None = None,
              devices: list[dict[str, Any]] | None = None) -> Community:
    return Community.model_validate({"version": 1, "id": "t", "name": "测试", "origin": (30.0, 120.0),
                                     "buildings": list(buildings), "elevators": elevators or [],
                                     "devices": devices or []})


def building(bid: str = "B1", footprint: list[tuple[float, float]] | None = None, above: int = 3, below: int = 1,
             height: float = 3.0) -> dict[str, Any]:
    return {"id": bid, "name": f"{bid}楼", "footprint": footprint or SQUARE, "floors_above": above,
            "floors_below": below, "floor_height": height}


@pytest.fixture(scope="module")
def sample() -> Community:
    return parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))


def cap_area(poly: list[tuple[float, float]]) -> float:
    pts = np.array([(x, y, 0.0) for x, y in poly])
    return float(geo.triangle_areas(pts, np.array(geo.triangulate(poly))).sum())


def signed_volume(mesh: geo.Mesh) -> float:
    """Divergence theorem: positive for a closed mesh whose triangles all face outwards."""
    p = mesh.vertices.astype(np.float64)[mesh.triangles]
    return float(np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6.0)


# -- triangulation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("poly", "area"),
    [
        (SQUARE, 200.0),
        (L_SHAPE, 30 * 14 + 12 * 10),
        ([(0, 0), (30, 0), (30, 20), (20, 20), (20, 8), (10, 8), (10, 20), (0, 20)], 30 * 20 - 10 * 12),  # U
        ([(0, 0), (10, 0), (10, 4), (14, 4), (14, 10), (-4, 10), (-4, 4), (0, 4)], 10 * 4 + 18 * 6),  # T
        ([(0, 0), (5, 0), (10, 0), (10, 10), (0, 10)], 100.0),  # a collinear corner
        (list(reversed(L_SHAPE)), 30 * 14 + 12 * 10),  # clockwise input
        ([*SQUARE, SQUARE[0]], 200.0),  # repeated closing point
    ],
    ids=["square", "L", "U", "T", "collinear", "clockwise", "closed"],
)
def test_caps_triangulate_to_the_polygon_area(poly: list[tuple[float, float]], area: float) -> None:
    clean = geo.clean_polygon(poly)
    tris = geo.triangulate(clean)
    assert len(tris) == len(clean) - 2
    assert cap_area(clean) == pytest.approx(area)
    pts = np.array(clean)
    for a, b, c in tris:  # every triangle counter-clockwise (faces up) and not degenerate
        cross = (pts[b] - pts[a])[0] * (pts[c] - pts[a])[1] - (pts[b] - pts[a])[1] * (pts[c] - pts[a])[0]
        assert cross > 0


def test_degenerate_polygon_is_refused() -> None:
    with pytest.raises(geo.GeometryError):
        geo.clean_polygon([(0, 0), (1, 1), (2, 2)])


# -- floors -----------------------------------------------------------------------------------------


def test_square_building_has_twelve_triangles_per_floor_and_closed_slabs() -> None:
    c = community(building(above=3, below=1))
    mesh = geo.community_mesh(c)
    assert mesh.n_triangles == 12 * 4  # 2 + 2 caps, 8 sides; floors B1, 1, 2, 3
    assert mesh.vertices.dtype == np.float32 and mesh.vertices.shape == (8 * 4, 3)
    assert mesh.triangles.dtype == np.int32 and mesh.triangles.shape == (48, 3)
    assert set(mesh.keys) == {("B1", -1), ("B1", 1), ("B1", 2), ("B1", 3)}
    assert np.bincount(mesh.triangle_key).tolist() == [12, 12, 12, 12]
    for key in mesh.keys:
        slab = mesh.select(key.__eq__)
        assert signed_volume(slab) == pytest.approx(200.0 * (3.0 - geo.FLOOR_GAP), rel=1e-5)
        edges = np.sort(slab.triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        _, counts = np.unique(edges, axis=0, return_counts=True)
        assert set(counts.tolist()) == {2}  # watertight: every edge shared by exactly two triangles


def test_concave_building_slab_caps_have_the_footprint_area() -> None:
    c = community(building(footprint=L_SHAPE, above=2, below=0))
    mesh = geo.community_mesh(c)
    n = len(L_SHAPE)
    assert mesh.n_triangles == 2 * (4 * n - 4)
    slab = mesh.select(lambda k: k == ("B1", 1))
    z = slab.vertices[:, 2][slab.triangles]
    top = slab.triangles[np.all(z == z.max(), axis=1)]
    bottom = slab.triangles[np.all(z == z.min(), axis=1)]
    assert geo.triangle_areas(slab.vertices, top).sum() == pytest.approx(540.0)
    assert geo.triangle_areas(slab.vertices, bottom).sum() == pytest.approx(540.0)
    assert signed_volume(slab) == pytest.approx(540.0 * (3.0 - geo.FLOOR_GAP), rel=1e-5)


@pytest.mark.parametrize(("floor", "z0"), [(1, 0.0), (2, 3.0), (5, 12.0), (-1, -3.0), (-2, -6.0)])
def test_floors_stack_with_basements_below_ground(floor: int, z0: float) -> None:
    c = community(building(above=5, below=2))
    slab = geo.community_mesh(c).select(lambda k: k == ("B1", floor))
    assert float(slab.vertices[:, 2].min()) == pytest.approx(z0)
    assert float(slab.vertices[:, 2].max()) == pytest.approx(z0 + 3.0 - geo.FLOOR_GAP)
    assert (float(slab.vertices[:, 2].max()) <= 0) == (floor < 0)


def test_there_is_no_floor_zero() -> None:
    with pytest.raises(geo.GeometryError):
        geo.floor_index(0)


def test_exploded_building_pulls_its_floors_apart_and_leaves_others() -> None:
    c = community(building("B1", above=4), building("B2", [(40, 0), (60, 0), (60, 10), (40, 10)], above=4))
    flat = geo.community_mesh(c)
    exploded = geo.community_mesh(c, exploded="B1", explode_gap=5.0)

    def bottom(m: geo.Mesh, key: tuple[str, int]) -> float:
        return float(m.select(lambda k: k == key).vertices[:, 2].min())

    assert bottom(exploded, ("B1", 3)) == pytest.approx(2 * (3.0 + 5.0))
    assert bottom(exploded, ("B1", -1)) == pytest.approx(-(3.0 + 5.0))
    assert bottom(exploded, ("B2", 3)) == bottom(flat, ("B2", 3)) == pytest.approx(6.0)


def test_elevator_shafts_are_boxes_over_their_served_floors() -> None:
    c = community(building(above=6, below=1),
                  elevators=[{"id": "E1", "building": "B1", "shaft": (5.0, 5.0), "serves": (-1, 6)}])
    mesh = geo.community_mesh(c)
    shaft = mesh.select(lambda k: k == ("B1", geo.SHAFTS))
    assert shaft.n_triangles == 12
    z = shaft.vertices[:, 2]
    assert float(z.min()) == pytest.approx(-3.0)
    assert float(z.max()) == pytest.approx(6 * 3.0 + geo.SHAFT_OVERRUN)  # pokes out of the roof
    assert float(np.ptp(shaft.vertices[:, 0])) == pytest.approx(geo.SHAFT_SIZE)


def test_device_points_sit_mid_floor() -> None:
    c = community(building(above=3, below=1), devices=[
        {"id": "D1", "kind": "smoke_detector", "building": "B1", "floor": 2, "position": (4.0, 5.0)},
        {"id": "D2", "kind": "gas", "building": "B1", "floor": -1},
        {"id": "N1", "kind": "noise", "position": (50.0, 50.0)},
        {"id": "X", "kind": "noise"},
    ])
    pts = geo.device_points(c)
    assert pts.ids == ("D1", "D2", "N1")  # X has nowhere to be drawn
    half = (3.0 - geo.FLOOR_GAP) / 2
    assert pts.xyz.tolist()[0] == pytest.approx([4.0, 5.0, 3.0 + half])
    assert pts.xyz.tolist()[1] == pytest.approx([10.0, 5.0, -3.0 + half])  # no position: footprint centroid
    assert pts.xyz.tolist()[2] == pytest.approx([50.0, 50.0, geo.OUTDOOR_DEVICE_Z])
    assert pts.keys == (("B1", 2), ("B1", -1), None)


# -- merging by colour class ------------------------------------------------------------------------


def test_sample_merges_into_a_few_meshes_by_class(sample: Community) -> None:
    classes = {("B11", 15): "critical", ("B4", -2): "major", ("B1", 3): "offline"}
    meshes = geo.meshes_by_class(sample, classes)
    assert len(meshes) <= len(geo.PALETTE)
    assert set(meshes) == {"normal", "critical", "major", "offline", "ground"}
    assert meshes["critical"].key_set() == {("B11", 15)}
    assert meshes["critical"].n_triangles == 12  # B11 is a rectangle
    for cls, m in meshes.items():
        if cls != "critical":
            assert ("B11", 15) not in m.key_set()
        assert m.triangles.max() < len(m.vertices)  # indices compacted per mesh
    total = sum(m.n_triangles for m in meshes.values())
    assert total == geo.community_mesh(sample, ground=True).n_triangles
    floors = sum(len(b.floors) for b in sample.buildings)
    assert len(meshes["normal"].key_set()) == floors - 3 + len({e.building for e in sample.elevators})


def test_unknown_colour_class_is_refused(sample: Community) -> None:
    with pytest.raises(geo.GeometryError, match="'burning'"):
        geo.meshes_by_class(sample, {("B1", 1): "burning"})


def test_palette_is_hex_rgb() -> None:
    assert set(geo.PALETTE) == {"normal", "warning", "minor", "major", "critical", "offline", "selected", "ground"}
    for colour in geo.PALETTE.values():
        assert len(colour) == 7 and colour[0] == "#" and int(colour[1:], 16) >= 0
    r, g, b = (int(geo.PALETTE["critical"][i:i + 2], 16) for i in (1, 3, 5))
    assert r > 200 and g < 60 and b < 60


def test_to_arrays_is_what_plotly_mesh3d_takes(sample: Community) -> None:
    mesh = geo.meshes_by_class(sample, {})["normal"]
    arrays = geo.to_arrays(mesh)
    assert set(arrays) == {"x", "y", "z", "i", "j", "k"}
    n, m = len(mesh.vertices), mesh.n_triangles
    assert [arrays["x"].shape, arrays["y"].shape, arrays["z"].shape] == [(n,)] * 3
    assert [arrays["i"].shape, arrays["j"].shape, arrays["k"].shape] == [(m,)] * 3
    assert arrays["i"].dtype == np.int32 and arrays["x"].dtype == np.float32
    assert np.array_equal(np.stack([arrays["i"], arrays["j"], arrays["k"]], axis=1), mesh.triangles)
    assert np.array_equal(np.stack([arrays["x"], arrays["y"], arrays["z"]], axis=1), mesh.vertices)


def test_meshes_are_read_only(sample: Community) -> None:
    mesh = geo.meshes_by_class(sample, {})["normal"]
    with pytest.raises(ValueError, match="read-only"):
        mesh.vertices[0, 0] = 1.0


def test_geometry_loads_no_rendering_library() -> None:
    code = "import sys, twin.geometry; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = {m.split(".")[0] for m in out.stdout.split()}
    assert "numpy" in loaded
    assert not loaded & {"pyvista", "vtk", "vtkmodules", "plotly", "matplotlib"}
