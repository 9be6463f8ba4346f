"""Storage errors and the helpers every storage module shares: messages without passwords."""

from __future__ import annotations


class StorageError(Exception):
    """A database operation failed; the message says what and against which database."""


class DatabaseUnavailable(StorageError):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach PostgreSQL at {redact(url)}: {reason}. Start it (`gridtwin services up`) "
            "or set GRIDTWIN_DB_URL."
        )
        self.url = url


class UnknownDevice(StorageError):
    def __init__(self, code: str) -> None:
        super().__init__(f"unknown device {code!r}: load its community first (`gridtwin community load FILE`)")
        self.code = code


class MigrationError(StorageError):
    """A migration cannot be applied, or one already applied no longer matches its file."""


def redact(url: str) -> str:
    """Hide a password in a URL for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
