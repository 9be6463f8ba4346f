"""``gridtwin qr-sheet``: the printable sheet of per-building QR codes for residents' reports
(:mod:`gateway.reports.qrsheet`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli_base import EXIT_USAGE, CliError, _load_community


def add_parser(sub: Any) -> None:
    qs = sub.add_parser("qr-sheet", help="a printable sheet (PDF/PNG) with one QR code per building for residents' "
                                         "reports")
    qs.add_argument("--community", required=True, metavar="FILE_OR_ID",
                    help="a community file, or the id of a community loaded in the database")
    qs.add_argument("--base-url", required=True, metavar="URL",
                    help="how residents' phones reach the server, e.g. https://wuye.example.cn")
    qs.add_argument("--out", required=True, type=Path, metavar="FILE", help="sheet.pdf or sheet.png")
    qs.set_defaults(fn=cmd_qr_sheet)


def _community(ref: str, args: argparse.Namespace) -> Any:
    """A community file if ``ref`` names one, else the community of that id in the database."""
    path = Path(ref)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        return _load_community(path)
    from gateway.cli import _settings, _storage, _urls
    from twin.community import Community

    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        doc = st.community_document(ref) if st.schema_version() else None
    if doc is None:
        raise CliError(f"--community {ref!r}: no such file, and no community of that id in the database", EXIT_USAGE)
    return Community.model_validate(doc)


def cmd_qr_sheet(args: argparse.Namespace) -> int:
    from gateway.reports.qrsheet import SheetError, write_sheet

    community = _community(args.community, args)
    try:
        items = write_sheet(community, args.base_url, args.out)
    except SheetError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(f"{args.out}: {len(items)} QR codes for {community.name} ({community.id}), e.g. {items[0].url}")
    return 0
