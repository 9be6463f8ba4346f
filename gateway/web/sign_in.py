"""The dashboard's sign-in on the REST API's accounts and tokens (``users`` / ``api_tokens``,
:mod:`gateway.api.auth`): one session is one expiring token, valid for both. Does I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gateway.api.auth import AuthError, LoginGuard, LoginRefused, Users
from gateway.api.pool import StoragePool
from gateway.api.sign_in_log import record_sign_in
from gateway.web.database import connection
from twin.people import User
from viz.data import Session, SignInRefused


class SignInService(Protocol):
    """Sign-in shared with the REST API (gateway/api/auth.py): an expiring token per session."""

    def sign_in(self, username: str, password: str, client: str = "") -> Session | None: ...

    def user_for_token(self, token: str) -> User | None: ...

    def sign_out(self, token: str) -> None: ...



class DatabaseSignIn:
    """:class:`SignInService` on the ``users`` / ``api_tokens`` tables (gateway/api/auth.py): the same accounts
    and tokens as the REST API, so a token from ``POST /api/v1/login`` is a dashboard session too."""

    def __init__(self, db_url: str, *, schema: str = "gridtwin", ttl: timedelta = timedelta(hours=12),
                 pool_size: int = 2, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 guard: LoginGuard | None = None, pool: StoragePool | None = None) -> None:
        self._own_pool = pool is None  # a shared pool is closed by its owner
        self._pool = pool or StoragePool(db_url, schema=schema, max_size=pool_size, name="gridtwin-sign-in")
        self._ttl = ttl
        self._clock = clock
        self.guard = guard or LoginGuard()  # share it with the REST API's login when both run in one process

    def sign_in(self, username: str, password: str, client: str = "") -> Session | None:
        def check() -> Session | None:
            with connection(self._pool, "signing in") as st:
                users = Users(st.conn)
                try:
                    user = users.authenticate(username, password)
                except AuthError:
                    user = None
                record_sign_in(st.conn, username, user is not None, client, "dashboard")
                if user is None:
                    return None
                token, expires = users.issue_token(user.username, self._clock(), self._ttl)
            return Session(token, user, expires)

        try:
            return self.guard.run(username, client, check)
        except LoginRefused as exc:
            raise SignInRefused(exc.reason, exc.retry_after_s, exc.retry_at) from None

    def user_for_token(self, token: str) -> User | None:
        with connection(self._pool, "checking a session") as st:
            try:
                return Users(st.conn).user_for_token(token, self._clock())
            except AuthError:
                return None

    def sign_out(self, token: str) -> None:
        with connection(self._pool, "signing out") as st:
            Users(st.conn).revoke(token)

    def close(self) -> None:
        if self._own_pool:
            self._pool.close()
