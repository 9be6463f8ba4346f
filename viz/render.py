"""Offscreen 3D snapshots of a community as PNG (pyvista/VTK). Does I/O: GPU/CPU rendering, files.

The geometry comes from :mod:`twin.geometry` already merged by colour class, so a whole community is
a handful of actors however many buildings it has. Used by ``gridtwin render`` and, later, for the
3D snapshot attached to a grid worker's ticket.

Offscreen: no X display is needed. Before the first render window is created we point VTK at EGL
(Mesa's ``libEGL``) or, failing that, OSMesa (``libOSMesa``); both come from Debian packages the
bootstrap installs (``libegl1``, ``libgl1-mesa-dri``, ``libosmesa6``). An explicit
``VTK_DEFAULT_OPENGL_WINDOW`` in the environment wins.

Labels: VTK's built-in fonts have no CJK glyphs, so Chinese building names are drawn with a CJK font
file when one is installed (``fonts-wqy-microhei`` or ``fonts-noto-cjk``); without one, labels fall
back to building ids ("B1") so nothing renders as missing glyphs. The legend and the title's words come
from the dashboard's string catalogue in the requested language (Chinese by default when a CJK font is
there to draw it, else English).
"""

from __future__ import annotations

import ctypes.util
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyvista as pv

from twin import geometry as geo
from twin.community import Building, Community
from viz.fonts import find_cjk_font
from viz.i18n import kind_label, t

Highlight = tuple[str | None, int | None, str | None]  # (building, floor, device id)

BACKGROUND = "#0F172A"  # the control-room dark navy of the dashboard
LABEL_BG = "#1E293B"
DEVICE_NORMAL = "#F1F5F9"  # devices in normal state: near white, stands out on the blue-grey slabs
SHAFT_COLOUR = "#5B6B7C"  # elevator shafts, darker than the floors around them
GRID_LINE = "#A3B18A"
GHOST_OPACITY = 0.08  # floors (and shafts) above the floor being looked at: a faint silhouette
BEACON_CLASSES = ("critical", "major")  # device states that get a pin above the roof in any view
MAX_BEACONS = 60
MAX_BUILDING_LABELS = 60  # beyond this, only buildings with an alarm (or in view) are named



class RenderError(ValueError):
    """A render request that cannot be done: unknown building/floor/device, unwritable output."""


# -- environment -----------------------------------------------------------------------------------


def configure_offscreen() -> str | None:
    """Choose VTK's offscreen window class (EGL, else OSMesa) unless the environment already did.

    Must run before the first render window is created (VTK reads the variable then). Returns the
    class chosen, or None when neither library is found (VTK's default, which needs a display).
    """
    chosen = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW")
    if chosen:
        return chosen
    if ctypes.util.find_library("EGL"):
        chosen = "vtkEGLRenderWindow"
    elif ctypes.util.find_library("OSMesa"):
        chosen = "vtkOSOpenGLRenderWindow"
    else:
        return None
    os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = chosen
    return chosen


# -- the request -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class View:
    """A validated render request: what to look at and what to mark."""

    building: Building | None
    floor: int | None
    highlight: Highlight | None


def plan_view(community: Community, *, building: str | None, floor: int | None,
              highlight: Highlight | None) -> View:
    """Check ids and floors against the community; a highlight without ``building`` sets the view to it."""
    hb, hf, hd = highlight if highlight is not None else (None, None, None)
    if hd is not None:
        dev = community.device(hd)
        if dev is None:
            raise RenderError(f"unknown device {hd!r} in community {community.id}")
        if dev.building is None and dev.position is None:
            raise RenderError(f"device {hd!r} has neither a building nor a position: nothing to mark")
    if hb is not None:
        hbuilding = community.building(hb)
        if hbuilding is None:
            raise RenderError(f"unknown building {hb!r} in community {community.id}")
        if hf is not None and hf not in hbuilding.floors:
            raise RenderError(f"building {hb} has no floor {hf} (floors {_floor_range(hbuilding)})")
    if building is None and floor is not None:
        raise RenderError("a floor needs a building (--building)")
    b = None
    if building is not None:
        b = community.building(building)
        if b is None:
            known = ", ".join(x.id for x in community.buildings[:20])
            raise RenderError(f"unknown building {building!r}; known: {known}")
        if floor is not None and floor not in b.floors:
            raise RenderError(f"building {b.id} has no floor {floor} (floors {_floor_range(b)})")
    return View(b, floor, highlight)


