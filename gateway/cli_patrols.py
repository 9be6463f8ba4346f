"""``gridtwin patrol-sheet``: the printable sheet of patrol checkpoint QR codes (:mod:`gateway.patrols.sheet`).
The codes are signed with the database's patrol key, so the command needs the database."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gateway.cli_base import EXIT_USAGE, CliError


def add_parser(sub: Any) -> None:
    ps = sub.add_parser("patrol-sheet", help="a printable sheet (PDF/PNG) with one QR code per patrol checkpoint "
                                             "(workers scan it to check in)")
    ps.add_argument("--community", required=True, metavar="FILE_OR_ID",
                    help="a community file, or the id of a community loaded in the database")
    ps.add_argument("--base-url", required=True, metavar="URL",
                    help="how workers' phones reach the dashboard, e.g. https://wuye.example.cn")
    ps.add_argument("--out", required=True, type=Path, metavar="FILE", help="sheet.pdf or sheet.png")
    ps.add_argument("--plan", metavar="ID", help="only this plan's checkpoints (fire_door, fire_lane, ...)")
    ps.add_argument("--grid", metavar="ID", help="only this grid's checkpoints")
    ps.set_defaults(fn=cmd_patrol_sheet)


def cmd_patrol_sheet(args: argparse.Namespace) -> int:
    from gateway.cli import _settings, _storage, _urls
    from gateway.cli_reports import _community
    from gateway.patrols.sheet import entries, write_sheet
    from gateway.patrols.store import signing_key
    from gateway.reports.qrsheet import SheetError

    community = _community(args.community, args)
    s = _settings(args)
    _, db_url, _ = _urls(s)
    with _storage(s, db_url) as st:
        if not st.schema_version():
            raise CliError("the database has no gridtwin schema yet: run `gridtwin migrate` first", EXIT_USAGE)
        secret = signing_key(st.conn)  # (an autocommit connection: a new key is stored at once)
    try:
        items = entries(community, args.base_url, secret, plan=args.plan, grid=args.grid)
        write_sheet(community, items, args.out)
    except SheetError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(f"{args.out}: {len(items)} checkpoint QR codes for {community.name} ({community.id}), e.g. {items[0].url}")
    return 0
