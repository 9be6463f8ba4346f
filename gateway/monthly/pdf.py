"""Drawing the monthly report (:class:`gateway.monthly.data.MonthReport`) as a four-page A4 PDF with matplotlib
(no pyplot: one :class:`~matplotlib.figure.Figure` per page), in Chinese (default) or English. Writes files.

1. the headline outcomes as big numbers against their targets (green met, red missed) and baselines, and the weekly
   mean time to close and share of satisfied residents with target and baseline lines;
2. deadlines met per grid, tickets per category and per day, false-alarm rate per device kind;
3. the places with most incidents (sensor alarms and people's reports) with their hints, repeated incidents;
4. the worst missed deadlines, care visits due and made on time per level (counts only: no resident is named),
   patrol periods done per plan.

Chinese needs a CJK font (:func:`viz.fonts.find_cjk_font`); without one the Chinese report is refused
(:class:`FontMissing`) rather than printed as empty boxes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import unicodedata
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import MaxNLocator

from gateway.monthly.data import MonthReport
from gateway.monthly.strings import MONTHS_EN, category, duration, t
from twin import patrols as pt
from twin.care import LEVELS
from twin.outcomes import LOWER_IS_BETTER, METRICS, Metric
from viz.fonts import find_cjk_font
from viz.i18n import kind_label

A4 = (8.27, 11.69)  # inches, portrait
PAGES = 4
GREEN, RED, GREY, BLUE, ORANGE, AMBER = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0", "#ef6c00", "#f9a825"
INK, SOFT = "#212121", "#616161"
PNG_DPI = 110


class FontMissing(RuntimeError):
    """No font with Chinese glyphs on this machine (the message says which package to install)."""


def font_rc(lang: str) -> dict[str, Any]:
    """matplotlib settings for the report: the CJK font first (registered with the font manager), DejaVu Sans for
    the rest. English works without a CJK font (names of places may then lack glyphs); Chinese does not."""
    rc: dict[str, Any] = {"axes.unicode_minus": False, "pdf.fonttype": 42, "font.size": 9,
                          "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 11,
                          "axes.titlelocation": "left"}
    path = find_cjk_font()
    if path is None:
        if lang != "en":
            raise FontMissing("no font with Chinese glyphs found (looked in the usual package paths and fc-list): "
                              "install one, e.g. `apt-get install fonts-wqy-microhei`, or use --lang en")
        rc["font.family"] = ["DejaVu Sans"]
        return rc
    rc["font.family"] = [_registered(str(path)), "DejaVu Sans"]
    return rc


@cache
def _registered(path: str) -> str:
    """The family name of the font file ``path``, added to matplotlib's font manager once per process."""
    font_manager.fontManager.addfont(path)
    return str(font_manager.FontProperties(fname=path).get_name())


def write_pdf(report: MonthReport, out: Path, lang: str = "zh", *, png_dir: Path | None = None,
              made: datetime | None = None) -> int:
    """Writes the report to ``out`` (atomically: a temporary file in the same folder, then renamed) and, if asked,
    each page as ``page-N.png`` in ``png_dir``; returns the number of pages. OSError if a file cannot be written."""
    rc = font_rc(lang)
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # it reports each table it subsets at INFO
    made = made or datetime.now(report.start.tzinfo)
    out = Path(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent or Path("."))
    os.close(fd)
    pages = 0
    try:
        with mpl.rc_context(rc):  # type: ignore[arg-type]
            meta = {"Title": _title(report, lang), "Creator": "gridtwin report month", "Subject": report.community}
            with PdfPages(tmp, metadata=meta) as pdf:
                for fig in figures(report, lang, made):
                    pages += 1
                    pdf.savefig(fig)
                    if png_dir is not None:
                        png_dir.mkdir(parents=True, exist_ok=True)
                        fig.savefig(png_dir / f"page-{pages}.png", dpi=PNG_DPI)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return pages


def figures(report: MonthReport, lang: str, made: datetime) -> Iterator[Figure]:
    for n, draw in enumerate((_page_outcomes, _page_tickets, _page_hotspots, _page_breaches), start=1):
        fig = Figure(figsize=A4)
        draw(fig, report, lang)
        _footer(fig, report, lang, n, made)
        yield fig


