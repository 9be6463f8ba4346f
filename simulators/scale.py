"""Scale runs: N devices publishing telemetry at R msg/s over one multiplexed connection. Does I/O.

Built for throughput: each device gets a handful of payload templates, encoded once from its
behaviour model (``b'{"v":1,"ts":%d,"seq":%d,"values":{...}}'``), so the hot loop only formats two
integers and calls ``publish``: no pydantic and no JSON encoding per message. Packets are written
in batches (:class:`~simulators.wire.BatchPublisher`, one ``sendall`` per ~64 KiB). Pacing works in
small batches against the monotonic clock; the achieved rate counts until every message was written
(QoS 0) or acknowledged by the broker (QoS 1).

Devices are the community's own (when a community is given and its id matches) and then synthetic
ones, ``SIM-000001``..., which the gateway knows only if they are registered:
:func:`synthetic_community` builds a community holding exactly the devices a run uses.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from simulators import behaviour
from simulators.wire import BatchPublisher
from twin import catalogue, contract
from twin.community import Building, Community, Device

TEMPLATES_PER_DEVICE = 8


class Writer(Protocol):
    def write(self, data: bytes, /) -> Any: ...
    def flush(self) -> Any: ...


SYNTHETIC_KINDS = [k for k, v in catalogue.KINDS.items()
                   if any(f.type is not catalogue.FieldType.BOOL for f in v.fields) and k != "elevator"]


def synthetic_id(i: int) -> str:
    return f"SIM-{i:06d}"


def scale_devices(n: int, community: Community | None = None) -> list[Device]:
    """The first ``n`` devices of a run: the community's devices with readings, then synthetic ones."""
    real = [d for d in (community.devices if community else []) if catalogue.KINDS[d.kind].fields][:n]
    extra = [Device(id=synthetic_id(i + 1), kind=SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)])
             for i in range(n - len(real))]
    return real + extra


def synthetic_community(n: int, community_id: str = "scale", *, base: Community | None = None) -> Community:
    """A community with the ``n`` devices :func:`run_scale` uses, so a benchmark can register them."""
    devices = scale_devices(n, base)
    buildings = list(base.buildings) if base else [Building(id="B1", name="synthetic",
                                                            footprint=[(0, 0), (30, 0), (30, 14), (0, 14)],
                                                            floors_above=18)]
    data: dict[str, Any] = {
        "version": 1, "id": community_id, "name": f"synthetic {n}", "origin": base.origin if base else (30.27, 120.16),
        "buildings": [b.model_dump() for b in buildings],
        "grids": [g.model_dump() for g in base.grids] if base else [],
        "elevators": [e.model_dump() for e in base.elevators] if base else [],
        "devices": [d.model_dump(exclude_none=True) for d in devices],
    }
    return Community.model_validate(data)


def templates(devices: list[Device], *, root: str, community_id: str, seed: int = 1,
              community: Community | None = None, start: float | None = None) -> list[tuple[str, list[bytes]]]:
    """(topic, payload templates with ``%d`` for ts and seq) per device, values from behaviour models."""
    start = time.time() if start is None else start
    out = []
    for d in devices:
        model = behaviour.model_for(d, seed=seed, community=community, origin=start)
        topic = contract.topic(root, community_id, d.id, contract.Channel.TELEMETRY)
        tmpl = []
        for k in range(TEMPLATES_PER_DEVICE):
            values = orjson.dumps(model.values(start + k * 397.0)).replace(b"%", b"%%")
            tmpl.append(b'{"v":1,"ts":%d,"seq":%d,"values":' + values + b"}")
        out.append((topic, tmpl))
    return out


