"""Benchmark: the cost of the rules engine (:class:`twin.rules.Engine`) per reading and per tick. Pure CPU.

``python -m benchmarks.rules [RULES] [MESSAGES]`` prints the result as JSON: ``n_rules`` synthetic rules
(thresholds, durations, rates over every numeric field of every kind) on a sample-sized community (1,217
devices), readings of every field of a random device inside (and now and then just outside) its normal range.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from twin import catalogue
from twin.community import Community
from twin.generate import generate
from twin.rules import DurationRule, Engine, RateRule, ThresholdRule, load_rules

FIELD_RULES = (ThresholdRule, DurationRule, RateRule)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def synthetic_rules(n: int) -> list[dict[str, Any]]:
    """``n`` synthetic rules spread over every numeric field of every kind: thresholds, durations, rates."""
    fields = [(k.kind, f) for k in catalogue.KINDS.values() for f in k.fields if f.type is not catalogue.FieldType.BOOL]
    rules: list[dict[str, Any]] = []
    for i in range(n):
        kind, f = fields[i % len(fields)]
        lo, hi = f.normal or (f.valid[0] if math.isfinite(f.valid[0]) else 0.0,
                              f.valid[1] if math.isfinite(f.valid[1]) else 100.0)
        span = hi - lo or 1.0
        base = {"id": f"bench_{i}", "kind": kind, "field": f.name, "severity": "minor", "dispatch": "none"}
        variant = (i // len(fields)) % 4
        if variant == 0:
            rules.append({**base, "type": "threshold", "direction": "high", "raise": hi, "clear": hi - span * 0.05})
        elif variant == 1:
            rules.append({**base, "type": "threshold", "direction": "low", "raise": lo, "clear": lo + span * 0.05,
                          "for": "30s"})
        elif variant == 2:
            rules.append({**base, "type": "duration", "above": hi - span * 0.1, "for": "2m"})
        else:
            rules.append({**base, "type": "rate", "direction": "rising", "raise": span / 2, "window": "2m"})
    return rules


def bench_rules(n_rules: int = 200, messages: int = 100_000, *, seed: int = 1) -> dict[str, float]:
    """Cost of :meth:`Engine.on_reading` with ``n_rules`` rules on the sample-sized community (1,217 devices),
    readings of every field of a random device inside (and now and then just outside) its normal range."""
    community = Community.model_validate(generate(12, seed=7))
    ruleset = load_rules([("bench", orjson.dumps({"version": 1, "rules": synthetic_rules(n_rules)}).decode())],
                         community)
    engine = Engine(ruleset, community)
    rng = random.Random(seed)
    devs = [d for d in community.devices if catalogue.KINDS[d.kind].fields]
    fields_with_rules = {kind: [r.field for r in ruleset.for_kind(kind) if isinstance(r, FIELD_RULES)]
                         for kind in catalogue.KINDS}  # the bench rules filter no building or device
    start = 1_750_000_000.0
    batch: list[tuple[str, datetime, dict[str, bool | int | float]]] = []
    applicable = 0
    for i in range(messages):
        d = devs[rng.randrange(len(devs))]
        values: dict[str, bool | int | float] = {}
        for f in catalogue.KINDS[d.kind].fields:
            if f.type is catalogue.FieldType.BOOL:
                values[f.name] = rng.random() < 0.5
            else:
                lo, hi = f.normal or (0.0, 100.0)
                values[f.name] = lo + (hi - lo) * rng.uniform(-0.02, 1.02)
        applicable += sum(f in values for f in fields_with_rules[d.kind])
        batch.append((d.id, _utc(start + i * 0.01), values))
    events = 0
    t0 = time.perf_counter()
    for dev_id, ts, values in batch:
        events += len(engine.on_reading(dev_id, ts, values))
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    ticks = 100
    for k in range(ticks):
        engine.tick(_utc(start + messages * 0.01 + k))
    tick_elapsed = time.perf_counter() - t1
    return {"rules": float(len(ruleset)), "messages": float(messages), "us_per_message": elapsed / messages * 1e6,
            "rules_per_message": applicable / messages, "alarm_events": float(events),
            "us_per_tick": tick_elapsed / ticks * 1e6}


if __name__ == "__main__":
    n_rules = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n_messages = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    print(json.dumps(bench_rules(n_rules, n_messages), indent=2))
