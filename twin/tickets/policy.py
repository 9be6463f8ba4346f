"""The incident policy as data: which alarms are one incident (groups), which are life-safety, and their response
targets (``twin/incidents_defaults.yaml``, :data:`INCIDENTS_FILE`; site files merged over it). Pure: parses text
given to it.

:func:`load_incident_policy` merges files (groups by ``id``, life-safety targets by ``rule``: a later file overrides
only the keys it gives; a group with a new id is tried before the earlier files' groups; ``enabled: false`` drops a
group) and validates them, raising :class:`IncidentPolicyError` with ``file:line: field: why`` for every problem,
so a bad site file never replaces the policy in force.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.datafiles import KeyPath, Locator, load_envelope, validation_message
from twin.rules.schema import Duration
from twin.tickets.sla import Target

INCIDENTS_FILE = Path(__file__).resolve().parent.parent / "incidents_defaults.yaml"
CATEGORIES = ("fire", "elevator", "gas", "water", "care", "environment", "other")
Scope = Literal["building", "floor", "unit", "device", "subject", "care_unit", "panel"]
SCOPES: tuple[str, ...] = ("building", "floor", "unit", "device", "subject", "care_unit", "panel")
TITLE_FIELDS = frozenset({"worst", "where", "place", "devices", "alarms", "name"})
DEFAULT_TITLE = "{worst} · {where}"


class IncidentPolicyError(ValueError):
    """Everything wrong with the incident policy files, one ``file:line: field: why`` per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("invalid incident policy:\n" + "\n".join(problems))
        self.problems = list(problems)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Storm(_Strict):
    """From ``devices`` devices (or subjects) on, the incident is one storm with its own title."""

    devices: int = Field(ge=2, le=100_000)
    title: str = Field(min_length=1, max_length=200)


class Group(_Strict):
    """Alarms that are one incident: the same group, the same place (``scope``), within ``within`` of each other."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    name: str = Field(min_length=1, max_length=120)  # "中文 / English"
    category: str | None = None  # the ticket's category; None: that of the incident's first alarm
    scope: Scope
    within: Duration = Field(gt=0)
    rules: tuple[str, ...] = ()  # most serious first: ties in severity go to the earlier rule
    categories: tuple[str, ...] = ()  # alarms of these categories (twin.tickets.category_of) not taken by rules
    title: str = Field(default=DEFAULT_TITLE, min_length=1, max_length=200)
    storm: Storm | None = None
    reason: str = Field(min_length=1)
    source: str = ""
    enabled: bool = True

    @property
    def name_zh(self) -> str:
        return self.name.split(" / ")[0].strip()

    def order(self, rule: str) -> int:
        """Where ``rule`` stands in the group's list (earlier is more serious); unlisted rules come last."""
        return self.rules.index(rule) if rule in self.rules else len(self.rules)


class LifeSafety(_Strict):
    """A life-safety alarm rule and its response targets (each beside its ``source``)."""

    rule: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    respond: Duration = Field(gt=0)
    arrive: Duration | None = Field(default=None, gt=0)
    release: Duration | None = Field(default=None, gt=0)
    resolve: Duration | None = Field(default=None, gt=0)
    source: str = Field(min_length=1)

    def target(self) -> Target:
        return Target(self.respond, self.resolve, source=self.source, arrive_s=self.arrive, release_s=self.release)


class _File(_Strict):
    version: Literal[1]
    description: str = ""
    reopen_within: Duration | None = Field(default=None, ge=0)
    reopen_reason: str = ""
    groups: list[Any] = []
    life_safety: list[Any] = []


@dataclass(frozen=True, slots=True)
class IncidentPolicy:
    """Groups (tried in order), life-safety targets by rule, and the reopen window (seconds)."""

    groups: tuple[Group, ...]
    life_safety: Mapping[str, LifeSafety]
    reopen_within: float
    sources: tuple[str, ...] = ()
    reopen_reason: str = ""
    default_within: float = 1800.0  # an alarm no group takes: an incident of its own subject, within this window

    def group_of(self, rule: str, category: str | None = None) -> Group | None:
        """The first group listing ``rule``; else the first taking its ``category``; None: no group (the alarm is
        an incident of its own subject)."""
        found = next((g for g in self.groups if rule in g.rules), None)
        if found is None and category is not None:
            found = next((g for g in self.groups if category in g.categories), None)
        return found

    def is_life_safety(self, rule: str | None) -> bool:
        return rule is not None and rule in self.life_safety

    def targets(self) -> dict[str, Target]:
        """Life-safety rule -> its SLA :class:`~twin.tickets.sla.Target` (for :class:`~twin.tickets.SlaPolicy`)."""
        return {rule: ls.target() for rule, ls in self.life_safety.items()}


