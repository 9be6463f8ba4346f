"""``gridtwin report month``: the monthly report a community manager prints (a four-page PDF with charts:
:mod:`gateway.monthly`)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from gateway.cli_base import EXIT_UNAVAILABLE, EXIT_USAGE, CliError

NEEDS_SCHEMA = 17  # tickets, one-click reports, the care register and patrols


def add_parser(report_sub: Any) -> None:
    """``month`` under ``gridtwin report``."""
    rm = report_sub.add_parser("month", help="the monthly report of a community as a printable PDF with charts "
                                             "(outcomes vs targets, deadlines, hotspots, care, patrols)")
    rm.add_argument("--community", required=True, metavar="ID", help="the id of a community loaded in the database")
    rm.add_argument("--month", required=True, type=_month, metavar="YYYY-MM",
                    help="the community's local calendar month, e.g. 2026-11")
    rm.add_argument("--out", required=True, type=Path, metavar="FILE.pdf", help="the PDF to write")
    rm.add_argument("--lang", choices=["zh", "en"], default="zh", help="language of the report (default zh)")
    rm.add_argument("--png-dir", type=Path, metavar="DIR", help="also write each page as DIR/page-N.png")
    rm.set_defaults(fn=cmd_report_month)


def _month(text: str) -> tuple[int, int]:
    from gateway.monthly.measures import MonthError, parse_month

    try:
        return parse_month(text)
    except MonthError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_writable(out: Path) -> None:
    """CliError unless a file can be created where ``out`` goes (checked before the database is read)."""
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise CliError(f"--out {out}: is a directory; give a file name such as report.pdf", EXIT_USAGE)
    if not parent.is_dir():
        raise CliError(f"--out {out}: the folder {parent} does not exist", EXIT_USAGE)
    try:
        fd, probe = tempfile.mkstemp(prefix=".gridtwin-probe.", dir=parent)
    except OSError as exc:
        raise CliError(f"--out {out}: cannot write in {parent}: {exc.strerror}", EXIT_USAGE) from None
    os.close(fd)
    os.unlink(probe)
    if out.exists() and not os.access(out, os.W_OK):
        raise CliError(f"--out {out}: the file exists and is not writable", EXIT_USAGE)


def cmd_report_month(args: argparse.Namespace) -> int:
    import psycopg

    from gateway.api.pool import pool_for
    from gateway.cli import _run_storage, _settings, _storage, _urls
    from gateway.monthly.data import gather
    from gateway.monthly.pdf import FontMissing, font_rc, write_pdf
    from gateway.storage import DatabaseUnavailable, StorageError
    from twin.community import Community

    year, month = args.month
    check_writable(args.out)
    try:
        font_rc(args.lang)
    except FontMissing as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        if _run_storage(st.schema_version) < NEEDS_SCHEMA:
            raise CliError("the database lacks the ticket, care or patrol tables: run `gridtwin db migrate`", 1)
        codes = _run_storage(st.community_codes)
        if args.community not in codes:
            raise CliError(f"--community {args.community!r}: no community of that id in the database "
                           f"(loaded: {', '.join(codes) or 'none'})", EXIT_USAGE)
        doc = _run_storage(lambda: st.community_document(args.community))
    community = Community.model_validate(doc, context={"defer_references": True})
    pool = pool_for(s, db_url, max_size=2)
    try:
        report = gather(pool, community, year, month)
    except DatabaseUnavailable as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except (StorageError, psycopg.Error) as exc:
        raise CliError(f"reading the month failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
                       1) from None
    finally:
        pool.close()
    try:
        pages = write_pdf(report, args.out, args.lang, png_dir=args.png_dir)
    except OSError as exc:
        raise CliError(f"cannot write {exc.filename or args.out}: {exc.strerror or exc}", EXIT_USAGE) from None
    print(f"{args.out}: {pages} pages, {community.name} ({community.id}) {year}-{month:02d}, "
          f"{report.tickets} tickets", file=sys.stdout)
    return 0