# -- shared pieces --------------------------------------------------------------------------------------------------


def _month(report: MonthReport, lang: str) -> str:
    return t(lang, "month", y=report.year, m=report.month, month_en=MONTHS_EN[report.month - 1])


def _title(report: MonthReport, lang: str) -> str:
    return f"{t(lang, 'title', name=report.name)} · {_month(report, lang)}"


def _heading(fig: Figure, report: MonthReport, lang: str, text: str) -> None:
    fig.text(0.06, 0.965, f"{report.name} · {_month(report, lang)}", fontsize=9, color=SOFT)
    fig.text(0.06, 0.94, text, fontsize=16, color=INK)


def _footer(fig: Figure, report: MonthReport, lang: str, n: int, made: datetime) -> None:
    fig.text(0.06, 0.02, t(lang, "made", at=made.astimezone(report.start.tzinfo).strftime("%Y-%m-%d %H:%M")),
             fontsize=7, color=SOFT)
    fig.text(0.94, 0.02, t(lang, "page", n=n, of=PAGES), fontsize=7, color=SOFT, ha="right")


def _empty(ax: Axes, text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color=SOFT, transform=ax.transAxes)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def _fmt(metric: str, v: float | None, lang: str) -> str:
    if v is None:
        return "-"
    if metric == "close_days":
        return t(lang, "unit.days", v=f"{v:.1f}")
    return _pct(v)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def wrap(text: str, cols: int) -> list[str]:
    """``text`` in lines of at most ``cols`` columns (a Chinese character is two), breaking at spaces if it can."""
    lines: list[str] = []
    line = ""
    for ch in text:
        if _width(line + ch) > cols:
            cut = line.rfind(" ")
            if cut > len(line) // 2:
                lines.append(line[:cut])
                line = line[cut + 1:]
            else:
                lines.append(line)
                line = ""
        line += ch
    if line.strip():
        lines.append(line)
    return lines


def _bar_labels(ax: Axes, bars: Any, labels: Sequence[str], *, horizontal: bool = False) -> None:
    ax.bar_label(bars, labels=labels, padding=2, fontsize=7.5, color=INK)
    if horizontal:
        ax.margins(x=0.18)


# -- page 1: outcomes -----------------------------------------------------------------------------------------------


def _page_outcomes(fig: Figure, r: MonthReport, lang: str) -> None:
    fig.text(0.06, 0.955, t(lang, "title", name=r.name), fontsize=20, color=INK)
    fig.text(0.06, 0.925, _month(r, lang), fontsize=14, color=BLUE)
    sub = t(lang, "period", first=r.start.date().isoformat(), last=(r.end - timedelta(days=1)).date().isoformat(),
            tz=str(r.start.tzinfo))
    if r.cutoff < r.end:
        sub += "  " + t(lang, "cutoff", at=r.cutoff.astimezone(r.start.tzinfo).strftime("%Y-%m-%d %H:%M"))
    fig.text(0.06, 0.905, sub, fontsize=8, color=SOFT)
    fig.text(0.06, 0.87, t(lang, "kpi.heading"), fontsize=11, color=INK)
    for i, metric in enumerate(METRICS):
        col, row = i % 4, i // 4
        ax = fig.add_axes((0.06 + col * 0.225, 0.695 - row * 0.165, 0.21, 0.155))
        _card(ax, r, metric, lang)
    v = r.values
    rated = r.values.get("rated")
    mean = v.get("mean_rating")
    fig.text(0.06, 0.5, t(lang, "kpi.tickets", n=r.tickets, r="-" if rated is None else int(rated),
                          s="-" if mean is None else f"{mean:.2f}"), fontsize=9, color=SOFT)
    left = fig.add_axes((0.09, 0.09, 0.38, 0.36))
    right = fig.add_axes((0.58, 0.09, 0.38, 0.36))
    if r.tickets == 0:
        for ax in (left, right):
            _empty(ax, "")
        fig.text(0.5, 0.27, t(lang, "no_tickets"), ha="center", va="center", fontsize=18, color=SOFT)
        return
    _weekly(left, r, "close_days", lang)
    _weekly(right, r, "satisfaction", lang)


