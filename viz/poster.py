"""The 3D scene's first frame, drawn on the server: a PNG of exactly the Plotly figure the page is about to draw.

On software WebGL (a control-room PC without a GPU driver, a headless browser) the browser needs seconds
to parse plotly.js and build the WebGL scene. The control page therefore shows this picture at once, under
the transparent graph; the first WebGL frame paints the scene's opaque background over it. The picture is
drawn from the figure dict itself (the same meshes, colours, markers, outlines and labels, the same camera),
so the switch to the live view does not move anything.

The projection is Plotly's gl3d one: each axis range (the data's extent padded by 1/32 of it on each side) is
scaled to the scene's ``aspectratio`` around the origin, looked at from ``camera.eye`` with z up, in a
perspective of 45 degrees vertical field of view. Hidden surfaces are resolved by the painter's algorithm
(triangles drawn from the farthest), flat-shaded with the mesh's ambient and diffuse lighting. Drawing is
Pillow's; supersampled twice and reduced for smooth edges. Hand-written because no library rasterises a
Plotly figure without a browser (Kaleido drives Chromium, which is what this avoids); its cost is measured
by ``gridtwin bench dashboard`` (``poster_ms``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from PIL import Image, ImageDraw, ImageFont

from viz.fonts import find_cjk_font

log = logging.getLogger(__name__)

# 2:1, wider than any graph it lies under: shown at the graph's height and cut at the sides, as Plotly's
# projection (a fixed vertical field of view) draws the scene in a narrower graph
POSTER_SIZE = (1600, 800)
FOVY = math.pi / 4  # Plotly gl3d's vertical field of view
PAD = 1 / 32  # Plotly pads an autoranged 3D axis by 1/32 of its span on each side (measured in Chromium)
SUPERSAMPLE = 2
MIN_OPACITY = 0.5  # see-through meshes (elevator shafts in a building) are left to the live view
DTYPES = {"f4": "<f4", "f8": "<f8", "i4": "<i4", "i2": "<i2", "u4": "<u4", "i1": "i1", "u1": "u1", "u2": "<u2",
          "i8": "<i8", "u8": "<u8"}

Array = npt.NDArray[np.float64]


def render_figure(fig: Mapping[str, Any], size: tuple[int, int]) -> bytes:
    """The figure's 3D scene as a PNG of ``size`` (width, height) CSS pixels."""
    width, height = size
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ValueError(f"poster size {size!r} must be 16..4096 pixels each way")
    layout = fig.get("layout", {})
    scene_id = next((k for k in layout if k.startswith("scene")), "scene")
    scene = layout.get(scene_id, {})
    traces = [tr for tr in fig.get("data", []) if tr.get("visible", True) is True]
    k = SUPERSAMPLE
    w, h = width * k, height * k
    img = Image.new("RGB", (w, h), scene.get("bgcolor") or layout.get("paper_bgcolor") or "#000000")
    draw = ImageDraw.Draw(img)
    camera = Camera.of(scene, _extent(traces), w / h)
    _draw_meshes(draw, camera, [tr for tr in traces if tr.get("type") == "mesh3d"], w, h)
    for tr in traces:
        if tr.get("type") == "scatter3d" and "lines" in str(tr.get("mode", "")):
            _draw_lines(draw, camera, tr, w, h, k)
    for tr in traces:
        if tr.get("type") == "scatter3d" and "markers" in str(tr.get("mode", "")):
            _draw_markers(draw, camera, tr, w, h, k)
    _draw_notes(draw, camera, scene.get("annotations", []), w, h, k)
    out = io.BytesIO()
    img.resize((width, height), Image.Resampling.LANCZOS).save(out, "PNG", compress_level=6)
    return out.getvalue()


class Camera:
    """Data coordinates -> screen pixels, as Plotly's gl3d scene computes them."""

    def __init__(self, lo: Array, hi: Array, aspect: Array, eye: Array, ratio: float) -> None:
        self.scale = aspect / np.maximum(hi - lo, 1e-9)
        self.shift = -self.scale * (lo + hi) / 2
        forward = -eye / np.linalg.norm(eye)  # looking at the origin
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= max(float(np.linalg.norm(right)), 1e-9)
        up = np.cross(right, forward)
        self.rotation = np.stack([right, up, -forward])  # rows: the view's x, y, z axes
        self.eye = eye
        self.focal = 1 / math.tan(FOVY / 2)
        self.ratio = ratio

    @classmethod
    def of(cls, scene: Mapping[str, Any], extent: tuple[Array, Array], ratio: float) -> Camera:
        lo, hi = extent
        span = hi - lo
        ar = scene.get("aspectratio") or {"x": 1, "y": 1, "z": 1}
        eye = (scene.get("camera") or {}).get("eye") or {"x": 1.25, "y": 1.25, "z": 1.25}
        return cls(lo - PAD * span, hi + PAD * span, np.array([ar["x"], ar["y"], ar["z"]], dtype=float),
                   np.array([eye["x"], eye["y"], eye["z"]], dtype=float), ratio)

    def view(self, xyz: Array) -> Array:
        """Points (n, 3) in view space: x right, y up, z towards the viewer (visible points have z < 0)."""
        model = xyz * self.scale + self.shift
        out: Array = (model - self.eye) @ self.rotation.T
        return out

    def screen(self, view: Array, w: int, h: int) -> Array:
        """View-space points (n, 3) -> pixel coordinates (n, 2)."""
        depth = np.maximum(-view[:, 2], 1e-6)
        x = self.focal / self.ratio * view[:, 0] / depth
        y = self.focal * view[:, 1] / depth
        return np.stack([(x + 1) / 2 * w, (1 - y) / 2 * h], axis=1)


