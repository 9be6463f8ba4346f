"""Benchmark: community geometry and offscreen rendering at scale. Does I/O (renders, writes temp files).

``python -m benchmarks.geometry [BUILDINGS] [REPEATS]`` prints the result as JSON. It measures, on a
synthetic community of towers in a grid (6-33 floors, some L-shaped):

- ``geometry_s``: building the merged per-class meshes (:func:`twin.geometry.meshes_by_class`);
- ``render_png_s``: :func:`viz.render.render_png` of the whole community, labels and all, to a file;
- ``scene_merged_s`` vs ``scene_per_floor_s``: the same bare scene (slabs only, same camera) drawn
  with one actor per colour class, and the naive way with one actor per building floor; their
  ratio is ``per_floor_over_merged``.

Times are medians over ``repeats`` runs, in seconds. No asserts: tests do not time things.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from twin import geometry as geo
from twin.community import Community
from viz import render

HEIGHTS = (6, 11, 18, 18, 26, 33)


def synthetic_community(buildings: int = 200, *, seed: int = 7) -> Community:
    """``buildings`` towers on a 48 m x 42 m grid; every third one L-shaped; 1-2 lifts each."""
    rng = np.random.default_rng(seed)
    per_row = max(1, int(np.ceil(np.sqrt(buildings * 1.5))))
    doc_buildings: list[dict[str, Any]] = []
    doc_elevators: list[dict[str, Any]] = []
    for n in range(buildings):
        row, col = divmod(n, per_row)
        x0, y0 = col * 48.0, row * 42.0
        if n % 3 == 2:
            footprint = [(x0, y0), (x0 + 30, y0), (x0 + 30, y0 + 24), (x0 + 18, y0 + 24), (x0 + 18, y0 + 14),
                         (x0, y0 + 14)]
        else:
            footprint = [(x0, y0), (x0 + 32, y0), (x0 + 32, y0 + 14), (x0, y0 + 14)]
        floors = int(rng.choice(HEIGHTS))
        below = 2 if floors >= 26 else 1
        bid = f"B{n + 1}"
        doc_buildings.append({"id": bid, "name": f"{n + 1}号楼", "footprint": footprint, "floors_above": floors,
                              "floors_below": below, "floor_height": 2.9})
        for k in range(1 if floors < 12 else 2):
            doc_elevators.append({"id": f"{bid}-E{k + 1}", "building": bid, "shaft": (x0 + 13 + 4 * k, y0 + 7),
                                  "serves": (-below, floors)})
    return Community.model_validate({"version": 1, "id": "bench", "name": "基准社区", "origin": (30.0, 120.0),
                                     "buildings": doc_buildings, "elevators": doc_elevators})


def _alarm_classes(community: Community) -> dict[geo.FloorKey, str]:
    """A few floors in each alarm class, so several class meshes are built."""
    classes = ("critical", "major", "minor", "warning", "offline")
    return {(b.id, b.floors[-1 - n % 3]): classes[n % len(classes)] for n, b in enumerate(community.buildings[::7])}


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _bare_scene(meshes: list[tuple[geo.Mesh, str]], bounds: tuple[float, ...], size: tuple[int, int]) -> None:
    """Draw the meshes (one actor each) from a fixed camera and take the image."""
    p = render._new_plotter(size)
    try:
        for mesh, colour in meshes:
            p.add_mesh(render._poly(mesh), color=colour, reset_camera=False)
        p.camera.position = (bounds[1] * 1.2, -bounds[3] * 0.8, bounds[5] * 4 + 200)
        p.camera.focal_point = ((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, 0.0)
        p.camera.up = (0.0, 0.0, 1.0)
        p.reset_camera(bounds=bounds)
        p.screenshot(return_img=True)
    finally:
        p.close()


def per_floor_meshes(mesh: geo.Mesh) -> list[geo.Mesh]:
    """Split a keyed mesh into one mesh per key (triangles of a key are contiguous in a community mesh)."""
    order = np.argsort(mesh.triangle_key, kind="stable")
    tri_keys = mesh.triangle_key[order]
    starts = np.searchsorted(tri_keys, np.arange(len(mesh.keys)), side="left")
    ends = np.searchsorted(tri_keys, np.arange(len(mesh.keys)), side="right")
    out = []
    for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        if s == e:
            continue
        tris = mesh.triangles[order[s:e]]
        used, inverse = np.unique(tris, return_inverse=True)
        out.append(geo.Mesh(mesh.vertices[used], inverse.reshape(tris.shape).astype(np.int32),
                            np.zeros(e - s, np.int32), (mesh.keys[k],)))
    return out


def bench_geometry(buildings: int = 200, repeats: int = 5, size: tuple[int, int] = (1280, 900)) -> dict[str, Any]:
    """Median seconds for geometry, a full PNG render, and merged vs one-actor-per-floor scenes."""
    community = synthetic_community(buildings)
    classes = _alarm_classes(community)
    meshes = geo.meshes_by_class(community, classes)
    n_floors = sum(len(b.floors) for b in community.buildings)
    result: dict[str, Any] = {
        "buildings": buildings, "floors": n_floors, "repeats": repeats, "size": list(size),
        "triangles": sum(m.n_triangles for m in meshes.values()), "class_meshes": len(meshes),
    }
    result["geometry_s"] = _median_s(lambda: geo.meshes_by_class(community, classes), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.png"
        render.render_png(community, out, floor_class=classes, size=size)  # warm-up: GL context, imports
        result["render_png_s"] = _median_s(lambda: render.render_png(community, out, floor_class=classes, size=size),
                                           repeats)
    x0, y0, x1, y1 = geo.community_bounds(community)
    bounds = (x0, x1, y0, y1, 0.0, max(geo.building_top(b) for b in community.buildings))
    merged = [(m, geo.PALETTE[c]) for c, m in meshes.items()]
    full = geo.community_mesh(community, ground=True)
    naive = [(m, geo.PALETTE[classes.get(m.keys[0], "normal")]) for m in per_floor_meshes(full)]
    result["actors_merged"], result["actors_per_floor"] = len(merged), len(naive)
    result["scene_merged_s"] = _median_s(lambda: _bare_scene(merged, bounds, size), repeats)
    result["scene_per_floor_s"] = _median_s(lambda: _bare_scene(naive, bounds, size), max(1, min(repeats, 3)))
    result["per_floor_over_merged"] = result["scene_per_floor_s"] / result["scene_merged_s"]
    return result


if __name__ == "__main__":
    n_buildings = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n_repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(json.dumps(bench_geometry(n_buildings, n_repeats), indent=2))
