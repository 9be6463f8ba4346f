"""Benchmark of the REST API under load: N concurrent clients against ``gridtwin serve``. Does I/O.

:func:`bench_api` loads the sample community into a scratch schema (dropped afterwards), adds an
operator account and a few manual tickets, starts ``gridtwin serve`` as a child process on a free port
(the dashboard and the API on one server, exactly as deployed), signs in once, and then ``clients``
threads, each on its own keep-alive connection, send GET requests back to back for ``seconds``: a mix
of the operator's views (ticket list, one ticket with its timeline, who am I, knowledge search, KPIs).
It reports requests per second, latency percentiles and errors. No asserts: the numbers go to
BENCHMARKS.md.

The server runs in its own process(es), so the load generator's threads do not share its interpreter
lock; on a small machine they still share its cores. ``checkout`` serves the code of another checkout
(for before/after comparisons on the same machine): ``python -m benchmarks.api --checkout DIR``.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

from gateway.api.auth import Users
from gateway.ops.procs import free_port
from gateway.storage import Storage
from twin.community import Community, parse
from twin.people import Role

REPO = Path(__file__).resolve().parent.parent
TICKETS = 20  # manual tickets created before the run, so the ticket views have something to show
START_TIMEOUT_S = 60.0


def bench_api(db_url: str, *, seconds: float = 60.0, clients: int = 50, workers: int | None = None,
              mqtt_url: str | None = None, checkout: Path | None = None,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Requests/s, p50/p95/p99 latency and errors of ``clients`` concurrent API clients for ``seconds``.

    ``workers``: passed to ``gridtwin serve --workers`` (None: the command's default, and no flag, so an
    older checkout without it can be measured too). ``checkout``: serve that source tree instead of this one.
    """
    community = _sample()
    schema = f"bench_api_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(12)
    with Storage.connect(db_url, schema=schema) as st:
        st.migrate()
        st.load_community(community)
        Users(st.conn).add("bench-operator", password, Role.OPERATOR)
    port = free_port()
    with tempfile.TemporaryFile() as server_log:  # the server's log, shown if it fails to start
        server = _start_server(db_url, schema, port, server_log, workers=workers, mqtt_url=mqtt_url,
                               checkout=checkout)
        try:
            result = _run(port, server, server_log, password, clients=clients, seconds=seconds, log=log)
        finally:
            _stop_server(server)
            with Storage.connect(db_url, schema=schema) as st:
                st.conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    return {"clients": clients, "seconds": seconds, "workers": workers,
            "checkout": str(checkout) if checkout else None, **result}


def _run(port: int, server: subprocess.Popen[bytes], server_log: IO[bytes], password: str, *, clients: int,
         seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    _wait_ready(port, server, server_log)
    token = _sign_in(port, "bench-operator", password)
    ticket_ids = [_create_ticket(port, token, n) for n in range(TICKETS)]
    log(f"serving on port {port} (pid {server.pid}); {clients} clients for {seconds:g}s")
    return _load(port, token, _request_mix(ticket_ids), clients=clients, seconds=seconds)


def _sample() -> Community:
    path = REPO / "twin" / "sample_community.yaml"
    return parse(path.read_text(encoding="utf-8"), str(path))


def _start_server(db_url: str, schema: str, port: int, server_log: IO[bytes], *, workers: int | None,
                  mqtt_url: str | None, checkout: Path | None) -> subprocess.Popen[bytes]:
    root = (checkout or REPO).resolve()
    env = {**os.environ, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": schema, "PYTHONPATH": str(root)}
    if mqtt_url:
        env["GRIDTWIN_MQTT_URL"] = mqtt_url
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=server_log)


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _wait_ready(port: int, server: subprocess.Popen[bytes], server_log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}:\n{_tail(server_log)}")
        try:
            if _call(port, "GET", "/api/v1/openapi.json")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT_S:g}s")


def _tail(server_log: IO[bytes]) -> str:
    server_log.seek(0)
    return server_log.read()[-3000:].decode("utf-8", "replace")


def _call(port: int, method: str, path: str, body: dict[str, Any] | None = None,
          token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _sign_in(port: int, username: str, password: str) -> str:
    status, body = _call(port, "POST", "/api/v1/auth/login", {"username": username, "password": password})
    if status != 200:
        raise RuntimeError(f"sign-in failed: {status} {body[:200]!r}")
    return str(json.loads(body)["token"])


def _create_ticket(port: int, token: str, n: int) -> int:
    status, body = _call(port, "POST", "/api/v1/tickets", {"title": f"bench ticket {n}", "priority": "general",
                                                           "category": "other"}, token)
    if status != 201:
        raise RuntimeError(f"creating a ticket failed: {status} {body[:200]!r}")
    return int(json.loads(body)["id"])


def _request_mix(ticket_ids: list[int]) -> list[str]:
    """The GETs the clients cycle through: an operator's screens (each client starts at another place)."""
    today = date.today()
    kpi = f"/api/v1/kpi?from={today - timedelta(days=7)}&to={today}"
    paths: list[str] = []
    for i, tid in enumerate(ticket_ids):
        paths += ["/api/v1/tickets?limit=50", f"/api/v1/tickets/{tid}", "/api/v1/me",
                  f"/api/v1/tickets/{ticket_ids[-1 - i]}", "/api/v1/knowledge?q=%E7%81%AB%E7%81%BE"]
        if i % 4 == 0:
            paths.append(kpi)  # one KPI view every few screens
    return paths


def _load(port: int, token: str, paths: list[str], *, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[Counter[str]] = [Counter() for _ in range(clients)]
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]
    headers = {"Authorization": f"Bearer {token}"}

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        i = n * 7
        start.wait()
        while time.perf_counter() < stop_at[0]:
            path = paths[i % len(paths)]
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                errors[n][type(exc).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            latencies[n].append(time.perf_counter() - t0)
            if status != 200:
                errors[n][str(status)] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    t_start = time.perf_counter()
    stop_at[0] = t_start + seconds
    start.wait()
    for t in threads:
        t.join()
    took = time.perf_counter() - t_start
    lat = sorted(x for per in latencies for x in per)
    err: Counter[str] = Counter()
    for c in errors:
        err.update(c)
    done = len(lat) + sum(v for k, v in err.items() if not k.isdigit())

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

    return {"requests": done, "requests_per_s": round(done / took, 1), "p50_ms": pct(0.50), "p95_ms": pct(0.95),
            "p99_ms": pct(0.99), "max_ms": round(lat[-1] * 1000, 1) if lat else None,
            "mean_ms": round(statistics.fmean(lat) * 1000, 1) if lat else None,
            "errors": sum(err.values()), "errors_by_kind": dict(err)}


if __name__ == "__main__":  # python -m benchmarks.api [--checkout DIR] [--seconds S] [--clients N] [--workers N]
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db-url", default=os.environ.get("GRIDTWIN_DB_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--mqtt-url", default=os.environ.get("GRIDTWIN_MQTT_URL"))
    p.add_argument("--checkout", type=Path, help="serve this source tree (default: this one)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--workers", type=int)
    a = p.parse_args()
    out = bench_api(a.db_url, seconds=a.seconds, clients=a.clients, workers=a.workers, mqtt_url=a.mqtt_url,
                    checkout=a.checkout, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(out, ensure_ascii=False, indent=2))