def _card(ax: Axes, r: MonthReport, metric: Metric, lang: str) -> None:
    ax.set_axis_off()
    value = r.values.get(metric)
    met = r.targets.met(metric, value)
    colour = GREY if met is None else GREEN if met else RED
    ax.add_patch(FancyBboxPatch((0.02, 0.02), 0.96, 0.96, boxstyle="round,pad=0,rounding_size=0.06",
                                transform=ax.transAxes, facecolor="#fafafa", edgecolor=colour, linewidth=1.4))

    def text(y: float, s: str, **kw: Any) -> None:
        ax.text(0.08, y, s, transform=ax.transAxes, va="center", **{"fontsize": 7.5, "color": SOFT, **kw})

    text(0.86, t(lang, f"m.{metric}"), fontsize=9, color=INK)
    text(0.62, _fmt(metric, value, lang), fontsize=20, color=colour)
    badge = t(lang, "kpi.none" if met is None else "kpi.met" if met else "kpi.missed")
    ax.text(0.92, 0.62, badge, fontsize=7.5, color="white", transform=ax.transAxes, va="center", ha="right",
            bbox={"boxstyle": "round,pad=0.25", "facecolor": colour, "edgecolor": "none"})
    target = getattr(r.targets, metric)
    op = "≤" if metric in LOWER_IS_BETTER else "≥"
    text(0.38, t(lang, "kpi.target", op=op, v=_fmt(metric, target.target, lang)))
    if target.baseline is not None:
        text(0.24, t(lang, "kpi.baseline", v=_fmt(metric, target.baseline, lang)))
        if value is not None:
            d = value - target.baseline
            sign = "+" if d >= 0 else "−"
            delta = (t(lang, "unit.days", v=f"{sign}{abs(d):.1f}") if metric == "close_days"
                     else f"{sign}{abs(d) * 100:.0f} pp")
            text(0.11, t(lang, "kpi.vs_baseline", d=delta))


def week_labels(r: MonthReport) -> list[str]:
    """Each week of the month as its first and last day in the month: ``11-02~08``, or ``11-01`` for one day."""
    first = r.start.date()
    last = (r.end - timedelta(days=1)).date()
    starts = [max(d, first) for d, _ in r.weeks]
    out = []
    for i, s in enumerate(starts):
        e = min(starts[i + 1] - timedelta(days=1) if i + 1 < len(starts) else last, last)
        out.append(f"{s:%m-%d}" if e == s else f"{s:%m-%d}~{e:%d}")
    return out


def _weekly(ax: Axes, r: MonthReport, metric: Metric, lang: str) -> None:
    first = r.start.date()
    pts = [(max(d, first), v.get(metric)) for d, v in r.weeks]
    xs = list(range(len(pts)))
    ys = [None if v is None else (v if metric == "close_days" else v * 100) for _, v in pts]
    scale = 1.0 if metric == "close_days" else 100.0
    target = getattr(r.targets, metric)
    ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", color=BLUE, linewidth=2,
            label=t(lang, "line.actual"))
    for x, y in zip(xs, ys, strict=True):
        if y is not None:
            ax.annotate(f"{y:.1f}" if metric == "close_days" else f"{y:.0f}%", (x, y), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=7.5, color=BLUE, zorder=5,
                        bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"})
    ax.axhline(target.target * scale, color=GREEN, linestyle="--", linewidth=1.2, label=t(lang, "line.target"))
    if target.baseline is not None:
        ax.axhline(target.baseline * scale, color=GREY, linestyle=":", linewidth=1.4, label=t(lang, "line.baseline"))
    ax.set_title(t(lang, "weekly.close" if metric == "close_days" else "weekly.sat"), fontsize=10)
    ax.set_xticks(xs, week_labels(r), fontsize=7.5)
    ax.set_xlim(-0.4, len(xs) - 0.6)
    ax.set_xlabel(t(lang, "weekly.week"), fontsize=8, color=SOFT)
    vals = [y for y in ys if y is not None] + [target.target * scale]
    if target.baseline is not None:
        vals.append(target.baseline * scale)
    top = max(vals) if vals else 1.0
    ax.set_ylim(0, 105 if metric != "close_days" else top * 1.2 + 0.1)
    if metric != "close_days":
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0f}%")
    ax.legend(fontsize=7, loc="lower left" if metric != "close_days" else "upper right", frameon=False)
    ax.grid(axis="y", color="#eeeeee")
    if all(y is None for y in ys):
        ax.text(0.5, 0.5, t(lang, "no_data"), ha="center", va="center", color=SOFT, transform=ax.transAxes)


