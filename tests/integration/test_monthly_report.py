"""`gridtwin report month` against the real PostgreSQL: a seeded month (tests/support/monthly_seed.py) gathered and
drawn as a four-page PDF in Chinese and English, an empty month, and the command's answers to bad input."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import cli
from gateway.api.pool import StoragePool
from gateway.monthly import pdf
from gateway.monthly.data import MonthReport, gather
from gateway.monthly.strings import t
from gateway.settings import Settings
from gateway.storage import Storage
from tests.support.monthly_seed import seed
from twin import community as community_mod

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pages(data: bytes) -> int:
    """Pages of a PDF (matplotlib writes page dictionaries uncompressed)."""
    return len(PAGE.findall(data))


@pytest.fixture
def pool(settings: Settings) -> Iterator[StoragePool]:
    assert settings.db.url
    p = StoragePool(settings.db.url, schema=settings.db.schema_name, max_size=2)
    yield p
    p.close()


@pytest.fixture
def report(storage: Storage, pool: StoragePool, sample: community_mod.Community) -> MonthReport:
    wrote = seed(storage.conn, sample, 2026, 11)
    assert wrote["tickets"] == 60
    return gather(pool, sample, 2026, 11, now=NOW)


def test_a_seeded_month_gathers_and_draws(report: MonthReport, tmp_path: Path) -> None:
    r = report
    assert r.tickets == 60 and sum(n for _, n in r.per_category) == 60
    assert r.start.isoformat() == "2026-11-01T00:00:00+08:00" and r.cutoff == r.end  # the month is over
    assert len(r.per_day) == 30
    assert pdf.week_labels(r) == ["11-01", "11-02~08", "11-09~15", "11-16~22", "11-23~29", "11-30"]  # from Monday
    assert r.values["tickets"] == 60
    for metric in ("close_days", "satisfaction", "response_sla", "resolution_sla", "care_on_time", "patrols_done",
                   "false_alarm_rate", "repeat_rate"):
        assert r.values[metric] is not None, metric
    # the worst breaches first, each late and before the cut-off
    lates = [b.late for b in r.breaches]
    assert lates == sorted(lates, reverse=True) and 0 < len(lates) <= 10
    assert all(b.deadline < r.cutoff for b in r.breaches)
    assert set(r.sla_by_grid) == {"第1网格", "第2网格", "第3网格"}
    assert r.hotspots and r.hotspots[0].count >= r.hotspots[-1].count
    assert sum(a for a, _ in r.false_by_kind.values()) > 0
    care = r.care
    assert care.residents == 22 and sum(lv.due for lv in care.levels.values()) > 0
    assert all(0 <= lv.on_time <= lv.due for lv in care.levels.values())
    assert care.on_time_share == pytest.approx(r.values["care_on_time"], abs=0.01)
    judged = [p for p in r.patrols if p.periods]
    assert judged and all(0 <= p.done <= p.periods for p in judged)
    assert sum(p.done for p in judged) / sum(p.periods for p in judged) == pytest.approx(r.values["patrols_done"],
                                                                                          abs=0.01)

    out = tmp_path / "report.pdf"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pdf.write_pdf(report, out, "zh", png_dir=tmp_path / "png") == pdf.PAGES
    missing = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not missing, missing[:3]  # every glyph (Chinese too) is in the fonts
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert pages(data) == 4
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [f"page-{n}.png" for n in range(1, 5)]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_empty_month_says_so(storage: Storage, pool: StoragePool, sample: community_mod.Community,
                                tmp_path: Path) -> None:
    r = gather(pool, sample, 2026, 2, now=NOW)
    assert r.tickets == 0 and r.breaches == [] and len(r.per_day) == 28
    first = next(pdf.figures(r, "zh", NOW))
    assert t("zh", "no_tickets") in [x.get_text() for x in first.texts]
    out = tmp_path / "empty.pdf"
    assert pdf.write_pdf(r, out, "zh") == 4
    assert out.read_bytes().startswith(b"%PDF-") and pages(out.read_bytes()) == 4


def test_the_command(storage: Storage, settings: Settings, sample: community_mod.Community, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GRIDTWIN_DB_URL", str(settings.db.url))
    monkeypatch.setenv("GRIDTWIN_DB_SCHEMA", settings.db.schema_name)
    monkeypatch.setenv("GRIDTWIN_MQTT_URL", str(settings.mqtt.url))
    out = tmp_path / "r.pdf"
    base = ["report", "month", "--community", "sunshine"]
    assert cli.main([*base, "--month", "2026-10", "--out", str(out), "--lang", "en"]) == 0
    assert "4 pages" in capsys.readouterr().out and pages(out.read_bytes()) == 4

    def fails(argv: list[str], message: str) -> None:
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse's own refusal
            code = int(exc.code or 0)
        assert code == 2
        assert message in capsys.readouterr().err

    for month, why in (("2026-13", "01..12"), ("1999-12", "2000..2999"), ("3000-01", "2000..2999"),
                       ("26-11", "YYYY-MM"), ("2026-1", "YYYY-MM"), ("", "YYYY-MM")):
        fails([*base, "--month", month, "--out", str(out)], why)
    fails(["report", "month", "--community", "nowhere", "--month", "2026-11", "--out", str(out)],
          "no community of that id")
    fails([*base, "--month", "2026-11", "--out", str(tmp_path / "no" / "such" / "r.pdf")], "does not exist")
    fails([*base, "--month", "2026-11", "--out", str(tmp_path)], "is a directory")
    (tmp_path / "file").write_text("x")
    fails([*base, "--month", "2026-11", "--out", str(tmp_path / "file" / "r.pdf")], "does not exist")


def test_chinese_without_a_cjk_font_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf, "find_cjk_font", lambda: None)
    with pytest.raises(pdf.FontMissing, match="fonts-wqy-microhei"):
        pdf.font_rc("zh")
    assert pdf.font_rc("en")["font.family"] == ["DejaVu Sans"]
