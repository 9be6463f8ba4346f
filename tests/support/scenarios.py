"""Test helpers: a scenario replayed offline (as `gridtwin rules test` does) into alarm events and the incidents
the dispatcher makes of them, by the shipped rules and incident policy on the bundled sample community."""

from __future__ import annotations

from datetime import datetime

from gateway.cli_base import sample_community_path
from gateway.cli_rules import RULES_TEST_START
from simulators.engine import plan_messages
from simulators.scenario import Plan
from twin import community as community_mod
from twin import tickets as tk
from twin.alarms import AlarmEvent
from twin.rules import DEFAULTS_FILE, Engine, load_rules, replay

SAMPLE = community_mod.parse(sample_community_path().read_text(encoding="utf-8"))
RULES = load_rules([(str(DEFAULTS_FILE), DEFAULTS_FILE.read_text(encoding="utf-8"))], SAMPLE)
KNOWN_RULES = frozenset({r.id for r in RULES.rules} | set(RULES.disabled))
POLICY = tk.load_incident_policy([(str(tk.INCIDENTS_FILE), tk.INCIDENTS_FILE.read_text(encoding="utf-8"))],
                                 known_rules=KNOWN_RULES)
NAMES = {r.id: (r.name or r.id).split(" / ")[0].strip() for r in RULES.rules}
# the start the scenarios' expectations are stated for: `gridtwin rules test`'s default, a local midnight
REFERENCE_START = datetime.fromisoformat(RULES_TEST_START).timestamp()
DAY = 86400.0
UTC_OFFSET_S = 8 * 3600.0  # the sample community's local time (China Standard Time)


def local_midnight_before(t: float) -> float:
    """The latest local midnight at or before epoch ``t``: a recent start with the reference's time of day."""
    return (t + UTC_OFFSET_S) // DAY * DAY - UTC_OFFSET_S


def messages(plan: Plan, start: float, *, root: str = "gridtwin", seed: int = 1) -> list[tuple[float, str, bytes]]:
    return [(m.t, m.topic, m.payload) for m in plan_messages(plan, SAMPLE, root, start=start, seed=seed)]


def offline_events(msgs: list[tuple[float, str, bytes]], *, until: float, root: str = "gridtwin") -> list[AlarmEvent]:
    """The alarm events of ``msgs`` replayed through the pure engine, ticking up to ``until`` (epoch s)."""
    return list(replay(Engine(RULES, SAMPLE), msgs, root=root, until=until))


def offline_incidents(events: list[AlarmEvent]) -> list[tk.Incident]:
    return tk.incidents_of(SAMPLE, events, POLICY, names=NAMES)