def _values(v: Any) -> Array:
    """A trace's coordinate array: a list (``None`` as NaN) or a Plotly typed-array spec."""
    if isinstance(v, Mapping) and "bdata" in v:
        raw = base64.b64decode(v["bdata"])
        return np.frombuffer(raw, dtype=DTYPES[v["dtype"]]).astype(np.float64)
    return np.array([np.nan if x is None else x for x in (v or [])], dtype=np.float64)


def _points(tr: Mapping[str, Any]) -> Array:
    return np.stack([_values(tr.get("x")), _values(tr.get("y")), _values(tr.get("z"))], axis=1)


def _extent(traces: Iterable[Mapping[str, Any]]) -> tuple[Array, Array]:
    """Plotly's autorange of the three axes: the extent of every trace's points."""
    pts = np.concatenate([np.zeros((0, 3)), *(_points(tr) for tr in traces)])
    pts = pts[~np.isnan(pts).any(axis=1)]
    if not len(pts):
        pts = np.zeros((1, 3))
    return pts.min(axis=0), pts.max(axis=0)


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.strip()
    if c.startswith("#") and len(c) == 7:
        return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)
    if c.startswith("#") and len(c) == 4:
        return int(c[1] * 2, 16), int(c[2] * 2, 16), int(c[3] * 2, 16)
    if c.startswith("rgb"):
        parts = [float(x) for x in c[c.index("(") + 1:c.index(")")].split(",")[:3]]
        return int(parts[0]), int(parts[1]), int(parts[2])
    return 203, 213, 225


def _draw_meshes(draw: ImageDraw.ImageDraw, camera: Camera, meshes: Sequence[Mapping[str, Any]], w: int,
                 h: int) -> None:
    """Every opaque mesh's triangles, farthest first, each in its mesh's colour lit like Plotly's."""
    polys: list[Array] = []
    depths: list[Array] = []
    fills: list[Array] = []
    for tr in meshes:
        if float(tr.get("opacity", 1.0)) < MIN_OPACITY:
            continue
        xyz = _points(tr)
        tri = np.stack([_values(tr.get("i")), _values(tr.get("j")), _values(tr.get("k"))], axis=1).astype(np.int64)
        tri = tri[((tri >= 0) & (tri < len(xyz))).all(axis=1)]  # Plotly skips a triangle of missing vertices
        if not len(tri):
            continue
        view = camera.view(xyz)
        corners = view[tri]  # (n, 3 corners, 3)
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        centre = corners.mean(axis=1)
        normal *= np.where((normal * centre).sum(axis=1) > 0, -1.0, 1.0)[:, None]  # facing the viewer
        light = _light_direction(camera, tr)
        lit = tr.get("lighting", {})
        shade = float(lit.get("ambient", 0.8)) + float(lit.get("diffuse", 0.8)) * np.clip(normal @ light, 0, 1)
        base = np.array(_rgb(str(tr.get("color", "#CBD5E1"))), dtype=np.float64)
        fills.append(np.clip(base[None, :] * np.clip(shade, 0, 1)[:, None], 0, 255))
        screen = camera.screen(view, w, h)
        polys.append(screen[tri])
        depths.append(corners[:, :, 2].min(axis=1))
    if not polys:
        return
    poly = np.concatenate(polys)
    # by each triangle's farthest corner, farthest first: a tall face inside a building (an elevator shaft)
    # then goes under the building's small per-floor walls instead of over them, as sorting by centres did
    order = np.argsort(np.concatenate(depths), kind="stable")
    fill = np.concatenate(fills).astype(np.uint8)
    for n in order:
        p = poly[n]
        draw.polygon([(p[0, 0], p[0, 1]), (p[1, 0], p[1, 1]), (p[2, 0], p[2, 1])],
                     fill=(int(fill[n, 0]), int(fill[n, 1]), int(fill[n, 2])))


