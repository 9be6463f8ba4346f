"""What every `gridtwin` command shares: the one-line user-facing error, exit codes, the sample community."""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXIT_UNMET = 1  # rules test --check: the scenario's incidents do not meet its expect: block
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_FAILED = 4  # a vital thread of a running service died (see the log for why)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def sample_community_path() -> Path:
    return Path(__file__).resolve().parent.parent / "twin" / "sample_community.yaml"


def _load_community(path: Path | None) -> Any:
    from twin.community import CommunityError, parse

    path = path or sample_community_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read community file {path}: {exc.strerror}", EXIT_USAGE) from None
    try:
        return parse(text, str(path))
    except CommunityError as exc:
        raise CliError(f"invalid community file:\n{exc}", EXIT_USAGE) from None