def pump(publish: Callable[[str, bytes], Any], plan: list[tuple[str, list[bytes]]], *, rate: float | None,
         duration_s: float | None, count: int | None, stop: threading.Event | None = None,
         batch: int = 500, service: Callable[[float], Any] = time.sleep) -> tuple[int, float]:
    """Publish round-robin over ``plan`` at ``rate`` msg/s (None: flat out). Returns (sent, seconds).

    ``service(seconds)`` runs after every batch (with 0) and while waiting for the next one: the
    connection sends what it buffered and reads acknowledgements there.
    """
    n_dev = len(plan)
    topics = [t for t, _ in plan]
    tmpls = [tm for _, tm in plan]
    seqs = [0] * n_dev
    sent = 0
    idx = itertools.cycle(range(n_dev))
    t0 = time.perf_counter()
    end = t0 + duration_s if duration_s else None
    limit = count if count is not None else (None if duration_s else n_dev)
    while True:
        now = time.perf_counter()
        if (end is not None and now >= end) or (limit is not None and sent >= limit) or (stop and stop.is_set()):
            break
        if rate:
            due = int((now - t0) * rate) + 1 - sent
            if due <= 0:
                service(min(0.002, (sent + 1) / rate - (now - t0)))
                continue
            k = min(due, batch)
        else:
            k = batch
        if limit is not None:
            k = min(k, limit - sent)
        ts = int(time.time() * 1000)
        for _ in range(k):
            j = next(idx)
            s = seqs[j] = seqs[j] + 1
            tm = tmpls[j]
            publish(topics[j], tm[s % len(tm)] % (ts, s))
        sent += k
        service(0)
    return sent, time.perf_counter() - t0


def run_scale(url: str, root: str, community_id: str, devices: int, rate: float | None, duration_s: float | None,
              qos: int, mqtt5: bool = True, *, community: Community | None = None, count: int | None = None,
              stop: threading.Event | None = None, seed: int = 1, out: Writer | None = None) -> dict[str, Any]:
    """Publish ``devices`` devices at ``rate`` msg/s for ``duration_s`` over one connection; report the rate.

    Returns ``{"sent", "seconds", "rate", "target_rate", "devices", "qos"}`` where ``seconds`` runs until
    the last message was written (QoS 0) or acknowledged (QoS 1). ``out``: write JSON lines there instead
    of publishing (``url`` is then ignored).
    """
    base = community if community is not None and community.id == community_id else None
    devs = scale_devices(devices, base)
    plan = templates(devs, root=root, community_id=community_id, seed=seed, community=base)
    if out is not None:
        def write(topic: str, payload: bytes, _t: bytes = b'{"topic":') -> None:
            out.write(_t + orjson.dumps(topic) + b',"payload":' + payload + b"}\n")

        sent, secs = pump(write, plan, rate=rate, duration_s=duration_s, count=count, stop=stop)
        out.flush()
        return _report(sent, secs, rate, devices, qos)
    conn = BatchPublisher(url, client_id=f"{root}-scale-{int(time.time() * 1000) % 10**9}", qos=qos, mqtt5=mqtt5)
    try:
        t0 = time.perf_counter()
        sent, _ = pump(conn.publish, plan, rate=rate, duration_s=duration_s, count=count, stop=stop,
                       service=conn.poll)
        complete = conn.flush(60)
        secs = time.perf_counter() - t0
    finally:
        conn.close()
    report = _report(sent, secs, rate, devices, qos)
    report["unacknowledged"] = 0 if complete else conn.sent - conn.acked
    report["refused"] = conn.refused
    return report


def _report(sent: int, secs: float, rate: float | None, devices: int, qos: int) -> dict[str, Any]:
    return {"sent": sent, "seconds": round(secs, 3), "rate": round(sent / secs, 1) if secs > 0 else 0.0,
            "target_rate": rate, "devices": devices, "qos": qos}


def main() -> None:  # pragma: no cover - a convenience for ad-hoc benchmarks
    """``python -m simulators.scale URL DEVICES RATE SECONDS QOS``"""
    url, devices, rate, secs, qos = sys.argv[1:6]
    r = float(rate)
    print(run_scale(url, "gridtwin-bench", "scale", int(devices), r or None, float(secs), int(qos)))


if __name__ == "__main__":  # pragma: no cover
    main()
