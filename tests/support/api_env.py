"""The REST API over a fresh schema, for the integration test modules that drive it.

``api_env(Env, "t_mod", USERS, ...)`` creates a schema, migrates it, loads the sample community (or another), runs
``prepare`` on the storage, adds the users (with fast argon2 hashing), creates the API (``create_api``) on a pool of
its own with a hand-moved :class:`Clock`, signs every user in, and yields an ``Env`` (an :class:`ApiEnv` or a
module's subclass of it). On exit it closes everything, drops the schema and restores argon2's real cost.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway import settings as settings_mod
from gateway.api.app import create_api
from gateway.api.auth import Users, configure_hashing
from gateway.api.pool import StoragePool, pool_for
from gateway.settings import Settings
from gateway.storage import Storage
from gateway.tickets.service import TicketService
from tests.conftest import DB_URL, MQTT_URL
from twin.community import Community, parse
from twin.people import Role

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: the day shift is on duty
PASSWORD = "s3cret-password"
UserSpec = tuple[Role, Sequence[str], str | None]  # role, grids, worker id


@dataclass
class Clock:
    """The time source of the app and ticket services under test; tests move ``now`` by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ApiEnv:
    """One schema, community, set of users and API app shared by a test module."""

    RESIDENT_NET: ClassVar[str] = "10.0"  # residents' browsers get addresses 10.0.x.y (rate limits are per address)

    schema: str
    settings: Settings
    community: Community
    storage: Storage
    pool: StoragePool
    clock: Clock
    app: FastAPI
    client: TestClient
    users: Mapping[str, UserSpec]
    tokens: dict[str, str]
    _residents: int = field(default=0, init=False, repr=False)

    def sign_in(self) -> dict[str, str]:
        """Sign every user in (at the clock's time) and keep their tokens."""
        for name in self.users:
            r = self.client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.tokens[name] = r.json()["token"]
        return self.tokens

    def at(self, now: datetime) -> None:
        """Move the clock (and sign everyone in again: tokens expire on the same clock)."""
        self.clock.now = now
        self.sign_in()

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def call(self, method: str, user: str | None, path: str, **kw: Any) -> Any:
        """``method /api/v1{path}`` as ``user`` (None: without a token)."""
        return self.client.request(method, f"/api/v1{path}", headers=self.auth(user) if user else {}, **kw)

    def get(self, user: str | None, path: str, **kw: Any) -> Any:
        return self.call("GET", user, path, **kw)

    def post(self, user: str | None, path: str, **kw: Any) -> Any:
        return self.call("POST", user, path, **kw)

    def service(self, **kw: Any) -> TicketService:
        """A ticket service on the env's storage and clock (``kw``: more TicketService options)."""
        return TicketService(self.storage, self.settings, self.community, clock=self.clock, **kw)

    def resident(self) -> TestClient:
        """A browser at an address of its own."""
        self._residents += 1
        n = self._residents
        return TestClient(self.app, client=(f"{self.RESIDENT_NET}.{n // 250}.{n % 250 + 1}", 40000))

    def count(self, table: str = "tickets") -> int:
        row = self.storage.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


E = TypeVar("E", bound=ApiEnv)
Prepare = Callable[[Storage, Settings, Community], Mapping[str, Any] | None]


def sample_community() -> Community:
    return parse((ROOT / "twin" / "sample_community.yaml").read_text(encoding="utf-8"))


@contextmanager
def api_env(make: Callable[..., E], prefix: str, users: Mapping[str, UserSpec], *, clock: Clock | None = None,
            community: Community | None = None, pool_size: int | None = None, prepare: Prepare | None = None,
            **sections: Any) -> Iterator[E]:
    """A fresh schema named ``{prefix}_<random>`` with the API over it; ``make`` builds the env (``ApiEnv`` or a
    subclass) from ApiEnv's fields and the extra fields ``prepare(storage, settings, community)`` returns (it runs
    after the community is loaded, before the users are added). ``sections`` override settings
    (e.g. ``tickets={"snapshots": False}``); ``mqtt`` and ``db`` point at the test services."""
    configure_hashing(time_cost=1, memory_kib=1024, parallelism=1)  # argon2's real cost is tested elsewhere
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    settings = settings_mod.load(env={}, mqtt={"url": MQTT_URL, "topic_root": f"gt-test-{uuid.uuid4().hex[:10]}"},
                                 db={"url": DB_URL, "schema": schema}, **sections)
    community = community or sample_community()
    clock = clock or Clock()
    storage = Storage.connect(DB_URL, schema=schema)
    pool: StoragePool | None = None
    client: TestClient | None = None
    try:
        storage.migrate()
        storage.load_community(community)
        extra = prepare(storage, settings, community) if prepare else None
        accounts = Users(storage.conn)
        for name, (role, grids, worker) in users.items():
            accounts.add(name, PASSWORD, role, grids=grids, worker_id=worker)
        pool = pool_for(settings, DB_URL, schema=schema, max_size=pool_size)
        app = create_api(settings, community, pool=pool, clock=clock)
        client = TestClient(app)
        env = make(schema=schema, settings=settings, community=community, storage=storage, pool=pool, clock=clock,
                   app=app, client=client, users=users, tokens={}, **(extra or {}))
        env.sign_in()
        yield env
    finally:
        if client is not None:
            client.close()
        if pool is not None:
            pool.close()
        storage.close()
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        configure_hashing()
