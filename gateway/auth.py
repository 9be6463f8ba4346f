"""API users: argon2 password hashes and expiring login tokens. Does I/O (PostgreSQL).

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile) and
re-hashed on login when those parameters change. A login token is 32 random bytes given to the
client once; the database keeps only its SHA-256, so a leaked table opens no session. Roles and what
they may see are :class:`twin.people.User` / :class:`twin.people.Role`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from twin.people import Role, User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{1,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password of anyone")  # unknown users cost as much as known ones


def configure_hashing(*, time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 4) -> None:
    """Argon2id cost for new hashes (defaults: RFC 9106 low-memory profile). Tests lower it to stay fast;
    existing hashes keep verifying and are re-hashed at the next login."""
    global _hasher, _DUMMY_HASH  # noqa: PLW0603 - one process-wide hashing policy
    _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    _DUMMY_HASH = _hasher.hash("not a password of anyone")


class AuthError(Exception):
    """A user or token problem the caller turns into a message (CLI) or a 4xx (API)."""


class InvalidToken(AuthError):
    pass


class TokenExpired(AuthError):
    pass


def hash_password(password: str) -> str:
    check_password(password)
    return _hasher.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AuthError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


_COLUMNS = "username, display_name, role, grids, worker_id"


def _user(row: Sequence[Any]) -> User:
    return User(username=row[0], display_name=row[1], role=Role(row[2]), grids=tuple(row[3] or ()),
                worker_id=row[4])


class Users:
    """The users table and login tokens, on one connection (autocommit)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def add(self, username: str, password: str, role: Role | str, *, display_name: str | None = None,
            grids: Sequence[str] = (), worker_id: str | None = None, update: bool = False) -> bool:
        """Create a user (or with ``update`` replace an existing one's password, role and grids).
        Returns True when created. Raises AuthError for bad input or an existing user without ``update``."""
        if not USERNAME.match(username):
            raise AuthError(f"username {username!r}: 2-64 of lower-case letters, digits, '_', '.', '@', '-'")
        try:
            r = Role(role)
        except ValueError:
            raise AuthError(f"unknown role {role!r}; roles: {', '.join(x.value for x in Role)}") from None
        if r in (Role.WORKER, Role.SUPERVISOR) and not grids:
            raise AuthError(f"a {r.value} needs at least one grid (--grid G1)")
        if r is Role.WORKER and not worker_id:
            raise AuthError("a worker needs --worker-id: the worker's id in the community file")
        hashed = hash_password(password)
        name = display_name or username
        with self.conn.transaction():
            exists = self.conn.execute("SELECT 1 FROM users WHERE username = %s FOR UPDATE", (username,)).fetchone()
            if exists and not update:
                raise AuthError(f"user {username!r} exists (use --update to change it)")
            self.conn.execute(
                "INSERT INTO users (username, display_name, role, grids, worker_id, password_hash) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (username) DO UPDATE SET "
                "display_name = excluded.display_name, role = excluded.role, grids = excluded.grids, "
                "worker_id = excluded.worker_id, password_hash = excluded.password_hash, updated_at = now()",
                (username, name, r.value, list(grids), worker_id, hashed))
            if exists:  # a changed password or role ends the user's sessions
                self.conn.execute("DELETE FROM api_tokens WHERE username = %s", (username,))
        return not exists

    def get(self, username: str) -> User | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM users WHERE username = %s AND NOT disabled",
                                (username,)).fetchone()
        return _user(row) if row else None

    def all(self) -> list[User]:
        return [_user(r) for r in self.conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY username").fetchall()]

    def authenticate(self, username: str, password: str) -> User | None:
        row = self.conn.execute(f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = %s AND NOT disabled",
                                (username,)).fetchone()
        if row is None:
            verify_password(_DUMMY_HASH, password)
            return None
        if not verify_password(row[5], password):
            return None
        if _hasher.check_needs_rehash(row[5]):
            self.conn.execute("UPDATE users SET password_hash = %s WHERE username = %s",
                              (_hasher.hash(password), username))
        return _user(row)

    def issue_token(self, username: str, now: datetime, ttl: timedelta) -> tuple[str, datetime]:
        token = secrets.token_urlsafe(32)
        expires = now + ttl
        with self.conn.transaction():
            self.conn.execute("DELETE FROM api_tokens WHERE expires_at < %s", (now - timedelta(days=1),))
            self.conn.execute("INSERT INTO api_tokens (token_hash, username, issued_at, expires_at) "
                              "VALUES (%s, %s, %s, %s)", (token_hash(token), username, now, expires))
        return token, expires

    def user_for_token(self, token: str, now: datetime) -> User:
        """The user a token belongs to; raises InvalidToken (unknown, revoked) or TokenExpired."""
        row = self.conn.execute(
            f"SELECT {', '.join('u.' + c.strip() for c in _COLUMNS.split(','))}, t.expires_at FROM api_tokens t "
            "JOIN users u USING (username) WHERE t.token_hash = %s AND NOT u.disabled", (token_hash(token),)).fetchone()
        if row is None:
            raise InvalidToken("unknown or revoked token: log in again")
        if row[5] <= now:
            raise TokenExpired(f"token expired at {row[5].isoformat()}: log in again")
        return _user(row)

    def revoke(self, token: str) -> None:
        self.conn.execute("DELETE FROM api_tokens WHERE token_hash = %s", (token_hash(token),))
