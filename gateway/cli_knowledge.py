"""`gridtwin knowledge check [DIR ...]`: the shipped knowledge base with a community's own directories over it
(``knowledge.dirs``, docs/assistant.md), validated; and the same check when a service starts. Reads files only."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.cli_base import EXIT_UNMET, EXIT_USAGE, CliError


def local_knowledge_at_start(dirs: Sequence[Path]) -> None:
    """Make ``dirs`` the process's knowledge directories; a broken knowledge base stops the start (CliError)."""
    from gateway.tickets.views import use_local_knowledge
    from twin.knowledge import KnowledgeError

    try:
        use_local_knowledge(dirs)
    except KnowledgeError as exc:
        n = len(exc.problems)
        raise CliError(f"invalid knowledge base ({n} problem{'s' if n > 1 else ''}; `gridtwin knowledge check`):\n  "
                       + "\n  ".join(exc.problems), EXIT_USAGE) from None


def cmd_knowledge_check(args: argparse.Namespace, settings: Any = None) -> int:
    """Print the documents by type, the ids the local directories add and replace, and every problem (exit 1)."""
    from gateway.tickets.views import load_knowledge
    from twin.knowledge import KnowledgeError

    dirs = list(args.dirs) if args.dirs else list(settings.knowledge.dirs if settings is not None else [])
    for d in dirs:
        if not d.exists():
            raise CliError(f"knowledge directory {d}: not found", EXIT_USAGE)
        if not d.is_dir():
            raise CliError(f"knowledge directory {d}: not a directory (give the folder holding the *.yaml files)",
                           EXIT_USAGE)
    where = ", ".join(map(str, dirs)) if dirs else "none"
    for d in dirs:
        if not any(d.glob("*.yaml")):
            print(f"note: {d} holds no *.yaml files (only those are read)")
    try:
        layered = load_knowledge(tuple(dirs))
    except KnowledgeError as exc:
        print(f"knowledge base (shipped + local: {where}): {len(exc.problems)} problem"
              f"{'s' if len(exc.problems) > 1 else ''}:")
        for p in exc.problems:
            print(f"  {p}")
        return EXIT_UNMET
    kb = layered.kb
    by_type = Counter(d.type for d in kb.documents.values())
    print(f"knowledge base: {len(kb)} documents (" + ", ".join(f"{t} {n}" for t, n in sorted(by_type.items()))
          + ")")
    print(f"local directories: {where}; {layered.local} entries")
    print(f"  added ({len(layered.added)}): {', '.join(layered.added) or '-'}")
    print(f"  replaced ({len(layered.replaced)}): {', '.join(layered.replaced) or '-'}")
    print("OK: no problems")
    return 0


def add_parser(sub: Any, settings_of: Any) -> None:
    """``knowledge check``; ``settings_of(args)``: the settings (for ``knowledge.dirs`` when no DIR is given)."""
    kn = sub.add_parser("knowledge", help="knowledge base: check local directories over the shipped one")
    ka = kn.add_subparsers(dest="action", required=True)
    kc = ka.add_parser("check", help="validate the shipped knowledge base with DIRs (default: knowledge.dirs) "
                                     "over it; exit 1 on problems")
    kc.add_argument("dirs", type=Path, nargs="*", metavar="DIR", help="local knowledge directories (*.yaml)")
    kc.set_defaults(fn=lambda args: cmd_knowledge_check(args, None if args.dirs else settings_of(args)))