def _light_direction(camera: Camera, tr: Mapping[str, Any]) -> Array:
    """The mesh's light as a direction in view space: Plotly places ``lightposition`` relative to the camera
    (the sample's west walls come out at 0.71 and its roofs at 1.0 of their colour, as in Chromium)."""
    pos = tr.get("lightposition") or {"x": 1e5, "y": 1e5, "z": 0}
    d = np.array([pos["x"], pos["y"], pos["z"]], dtype=np.float64)
    out: Array = d / max(float(np.linalg.norm(d)), 1e-12)
    return out


def _draw_lines(draw: ImageDraw.ImageDraw, camera: Camera, tr: Mapping[str, Any], w: int, h: int, k: int) -> None:
    xyz = _points(tr)
    line = tr.get("line", {})
    colour = _rgb(str(line.get("color", "#FFFFFF")))
    width = max(1, int(float(line.get("width", 2)) * k))
    run: list[tuple[float, float]] = []
    screen = camera.screen(camera.view(np.nan_to_num(xyz)), w, h)
    for n, p in enumerate(xyz):
        if np.isnan(p).any():
            if len(run) > 1:
                draw.line(run, fill=colour, width=width, joint="curve")
            run = []
            continue
        run.append((float(screen[n, 0]), float(screen[n, 1])))
    if len(run) > 1:
        draw.line(run, fill=colour, width=width, joint="curve")


def _per_point(v: Any, n: int, default: Any) -> list[Any]:
    if isinstance(v, list):
        return [default if x is None else x for x in v] + [default] * (n - len(v))
    return [default if v is None else v] * n


def _draw_markers(draw: ImageDraw.ImageDraw, camera: Camera, tr: Mapping[str, Any], w: int, h: int, k: int) -> None:
    xyz = _points(tr)
    if not len(xyz):
        return
    marker = tr.get("marker", {})
    n = len(xyz)
    colours = _per_point(marker.get("color"), n, "#CBD5E1")
    sizes = _per_point(marker.get("size"), n, 6)
    symbols = _per_point(marker.get("symbol"), n, "circle")
    screen = camera.screen(camera.view(xyz), w, h)
    for (x, y), colour, size, symbol in zip(screen, colours, sizes, symbols, strict=True):
        r = float(size) * k / 2
        rgb = _rgb(str(colour))
        if str(symbol).startswith("diamond"):
            shape = [(x, y - r), (x + r, y), (x, y + r), (x - r, y)]
            if str(symbol).endswith("open"):
                draw.polygon(shape, outline=rgb, width=max(1, k))
            else:
                draw.polygon(shape, fill=rgb, outline=(15, 23, 42))
        elif str(symbol).endswith("open"):
            draw.ellipse([x - r, y - r, x + r, y + r], outline=rgb, width=max(2, 2 * k))
        else:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=rgb, outline=(15, 23, 42))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = find_cjk_font()
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(str(path), size)


def _draw_notes(draw: ImageDraw.ImageDraw, camera: Camera, notes: Sequence[Mapping[str, Any]], w: int, h: int,
                k: int) -> None:
    """Scene annotations: each text beside its point (``xanchor``: which side of the text is at the point)."""
    if not notes:
        return
    xyz = np.array([[float(n["x"]), float(n["y"]), float(n["z"])] for n in notes], dtype=np.float64)
    screen = camera.screen(camera.view(xyz), w, h)
    anchors = {"left": "lm", "right": "rm", "center": "mm"}
    for note, (x, y) in zip(notes, screen, strict=True):
        font = note.get("font", {})
        draw.text((float(x), float(y)), str(note.get("text", "")), fill=_rgb(str(font.get("color", "#E2E8F0"))),
                  font=_font(int(float(font.get("size", 12)) * k)), anchor=anchors.get(str(note.get("xanchor")), "mm"))


class Posters:
    """First frames by key: :meth:`add` takes the figure a page is about to draw and starts drawing it in the
    background; :meth:`png` gives the picture (waiting for it if need be). Keeps the newest ``keep``."""

    def __init__(self, size: tuple[int, int] = POSTER_SIZE, *, keep: int = 16) -> None:
        self.size = size
        self.keep = keep
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Future[bytes]] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poster")  # one picture at a time

    def add(self, fig: Mapping[str, Any]) -> str:
        """The figure's key (its content's hash); its picture is being drawn."""
        key = hashlib.sha256(orjson.dumps(fig, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
        with self._lock:
            if key in self._jobs:
                self._jobs.move_to_end(key)
                return key
            self._jobs[key] = self._pool.submit(render_figure, fig, self.size)
            while len(self._jobs) > self.keep:
                self._jobs.popitem(last=False)
        return key

    def png(self, key: str, timeout_s: float = 10.0) -> bytes | None:
        """The picture of ``key``; None when the key is unknown (or long gone) or drawing it failed."""
        with self._lock:
            job = self._jobs.get(key)
        if job is None:
            return None
        try:
            return job.result(timeout=timeout_s)
        except Exception:  # a figure this module cannot draw: the page simply has no first frame
            log.exception("cannot draw the scene's first frame %s", key)
            return None