def _floor_range(b: Building) -> str:
    return f"{b.floors[0]}..{b.floors[-1]}, no floor 0"


def floor_label(floor: int, *, cjk: bool) -> str:
    if floor < 0:
        return f"B{-floor}"
    return f"{floor}层" if cjk else f"{floor}F"


# -- rendering -------------------------------------------------------------------------------------


def render_png(
    community: Community,
    out: Path,
    *,
    floor_class: Mapping[geo.FloorKey, str] | None = None,
    device_class: Mapping[str, str] | None = None,
    highlight: Highlight | None = None,
    building: str | None = None,
    floor: int | None = None,
    size: tuple[int, int] = (1280, 900),
    font_file: Path | None = None,
    lang: str | None = None,
) -> Path:
    """Render the community to a PNG of ``size`` (width, height) pixels and return its path.

    ``floor_class``: (building, floor) -> colour class of :data:`twin.geometry.PALETTE` (default normal).
    ``device_class``: device id -> colour class. ``highlight``: (building, floor, device) of the alarm
    to show: that floor is drawn in its class (or "selected" when it has none) and the device gets a
    pin and a label. ``building`` / ``floor``: zoom to a building, and to one floor of it (the floors
    above it are drawn see-through so the floor's devices show). ``font_file``: a CJK font for labels
    (default: found on the machine; labels use ids when there is none). ``lang``: ``zh`` or ``en`` for the
    legend and the title (default ``zh`` when there is a CJK font, else ``en``).
    """
    if len(size) != 2 or not all(isinstance(n, int) and 16 <= n <= 8192 for n in size):
        raise RenderError(f"image size {size!r} must be two whole numbers of pixels, 16..8192")
    view = plan_view(community, building=building, floor=floor, highlight=highlight)
    _check_output(out)
    plotter = build_scene(community, view, floor_class=floor_class or {}, device_class=device_class or {},
                          size=size, font_file=font_file, lang=lang)
    try:
        image = plotter.screenshot(return_img=True)
    finally:
        plotter.close()
    if image is None:  # pragma: no cover - pyvista returns the image when return_img=True
        raise RenderError("the renderer returned no image")
    write_png(out, np.asarray(image, dtype=np.uint8))
    return out


def _check_output(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path()
    if out.is_dir():
        raise RenderError(f"cannot write {out}: it is a directory")
    if not parent.is_dir():
        raise RenderError(f"cannot write {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise RenderError(f"cannot write {out}: permission denied")


def write_png(out: Path, image: npt.NDArray[np.uint8]) -> None:
    """Write an (H, W, 3|4) uint8 image as PNG (stdlib zlib; no imaging library needed)."""
    h, w, ch = image.shape
    colour_type = {3: 2, 4: 6}[ch]
    raw = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * ch)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))
    try:
        out.write_bytes(png)
    except OSError as exc:
        raise RenderError(f"cannot write {out}: {exc.strerror}") from None


def _poly(mesh: geo.Mesh) -> pv.PolyData:
    poly: pv.PolyData = pv.PolyData.from_regular_faces(mesh.vertices.astype(np.float64),
                                                       np.asarray(mesh.triangles, dtype=int))
    return poly


def _new_plotter(size: tuple[int, int]) -> Any:
    configure_offscreen()
    p: Any = pv.Plotter(off_screen=True, window_size=[int(size[0]), int(size[1])], lighting="light kit")
    p.set_background(BACKGROUND)
    return p


