"""Scale-out benchmark behind `gridtwin bench scale`: N gateway processes sharing the communities. Does I/O.

A :class:`ScaleRig` starts real processes: a Mosquitto with persistence on a free port, and N
``gridtwin gateway`` processes in cluster mode (``GRIDTWIN_CLUSTER_ENABLED=true``, each its own node id,
client id and data directory) on a fresh schema holding small generated communities
(:func:`twin.generate.generate`, 2 towers each). Once every community is held and its persistent MQTT
session subscribed, a publisher sends QoS 1 telemetry (per-device ``seq``) from each community's sensors
(the kinds of the ``sensor_offline`` no-data rule) and one 60 %LEL reading from every gas detector
(each alone on its floor: one ticket each). A site rule file makes ``sensor_offline`` fire after
:data:`SILENCE_S` of silence, so a takeover gap that the rules mistook for silence would raise
alarms; the publisher reaches every such sensor far more often than that.

:func:`bench_scale` measures, for each N, how fast the gateways store the same backlog-free load
published as fast as the publisher can (``msgs_per_s`` = messages / seconds from the first publish to the
last one stored), and compares the database with what was sent: ``lost`` (sent, not stored),
``duplicated`` (telemetry rows stored twice), ``nodata_alarms``, ``tickets`` vs ``tickets_expected``.
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg

from benchmarks.faults import _GatewayProc, _Stream
from gateway.ops.procs import Mosquitto
from gateway.storage import Storage
from simulators import publisher
from twin import contract
from twin.community import Community
from twin.generate import generate

SENSOR_KINDS = frozenset({"gas", "co", "water_leak", "temp_humidity", "water_tank", "noise"})
SILENCE_S = 8.0  # sensor_offline fires after this much silence in these runs (site rule file)
ALARM_LEL = 60.0
RULES = f"""version: 1
rules:
  - id: sensor_offline
    name: sensor offline (scale-out runs)
    type: no_data
    kind: [{", ".join(sorted(SENSOR_KINDS))}]
    after: {SILENCE_S:g}s
    offline_for: 1m
    severity: minor
    dispatch: general
    source: "benchmarks/scale.py: short silence so a takeover gap mistaken for silence shows"
