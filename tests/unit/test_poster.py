"""The scene's first frame drawn on the server (viz.poster): Plotly's projection, the figure's colours and
labels, and the cache the control page and the media route share. (That it matches what Chromium's WebGL
draws is checked in tests/e2e/test_browser.py.)"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

from twin import geometry as geo
from twin.community import Community
from viz.poster import Camera, Posters, _extent, render_figure
from viz.scene import Scene

SIZE = (800, 400)


def _image(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"), dtype=np.int32)


def _pixel_of(fig: dict[str, Any], xyz: tuple[float, float, float], size: tuple[int, int] = SIZE) -> tuple[int, int]:
    layout = fig["layout"]
    sid = next(k for k in layout if k.startswith("scene"))
    cam = Camera.of(layout[sid], _extent(fig["data"]), size[0] / size[1])
    (x, y), = cam.screen(cam.view(np.array([xyz], dtype=float)), *size)
    return round(float(x)), round(float(y))


def test_a_critical_building_is_drawn_red_where_plotly_would_draw_it(sample: Community) -> None:
    scene = Scene(sample)
    fig = scene.overview({"B3": "critical"}, {}, names={b.id: b.name for b in sample.buildings})
    img = _image(render_figure(fig, SIZE))
    assert img.shape == (SIZE[1], SIZE[0], 3)
    cx, cy = scene.centres["B3"]
    x, y = _pixel_of(fig, (cx, cy, scene.tops["B3"] / 2))
    red = np.array([int(geo.PALETTE["critical"][i:i + 2], 16) for i in (1, 3, 5)])
    patch = img[y - 2:y + 3, x - 2:x + 3].reshape(-1, 3)
    # lit between 0.55 and 1.0 of its colour, and red, not the blue-grey of a normal building
    assert ((patch[:, 0] > 0.5 * red[0]) & (patch[:, 1] < 90) & (patch[:, 2] < 90)).all(), patch
    # the corners are the scene's background: the community is in the middle, not cut off
    assert (np.abs(img[2, 2] - [0x0F, 0x17, 0x2A]).sum()) < 10
    # the whole community is in the picture
    for b in sample.buildings:
        bx, by = _pixel_of(fig, (*scene.centres[b.id], 0.0))
        assert 0 < bx < SIZE[0] and 0 < by < SIZE[1], b.id


def test_labels_markers_and_outlines_are_drawn(sample: Community) -> None:
    scene = Scene(sample)
    bare = scene.overview({}, {})
    fig = scene.overview({}, {}, names={b.id: b.name for b in sample.buildings})
    assert fig["layout"]["scene"]["annotations"], "the names are scene annotations"
    named = _image(render_figure(fig, SIZE))
    plain = _image(render_figure(bare, SIZE))
    x, y = _pixel_of(fig, (*scene.centres["B11"], scene.tops["B11"] + 4))
    box = (slice(y - 8, y + 8), slice(x - 20, x + 20))
    assert (np.abs(named[box] - plain[box]).sum(axis=2) > 100).sum() > 20, "no label drawn at 11号楼's roof"


def test_bad_sizes_are_refused(sample: Community) -> None:
    fig = Scene(sample).overview({}, {})
    for size in [(0, 10), (10, 5000)]:
        with pytest.raises(ValueError, match="poster size"):
            render_figure(fig, size)


def test_the_cache_draws_each_figure_once_and_forgets_the_oldest(sample: Community) -> None:
    scene = Scene(sample)
    posters = Posters((200, 100), keep=2)
    a = posters.add(scene.overview({}, {}))
    assert posters.add(scene.overview({}, {})) == a  # the same figure: the same key, drawn once
    b = posters.add(scene.overview({"B1": "critical"}, {}))
    assert a != b and len(a) == 32
    png = posters.png(a)
    assert png is not None and _image(png).shape == (100, 200, 3)
    posters.add(scene.overview({"B2": "major"}, {}))
    assert posters.png(a) is None, "the oldest of three is gone"
    assert posters.png("f" * 32) is None
    # triangles naming vertices that are not there are skipped (as Plotly does), not an error
    odd = posters.add({"data": [{"type": "mesh3d", "x": [0, 1, 0], "y": [0, 0, 1], "z": [0, 0, 0],
                                 "i": [0, 5], "j": [1, 6], "k": [2, -1], "color": "#FF0000"}], "layout": {"scene": {}}})
    png = posters.png(odd)
    assert png is not None and (_image(png)[..., 0] > 200).any()