def build_scene(
    community: Community, view: View, *, floor_class: Mapping[geo.FloorKey, str],
    device_class: Mapping[str, str], size: tuple[int, int], font_file: Path | None = None,
    lang: str | None = None,
) -> Any:
    """A ready-to-screenshot offscreen ``pyvista.Plotter`` (the caller closes it)."""
    if lang not in (None, "zh", "en"):
        raise RenderError(f"unknown language {lang!r}; known: zh, en")
    font = font_file or find_cjk_font()
    classes = _floor_classes(community, view, floor_class)
    words = lang or ("zh" if font is not None else "en")
    if words == "zh" and font is None:
        words = "en"  # no font to draw Chinese with: English rather than missing glyphs
    scene = _Scene(community, view, device_class, font, geo.device_points(community), classes, words)
    bad = sorted({c for c in [*classes.values(), *device_class.values()] if c not in geo.PALETTE})
    if bad:
        raise RenderError(f"unknown colour class {', '.join(map(repr, bad))}; known: {', '.join(geo.PALETTE)}")
    p = _new_plotter(size)
    try:
        present = _add_buildings(p, community, view, classes)
        if view.building is None:
            _add_grid_lines(p, community)
        else:
            _add_devices(p, scene)
        beacons = _add_beacons(p, scene)
        _add_labels(p, scene, beacons)
        _add_title(p, scene)
        _add_legend(p, present | {device_class.get(d, "critical") for d in beacons}, scene, size)
        _fit_camera(p, community, view, size)
        p.enable_anti_aliasing("ssaa")  # FXAA is not supported by VTK's EGL/OSMesa builds
    except BaseException:
        p.close()  # free the GL context; the caller never got the plotter
        raise
    return p


@dataclass(frozen=True, slots=True)
class _Scene:
    community: Community
    view: View
    device_class: Mapping[str, str]
    font: Path | None
    points: geo.DevicePoints
    classes: Mapping[geo.FloorKey, str]
    lang: str = "zh"  # of the legend and the title's words

    @property
    def cjk(self) -> bool:
        return self.font is not None

    @property
    def font_arg(self) -> str | None:
        return str(self.font) if self.font is not None else None

    def building_name(self, b: Building) -> str:
        return b.name if self.cjk else b.id

    def highlight_device(self) -> str | None:
        return self.view.highlight[2] if self.view.highlight is not None else None

    def on_plate(self, key: geo.FloorKey | None) -> bool:
        """Whether a device on this floor is drawn on the floor plate (the floor in view), not inside its slab."""
        v = self.view
        return key is not None and v.building is not None and v.floor is not None and key == (v.building.id, v.floor)

    def device_xyz(self, n: int) -> tuple[float, float, float]:
        x, y, z = (float(c) for c in self.points.xyz[n])
        key = self.points.keys[n]
        if key is not None and self.on_plate(key):
            b = self.community.building(key[0])
            if b is not None:
                z = geo.floor_span(b, key[1])[1] + 0.6
        return x, y, z


def _floor_classes(community: Community, view: View,
                   floor_class: Mapping[geo.FloorKey, str]) -> dict[geo.FloorKey, str]:
    """The caller's classes plus the highlight: the alarm floor keeps its class, or becomes "selected"."""
    classes = dict(floor_class)
    if view.highlight is None:
        return classes
    hb, hf, hd = view.highlight
    if hb is None and hd is not None:
        dev = community.device(hd)
        hb, hf = (dev.building, dev.floor) if dev is not None else (None, None)
    b = community.building(hb) if hb is not None else None
    if b is not None:
        for f in [hf] if hf is not None else b.floors:
            if classes.get((b.id, f), "normal") == "normal":
                classes[(b.id, f)] = "selected"
    return classes


def _add_buildings(p: Any, community: Community, view: View, classes: Mapping[geo.FloorKey, str]) -> set[str]:
    """Floors, shafts and ground as one actor per (class, see-through); returns the classes drawn."""
    focus, ffloor = view.building, view.floor

    def classify(key: geo.FloorKey) -> str:
        if key == geo.GROUND_KEY:
            return "ground"
        cls = classes.get(key, "shaft" if key[1] == geo.SHAFTS else "normal")
        above = focus is not None and ffloor is not None and key[0] == focus.id and key[1] > ffloor
        if above or (focus is not None and ffloor is not None and key == (focus.id, geo.SHAFTS)):
            return "ghost:" + cls  # floors above the one in view: see-through, so its plate and devices show
        return cls

    groups = geo.group_by(geo.community_mesh(community, ground=True), classify)
    # Ground is see-through when something below it matters (an alarm or the view in a basement).
    underground = any(k[1] < 0 and c != "normal" for k, c in classes.items()) or (ffloor is not None and ffloor < 0)
    for cls, m in sorted(groups.items()):
        base = cls.removeprefix("ghost:")
        opacity = GHOST_OPACITY if cls.startswith("ghost:") else 0.45 if cls == "ground" and underground else 1.0
        p.add_mesh(_poly(m), color=SHAFT_COLOUR if base == "shaft" else geo.PALETTE[base], opacity=opacity,
                   ambient=0.35, diffuse=0.75, specular=0.0, smooth_shading=False, reset_camera=False,
                   pickable=False)
    return {c.removeprefix("ghost:") for c in groups}