"""
Log = Callable[[str], None]


def communities(n: int) -> list[Community]:
    return [Community.model_validate(generate(2, community_id=f"sc{i}", seed=11 + i, heights=(6,), name=f"c{i}"))
            for i in range(n)]


def build_load(comms: Sequence[Community], root: str, messages: int, rate: float,
               start_s: float) -> tuple[list[publisher.Message], list[tuple[str, str]]]:
    """(messages in publish order, the (community, gas detector) pairs that must each make one ticket).

    Round-robin over the communities; each community's stream round-robins over its sensors with
    timestamps following the publish schedule. Each gas detector sends one 60 %LEL reading, the first
    half before 30 % of the stream, the rest after 70 %."""
    per = messages // len(comms)
    streams = []
    for c in comms:
        n_dev = sum(1 for d in c.devices if d.kind in SENSOR_KINDS)
        streams.append(list(publisher.telemetry_stream(c, root, devices=None, start_s=start_s,
                                                       step_s=n_dev * len(comms) / rate, count=per,
                                                       kinds=set(SENSOR_KINDS))))
    out = [m for group in zip(*streams, strict=True) for m in group]
    gas = [(c.id, d.id) for c in comms for d in c.devices if d.kind == "gas"]
    spots = [0.05 + 0.25 * i / max(1, len(gas) // 2) for i in range(len(gas) // 2)]
    spots += [0.7 + 0.25 * i / max(1, len(gas) - len(spots)) for i in range(len(gas) - len(spots))]
    for frac, (cid, dev) in sorted(zip(spots, gas, strict=True), reverse=True):
        pos = int(frac * len(out))
        ts_ms = round((start_s + pos / rate) * 1000)
        out.insert(pos, publisher.Message(contract.topic(root, cid, dev, contract.Channel.TELEMETRY),
                                          contract.telemetry_bytes(ts_ms, 10**9 + pos, {"lel": ALARM_LEL})))
    return out, gas


class ScaleRig:
    """Broker, schema, N cluster gateways; start, kill -9, count."""

    def __init__(self, db_url: str, tmp: Path, *, gateways: int, communities_n: int = 6,
                 lease_s: float = 10.0, renew_s: float = 2.0) -> None:
        self.db_url = db_url
        self.tmp = tmp
        self.schema = f"bs_{uuid.uuid4().hex[:8]}"
        self.root = f"bs{uuid.uuid4().hex[:6]}"
        self.comms = communities(communities_n)
        self.broker = Mosquitto(tmp / "broker")
        st = Storage.connect(db_url, schema=self.schema)
        try:
            st.migrate()
            for c in self.comms:
                st.load_community(c)
        finally:
            st.close()
        rules = tmp / "scale-rules.yaml"
        rules.write_text(RULES, encoding="utf-8")
        self.gateways: dict[str, _GatewayProc] = {}
        for i in range(1, gateways + 1):
            node = f"g{i}"
            env = {"GRIDTWIN_MQTT_URL": self.broker.url, "GRIDTWIN_DB_URL": db_url, "GRIDTWIN_DB_SCHEMA": self.schema,
                   "GRIDTWIN_MQTT_TOPIC_ROOT": self.root, "GRIDTWIN_MQTT_CLIENT_ID": f"{self.root}-{node}",
                   "GRIDTWIN_DATA_DIR": str(tmp / f"data-{node}"), "GRIDTWIN_CLUSTER_ENABLED": "true",
                   "GRIDTWIN_CLUSTER_NODE_ID": node, "GRIDTWIN_CLUSTER_LEASE_S": str(lease_s),
                   "GRIDTWIN_CLUSTER_RENEW_S": str(renew_s),
                   "GRIDTWIN_RULES_FILES": orjson.dumps([str(rules)]).decode()}
            self.gateways[node] = _GatewayProc(env, tmp / f"gateway-{node}.log")

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"SET search_path = {self.schema}")
            return list(conn.execute(query, params).fetchall())

    def holders(self) -> dict[str, str]:
        """community -> node holding an unexpired lease."""
        with contextlib.suppress(psycopg.Error):
            return {str(c): str(h) for c, h in self.sql(
                "SELECT community, holder FROM community_leases WHERE expires_at > now()")}
        return {}

    def sessions_subscribed(self) -> int:
        n = 0
        for g in self.gateways.values():
            if g.log.exists():
                n += g.log.read_text(errors="replace").count(": session ")
        return n

    def start(self, timeout_s: float = 60.0) -> None:
        for g in self.gateways.values():
            g.start()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if len(self.holders()) == len(self.comms) and self.sessions_subscribed() >= len(self.comms):
                return
            dead = [n for n, g in self.gateways.items() if g.exited()]
            if dead:
                raise RuntimeError(self.gateways[dead[0]].exit_reason())
            time.sleep(0.1)
        raise RuntimeError(f"communities not all held within {timeout_s:.0f} s: {self.holders()}")

    def publish(self, msgs: Sequence[publisher.Message], rate: float) -> _Stream:
        stream = _Stream(self.broker.url, msgs, rate, f"pub-{self.root}")
        stream.start()
        return stream

    def stored_keys(self) -> int:
        with contextlib.suppress(psycopg.Error):
            return int(self.sql("SELECT count(*) FROM message_keys")[0][0])
        return -1

    def counts(self, msgs: Sequence[publisher.Message], gas: Sequence[tuple[str, str]]) -> dict[str, int]:
        """stored, lost, duplicated, no-data alarms, tickets of the gas detectors, alarms without a ticket."""
        keys = {(str(c), str(d), int(s), round(ts.timestamp() * 1000)) for c, d, s, ts in self.sql(
            "SELECT c.code, d.code, k.seq, k.ts FROM message_keys k JOIN devices d ON d.id = k.device_id "
            "JOIN communities c ON c.id = d.community_id")}
        rows = Counter((str(c), str(d), str(m), round(ts.timestamp() * 1000)) for c, d, m, ts in self.sql(
            "SELECT c.code, d.code, m.name, t.ts FROM telemetry t JOIN devices d ON d.id = t.device_id "
            "JOIN communities c ON c.id = d.community_id JOIN metrics m ON m.id = t.metric_id"))
        expected: Counter[tuple[str, str, str, int]] = Counter()
        stored = 0
        for m in msgs:
            parts = m.topic.split("/")  # {root}/v1/{community}/{device}/{channel}
            body = orjson.loads(m.payload)
            stored += (parts[2], parts[3], int(body["seq"]), int(body["ts"])) in keys
            for f in body["values"]:
                expected[(parts[2], parts[3], f, int(body["ts"]))] += 1
        nodata = int(self.sql("SELECT count(*) FROM alarms WHERE rule LIKE %s", ("%offline%",))[0][0])
        gas_devices = [d for _c, d in gas]
        tickets = int(self.sql("SELECT count(DISTINCT ticket_id) FROM ticket_alarms WHERE device = ANY(%s)",
                               (gas_devices,))[0][0])
        unticketed = int(self.sql("SELECT count(*) FROM alarms a WHERE NOT EXISTS "
                                  "(SELECT 1 FROM ticket_alarms t WHERE t.alarm_key = a.key)")[0][0])
        pending = int(self.sql("SELECT count(*) FROM alarm_events WHERE dispatched_at IS NULL")[0][0])
        return {"sent": len(msgs), "stored": stored, "lost": len(msgs) - stored,
                "duplicated": sum(max(0, n - expected[k]) for k, n in rows.items()), "nodata_alarms": nodata,
                "tickets": tickets, "tickets_expected": len(gas), "alarms_without_ticket": unticketed,
                "events_undispatched": pending}

    def settle(self, sent: int, gas: Sequence[tuple[str, str]], timeout_s: float = 40.0) -> float:
        """Wait until every message is stored and every gas ticket made; the time the last one was stored."""
        end = time.monotonic() + timeout_s
        gas_devices = [d for _c, d in gas]
        done_at = time.monotonic()
        stored_all = False
        while time.monotonic() < end:
            if not stored_all and self.stored_keys() >= sent:
                stored_all, done_at = True, time.monotonic()
            if stored_all:
                with contextlib.suppress(psycopg.Error):
                    t = self.sql("SELECT count(DISTINCT ticket_id), (SELECT count(*) FROM alarm_events WHERE "
                                 "dispatched_at IS NULL) FROM ticket_alarms WHERE device = ANY(%s)",
                                 (gas_devices,))[0]
                    if int(t[0]) >= len(gas) and int(t[1]) == 0:
                        break
            time.sleep(0.05)
        return done_at

    def close(self) -> None:
        for g in self.gateways.values():
            g.stop()
        with contextlib.suppress(Exception):
            self.broker.stop()
        with contextlib.suppress(psycopg.Error), psycopg.connect(self.db_url, autocommit=True,
                                                                 connect_timeout=5) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def run_scale(db_url: str, gateways: int, *, messages: int, rate: float, communities_n: int = 6,
              log: Log = print) -> dict[str, Any]:
    """One run with ``gateways`` processes; its result row.

    The gateways are paused (SIGSTOP) while the load is published, so the broker holds it as a backlog
    in the communities' sessions; the clock runs from their SIGCONT to the last message stored. The
    lease is long enough (60 s) that the pause costs no lease."""
    with tempfile.TemporaryDirectory(prefix="gridtwin-bench-scale-") as tmp_s:
        rig = ScaleRig(db_url, Path(tmp_s), gateways=gateways, communities_n=communities_n, lease_s=60.0)
        stream: _Stream | None = None
        try:
            rig.start()
            msgs, gas = build_load(rig.comms, rig.root, messages, rate, time.time())
            for g in rig.gateways.values():
                assert g.proc is not None
                g.proc.send_signal(signal.SIGSTOP)
            t_pub0 = time.monotonic()
            stream = rig.publish(msgs, rate)
            published = stream.finish(120)
            t_pub = time.monotonic() - t_pub0
            t0 = time.monotonic()
            for g in rig.gateways.values():
                assert g.proc is not None
                g.proc.send_signal(signal.SIGCONT)
            done = rig.settle(len(msgs), gas, timeout_s=120)
            seconds = done - t0
            row: dict[str, Any] = {"gateways": gateways, "communities": communities_n,
                                   "msgs_per_s": round(len(msgs) / seconds) if seconds > 0 else 0,
                                   "publish_s": round(t_pub, 2), "seconds": round(seconds, 2)}
            row |= rig.counts(msgs, gas)
            row["split"] = dict(Counter(rig.holders().values()))
            if not published:
                row["error"] = stream.error or "publisher: not every message acknowledged by the broker"
        finally:
            if stream is not None:
                stream.close()
            rig.close()
    log(f"  {gateways} gateway(s): " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "gateways"))
    return row


def bench_scale(db_url: str, *, gateways: Sequence[int] = (1, 2, 3), messages: int = 60_000,
                rate: float = 20_000.0, log: Log = print) -> list[dict[str, Any]]:
    """The same load on 1, 2, 3 (``gateways``) cluster gateways: throughput, lost, duplicated."""
    return [run_scale(db_url, n, messages=messages, rate=rate, log=log) for n in gateways]


def table(rows: Sequence[dict[str, Any]]) -> str:
    head = "| gateways | communities split | msgs/s | sent | lost | duplicated | no-data alarms | tickets |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        split = " / ".join(str(v) for _k, v in sorted(r.get("split", {}).items()))
        lines.append(f"| {r['gateways']} | {split} | {r['msgs_per_s']:,} | {r['sent']:,} | {r['lost']} | "
                     f"{r['duplicated']} | {r['nodata_alarms']} | {r['tickets']} of {r['tickets_expected']} |")
    return "\n".join(lines)