def load_incident_policy(texts: Sequence[tuple[str, str]], *,
                         known_rules: Collection[str] | None = None) -> IncidentPolicy:
    """Merge policy files (the shipped defaults first) and validate them; ``known_rules``: the rule ids of the rule
    set in force (an unknown rule is a problem; None skips that check). Raises :class:`IncidentPolicyError`."""
    problems: list[str] = []
    locator = Locator(texts)
    at = locator.at

    sections: dict[str, dict[str, dict[str, Any]]] = {"groups": {}, "life_safety": {}}
    origin: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}  # (section, id) -> key -> (file, item)
    first_file: dict[str, int] = {}  # group id -> the file that introduced it
    group_rank: dict[str, tuple[int, int]] = {}  # group id -> (-file, item): later files' new groups first
    reopen: tuple[float, str] | None = None
    sources: list[str] = []
    for file, (source, _text) in enumerate(texts):
        sources.append(source)
        envelope = load_envelope(_File, locator, file, problems,
                                 shape="an incident policy file is a mapping with version: 1, groups, life_safety")
        if envelope is None:
            continue
        if envelope.reopen_within is not None:
            reopen = (envelope.reopen_within, envelope.reopen_reason or (reopen[1] if reopen else ""))
        for section, key in (("groups", "id"), ("life_safety", "rule")):
            seen: set[str] = set()
            for index, item in enumerate(getattr(envelope, section)):
                ident = item.get(key) if isinstance(item, dict) else None
                if not isinstance(ident, str):
                    problems.append(f"{at(file, (section, index))}: {section}.{index}.{key}: every entry needs a "
                                    f"{key} (a mapping with {key}: ...)")
                    continue
                if ident in seen:
                    problems.append(f"{at(file, (section, index, key))}: {section}.{ident}.{key}: duplicate in this "
                                    "file (override an entry of another file instead)")
                    continue
                seen.add(ident)
                merged = sections[section].setdefault(ident, {})
                merged.update(item)
                origin.setdefault((section, ident), {}).update(dict.fromkeys(item, (file, index)))
                origin[(section, ident)].setdefault("", (file, index))
                if section == "groups" and ident not in first_file:
                    first_file[ident] = file
                    group_rank[ident] = (-file, index)

    def where(section: str, ident: str, loc: KeyPath) -> str:
        keys = origin[(section, ident)]
        field = loc[0] if loc and isinstance(loc[0], str) and loc[0] in keys else ""
        file, item = keys[field]
        return f"{at(file, (section, item, *loc) if field else (section, item))}: {section}.{ident}" + \
            "".join(f".{p}" for p in loc)

    groups: list[Group] = []
    for gid in sorted(sections["groups"], key=lambda g: group_rank[g]):
        try:
            g = Group.model_validate(sections["groups"][gid])
        except ValidationError as exc:
            problems += list(dict.fromkeys(f"{where('groups', gid, tuple(e['loc']))}: {validation_message(e)}"
                                           for e in exc.errors()))
            continue
        problems += [f"{where('groups', gid, loc)}: {msg}" for loc, msg in _group_problems(g, known_rules)]
        if g.enabled:
            groups.append(g)
    taken: dict[str, str] = {}
    for g in groups:
        for i, rule in enumerate(g.rules):
            other = taken.get(rule)
            if other is not None and first_file[other] == first_file[g.id]:
                problems.append(f"{where('groups', g.id, ('rules', i))}: rule {rule} is already in group {other} "
                                "of the same file (an alarm belongs to the first group listing its rule)")
            taken.setdefault(rule, g.id)
    life: dict[str, LifeSafety] = {}
    for rule, data in sections["life_safety"].items():
        try:
            life[rule] = LifeSafety.model_validate(data)
        except ValidationError as exc:
            problems += list(dict.fromkeys(f"{where('life_safety', rule, tuple(e['loc']))}: {validation_message(e)}"
                                           for e in exc.errors()))
            continue
        if known_rules is not None and rule not in known_rules:
            problems.append(f"{where('life_safety', rule, ('rule',))}: unknown rule {rule!r} (not in the rule set)")
    if reopen is None and texts and not problems:
        problems.append(f"{texts[0][0]}:1: reopen_within: required (how recently resolved a ticket is reopened by "
                        "an alarm of its incident; 0s: never)")
    if problems:
        raise IncidentPolicyError(sorted(problems, key=lambda p: _problem_order(p, sources)))
    assert reopen is not None
    return IncidentPolicy(tuple(groups), life, reopen[0], tuple(sources), reopen[1])


def _problem_order(problem: str, sources: Sequence[str]) -> tuple[int, int]:
    """Sort key: file order, then line."""
    for i, source in enumerate(sources):
        if problem.startswith(source + ":"):
            line = problem[len(source) + 1:].split(":", 1)[0]
            return i, int(line) if line.isdigit() else 0
    return len(sources), 0


def _group_problems(g: Group, known_rules: Collection[str] | None) -> list[tuple[KeyPath, str]]:
    out: list[tuple[KeyPath, str]] = []
    if not g.rules and not g.categories:
        out.append(((), "give rules (the alarm rules it takes) or categories"))
    if g.category is not None and g.category not in CATEGORIES:
        out.append((("category",), f"{g.category!r} is not a ticket category ({', '.join(CATEGORIES)})"))
    for i, c in enumerate(g.categories):
        if c not in CATEGORIES:
            out.append((("categories", i), f"{c!r} is not a category ({', '.join(CATEGORIES)})"))
    for i, rule in enumerate(g.rules):
        if g.rules.index(rule) != i:
            out.append((("rules", i), f"rule {rule} is listed twice"))
        elif known_rules is not None and rule not in known_rules:
            out.append((("rules", i), f"unknown rule {rule!r} (not in the rule set)"))
    for loc, title in ((("title",), g.title), (("storm", "title"), g.storm.title if g.storm else None)):
        if title is None:
            continue
        try:
            names = {f for _lit, f, _spec, _conv in string.Formatter().parse(title) if f is not None}
        except ValueError as exc:
            out.append((loc, f"not a title template: {exc}"))
            continue
        unknown = sorted(n for n in names if n not in TITLE_FIELDS)
        if unknown:
            out.append((loc, f"unknown field {{{unknown[0]}}}; a title may use "
                             f"{', '.join('{' + f + '}' for f in sorted(TITLE_FIELDS))}"))
    return out


