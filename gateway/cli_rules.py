"""`gridtwin rules check|test`: validate rule files, replay a scenario offline through the rules engine and
print its alarm events and the incidents (tickets) they make. Pure computation over files; no services."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.cli_base import EXIT_UNMET, EXIT_USAGE, CliError, _load_community

RULES_TEST_START = "2025-06-02T00:00:00+08:00"  # a local midnight: `rules test` output is reproducible


def _load_rules(files: Sequence[Path], community: Any, *, defaults: bool = True) -> Any:
    """The shipped defaults (unless ``defaults`` is False) with ``files`` merged over them, validated."""
    from twin.rules import DEFAULTS_FILE, RulesError, load_rules

    texts = []
    for path in ([DEFAULTS_FILE] if defaults else []) + list(files):
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise CliError(f"cannot read rules file {path}: {exc.strerror}", EXIT_USAGE) from None
    if not texts:
        raise CliError("no rules: give a FILE or drop --no-defaults", EXIT_USAGE)
    try:
        return load_rules(texts, community)
    except RulesError as exc:
        n = len(exc.problems)
        raise CliError(f"invalid rules ({n} problem{'s' if n > 1 else ''}):\n" + "\n".join(exc.problems),
                       EXIT_USAGE) from None


def _scenario_messages(name: str, community: Any, *, root: str, start: float,
                       seed: int) -> tuple[Any, Any]:
    """Adapter for `rules test`: an iterator of a scenario's messages as (simulated epoch s, topic, payload bytes),
    time-ordered, and the scenario's plan (its length, roles and expectation)."""
    from simulators.engine import plan_messages
    from simulators.errors import SimulationError
    from simulators.scenario import compile_plan

    try:
        plan = compile_plan(name, community)
    except SimulationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return ((m.t, m.topic, m.payload) for m in plan_messages(plan, community, root, start=start, seed=seed)), plan


def cmd_rules_check(args: argparse.Namespace) -> int:
    community = _load_community(args.community)
    rs = _load_rules([args.file] if args.file else [], community, defaults=not args.no_defaults)
    what = "shipped defaults" + (f" + {args.file}" if args.file else "") if not args.no_defaults else str(args.file)
    off = f", {len(rs.disabled)} disabled" if rs.disabled else ""
    print(f"OK: {len(rs)} rules{off} ({what}) against community {community.id}")
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    """Replay a scenario offline: its alarm events, the incidents (tickets) they make, and whether those meet the
    scenario's ``expect:`` block. Text for people by default; ``--json-lines`` one JSON object per line, each with
    its ``type`` (alarm_event, incident, expect)."""
    import orjson

    from simulators.scenario import Observed, check_expect
    from twin.rules import Engine, replay

    community = _load_community(args.community)
    rs = _load_rules([args.file] if args.file else [], community, defaults=not args.no_defaults)
    start = _epoch_seconds(args.start or RULES_TEST_START)
    root = "gridtwin"
    messages, plan = _scenario_messages(args.scenario, community, root=root, start=start, seed=args.seed)
    engine = Engine(rs, community)
    rejected: list[str] = []
    events = list(replay(engine, messages, root=root, until=start + plan.duration, rejected=rejected))
    incidents = _incidents(community, rs, events, args.incident_file or [])
    raised = sum(ev.kind == "raised" for ev in events)
    shown = [] if args.incidents else [ev for ev in events if not args.raised_only or ev.kind == "raised"]
    problems = check_expect(plan, (Observed.of_incident(i) for i in incidents),
                            known_rules={r.id for r in rs.rules} | set(rs.disabled))
    expect = None if plan.expect is None else {"met": not problems, "incidents": len(plan.expect.incidents),
                                               "problems": problems}
    if args.json_lines:
        for ev in shown:
            print(orjson.dumps({"type": "alarm_event", **ev.to_json()}).decode())
        for inc in incidents:
            print(orjson.dumps({"type": "incident", **inc.as_dict()}).decode())
        if expect is not None:
            print(orjson.dumps({"type": "expect", **expect}).decode())
    else:
        print("\n".join(_rules_test_text(plan.name, start, shown, incidents, expect, alarms=not args.incidents)))
    print(f"scenario {plan.name}: {raised} alarms raised, {len(incidents)} incidents (tickets), {len(rs)} rules, "
          f"{len(rejected)} messages rejected by the contract; expect: "
          + ("none stated" if expect is None else "met" if not problems else f"{len(problems)} problems"),
          file=sys.stderr)
    if args.check and (expect is None or problems):
        if expect is None:
            print(f"scenario {plan.name} states no expect: block; nothing to check", file=sys.stderr)
        return EXIT_UNMET
    return 0