def _add_grid_lines(p: Any, community: Community) -> None:
    for g in community.grids:
        pts = np.array([(x, y, 0.05) for x, y in [*g.boundary, g.boundary[0]]], dtype=np.float64)
        p.add_mesh(pv.lines_from_points(pts), color=GRID_LINE, line_width=2, reset_camera=False, pickable=False)


def _add_devices(p: Any, scene: _Scene) -> None:
    """Devices of the building (or floor) in view, one actor per class.

    Zoomed on a floor they sit on its plate; zoomed on a building they are inside their (opaque) floor
    slabs, so only those near a facade show.
    """
    view, pts, hd = scene.view, scene.points, scene.highlight_device()
    if view.building is None:
        return
    by_class: dict[str, list[tuple[float, float, float]]] = {}
    for n, key in enumerate(pts.keys):
        if key is None or key[0] != view.building.id or pts.ids[n] == hd:
            continue
        if view.floor is not None and key[1] != view.floor:
            continue
        by_class.setdefault(scene.device_class.get(pts.ids[n], "normal"), []).append(scene.device_xyz(n))
    for cls, xyz in sorted(by_class.items()):
        colour = DEVICE_NORMAL if cls == "normal" else geo.PALETTE[cls]
        cloud = pv.PolyData(np.asarray(xyz, dtype=np.float64))
        if view.floor is not None:  # balls in metres: they scale with the floor plan
            p.add_mesh(cloud.glyph(geom=pv.Sphere(radius=0.45), scale=False, orient=False), color=colour,
                       ambient=0.4, reset_camera=False, pickable=False)
        else:
            p.add_points(cloud, color=colour, point_size=5, render_points_as_spheres=True, reset_camera=False,
                         pickable=False)


def _beacon_head(scene: _Scene, n: int) -> float | None:
    """z of the pin head above the device's roof, or None when the device is shown on its floor plate."""
    key = scene.points.keys[n]
    if scene.on_plate(key):
        return None
    b = scene.community.building(key[0]) if key is not None else None
    return max(geo.building_top(b) if b is not None else 0.0, scene.device_xyz(n)[2]) + 10.0


def _add_beacons(p: Any, scene: _Scene) -> list[str]:
    """Mark alarming devices: a ball at the device and, unless it is on the floor in view, a pin rising
    above its roof so it shows from any angle. The highlighted device's mark is bigger. Returns the ids."""
    pts, hd = scene.points, scene.highlight_device()
    chosen = [d for d in pts.ids if scene.device_class.get(d) in BEACON_CLASSES and d != hd][:MAX_BEACONS]
    if hd is not None and hd in pts.ids:
        chosen.append(hd)
    for d in chosen:
        n = pts.index(d)
        x, y, z = scene.device_xyz(n)
        cls = scene.device_class.get(d, "critical")
        colour = geo.PALETTE[cls] if cls != "normal" else geo.PALETTE["selected"]
        big = d == hd
        head = _beacon_head(scene, n)
        if head is not None:
            p.add_mesh(pv.Line((x, y, z), (x, y, head)).tube(radius=0.45 if big else 0.3), color=colour,
                       ambient=0.6, reset_camera=False, pickable=False)
            p.add_mesh(pv.Sphere(radius=2.2 if big else 1.4, center=(x, y, head)), color=colour, ambient=0.5,
                       reset_camera=False, pickable=False)
        p.add_mesh(pv.Sphere(radius=1.0 if big else 0.6, center=(x, y, z)), color=colour, ambient=0.6,
                   reset_camera=False, pickable=False)
        if head is None:  # on the plate of a floor drawn in the alarm colour: a white ring sets it apart
            p.add_mesh(pv.Disc(center=(x, y, z - 0.5), inner=1.4 if big else 0.9, outer=2.1 if big else 1.3,
                               normal=(0.0, 0.0, 1.0), c_res=48), color="white", ambient=0.8,
                       reset_camera=False, pickable=False)
    return chosen


