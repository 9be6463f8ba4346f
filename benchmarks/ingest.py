"""Benchmark suite behind `gridtwin bench`: ingest, database writer, memory. Does I/O (processes).

Ingest, measured side by side on one broker of our own and one load: every consumer first creates a
persistent session, then N messages are published while all are offline (the broker queues them for
each), then each consumer drains its queue alone: (a) ``mosquitto_sub`` discarding, (b) a bare paho
subscriber discarding, (c) the full gateway (validation, dedup, COPY into PostgreSQL), once per MQTT
transport asked for (``fast``, ``paho`` or both, in alternating order, each on its own persistent session
and an emptied database). Rates are messages over the time from the first to the last message handled,
so process start-up is excluded.
"""

from __future__ import annotations

import contextlib
import csv
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from gateway.ingest.batch import WriteBatch
from gateway.ops.procs import Mosquitto
from gateway.storage import Storage
from twin import contract
from twin.community import Community
from twin.generate import generate

BENCH_COMMUNITY = "benchtown"


def machine() -> dict[str, Any]:
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.now(UTC).isoformat(timespec="seconds")}


def bench_community() -> Community:
    return Community.model_validate(generate(40, seed=11, community_id=BENCH_COMMUNITY, name="bench"))


def _payloads(community: Community, root: str, n: int, start_ms: int) -> list[tuple[str, bytes]]:
    """n telemetry messages with 4 fields each (elevators: floor, direction, load, running)."""
    lifts = [d for d in community.devices if d.kind == "elevator"]
    topics = [contract.topic(root, community.id, d.id, contract.Channel.TELEMETRY) for d in lifts]
    out = []
    for i in range(n):
        k = i % len(lifts)
        seq = i // len(lifts) + 1
        values = {"floor": (seq % 18) + 1, "direction": (seq % 3) - 1, "load": float(seq % 90),
                  "running": bool(seq % 2)}
        out.append((topics[k], contract.telemetry_bytes(start_ms + seq * 10, seq, values)))
    return out


def _paho(url: str, client_id: str, *, clean: bool) -> paho.Client:
    addr = contract.BrokerAddress.parse(url)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                    protocol=paho.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(addr.host, addr.port, keepalive=60)
    return c


def _publish_all(url: str, msgs: list[tuple[str, bytes]], qos: int) -> float:
    """Publish everything; return msg/s of the publisher (acknowledged, for QoS 1)."""
    c = _paho(url, f"bench-pub-{uuid.uuid4().hex[:6]}", clean=True)
    c.loop_start()
    t0 = time.perf_counter()
    for t, p in msgs:
        # keep paho's own queue short: its in-flight bookkeeping is linear in the queue length
        while len(c._out_messages) > 5000:
            time.sleep(0.001)
        c.publish(t, p, qos=qos)
    while c._out_messages:  # wait until everything is sent (and, for QoS 1, acknowledged)
        time.sleep(0.01)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return len(msgs) / dt


def _make_session(url: str, client_id: str, topic_filter: str, qos: int) -> None:
    c = _paho(url, client_id, clean=False)
    done = threading.Event()
    c.on_subscribe = lambda *a: done.set()
    c.loop_start()
    c.subscribe(topic_filter, qos=qos)
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def _drain_paho(url: str, client_id: str, n: int, timeout: float) -> float:
    count = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(_c: Any, _u: Any, _m: paho.MQTTMessage) -> None:
        nonlocal count, first, last
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count >= n:
            last = time.perf_counter()
            done.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=paho.MQTTv311)
    c.on_message = on_message
    addr = contract.BrokerAddress.parse(url)
    c.connect(addr.host, addr.port, keepalive=60)
    c.loop_start()
    ok = done.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return n / (last - first) if ok and last > first else 0.0


def _drain_mosquitto_sub(port: int, client_id: str, topic_filter: str, qos: int, n: int, timeout: float) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i", client_id, "-c", "-q", str(qos),
                        "-t", topic_filter, "-C", str(n), "-V", "mqttv311"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout, check=False)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"mosquitto_sub failed: {p.stderr.decode(errors='replace').strip()}")
    return n / dt


