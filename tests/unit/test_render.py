"""Offscreen PNG rendering (viz/render.py) and `gridtwin render`: real VTK renders, no display needed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from gateway.cli import main
from twin.community import Community, parse
from viz import render

ROOT = Path(__file__).resolve().parents[2]
ALARM = ("B11", 15, "B11-F15-SD1")


@pytest.fixture(scope="module")
def sample() -> Community:
    return parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))


def load_png(path: Path, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()  # checksums and structure
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == size and img.mode == "RGB"
        return np.asarray(img.convert("RGB"))


def critical_red_pixels(img: npt.NDArray[np.uint8]) -> int:
    """Pixels of the critical red, lit or in shade: strong red, little green and blue."""
    r, g, b = (img[..., i].astype(np.int32) for i in range(3))
    return int(np.count_nonzero((r > 110) & (g * 3 < r) & (b * 3 < r)))


def distinct_colours(img: npt.NDArray[np.uint8]) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def test_offscreen_window_is_egl_or_osmesa() -> None:
    assert render.configure_offscreen() in {"vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow"}
    assert os.environ["VTK_DEFAULT_OPENGL_WINDOW"] in {"vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow"}


def test_whole_community_renders_without_alarm_red(sample: Community, tmp_path: Path) -> None:
    out = render.render_png(sample, tmp_path / "community.png", size=(640, 480))
    img = load_png(out, (640, 480))
    assert distinct_colours(img) > 200  # shaded buildings, ground, labels: not a blank frame
    background = np.array([int(render.BACKGROUND[i:i + 2], 16) for i in (1, 3, 5)])
    assert np.mean(np.all(img == background, axis=-1)) < 0.8
    assert critical_red_pixels(img) < 10


def test_highlighted_alarm_shows_in_critical_red(sample: Community, tmp_path: Path) -> None:
    out = render.render_png(sample, tmp_path / "alarm.png", floor_class={ALARM[:2]: "critical"},
                            device_class={ALARM[2]: "critical"}, highlight=ALARM, size=(640, 480))
    assert critical_red_pixels(load_png(out, (640, 480))) > 300


def test_building_and_floor_views(sample: Community, tmp_path: Path) -> None:
    out = render.render_png(sample, tmp_path / "floor.png", floor_class={ALARM[:2]: "critical"},
                            device_class={ALARM[2]: "critical"}, highlight=ALARM, building="B11", floor=15,
                            size=(800, 600))
    img = load_png(out, (800, 600))
    assert critical_red_pixels(img) > 10_000  # zoomed in: the alarm floor is a large part of the frame
    quiet = load_png(render.render_png(sample, tmp_path / "b.png", building="B4", size=(400, 300)), (400, 300))
    assert distinct_colours(quiet) > 100 and critical_red_pixels(quiet) < 10


def test_basement_and_outdoor_devices_can_be_highlighted(sample: Community, tmp_path: Path) -> None:
    out = render.render_png(sample, tmp_path / "b1.png", floor_class={("B12", -1): "critical"},
                            highlight=("B12", -1, "B12-B1-GAS"), building="B12", floor=-1, size=(320, 240))
    assert critical_red_pixels(load_png(out, (320, 240))) > 100
    out = render.render_png(sample, tmp_path / "noise.png", device_class={"NOISE-1": "critical"},
                            highlight=(None, None, "NOISE-1"), size=(320, 240))
    assert critical_red_pixels(load_png(out, (320, 240))) > 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"building": "B99"}, "unknown building 'B99'"),
        ({"building": "B7", "floor": 7}, "building B7 has no floor 7"),
        ({"floor": 3}, "a floor needs a building"),
        ({"highlight": (None, None, "NOPE")}, "unknown device 'NOPE'"),
        ({"floor_class": {("B1", 1): "burning"}}, "unknown colour class 'burning'"),
        ({"size": (0, 100)}, "image size"),
    ],
)
def test_bad_requests_are_render_errors(sample: Community, tmp_path: Path, kwargs: dict[str, object],
                                        message: str) -> None:
    with pytest.raises(render.RenderError, match=message):
        render.render_png(sample, tmp_path / "x.png", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x.png").exists()


def test_write_png_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    render.write_png(tmp_path / "r.png", img)
    assert np.array_equal(load_png(tmp_path / "r.png", (5, 7)), img)


def test_cli_render_highlight(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.png"
    assert main(["render", "--out", str(out), "--highlight", "B4-F20-SD1", "--building", "B4", "--floor", "20"]) == 0
    assert critical_red_pixels(load_png(out, (1280, 900))) > 10_000
    assert str(out) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--building", "B99"], "unknown building 'B99'"),
        (["--building", "B1", "--floor", "0"], "building B1 has no floor 0"),
        (["--building", "B7", "--floor", "-2"], "building B7 has no floor -2"),
        (["--highlight", "NOPE"], "unknown device 'NOPE'"),
        (["--building", "B1", "--highlight", "B4-F20-SD1"], "device B4-F20-SD1 is in building B4, not B1"),
        (["--floor", "2"], "a floor needs a building"),
    ],
)
def test_cli_render_bad_ids_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                args: list[str], message: str) -> None:
    assert main(["render", "--out", str(tmp_path / "x.png"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gridtwin: ") and message in err[0]


def test_cli_render_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--out", str(tmp_path / "no" / "such" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "does not exist" in err
    assert main(["render", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
