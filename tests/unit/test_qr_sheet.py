"""``gridtwin qr-sheet``: one QR code per building, each holding that building's public report URL (checked
against segno's own matrix of the URL, pixel by pixel: no QR decoder needed), as PNG and as PDF."""

from __future__ import annotations

from pathlib import Path

import pytest
import segno
from PIL import Image

from gateway import cli
from gateway.cli_base import sample_community_path
from gateway.reports.qrsheet import COLS, ROWS, entries, qr_image, qr_position
from twin.community import parse

BASE = "https://wuye.example.cn/gt/"


def test_the_sheet_holds_one_qr_code_per_building_with_its_report_url(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    community = parse(sample_community_path().read_text(encoding="utf-8"))
    out = tmp_path / "sheet.png"
    assert cli.main(["qr-sheet", "--community", str(sample_community_path()), "--base-url", BASE,
                     "--out", str(out)]) == 0
    assert "12 QR codes" in capsys.readouterr().out
    items = entries(community, BASE)
    assert [e.url for e in items] == [f"https://wuye.example.cn/gt/r/sunshine/{b.id}" for b in community.buildings]
    assert [e.name for e in items] == [b.name for b in community.buildings]
    page = Image.open(out).convert("1")
    assert page.size == (1240, 1754) and len(items) <= COLS * ROWS
    for i, e in enumerate(items):  # each cell holds exactly the QR code of its building's URL
        want = qr_image(e.url)
        x, y = qr_position(i, want.width)
        got = page.crop((x, y, x + want.width, y + want.height))
        assert got.tobytes() == want.tobytes(), e.building
        scale = want.width // (len(segno.make(e.url, error="m").matrix) + 8)
        first_module = (4 * scale + scale // 2, 4 * scale + scale // 2)  # the finder pattern's dark corner
        assert got.getpixel(first_module) == 0
    other = qr_image(items[1].url)
    x, y = qr_position(0, other.width)
    assert page.crop((x, y, x + other.width, y + other.height)).tobytes() != other.tobytes()


def test_pdf_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdf = tmp_path / "sheet.pdf"
    args = ["qr-sheet", "--community", str(sample_community_path()), "--base-url", BASE]
    assert cli.main([*args, "--out", str(pdf)]) == 0
    body = pdf.read_bytes()
    assert body.startswith(b"%PDF") and body.count(b"/Type /Page\n") + body.count(b"/Type /Page ") >= 1
    assert cli.main([*args, "--out", str(tmp_path / "sheet.jpg")]) == 2
    assert "write a .pdf or a .png" in capsys.readouterr().err
    assert cli.main(["qr-sheet", "--community", str(sample_community_path()), "--base-url", "javascript:alert(1)",
                     "--out", str(pdf)]) == 2
    assert "must be an http(s) URL" in capsys.readouterr().err
    assert cli.main(["qr-sheet", "--community", str(tmp_path / "none.yaml"), "--base-url", BASE,
                     "--out", str(pdf)]) == 2