class _GatewayProc:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("GRIDTWIN_")}
        self.log = log
        with log.open("ab") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "gateway", "--report-every", "2"],
                                         env={**base, **env}, stdout=f, stderr=f)

    def wait_subscribed(self, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if "subscribed" in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError("gateway did not subscribe")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _count(st: Storage) -> int:
    row = st.conn.execute("SELECT count(*) FROM message_keys").fetchone()
    return int(row[0]) if row else 0


TRANSPORTS = ("fast", "paho")


def bench_ingest(db_url: str, *, messages: int = 100_000, qos: int = 1, repeats: int = 3,
                 transport: str = "fast", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Median rates over ``repeats`` runs of the consumers on the same queued load.

    ``transport``: the gateway's MQTT transport (``fast``, ``paho``), or ``both`` to measure the two
    side by side on the same load (the first listed is the one ``gateway_msgs_per_s`` reports).
    """
    transports = list(TRANSPORTS) if transport == "both" else [transport]
    if not set(transports) <= set(TRANSPORTS):
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)} or both, not {transport!r}")
    community = bench_community()
    runs: list[dict[str, float | int]] = []
    with tempfile.TemporaryDirectory(prefix="gridtwin-bench-") as tmp:
        broker = Mosquitto(Path(tmp) / "broker", extra="allow_anonymous true\nqueue_qos0_messages true\n")
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        st = Storage.connect(db_url, schema=schema)
        try:
            st.migrate()
            st.load_community(community)
            for r in range(repeats):
                order = transports if r % 2 == 0 else transports[::-1]  # no transport always runs first
                runs.append(_one_ingest_run(broker, db_url, schema, st, community, messages, qos, Path(tmp), r,
                                            order))
                log(f"  run {r + 1}/{repeats}: " + ", ".join(f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}"
                                                            for k, v in runs[-1].items()))
        finally:
            st.close()
            broker.stop()
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def med(key: str) -> float:
        return float(statistics.median(float(r[key]) for r in runs))

    bare = med("bare_paho_msgs_per_s")
    per_transport = {
        t: {"gateway_msgs_per_s": med(f"gateway_{t}_msgs_per_s"),
            "gateway_vs_bare_paho": round(med(f"gateway_{t}_msgs_per_s") / bare, 3) if bare else None,
            "stored": int(sum(r[f"stored_{t}"] for r in runs)),
            "lost": int(sum(r[f"lost_{t}"] for r in runs)),
            "duplicated": int(sum(r[f"duplicated_{t}"] for r in runs))}
        for t in transports
    }
    main = per_transport[transports[0]]
    return {
        "benchmark": "ingest", **machine(), "qos": qos, "messages": messages, "repeats": repeats,
        "fields_per_message": 4, "transport": transports[0],
        "publisher_msgs_per_s": med("publisher_msgs_per_s"),
        "mosquitto_sub_msgs_per_s": med("mosquitto_sub_msgs_per_s"),
        "bare_paho_msgs_per_s": bare,
        "gateway_msgs_per_s": main["gateway_msgs_per_s"],
        "gateway_vs_bare_paho": main["gateway_vs_bare_paho"],
        "transports": per_transport,
        "sent": int(sum(r["sent"] for r in runs)) * len(transports),
        "stored": sum(v["stored"] for v in per_transport.values()),
        "lost": sum(v["lost"] for v in per_transport.values()),
        "duplicated": sum(v["duplicated"] for v in per_transport.values()),
        "runs": runs,
    }


def _one_ingest_run(broker: Mosquitto, db_url: str, schema: str, st: Storage, community: Community,
                    n: int, qos: int, tmp: Path, r: int, transports: list[str]) -> dict[str, float | int]:
    root = f"bench{uuid.uuid4().hex[:6]}"
    filt = f"{root}/v1/#"
    sub_id, paho_id = f"b-sub-{root}", f"b-paho-{root}"

    def env(t: str) -> dict[str, str]:
        return {"GRIDTWIN_MQTT_URL": broker.url, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": schema,
                "GRIDTWIN_MQTT_TOPIC_ROOT": root, "GRIDTWIN_MQTT_CLIENT_ID": f"b-gw-{t}-{root}",
                "GRIDTWIN_MQTT_QOS": str(qos), "GRIDTWIN_MQTT_TRANSPORT": t,
                "GRIDTWIN_DATA_DIR": str(tmp / f"data{r}-{t}")}

    # sessions first, so the broker queues the whole load for each consumer
    _make_session(broker.url, sub_id, filt, qos)
    _make_session(broker.url, paho_id, filt, qos)
    for t in transports:
        gw = _GatewayProc(env(t), tmp / f"gateway{r}-{t}.log")
        gw.wait_subscribed()
        gw.stop()
    msgs = _payloads(community, root, n, int(time.time() * 1000) - n * 10)
    pub_rate = _publish_all(broker.url, msgs, qos)
    time.sleep(1.0)  # let the broker finish queueing
    sub_rate = _drain_mosquitto_sub(broker.port, sub_id, filt, qos, n, timeout=300)
    paho_rate = _drain_paho(broker.url, paho_id, n, timeout=300)
    out: dict[str, float | int] = {"publisher_msgs_per_s": pub_rate, "mosquitto_sub_msgs_per_s": sub_rate,
                                   "bare_paho_msgs_per_s": paho_rate, "sent": n}
    for t in transports:
        st.conn.execute("TRUNCATE telemetry, message_keys, latest_values, device_events, device_status, "
                        "dead_letters")
        rate, stored, rows = _drain_gateway(env(t), tmp / f"gateway{r}-{t}-run.log", st, n)
        out |= {f"gateway_{t}_msgs_per_s": rate, f"stored_{t}": stored, f"lost_{t}": n - stored,
                f"duplicated_{t}": rows - stored * 4}
    return out


def _drain_gateway(env: dict[str, str], log: Path, st: Storage, n: int) -> tuple[float, int, int]:
    """Run the gateway until it has stored ``n`` messages: (msg/s, messages stored, telemetry rows)."""
    gw = _GatewayProc(env, log)
    first_t = last_t = 0.0
    first_n = 0
    end = time.monotonic() + 600
    try:
        while time.monotonic() < end:
            c = _count(st)
            now = time.perf_counter()
            if c and not first_t:
                first_t, first_n = now, c
            if c >= n:
                last_t = now
                break
            if gw.proc.poll() is not None:
                raise RuntimeError(f"gateway died: {gw.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
    finally:
        gw.stop()
    stored = _count(st)
    rows_row = st.conn.execute("SELECT count(*) FROM telemetry").fetchone()
    rows = int(rows_row[0]) if rows_row else 0
    rate = (stored - first_n) / (last_t - first_t) if last_t > first_t else 0.0
    return rate, stored, rows


def bench_writer(db_url: str, *, rows: int = 500_000, batch: int = 5000, repeats: int = 3) -> dict[str, Any]:
    """Storage.write_batch (COPY + dedup keys + latest values) vs `psql \\copy` of the same rows."""
    schema = f"benchw_{uuid.uuid4().hex[:8]}"
    base = datetime.now(UTC).timestamp() - rows / 1000
    data = [(datetime.fromtimestamp(base + i / 1000, UTC), i % 500 + 1, i % 4 + 1, float(i % 1000) / 7, 0, i)
            for i in range(rows)]
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="gridtwin-benchw-") as tmp:
        csv_path = Path(tmp) / "rows.csv"
        with csv_path.open("w", newline="") as f:
            w = csv.writer(f)
            for ts, d, m, v, fl, _seq in data:
                w.writerow([ts.isoformat(), d, m, repr(v), fl])
        st = Storage.connect(db_url, schema=schema)
        try:
            st.migrate()
            for _ in range(repeats):
                st.conn.execute("TRUNCATE telemetry, message_keys, latest_values")
                t0 = time.perf_counter()
                for i in range(0, rows, batch):
                    chunk = data[i:i + batch]
                    keys = [(r[1], r[5], r[0]) for r in chunk if r[2] == 1]
                    st.write_batch(WriteBatch(keys, chunk, [], [], []))
                ours.append(rows / (time.perf_counter() - t0))
                st.conn.execute("TRUNCATE telemetry")
                t0 = time.perf_counter()
                p = subprocess.run(
                    ["psql", db_url, "-q", "-v", "ON_ERROR_STOP=1", "-c", f"SET search_path={schema}", "-c",
                     f"\\copy telemetry (ts, device_id, metric_id, value, flags) FROM '{csv_path}' CSV"],
                    capture_output=True, text=True, check=False)
                if p.returncode != 0:
                    raise RuntimeError(f"psql \\copy failed: {p.stderr.strip()}")
                theirs.append(rows / (time.perf_counter() - t0))
        finally:
            st.close()
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    a, b = statistics.median(ours), statistics.median(theirs)
    return {"benchmark": "writer", **machine(), "rows": rows, "batch": batch, "repeats": repeats,
            "gateway_writer_rows_per_s": a, "psql_copy_rows_per_s": b, "ratio": round(a / b, 3),
            "note": "gateway writer includes dedup keys (1 per 4 rows) and latest_values upserts"}


def _gateway_rig(db_url: str, community: Community, tmp: Path,
                 tag: str) -> tuple[Mosquitto, str, str, Storage, dict[str, str]]:
    """A broker of our own, a fresh schema with the community loaded, and a gateway environment."""
    broker = Mosquitto(tmp / "broker")
    schema = f"{tag}_{uuid.uuid4().hex[:8]}"
    root = f"{tag}{uuid.uuid4().hex[:6]}"
    st = Storage.connect(db_url, schema=schema)
    st.migrate()
    st.load_community(community)
    env = {"GRIDTWIN_MQTT_URL": broker.url, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": schema,
           "GRIDTWIN_MQTT_TOPIC_ROOT": root, "GRIDTWIN_MQTT_CLIENT_ID": f"gw-{root}",
           "GRIDTWIN_DATA_DIR": str(tmp / "data")}
    return broker, schema, root, st, env


def bench_memory(db_url: str, *, minutes: float = 10.0, rate: float = 10_000.0, sample_s: float = 10.0,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Gateway RSS over a run at a steady publish rate (use ~80% of the measured sustained rate)."""
    community = bench_community()
    samples: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="gridtwin-benchm-") as tmp:
        broker, schema, root, st, env = _gateway_rig(db_url, community, Path(tmp), "benchm")
        gw = _GatewayProc(env, Path(tmp) / "gateway.log")
        stop = threading.Event()
        sent = 0
        try:
            gw.wait_subscribed()
            pub = _paho(broker.url, f"benchm-pub-{root}", clean=True)
            pub.loop_start()

            def publish() -> None:
                nonlocal sent
                msgs = _payloads(community, root, 200_000, int(time.time() * 1000))
                t0 = time.perf_counter()
                i = 0
                while not stop.is_set():
                    topic, payload = msgs[i % len(msgs)]
                    # unique seq per message so none is dropped as a duplicate
                    body = orjson.loads(payload)
                    body["seq"] = i + 1
                    body["ts"] = int(time.time() * 1000)
                    pub.publish(topic, orjson.dumps(body), qos=1)
                    i += 1
                    sent = i
                    ahead = i / rate - (time.perf_counter() - t0)
                    if ahead > 0:
                        time.sleep(ahead)

            t = threading.Thread(target=publish, daemon=True)
            t.start()
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end:
                time.sleep(sample_s)
                rss = _rss_kib(gw.proc.pid)
                samples.append((round(minutes * 60 - (end - time.monotonic())), rss))
                log(f"  t={samples[-1][0]}s rss={rss} KiB sent={sent} stored={_count(st)}")
            stop.set()
            t.join(10)
            pub.disconnect()
            pub.loop_stop()
        finally:
            stop.set()
            gw.stop()
            stored = _count(st)
            st.close()
            broker.stop()
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    warm = [r for t, r in samples if t >= 60] or [r for _, r in samples]
    growth = (warm[-1] - warm[0]) / warm[0] if warm and warm[0] else None
    return {"benchmark": "memory", **machine(), "minutes": minutes, "rate_msgs_per_s": rate, "sent": sent,
            "stored": stored, "rss_kib_samples": samples, "rss_kib_first_after_warmup": warm[0] if warm else None,
            "rss_kib_last": warm[-1] if warm else None, "rss_kib_max": max(warm) if warm else None,
            "growth_after_warmup": round(growth, 4) if growth is not None else None}


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _background_load(url: str, root: str, rate: float, seconds: float, counter: Any) -> None:
    """Steady telemetry at ``rate`` msg/s for ``seconds`` (runs in a child process)."""
    community = bench_community()
    pub = _paho(url, f"benchl-pub-{root}", clean=True)
    pub.loop_start()
    msgs = _payloads(community, root, 50_000, 0)
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        topic, payload = msgs[i % len(msgs)]
        body = orjson.loads(payload)
        body["seq"], body["ts"] = i + 1, int(time.time() * 1000)
        pub.publish(topic, orjson.dumps(body), qos=1)
        i += 1
        if i % 1000 == 0:
            counter.value = i
        ahead = i / rate - (time.perf_counter() - t0)
        if ahead > 0:
            time.sleep(ahead)
    counter.value = i
    pub.disconnect()
    pub.loop_stop()


def bench_latency(db_url: str, *, sustained: float, load_fraction: float = 0.5, seconds: float = 30.0,
                  probes_per_s: float = 5.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Publish-to-alarm-committed latency under background load.

    Background: telemetry at ``load_fraction`` x ``sustained`` msg/s. Probes: gas detectors alternately
    crossing 50 %LEL and returning to 0, ``probes_per_s`` per second; each probe's latency runs from
    its publish to the gateway's `raised` event on the alarm topic (published after the alarm is
    committed to the database).
    """
    community = bench_community()
    gas = [d.id for d in community.devices if d.kind == "gas"]
    with tempfile.TemporaryDirectory(prefix="gridtwin-benchl-") as tmp:
        broker, schema, root, st, env = _gateway_rig(db_url, community, Path(tmp), "benchl")
        gw = _GatewayProc(env, Path(tmp) / "gateway.log")
        sent_at: dict[str, float] = {}
        latencies: list[float] = []
        lock = threading.Lock()
        stop = threading.Event()
        sent = 0
        try:
            gw.wait_subscribed()
            sub = _paho(broker.url, f"benchl-sub-{root}", clean=True)

            def on_alarm(_c: Any, _u: Any, m: paho.MQTTMessage) -> None:
                e = orjson.loads(m.payload)
                if e.get("kind") == "raised" and e.get("rule") == "gas_level2":
                    with lock:
                        t0 = sent_at.pop(str(e.get("device")), None)
                    if t0 is not None:
                        latencies.append((time.perf_counter() - t0) * 1000)

            sub.on_message = on_alarm
            sub.loop_start()
            sub.subscribe(contract.alarms_topic(root, community.id), qos=1)
            # the background load runs in its own process, so its GIL does not delay our probe timing
            ctx = multiprocessing.get_context("fork")
            counter = ctx.Value("q", 0)
            bg = ctx.Process(target=_background_load, daemon=True,
                             args=(broker.url, root, sustained * load_fraction, seconds + 3, counter))
            bg.start()
            time.sleep(1.0)
            probe_pub = _paho(broker.url, f"benchl-probe-{root}", clean=True)
            probe_pub.loop_start()
            seq = 0
            end = time.monotonic() + seconds
            k = 0
            while time.monotonic() < end:
                dev = gas[k % len(gas)]
                k += 1
                topic = contract.topic(root, community.id, dev, contract.Channel.TELEMETRY)
                for lel in (0.0, 60.0):  # reset (clears any earlier alarm), then cross level 2
                    seq += 1
                    if lel:
                        with lock:
                            sent_at[dev] = time.perf_counter()
                    payload = contract.telemetry_bytes(int(time.time() * 1000), seq, {"lel": lel})
                    probe_pub.publish(topic, payload, qos=1)
                    time.sleep(0.5 / probes_per_s)
            time.sleep(2)
            stop.set()
            bg.join(timeout=10)
            sent = int(counter.value)
            for c in (probe_pub, sub):
                c.disconnect()
                c.loop_stop()
        finally:
            stop.set()
            gw.stop()
            st.close()
            broker.stop()
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    lat = sorted(latencies)

    def pct(p: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

    log(f"  load {load_fraction:.0%}: {len(lat)} alarms, p50={pct(0.5)} ms p99={pct(0.99)} ms")
    return {"benchmark": "latency", **machine(), "load_fraction": load_fraction,
            "msgs_per_s": round(sent / (seconds + 3)), "target_msgs_per_s": round(sustained * load_fraction),
            "alarms": len(lat), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 1) if lat else None}
