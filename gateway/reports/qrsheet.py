"""``gridtwin qr-sheet``: a printable sheet (PDF or PNG, A4) with one QR code per building, the building's name
under it, each pointing at that building's public report page (``{base}/r/{community}/{building}``). Does I/O
(writes the file).

QR codes by segno (error correction M, so a scuffed sticker still reads), pages drawn with Pillow (which also
writes the PDF); Chinese names need a CJK font (``fonts-wqy-microhei``, installed by ``make``), else Pillow's
default font is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import segno
from PIL import Image, ImageDraw, ImageFont

from twin.community import Community

DPI = 150
PAGE = (1240, 1754)  # A4 at 150 dpi
COLS, ROWS = 3, 4
MARGIN = 70
HEADER = 150
CELL_W = (PAGE[0] - 2 * MARGIN) // COLS
CELL_H = (PAGE[1] - 2 * MARGIN - HEADER) // ROWS
QR_BOX = min(CELL_W - 30, CELL_H - 110)  # the most pixels a QR code (with its quiet zone) may take
FONTS = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
         "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


class SheetError(ValueError):
    """A base URL or output file the sheet cannot be made for (the message says why)."""


@dataclass(frozen=True, slots=True)
class Entry:
    building: str  # id
    name: str
    url: str


def report_url(base_url: str, community: str, building: str) -> str:
    return f"{base_url.rstrip('/')}/r/{quote(community, safe='')}/{quote(building, safe='')}"


def entries(community: Community, base_url: str) -> list[Entry]:
    """One entry per building of ``community``, in the file's order. ``base_url``: how residents reach the
    server (``https://host[:port][/prefix]``)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SheetError(f"--base-url {base_url!r} must be an http(s) URL such as https://wuye.example.cn "
                         "(no query or fragment)")
    return [Entry(b.id, b.name, report_url(base_url, community.id, b.id)) for b in community.buildings]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def qr_image(url: str, box: int = QR_BOX) -> Image.Image:
    """The QR code of ``url`` (segno, error correction M) as a black and white picture at most ``box`` pixels wide."""
    qr = segno.make(url, error="m", micro=False)
    matrix = [list(row) for row in qr.matrix]
    n = len(matrix) + 8  # a 4-module quiet zone on each side
    scale = max(1, box // n)
    img = Image.new("1", (n * scale, n * scale), 1)
    draw = ImageDraw.Draw(img)
    for y, row in enumerate(matrix):
        for x, dark in enumerate(row):
            if dark:
                draw.rectangle([(x + 4) * scale, (y + 4) * scale, (x + 5) * scale - 1, (y + 5) * scale - 1], fill=0)
    return img




def qr_position(index: int, qr_width: int) -> tuple[int, int]:
    """Top left corner of the ``index``-th QR code of a page (row by row)."""
    col, row = index % COLS, index // COLS
    return MARGIN + col * CELL_W + (CELL_W - qr_width) // 2, MARGIN + HEADER + row * CELL_H + 6


def pages(community: Community, items: list[Entry]) -> list[Image.Image]:
    """The A4 pages: a title, then a grid of QR codes with the building's name (and the URL, small) under each."""
    title_font, name_font, url_font = _font(46), _font(38), _font(17)
    per_page = COLS * ROWS
    cell_w, cell_h = CELL_W, CELL_H
    out: list[Image.Image] = []
    for start in range(0, max(1, len(items)), per_page):
        page = Image.new("RGB", PAGE, "white")
        draw = ImageDraw.Draw(page)
        title = f"{community.name} · 扫码上报问题 / Scan to report a problem"
        draw.text((PAGE[0] / 2, MARGIN + 30), title, font=title_font, fill="black", anchor="mm")
        draw.text((PAGE[0] / 2, MARGIN + 90), "无需注册 · 可拍照 · 可查看处理进度 / no account, photo optional, "
                  "follow its progress", font=url_font, fill="#444", anchor="mm")
        for i, e in enumerate(items[start:start + per_page]):
            col, row = i % COLS, i // COLS
            x0 = MARGIN + col * cell_w
            y0 = MARGIN + HEADER + row * cell_h
            qr = qr_image(e.url).convert("RGB")
            page.paste(qr, qr_position(i, qr.width))
            draw.text((x0 + cell_w / 2, y0 + qr.height + 32), e.name, font=name_font, fill="black", anchor="mm")
            draw.text((x0 + cell_w / 2, y0 + qr.height + 70), _short(e.url, 38), font=url_font, fill="#555",
                      anchor="mm")
            draw.rectangle([x0 + 4, y0, x0 + cell_w - 4, y0 + cell_h - 14], outline="#bbb", width=1)
        out.append(page)
    return out


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n // 2 - 1] + "…" + text[-(n // 2):]


def write_sheet(community: Community, base_url: str, out: Path) -> list[Entry]:
    """Write the sheet to ``out`` (``.pdf``: every page in one file; ``.png``: page 1 there, further pages as
    ``NAME-2.png``, ...). Returns the entries (building, name, URL) it holds."""
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise SheetError(f"--out {out}: write a .pdf or a .png file")
    items = entries(community, base_url)
    save_pages(pages(community, items), out, f"{community.name} QR")
    return items


def save_pages(imgs: list[Image.Image], out: Path, title: str) -> None:
    """A sheet's pages as one PDF, or as PNGs (``out``, then ``out-2.png``...); :class:`SheetError` if not written."""
    try:
        if out.suffix.lower() == ".pdf":
            imgs[0].save(out, "PDF", resolution=DPI, save_all=True, append_images=imgs[1:], title=title,
                         author="gridtwin")
        else:
            imgs[0].save(out, "PNG", dpi=(DPI, DPI))
            for n, img in enumerate(imgs[1:], start=2):
                img.save(out.with_name(f"{out.stem}-{n}{out.suffix}"), "PNG", dpi=(DPI, DPI))
    except OSError as exc:
        raise SheetError(f"cannot write {out}: {exc.strerror or exc}") from None
