"""``gridtwin patrol-sheet``: a printable A4 sheet (PDF or PNG) with one QR code per patrol checkpoint, its building
and plan under it, each opening the check-in page ``{base}/patrol/{checkpoint}~{signature}``. Does I/O (writes the
file).

The QR codes, fonts and grid are those of the residents' report sheet (:mod:`gateway.reports.qrsheet`); only the
entries and the title differ. Tokens are signed with the database's patrol key (:func:`gateway.patrols.store.
signing_key`), so a sticker cannot be forged for another checkpoint and a reprint gives the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from PIL import Image, ImageDraw

from gateway.reports.qrsheet import (
    CELL_H,
    CELL_W,
    COLS,
    HEADER,
    MARGIN,
    PAGE,
    ROWS,
    SheetError,
    _font,
    _short,
    qr_image,
    qr_position,
    save_pages,
)
from twin import patrols as pt
from twin.community import Community


@dataclass(frozen=True, slots=True)
class Entry:
    checkpoint: str
    name: str  # building (and elevator)
    plan: str  # the plan's Chinese name
    url: str


def entries(community: Community, base_url: str, secret: bytes, *, plans: pt.Plans | None = None,
            plan: str | None = None, grid: str | None = None) -> list[Entry]:
    """One entry per checkpoint (of ``plan`` / in ``grid`` if given)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise SheetError(f"--base-url {base_url!r} must be an http(s) URL such as https://wuye.example.cn "
                         "(no query or fragment)")
    plans = plans or pt.default_plans()
    if plan is not None and plans.plan(plan) is None:
        raise SheetError(f"--plan {plan!r}: one of {', '.join(p.id for p in plans.plans)}")
    if grid is not None and grid not in {g.id for g in community.grids}:
        raise SheetError(f"--grid {grid!r}: one of {', '.join(g.id for g in community.grids)}")
    out = []
    for cp in pt.checkpoints(community, plans):
        if (plan is None or cp.plan == plan) and (grid is None or cp.grid == grid):
            p = plans.plan(cp.plan)
            url = f"{base_url.rstrip('/')}/patrol/{quote(pt.token(secret, community.id, cp.id), safe='~')}"
            out.append(Entry(cp.id, cp.label, p.name.zh if p else cp.plan, url))
    return out


def pages(community: Community, items: list[Entry]) -> list[Image.Image]:
    """A4 pages: a title, then the report sheet's grid of QR codes with the place and the plan under each."""
    title_font, name_font, small = _font(46), _font(34), _font(17)
    per_page = COLS * ROWS
    out: list[Image.Image] = []
    for start in range(0, max(1, len(items)), per_page):
        page = Image.new("RGB", PAGE, "white")
        draw = ImageDraw.Draw(page)
        draw.text((PAGE[0] / 2, MARGIN + 30), f"{community.name} · 巡查点位 / Patrol checkpoints", font=title_font,
                  fill="black", anchor="mm")
        draw.text((PAGE[0] / 2, MARGIN + 90), "网格员扫码打卡（需登录）/ grid workers scan to check in (signed in)",
                  font=small, fill="#444", anchor="mm")
        for i, e in enumerate(items[start:start + per_page]):
            x0 = MARGIN + (i % COLS) * CELL_W
            y0 = MARGIN + HEADER + (i // COLS) * CELL_H
            qr = qr_image(e.url).convert("RGB")
            page.paste(qr, qr_position(i, qr.width))
            draw.text((x0 + CELL_W / 2, y0 + qr.height + 28), e.name, font=name_font, fill="black", anchor="mm")
            draw.text((x0 + CELL_W / 2, y0 + qr.height + 62), e.plan, font=small, fill="#222", anchor="mm")
            draw.text((x0 + CELL_W / 2, y0 + qr.height + 84), _short(e.checkpoint, 38), font=small, fill="#555",
                      anchor="mm")
            draw.rectangle([x0 + 4, y0, x0 + CELL_W - 4, y0 + CELL_H - 14], outline="#bbb", width=1)
        out.append(page)
    return out


def write_sheet(community: Community, items: list[Entry], out: Path) -> None:
    """Write the sheet to ``out`` (``.pdf``: every page in one file; ``.png``: page 1, then ``NAME-2.png``, ...)."""
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".png"):
        raise SheetError(f"--out {out}: write a .pdf or a .png file")
    if not items:
        raise SheetError("no checkpoint matches --plan / --grid")
    save_pages(pages(community, items), out, f"{community.name} patrol QR")
