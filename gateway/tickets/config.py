"""The ticket service's policy from the settings and the data files: SLA targets per class and per
life-safety rule, and the incident policy (the shipped one with the site's files merged over it). Reads files."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import yaml

from gateway.settings import LifeSafetyTarget, Settings, TicketSettings
from twin import tickets as tk
from twin.tickets import Priority


def sla_policy(s: TicketSettings, incidents: tk.IncidentPolicy | None = None) -> tk.SlaPolicy:
    """SLA targets per class from the settings, and per life-safety rule from the incident policy (its data file,
    each target beside its source) with the settings' ``tickets.life_safety`` entries replacing a rule's."""
    h = 3600.0
    targets = {
        Priority.URGENT: tk.Target(s.urgent_respond_h * h, s.urgent_resolve_h * h, source="settings tickets.urgent_*"),
        Priority.GENERAL: tk.Target(s.general_respond_h * h, s.general_resolve_h * h,
                                    source="settings tickets.general_*"),
        Priority.COMPLEX: tk.Target(s.complex_respond_h * h, None, s.complex_progress_h * h,
                                    source="settings tickets.complex_*"),
    }
    life = dict(incidents.targets()) if incidents is not None else {}
    life.update({rule: _life_safety(rule, t).target() for rule, t in s.life_safety.items()})
    return tk.SlaPolicy(targets, life, s.warn_fraction)


def _life_safety(rule: str, t: LifeSafetyTarget) -> tk.LifeSafety:
    def minutes(v: float | None) -> float | None:
        return None if v is None else v * 60

    return tk.LifeSafety(rule=rule, respond=t.respond_min * 60, arrive=minutes(t.arrive_min),
                         release=minutes(t.release_min), resolve=minutes(t.resolve_min),
                         source=t.source or "settings tickets.life_safety")


def incident_policy(settings: Settings) -> tk.IncidentPolicy:
    """The shipped incident policy (``twin/incidents_defaults.yaml``) with the site's files
    (``tickets.incident_files``) merged over it, checked against the rule ids of the rule files in force; the
    settings' ``tickets.life_safety`` entries replace a rule's targets. Raises :class:`tk.IncidentPolicyError`."""
    texts = []
    for path in [tk.INCIDENTS_FILE, *settings.tickets.incident_files]:
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except OSError as exc:
            raise tk.IncidentPolicyError([f"{path}: cannot read it ({exc.strerror})"]) from None
    policy = _parsed_policy(tuple(texts), _rule_ids(tuple(settings.rules.files)))
    life = dict(policy.life_safety)
    life.update({rule: _life_safety(rule, t) for rule, t in settings.tickets.life_safety.items()})
    return replace(policy, life_safety=life, default_within=settings.tickets.correlate_min * 60)


@functools.lru_cache(maxsize=8)
def _parsed_policy(texts: tuple[tuple[str, str], ...], known: frozenset[str] | None) -> tk.IncidentPolicy:
    return tk.load_incident_policy(texts, known_rules=known)


def _rule_ids(files: tuple[Path, ...]) -> frozenset[str] | None:
    """Every rule id of the shipped rules and the site's rule files (disabled ones too); None if one cannot be
    read (the rules engine reports that file itself)."""
    from twin.rules import DEFAULTS_FILE

    ids: set[str] = set()
    for path in (DEFAULTS_FILE, *files):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            return None
        rules = data.get("rules") if isinstance(data, dict) else None
        ids.update(r["id"] for r in rules or () if isinstance(r, dict) and isinstance(r.get("id"), str))
    return frozenset(ids)
