"""The residents' POST rate limits in PostgreSQL (gateway/web/public_limits.py): two API apps on one schema (two
gateways behind a load balancer) give an address one budget; the bucket arithmetic against the real database
(burst, refill by the database's clock, the cap, concurrent takes, the purge of full buckets, hashed keys)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_api
from gateway.ops.retention import purge_personal_data
from gateway.settings import Settings
from gateway.storage import DatabaseUnavailable, Storage
from gateway.web.public_limits import SharedLimiter, purge, take
from tests.conftest import DB_URL
from twin.community import Community

pytestmark = pytest.mark.integration
ADDRESS = "10.9.0.7"


def resident(app: Any, address: str = ADDRESS) -> tuple[TestClient, str]:
    """A browser at ``address`` on one gateway, with the form token its report page gave it."""
    c = TestClient(app, client=(address, 40000))
    page = c.get("/r/sunshine/B1")
    assert page.status_code == 200, page.text
    m = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert m is not None
    return c, m.group(1)


def report(c: TestClient, token: str, i: int) -> int:
    data = {"form_token": token, "category": "noise", "text": f"楼上装修 {i}"}
    return c.post("/r/sunshine/B1", data=data, files={"photo": ("", b"", "application/octet-stream")},
                  follow_redirects=False).status_code


def test_two_gateways_share_one_budget_per_address(settings: Settings, storage: Storage, schema: str,
                                                   sample: Community) -> None:
    apps = [create_api(settings, sample, db_url=DB_URL, schema=schema, pool_size=2) for _ in range(2)]
    try:
        (a, ta), (b, tb) = resident(apps[0]), resident(apps[1])
        codes = [report(a, ta, 0), report(b, tb, 1), report(a, ta, 2), report(b, tb, 3), report(a, ta, 4)]
        assert codes == [303] * 5  # the budget of five, spent across both gateways
        assert report(b, tb, 5) == 429 and report(a, ta, 6) == 429
        handoff = b.post("/r/sunshine/B1/handoff", data={"form_token": tb, "question": "物业电话是多少"},
                         follow_redirects=False)
        assert handoff.status_code == 429 and handoff.headers["Retry-After"] == "120"  # handoffs share it
        other, to = resident(apps[1], "10.9.0.8")
        assert report(other, to, 7) == 303  # another address: a budget of its own
        rows = storage.conn.execute("SELECT name, client, tokens FROM public_limits").fetchall()
        mine, = storage.conn.execute(
            "SELECT name, tokens FROM public_limits WHERE client = "
            "(SELECT sha256(convert_to(salt || %s, 'UTF8')) FROM public_limit_salt)", (ADDRESS,)).fetchall()
        assert mine[0] == "resident_posts" and mine[1] < 0.05  # spent (refilling at one per 2 min meanwhile)
        assert all(len(c) == 32 and ADDRESS.encode() not in c for _n, c, _t in rows)  # hashed, never the address
    finally:
        for app in apps:
            app.state.close()


@pytest.fixture
def conn(storage: Storage) -> psycopg.Connection[Any]:
    return storage.conn


def row(conn: psycopg.Connection[Any], name: str) -> tuple[float, float]:
    """The bucket's tokens and how many seconds until it is full (to 0.1 token: the database's clock runs on)."""
    got = conn.execute("SELECT tokens, extract(epoch FROM full_at - at)::float8 FROM public_limits WHERE name = %s",
                       (name,)).fetchone()
    assert got is not None
    return pytest.approx(got[0], abs=0.1), pytest.approx(got[1], abs=6.0)  # type: ignore[return-value]


def back(conn: psycopg.Connection[Any], name: str, seconds: float) -> None:
    """Pretend the bucket's last take was ``seconds`` earlier (instead of waiting)."""
    conn.execute("UPDATE public_limits SET at = at - make_interval(secs => %s), "
                 "full_at = full_at - make_interval(secs => %s) WHERE name = %s", (seconds, seconds, name))


def test_bucket_arithmetic_by_the_database_clock(conn: psycopg.Connection[Any]) -> None:
    rate = 1 / 60  # burst 3, then one a minute
    assert [take(conn, "t_one", "k", 3, rate) for _ in range(4)] == [True, True, True, False]
    assert row(conn, "t_one") == (0.0, 180.0)  # a refused take writes nothing
    assert take(conn, "t_one", "other", 3, rate) and take(conn, "t_two", "k", 3, rate)  # per key, per name
    back(conn, "t_one", 30)
    assert not take(conn, "t_one", "k", 3, rate)  # half a token
    back(conn, "t_one", 30)
    assert take(conn, "t_one", "k", 3, rate) and not take(conn, "t_one", "k", 3, rate)  # refilled one
    back(conn, "t_one", 3600)  # an hour: full again, not 60 tokens
    assert [take(conn, "t_one", "k", 3, rate) for _ in range(4)] == [True, True, True, False]
    conn.execute("UPDATE public_limits SET at = at + interval '1 hour' WHERE name = 't_two'")  # a clock step back
    assert take(conn, "t_two", "k", 3, rate) and row(conn, "t_two") == (1.0, 120.0)  # refills nothing, takes no more


def test_purge_deletes_only_full_buckets(conn: psycopg.Connection[Any]) -> None:
    rate = 1 / 60
    for name in ("t_full", "t_spent"):
        assert take(conn, name, "k", 2, rate) and take(conn, name, "k", 2, rate)
    back(conn, "t_full", 120)  # full again: as good as absent
    back(conn, "t_spent", 119)
    assert purge(conn) == 1
    assert [r[0] for r in conn.execute("SELECT name FROM public_limits")] == ["t_spent"]
    back(conn, "t_spent", 1)
    assert purge_personal_data(conn, conn.execute("SELECT now()").fetchone()[0]).limits == 1  # type: ignore[index]
    assert conn.execute("SELECT count(*) FROM public_limits").fetchone() == (0,)


def test_concurrent_takes_never_exceed_the_burst(storage: Storage, schema: str) -> None:
    results: list[bool] = []
    start = threading.Barrier(8)

    def one() -> None:
        with psycopg.connect(DB_URL, autocommit=True, options=f"-c search_path={schema}") as c:
            start.wait(timeout=10)
            results.append(take(c, "t_race", "k", 5, 1 / 60))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=20)
    assert sorted(results) == [False] * 3 + [True] * 5


def test_a_limit_without_its_database_refuses_or_counts_in_memory() -> None:
    @contextlib.contextmanager
    def down() -> Iterator[Storage]:
        raise DatabaseUnavailable("postgresql://x", "the database was unreachable a moment ago")
        yield  # pragma: no cover

    with pytest.raises(DatabaseUnavailable):
        SharedLimiter("t_strict", 2, 60, down).take("k")  # the POST then gets a 503
    lenient = SharedLimiter("t_asks", 2, 60, down, fallback=True)
    assert [lenient.take("k") for _ in range(3)] == [True, True, False]
    for bad in (("Bad name", 2, 60.0), ("ok", 0, 60.0), ("ok", 2, 0.0)):
        with pytest.raises(ValueError):
            SharedLimiter(bad[0], int(bad[1]), bad[2], down)