def _add_labels(p: Any, scene: _Scene, beacons: list[str]) -> None:
    """Building names on the roofs, the floor in view, and where each marked device is."""
    community, view, font = scene.community, scene.view, scene.font_arg
    named = community.buildings
    if view.building is not None:
        # Zoomed in, other buildings' names would float over the facade of the one in front of them.
        named = [view.building]
    elif len(named) > MAX_BUILDING_LABELS:  # a big estate: name only the buildings with something to see
        flagged = {k[0] for k, c in scene.classes.items() if c != "normal"}
        named = [b for b in named if b.id in flagged]
    if named:
        roofs = np.array([(*np.asarray(b.footprint, dtype=np.float64).mean(axis=0), geo.building_top(b) + 3.0)
                          for b in named])
        p.add_point_labels(roofs, [scene.building_name(b) for b in named],
                           font_size=15 if view.building is None else 18, text_color="white", font_file=font,
                           shape_color=LABEL_BG, shape_opacity=0.75, show_points=False, always_visible=True,
                           reset_camera=False)
    if view.building is not None and view.floor is not None:
        b, f = view.building, view.floor
        x0, y0 = min(x for x, _ in b.footprint), min(y for _, y in b.footprint)
        p.add_point_labels(np.array([(x0, y0, geo.floor_span(b, f)[1])]), [floor_label(f, cjk=scene.cjk)],
                           font_size=18, text_color="white", font_file=font, shape_color=geo.PALETTE["selected"],
                           shape_opacity=0.9, show_points=False, always_visible=True, reset_camera=False)
    pos, text = [], []
    hd = scene.highlight_device()
    for d in beacons:
        if d != hd and len(beacons) > 8:
            continue  # many alarms: only the highlighted one is named, the pins say the rest
        n = scene.points.index(d)
        x, y, z = scene.device_xyz(n)
        head = _beacon_head(scene, n)
        key = scene.points.keys[n]
        b2 = community.building(key[0]) if key is not None else None
        where = "" if key is None or b2 is None else f"{scene.building_name(b2)} {floor_label(key[1], cjk=scene.cjk)} "
        pos.append((x, y, head + 3.0 if head is not None else z + 4.0))
        text.append(f"{where}{d}")
    if pos:
        p.add_point_labels(np.asarray(pos), text, font_size=17, bold=True, text_color="white", font_file=font,
                           shape_color="#7F1D1D", shape_opacity=0.9, show_points=False, always_visible=True,
                           reset_camera=False)


def _add_title(p: Any, scene: _Scene) -> None:
    community, view, cjk = scene.community, scene.view, scene.cjk
    title = f"{community.name} ({community.id})" if cjk else community.id
    if view.building is not None:
        title += f"  ·  {scene.building_name(view.building)}"
        if view.floor is not None:
            title += f" {floor_label(view.floor, cjk=cjk)}"
    lines = [title]
    hd = scene.highlight_device()
    if hd is not None:
        dev = community.device(hd)
        b = community.building(dev.building) if dev is not None and dev.building is not None else None
        where = ""
        if b is not None and dev is not None:
            where = scene.building_name(b) + (f" {floor_label(dev.floor, cjk=cjk)}" if dev.floor is not None else "")
        kind = kind_label(scene.lang, dev.kind) if dev is not None else ""
        lines.append(t(scene.lang, "render.alarm") + (f"{where} · " if where else "") + f"{hd} ({kind})")
    p.add_text("\n".join(lines), position="upper_left", font_size=13, color="white", font_file=scene.font_arg,
               shadow=True)


LEGEND_ORDER = ("critical", "major", "minor", "warning", "offline", "selected", "normal")