def _rules_test_text(name: str, start: float, events: Sequence[Any], incidents: Sequence[Any],
                     expect: dict[str, Any] | None, *, alarms: bool) -> list[str]:
    """`rules test` for people: alarm events and incidents at their time into the scenario (+h:mm:ss)."""

    def rel(at: Any) -> str:
        s = max(0, round(at.timestamp() - start))
        return f"+{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"

    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    out: list[str] = []
    if alarms:
        out.append(f"alarm events ({len(events)}):")
        out += [f"  {rel(e.at)}  {e.kind.value:<9} {e.severity.value:<8} {e.rule:<32} {e.subject:<14} {e.detail}"
                for e in events]
    out.append(f"incidents ({len(incidents)}, one ticket each):")
    for k, inc in enumerate(incidents, 1):
        out.append(f"  {k}. {inc.title}")
        out.append(f"     {inc.category}, {inc.priority.value}{', life-safety' if inc.life_safety else ''}; "
                   f"worst {inc.rule}; {n(len(inc.alarms), 'alarm')} on {n(len(inc.devices), 'device')}; "
                   f"opened {rel(inc.opened_at)}")
        for a in inc.alarms[:12]:
            cleared = f" (cleared {rel(a.cleared_at)})" if a.cleared_at else ""
            out.append(f"     {rel(a.first_at)}  {a.rule:<32} {a.subject}{cleared}")
        if len(inc.alarms) > 12:
            out.append(f"     ... {len(inc.alarms) - 12} more alarms")
    if expect is None:
        out.append(f"expect: scenario {name} states none")
    elif expect["met"]:
        out.append(f"expect: met ({n(expect['incidents'], 'incident')} as stated)")
    else:
        out.append(f"expect: NOT met ({n(len(expect['problems']), 'problem')}):")
        out += [f"  {p}" for p in expect["problems"]]
    return out


def _incidents(community: Any, rs: Any, events: Sequence[Any], files: Sequence[Path]) -> list[Any]:
    """The incidents (one ticket each) the dispatcher makes of ``events``, by the shipped incident policy with
    ``files`` merged over it (twin.tickets.incidents_of)."""
    from twin import tickets as tk

    texts = []
    for path in [tk.INCIDENTS_FILE, *files]:
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise CliError(f"cannot read incident policy file {path}: {exc.strerror}", EXIT_USAGE) from None
    known = {r.id for r in rs.rules} | set(rs.disabled)
    try:
        policy = tk.load_incident_policy(texts, known_rules=known)
    except tk.IncidentPolicyError as exc:
        n = len(exc.problems)
        raise CliError(f"invalid incident policy ({n} problem{'s' if n > 1 else ''}):\n" + "\n".join(exc.problems),
                       EXIT_USAGE) from None
    names = {r.id: (r.name or r.id).split(" / ")[0].strip() for r in rs.rules}
    return tk.incidents_of(community, events, policy, names=names)


def _epoch_seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass

    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--start {text!r} is neither epoch seconds nor ISO-8601", EXIT_USAGE) from None
    if dt.tzinfo is None:
        raise CliError(f"--start {text!r} needs a UTC offset, e.g. {RULES_TEST_START}", EXIT_USAGE)
    return dt.timestamp()


# -- tickets (issue 7): KPI report and API users -------------------------------------------------------
