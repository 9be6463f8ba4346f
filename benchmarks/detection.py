"""Benchmark: how long after a scenario's onset each alarm comes. Pure CPU (an offline replay on simulated time).

``python -m benchmarks.detection [SCENARIO] [ONSET] [RULES...]`` replays the shipped scenario (default
``hydrant-pressure-loss``) on the bundled sample community through the rules engine, exactly as
``tests/e2e/test_scenarios_e2e.py`` checks the gateway does, and prints as JSON, for every rule that raised, the
first raise after ``ONSET`` (a duration such as ``30m``: when the scenario's fault begins; default 0) in seconds
and on which subjects. RULES are rule files in place of the shipped defaults (e.g. an earlier version, to measure
before and after a change); a path that is a scenario YAML file works for SCENARIO too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from simulators.engine import plan_messages
from simulators.scenario import compile_plan, parse_duration
from twin import community as community_mod
from twin.alarms import EventKind
from twin.rules import DEFAULTS_FILE, Engine, load_rules, replay

SAMPLE = Path(__file__).resolve().parent.parent / "twin" / "sample_community.yaml"
ROOT = "gt"
START = 1_764_547_200.0  # 2025-12-01T00:00Z, a Monday 08:00 in China Standard Time


def detection(scenario: str, onset_s: float, rule_files: list[Path]) -> dict[str, Any]:
    """First raise of each rule after ``onset_s`` (seconds from the scenario's start)."""
    community = community_mod.parse(SAMPLE.read_text(encoding="utf-8"))
    rules = load_rules([(str(p), p.read_text(encoding="utf-8")) for p in rule_files], community)
    plan = compile_plan(scenario, community)
    messages = [(m.t, m.topic, m.payload) for m in plan_messages(plan, community, ROOT, start=START, seed=1)]
    first: dict[str, dict[str, Any]] = {}
    for e in replay(Engine(rules, community), messages, root=ROOT, until=START + plan.duration):
        if e.kind is not EventKind.RAISED:
            continue
        after = e.at.timestamp() - START - onset_s
        hit = first.setdefault(e.rule, {"first_s": after, "subjects": []})
        if e.subject not in hit["subjects"]:
            hit["subjects"].append(e.subject)
        if after >= 0 and (hit["first_s"] < 0 or after < hit["first_s"]):
            hit["first_s"] = after
    return {"scenario": plan.name, "onset_s": onset_s, "rules": [str(p) for p in rule_files],
            "messages": len(messages), "first_raise_after_onset_s": dict(sorted(first.items(),
                                                                                key=lambda kv: kv[1]["first_s"]))}


def main(argv: list[str]) -> int:
    scenario = argv[0] if argv else "hydrant-pressure-loss"
    onset = parse_duration(argv[1]) if len(argv) > 1 else 0.0
    files = [Path(a) for a in argv[2:]] or [DEFAULTS_FILE]
    print(json.dumps(detection(scenario, onset, files), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
