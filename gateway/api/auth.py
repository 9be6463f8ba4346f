"""API users: argon2 password hashes and expiring login tokens. Does I/O (PostgreSQL).

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile) and
re-hashed on login when those parameters change. A login token is 32 random bytes given to the
client once; the database keeps only its SHA-256, so a leaked table opens no session. Roles and what
they may see are :class:`twin.people.User` / :class:`twin.people.Role`.

Password guessing is bounded by :class:`LoginGuard`, which every login path (the dashboard's sign-in
form and ``POST /api/v1/auth/login``) goes through before a password is hashed: attempts are
throttled per client address and per account, at most ``hashing_slots`` passwords are hashed at once
(argon2id takes 64 MiB and most of a core each; a full house is refused with "busy", not queued), and
an account is locked for a while after repeated failures. Failed sign-ins and lockouts are logged to
the ``gridtwin.audit`` logger (there is no audit table).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg.rows import dict_row

from twin.people import Role, User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{1,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_hasher = PasswordHasher()
audit = logging.getLogger("gridtwin.audit")
T = TypeVar("T")
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


def _user(row: Mapping[str, Any]) -> User:
    return User(username=row["username"], display_name=row["display_name"], role=Role(row["role"]),
                grids=tuple(row["grids"] or ()), worker_id=row["worker_id"])


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
        row = self._rows().execute(f"SELECT {_COLUMNS} FROM users WHERE username = %s AND NOT disabled",
                                   (username,)).fetchone()
        return _user(row) if row else None

    def all(self) -> list[User]:
        return [_user(r) for r in self._rows().execute(f"SELECT {_COLUMNS} FROM users ORDER BY username").fetchall()]

    def _rows(self) -> psycopg.Cursor[dict[str, Any]]:
        """A cursor whose rows are dicts by column name."""
        return self.conn.cursor(row_factory=dict_row)

    def authenticate(self, username: str, password: str) -> User | None:
        row = self._rows().execute(
            f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = %s AND NOT disabled", (username,)).fetchone()
        if row is None:
            verify_password(_DUMMY_HASH, password)
            return None
        if not verify_password(row["password_hash"], password):
            return None
        if _hasher.check_needs_rehash(row["password_hash"]):
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
        row = self._rows().execute(
            f"SELECT {', '.join('u.' + c.strip() for c in _COLUMNS.split(','))}, t.expires_at FROM api_tokens t "
            "JOIN users u USING (username) WHERE t.token_hash = %s AND NOT u.disabled", (token_hash(token),)).fetchone()
        if row is None:
            raise InvalidToken("unknown or revoked token: log in again")
        if row["expires_at"] <= now:
            raise TokenExpired(f"token expired at {row['expires_at'].isoformat()}: log in again")
        return _user(row)

    def revoke(self, token: str) -> None:
        self.conn.execute("DELETE FROM api_tokens WHERE token_hash = %s", (token_hash(token),))


# -- login throttling ------------------------------------------------------------------------------------

RefusalReason = Literal["locked", "throttled", "busy"]
_REFUSAL_TEXT: dict[str, tuple[str, str]] = {
    "locked": ("too many failed sign-ins: this account is locked until {at} (in {wait}); try again then",
               "登录失败次数过多，该账户已临时锁定，请于 {at}（{wait_zh}后）再试"),
    "throttled": ("too many sign-in attempts: try again in {wait}",
                  "登录尝试过于频繁，请 {wait_zh}后再试"),
    "busy": ("sign-in is busy: try again in {wait}", "登录服务繁忙，请 {wait_zh}后再试"),
}


class LoginRefused(AuthError):
    """A login refused before its password was checked.

    ``reason``: ``locked`` (this account, after repeated failures), ``throttled`` (too many attempts
    from this address or on this account) or ``busy`` (every password-hashing slot is taken).
    ``retry_after_s``: when to try again (whole seconds, at least 1); ``retry_at``: the same as a time.
    ``str()`` is the English message, :attr:`message_zh` the Chinese one.
    """

    def __init__(self, reason: RefusalReason, retry_after_s: float, now: datetime | None = None) -> None:
        self.reason: RefusalReason = reason
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.retry_at = (now or datetime.now(UTC)) + timedelta(seconds=self.retry_after_s)
        en, zh = _REFUSAL_TEXT[reason]
        at = self.retry_at.strftime("%H:%M:%S UTC")
        self.message_zh = zh.format(at=at, wait_zh=_wait_zh(self.retry_after_s))
        super().__init__(en.format(at=at, wait=_wait_en(self.retry_after_s)))

    @property
    def status(self) -> int:
        """The HTTP status to answer with: 503 when the server is busy, else 429."""
        return 503 if self.reason == "busy" else 429


def _wait_en(s: int) -> str:
    return f"{s} s" if s < 120 else f"{math.ceil(s / 60)} min"


def _wait_zh(s: int) -> str:
    return f"{s} 秒" if s < 120 else f"{math.ceil(s / 60)} 分钟"


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """How hard :class:`LoginGuard` throttles. The defaults keep a 2-core server responsive under a
    password-guessing flood while a person who mistypes a few times never notices."""

    hashing_slots: int = 2  # passwords hashed at once (argon2id: 64 MiB and a core each)
    hashing_queue: int = 4  # attempts that may wait for a slot; more are refused as busy at once
    hashing_wait_s: float = 2.0  # the longest an attempt waits for a slot
    address_burst: int = 20  # attempts from one address (an IPv6 /64) before throttling ...
    address_per_min: float = 10.0  # ... then this many a minute; a successful sign-in gives its attempt back
    account_burst: int = 5  # attempts on one account at once, from anywhere ...
    account_per_min: float = 5.0  # ... then this many a minute
    lockout_failures: int = 10  # this many failures on one account ...
    lockout_window_s: float = 15 * 60  # ... within this window lock it ...
    lockout_s: float = 15 * 60  # ... for this long (the correct password is refused too)
    max_tracked: int = 50_000  # addresses / accounts remembered (oldest quiet ones are forgotten first)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    noted: float = -math.inf  # when a refusal was last logged (one line a minute per key at most)


class LoginGuard:
    """Throttle, lockout and bounded password hashing for every login path of one process.

    ``run(username, client, check)`` admits the attempt (or raises :class:`LoginRefused`), runs
    ``check()`` (which looks the user up and verifies the password; None means a wrong password)
    while holding one of the hashing slots, and records the outcome. An attempt that fails for another
    reason (``check`` raises, e.g. the database is down) counts as neither success nor failure.
    State is in memory: per process, forgotten at restart.
    """

    def __init__(self, policy: LoginPolicy | None = None, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.policy = policy or LoginPolicy()
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.policy.hashing_slots)
        self._waiting = 0
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()
        self._accounts: OrderedDict[str, _Bucket] = OrderedDict()

    def run(self, username: str, client: str, check: Callable[[], T | None]) -> T | None:
        account, address = account_key(username), address_key(client)
        self._admit(account, address)
        if not self._acquire_slot():
            self._give_back(account, address)
            self._note("busy", account, address, None)
            raise LoginRefused("busy", 1, self._wall())
        try:
            result = check()
        except BaseException:
            self._give_back(account, address)
            raise
        finally:
            self._slots.release()
        self._record(account, address, ok=result is not None)
        return result

    def locked_for(self, username: str) -> float:
        """Seconds until the account may sign in again (0: not locked)."""
        with self._lock:
            b = self._accounts.get(account_key(username))
            return max(0.0, b.locked_until - self._clock()) if b is not None else 0.0

    # -- inside ---------------------------------------------------------------------------------------

    def _admit(self, account: str, address: str) -> None:
        p = self.policy
        now = self._clock()
        with self._lock:
            acc = self._bucket(self._accounts, account, p.account_burst, now)
            addr = self._bucket(self._addresses, address, p.address_burst, now)
            if acc.locked_until > now:
                refusal = LoginRefused("locked", acc.locked_until - now, self._wall())
                bucket = acc
            else:
                _refill(acc, now, p.account_burst, p.account_per_min)
                _refill(addr, now, p.address_burst, p.address_per_min)
                if addr.tokens < 1:
                    refusal, bucket = LoginRefused("throttled", (1 - addr.tokens) * 60 / p.address_per_min,
                                                   self._wall()), addr
                elif acc.tokens < 1:
                    refusal, bucket = LoginRefused("throttled", (1 - acc.tokens) * 60 / p.account_per_min,
                                                   self._wall()), acc
                else:
                    acc.tokens -= 1
                    addr.tokens -= 1
                    return
            note = now - bucket.noted >= 60
            if note:
                bucket.noted = now
        if note:
            self._note(refusal.reason, account, address, refusal.retry_after_s)
        raise refusal

    def _acquire_slot(self) -> bool:
        if self._slots.acquire(blocking=False):
            return True
        with self._lock:
            if self._waiting >= self.policy.hashing_queue:
                return False
            self._waiting += 1
        try:
            return self._slots.acquire(timeout=self.policy.hashing_wait_s)
        finally:
            with self._lock:
                self._waiting -= 1

    def _give_back(self, account: str, address: str) -> None:
        p = self.policy
        with self._lock:
            for table, key, cap in ((self._accounts, account, p.account_burst),
                                    (self._addresses, address, p.address_burst)):
                b = table.get(key)
                if b is not None:
                    b.tokens = min(float(cap), b.tokens + 1)

    def _record(self, account: str, address: str, *, ok: bool) -> None:
        p = self.policy
        now = self._clock()
        if ok:
            self._give_back(account, address)
            with self._lock:
                b = self._accounts.get(account)
                if b is not None:
                    b.failures.clear()
            return
        with self._lock:
            b = self._bucket(self._accounts, account, p.account_burst, now)
            while b.failures and b.failures[0] <= now - p.lockout_window_s:
                b.failures.popleft()
            b.failures.append(now)
            failures = len(b.failures)
            locked = failures >= p.lockout_failures
            if locked:
                b.locked_until = now + p.lockout_s
                b.failures.clear()
        audit.info("failed sign-in for %r from %s (%d in the last %d min)", account, address, failures,
                   round(p.lockout_window_s / 60))
        if locked:
            audit.warning("account %r locked for %d min after %d failed sign-ins (the last from %s)", account,
                          round(p.lockout_s / 60), failures, address)

    def _note(self, reason: str, account: str, address: str, retry_after_s: int | None) -> None:
        audit.warning("sign-in refused (%s) for %r from %s%s", reason, account, address,
                      f"; retry in {retry_after_s} s" if retry_after_s else "")

    def _bucket(self, table: OrderedDict[str, _Bucket], key: str, burst: int, now: float) -> _Bucket:
        b = table.get(key)
        if b is None:
            if len(table) >= self.policy.max_tracked:
                self._forget(table, now)
            b = table[key] = _Bucket(float(burst), now)
        else:
            table.move_to_end(key)
        return b

    def _forget(self, table: OrderedDict[str, _Bucket], now: float) -> None:
        """Make room: drop the least recently used entries, locked accounts last."""
        target = self.policy.max_tracked // 2
        for key in [k for k, b in table.items() if b.locked_until <= now][: max(0, len(table) - target)]:
            del table[key]
        while len(table) > target:
            table.popitem(last=False)


def _refill(b: _Bucket, now: float, burst: int, per_min: float) -> None:
    b.tokens = min(float(burst), b.tokens + (now - b.at) * per_min / 60)
    b.at = now


def account_key(username: str) -> str:
    """The account an attempt counts against: the name as typed, trimmed and lower-cased (bounded)."""
    return username.strip().lower()[:128]


def address_key(client: str | None) -> str:
    """The address an attempt counts against: the IP, or its /64 network for IPv6."""
    if not client:
        return "?"
    try:
        ip = ipaddress.ip_address(client.strip())
    except ValueError:
        return "".join(c for c in client[:64] if c.isprintable()) or "?"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)