def _add_legend(p: Any, present: set[str], scene: _Scene, size: tuple[int, int]) -> None:
    """A swatch and the class's name (from the catalogue, in the scene's language) per colour in the picture,
    worst first, in the upper right corner. Drawn as texts: VTK's legend box cannot take a CJK font file."""
    order = [c for c in LEGEND_ORDER if c in present]
    if len(order) < 2:
        return  # all normal: nothing to explain
    if scene.font is None:  # VTK's own font: no CJK glyphs, no swatch glyph; its legend box does (English)
        p.add_legend(labels=[[_legend_label(scene.lang, c), geo.PALETTE[c]] for c in order], bcolor=LABEL_BG,
                     border=False, size=(0.14, 0.035 * len(order)), loc="upper right", face="rectangle",
                     background_opacity=0.8)
        return
    font_size = max(7, min(11, size[1] // 80))
    px = font_size * 1.6  # VTK draws a font_size of n about 1.6 n pixels high
    line = int(px * 1.5)
    width = max(len(_legend_label(scene.lang, c)) for c in order) * px * (1.0 if scene.lang == "zh" else 0.6)
    x = max(8, int(size[0] - width - px * 2.5))
    for n, cls in enumerate(order):
        y = int(size[1] - line * (n + 1) - px)
        p.add_text("■", position=(x, y), font_size=font_size, color=geo.PALETTE[cls], font_file=scene.font_arg)
        p.add_text(_legend_label(scene.lang, cls), position=(x + int(px * 1.4), y), font_size=font_size,
                   color="white", font_file=scene.font_arg, shadow=True)


def _legend_label(lang: str, cls: str) -> str:
    return t(lang, "scene.selected") if cls == "selected" else t(lang, f"class.{cls}")


def _view_box(community: Community, view: View) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(corners of the box to frame (8, 3), direction from the scene towards the camera)."""
    if view.building is None:
        x0, y0, x1, y1 = geo.community_bounds(community)
        z0, z1 = 0.0, max(geo.building_top(b) for b in community.buildings)
        direction = np.array([0.35, -1.0, 0.8])  # from the south-south-east, about 37 degrees up
    else:
        b, pad = view.building, 3.0
        x0, x1 = min(x for x, _ in b.footprint) - pad, max(x for x, _ in b.footprint) + pad
        y0, y1 = min(y for _, y in b.footprint) - pad, max(y for _, y in b.footprint) + pad
        if view.floor is None:
            z0, z1 = geo.floor_span(b, b.floors[0])[0], geo.building_top(b) + 4.0
            direction = np.array([0.45, -1.0, 0.45])
        else:
            x0, x1, y0, y1 = x0 - 5.0, x1 + 5.0, y0 - 5.0, y1 + 5.0
            lo, hi = geo.floor_span(b, view.floor)
            z0, z1 = lo - 3 * b.floor_height, hi + 2 * b.floor_height
            direction = np.array([0.3, -1.0, 1.5])  # steeper: look down onto the floor plate
    corners = np.array([(x, y, z) for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], dtype=np.float64)
    return corners, direction / np.linalg.norm(direction)


def _fit_camera(p: Any, community: Community, view: View, size: tuple[int, int], fill: float = 0.92,
                view_angle: float = 30.0) -> None:
    """Perspective camera along the view direction, as close as it can be with the whole box in frame."""
    corners, direction = _view_box(community, view)
    centre = (corners.min(axis=0) + corners.max(axis=0)) / 2
    up0 = np.array([0.0, 0.0, 1.0])
    right = np.cross(up0, direction)
    right /= np.linalg.norm(right)
    up = np.cross(direction, right)
    rel = corners - centre
    x, y, depth = rel @ right, rel @ up, rel @ direction
    tan_v = np.tan(np.radians(view_angle / 2)) * fill
    tan_h = tan_v * size[0] / size[1]
    distance = float(np.max(np.maximum(depth + np.abs(x) / tan_h, depth + np.abs(y) / tan_v)))
    cam = p.camera
    cam.view_angle = view_angle
    cam.focal_point = tuple(centre.tolist())
    cam.position = tuple((centre + direction * distance).tolist())
    cam.up = (0.0, 0.0, 1.0)
    p.renderer.ResetCameraClippingRange()