# -- page 2: tickets and deadlines --------------------------------------------------------------------------------


def _page_tickets(fig: Figure, r: MonthReport, lang: str) -> None:
    _heading(fig, r, lang, t(lang, "p2.heading"))
    _sla(fig.add_axes((0.09, 0.66, 0.86, 0.24)), r, lang)
    _categories(fig.add_axes((0.15, 0.36, 0.32, 0.23)), r, lang)
    _false_alarms(fig.add_axes((0.66, 0.36, 0.29, 0.23)), r, lang)
    _per_day(fig.add_axes((0.09, 0.07, 0.86, 0.21)), r, lang)


def _sla(ax: Axes, r: MonthReport, lang: str) -> None:
    ax.set_title(t(lang, "sla.title"))
    grids = [g for g, v in r.sla_by_grid.items() if v.get("response_sla") is not None
             or v.get("resolution_sla") is not None]
    if not grids:
        _empty(ax, t(lang, "no_data"))
        return
    xs = range(len(grids))
    w = 0.36
    for off, key, colour in ((-w / 2, "response_sla", BLUE), (w / 2, "resolution_sla", ORANGE)):
        vals = [r.sla_by_grid[g].get(key) for g in grids]
        bars = ax.bar([x + off for x in xs], [0 if v is None else v * 100 for v in vals], w, color=colour,
                      label=t(lang, "sla.response" if key == "response_sla" else "sla.resolution"))
        ax.bar_label(bars, labels=[_pct(v) for v in vals], label_type="center", fontsize=9, color="white")
        goal = getattr(r.targets, key).target * 100
        ax.axhline(goal, color=colour, linestyle="--", linewidth=1,
                   label=t(lang, "sla.target", what=t(lang, "sla.response" if key == "response_sla"
                                                      else "sla.resolution"), v=f"{goal:.0f}%"))
    ax.set_xticks(list(xs), grids)
    ax.set_ylim(0, 118)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0f}%")
    ax.legend(fontsize=7, ncols=4, loc="upper left", frameon=False)


def _categories(ax: Axes, r: MonthReport, lang: str) -> None:
    ax.set_title(t(lang, "cat.title"))
    if not r.per_category:
        _empty(ax, t(lang, "no_data"))
        return
    rows = list(reversed(r.per_category))
    bars = ax.barh([category(lang, c) for c, _ in rows], [n for _, n in rows], color=BLUE)
    _bar_labels(ax, bars, [str(n) for _, n in rows], horizontal=True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _false_alarms(ax: Axes, r: MonthReport, lang: str) -> None:
    ax.set_title(t(lang, "false.title"))
    rows = sorted(((k, a, f) for k, (a, f) in r.false_by_kind.items() if a), key=lambda x: (x[2] / x[1], x[0]))
    if not rows:
        _empty(ax, t(lang, "false.none"))
        return
    rows = rows[-8:]
    goal = r.targets.false_alarm_rate.target
    bars = ax.barh([kind_label(lang, k) for k, _, _ in rows], [f / a * 100 for _, a, f in rows],
                   color=[RED if f / a > goal else GREEN for _, a, f in rows])
    _bar_labels(ax, bars, [f"{f / a * 100:.0f}% ({t(lang, 'false.label', f=f, a=a)})" for _, a, f in rows],
                horizontal=True)
    ax.axvline(goal * 100, color=SOFT, linestyle="--", linewidth=1)
    ax.set_xlim(0, 160)  # room for the labels
    ax.set_xticks([0, 50, 100])
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0f}%")


def _per_day(ax: Axes, r: MonthReport, lang: str) -> None:
    ax.set_title(t(lang, "day.title"))
    days = [d for d, _ in r.per_day]
    counts = [n for _, n in r.per_day]
    for i, d in enumerate(days):
        if d.weekday() >= 5:
            ax.axvspan(i - 0.5, i + 0.5, color="#f1f1f1", zorder=0)
    ax.bar(range(len(days)), counts, color=BLUE, zorder=2)
    ax.set_xticks(range(len(days)), [str(d.day) for d in days], fontsize=7)
    ax.set_xlim(-0.6, len(days) - 0.4)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if sum(counts) == 0:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, t(lang, "no_tickets"), ha="center", va="center", color=SOFT, transform=ax.transAxes)
    ax.text(1.0, 1.02, "▢ " + t(lang, "day.weekend"), transform=ax.transAxes, ha="right", fontsize=7, color=SOFT)


# -- page 3: hotspots -------------------------------------------------------------------------------------------------


def _label(lang: str, text: str) -> str:
    """``中文 / English`` -> the half for ``lang``."""
    if " / " in text:
        zh, en = text.split(" / ", 1)
        return en.strip() if lang == "en" else zh.strip()
    return text


def _page_hotspots(fig: Figure, r: MonthReport, lang: str) -> None:
    _heading(fig, r, lang, t(lang, "p3.heading"))
    ax = fig.add_axes((0.22, 0.6, 0.72, 0.3))
    n = len(r.hotspots)
    ax.set_title(t(lang, "hot.title", n=max(n, 1) if n else 10))
    if not r.hotspots:
        _empty(ax, t(lang, "no_data"))
    else:
        rows = list(reversed(r.hotspots))
        labels = [f"{i}. {r.place(h.building, h.floor)}" for i, h in zip(range(n, 0, -1), rows, strict=True)]
        ax.barh(labels, [h.sensor for h in rows], color=BLUE, label=t(lang, "hot.sensor"))
        bars = ax.barh(labels, [h.reports for h in rows], left=[h.sensor for h in rows], color=ORANGE,
                       label=t(lang, "hot.reports"))
        _bar_labels(ax, bars, [f"{h.count} · {_label(lang, h.top_label or h.top_category or '')}" for h in rows],
                    horizontal=True)
        ax.set_xlim(0, max(h.count for h in rows) * 1.6)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="lower right", frameon=False)
    y = 0.55
    fig.text(0.06, y, t(lang, "hot.hints"), fontsize=10, color=INK)
    y -= 0.022
    for i, h in enumerate(r.hotspots, start=1):
        hint = (h.hint_en if lang == "en" else h.hint) or ""
        if not hint:
            continue
        for j, line in enumerate(wrap(f"{r.place(h.building, h.floor)}：{hint}" if lang != "en"
                                      else f"{r.place(h.building, h.floor)}: {hint}", 132)[:3]):
            fig.text(0.06, y, (f"{i}. " if j == 0 else "    ") + line, fontsize=7.5, color=INK)
            y -= 0.016
        if y < 0.36:
            break
    top = min(y - 0.05, 0.4)
    ax2 = fig.add_axes((0.22, 0.07, 0.72, top - 0.07))
    ax2.set_title(t(lang, "rep.title"))
    if not r.repeats:
        _empty(ax2, t(lang, "rep.none"))
        return
    rows2 = list(reversed(r.repeats[:10]))
    bars2 = ax2.barh([p for p, _ in rows2], [c for _, c in rows2], color=RED)
    _bar_labels(ax2, bars2, [str(c) for _, c in rows2], horizontal=True)
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))


# -- page 4: breaches, care, patrols --------------------------------------------------------------------------------


def _page_breaches(fig: Figure, r: MonthReport, lang: str) -> None:
    _heading(fig, r, lang, t(lang, "p4.heading"))
    _breaches(fig.add_axes((0.06, 0.6, 0.88, 0.3)), r, lang)
    _care(fig.add_axes((0.2, 0.36, 0.74, 0.17)), fig, r, lang)
    _patrols(fig.add_axes((0.3, 0.07, 0.42, 0.17)), r, lang)


def _breaches(ax: Axes, r: MonthReport, lang: str) -> None:
    ax.set_axis_off()
    ax.set_title(t(lang, "br.title"))
    if not r.breaches:
        ax.text(0.5, 0.5, t(lang, "br.none"), ha="center", va="center", fontsize=11, color=SOFT,
                transform=ax.transAxes)
        return
    tz = r.start.tzinfo
    head = [t(lang, k) for k in ("br.ticket", "br.category", "br.place", "br.clock", "br.deadline", "br.late",
                                 "br.worker")]
    cells = []
    for b in r.breaches:
        late = duration(lang, b.late.total_seconds())
        cells.append([f"#{b.ticket}", category(lang, b.category), r.place(b.building, b.floor),
                      t(lang, f"clock.{b.clock}"), b.deadline.astimezone(tz).strftime("%m-%d %H:%M"),
                      late if b.done else t(lang, "br.open", d=late), r.people.get(b.worker or "", b.worker or "-")])
    table = ax.table(cellText=cells, colLabels=head, loc="upper center", cellLoc="left", colLoc="left",
                     colWidths=[0.07, 0.13, 0.17, 0.11, 0.14, 0.21, 0.17])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.45)
    for (row, _col), cell in table.get_celld().items():
        cell.set_edgecolor("#dddddd")
        if row == 0:
            cell.set_facecolor("#eceff1")
            cell.set_text_props(color=INK)
        elif row % 2 == 0:
            cell.set_facecolor("#fafafa")


def _care(ax: Axes, fig: Figure, r: MonthReport, lang: str) -> None:
    ax.set_title(t(lang, "care.title"))
    c = r.care
    levels = list(reversed(LEVELS))  # green at the bottom, red on top
    if sum(c.levels[lv].due for lv in LEVELS) == 0:
        _empty(ax, t(lang, "care.none"))
    else:
        names = [t(lang, f"level.{lv}") for lv in levels]
        on_time = [c.levels[lv].on_time for lv in levels]
        missed = [c.levels[lv].due - c.levels[lv].on_time for lv in levels]
        for vals, left, colour, key in ((on_time, [0] * len(levels), GREEN, "care.on_time"),
                                        (missed, on_time, RED, "care.missed")):
            bars = ax.barh(names, vals, left=left, color=colour, label=t(lang, key))
            ax.bar_label(bars, labels=[str(v) if v else "" for v in vals], label_type="center", fontsize=8,
                         color="white")
        for i, lv in enumerate(levels):
            due = c.levels[lv].due
            ax.text(due, i, f"  {_pct(on_time[i] / due if due else None)} ({on_time[i]}/{due})", va="center",
                    fontsize=8)
        ax.set_xlim(0, max(c.levels[lv].due for lv in LEVELS) * 1.25)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, ncols=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.text(0.2, 0.315, t(lang, "care.overdue", n=c.overdue, of=c.residents), fontsize=8.5,
             color=RED if c.overdue else SOFT)


def _patrols(ax: Axes, r: MonthReport, lang: str) -> None:
    ax.set_title(t(lang, "pat.title"))
    rows = [p for p in r.patrols if p.periods or p.checkins]
    if not rows:
        _empty(ax, t(lang, "pat.none"))
        return
    plans = pt.default_plans()

    def name(plan_id: str) -> str:
        p = plans.plan(plan_id)
        return plan_id if p is None else (p.name.en if lang == "en" else p.name.zh)

    rows = list(reversed(rows))
    names = [name(p.plan) for p in rows]
    done = [p.done / p.periods * 100 if p.periods else 0.0 for p in rows]
    ax.barh(names, done, color=GREEN, label=t(lang, "pat.done"))
    bars = ax.barh(names, [100 - d if p.periods else 0.0 for d, p in zip(done, rows, strict=True)], left=done,
                   color=RED, label=t(lang, "pat.missed"))
    ax.bar_label(bars, labels=[f"{_pct(p.done / p.periods if p.periods else None)} ({p.done}/{p.periods}) · "
                               f"{t(lang, 'pat.checkins', n=p.checkins)}" for p in rows], padding=4, fontsize=7.5)
    ax.set_xlim(0, 100)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.xaxis.set_major_formatter(lambda v, _pos: f"{v:.0f}%")
    ax.legend(fontsize=7, ncols=2, loc="lower right", bbox_to_anchor=(1.0, 1.0), frameon=False)
