"""Loading rule files: merge them by rule id, validate shapes and then everything pydantic cannot see (the
catalogue's kinds, fields, units, events and ranges, thresholds that cannot work, references between rules,
the community's buildings and devices), naming ``file:line: rules.<id>.<key>`` for every problem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from twin import catalogue, hydraulics
from twin.community import Community
from twin.datafiles import KeyPath, Locator, load_envelope, validation_message
from twin.rules.schema import (
    CARE_LEVELS,
    RULE_MODELS,
    SIGNALLING_RULES,
    CareInactivityRule,
    CorrelationRule,
    CountRule,
    DeviceRuleBase,
    DoseRule,
    DropFromNormalRule,
    DurationRule,
    FieldRuleBase,
    InterlockRule,
    Period,
    PumpCyclingRule,
    RateRule,
    Rule,
    RulesError,
    RuleSet,
    RulesFile,
    StateRule,
    ThresholdRule,
)

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "rules_defaults.yaml"



class ItemPosition(NamedTuple):
    """Where a rule item is: the index of its file in the texts given, and its index in that file's rules."""

    file: int
    item: int


def load_rules(texts: Sequence[tuple[str, str]], community: Community | None = None) -> RuleSet:
    """Merge rule files (earlier first, later override by id) and validate them against the catalogue and
    ``community`` (filters; skipped when None). Raises :class:`RulesError` listing every problem."""
    problems: list[str] = []
    locator = Locator(texts)
    at = locator.at
    sources = [source for source, _text in texts]

    merged: dict[str, dict[str, Any]] = {}
    origin: dict[str, dict[str, ItemPosition]] = {}  # rule id -> key -> the item that set it
    home: dict[str, ItemPosition] = {}  # rule id -> the last item that mentioned it
    for file in range(len(texts)):
        envelope = load_envelope(RulesFile, locator, file, problems,
                                 shape="a rules file is a mapping with version: 1 and rules: [...]")
        if envelope is None:
            continue
        seen: set[str] = set()
        for index, item in enumerate(envelope.rules):
            rid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item, dict):
                problems.append(f"{at(file, ('rules', index))}: rules.{index}: a rule is a mapping with id, type, ...")
                continue
            if not isinstance(rid, str):
                problems.append(f"{at(file, ('rules', index))}: rules.{index}.id: every rule needs an id")
                continue
            if rid in seen:
                problems.append(f"{at(file, ('rules', index, 'id'))}: rules.{rid}.id: duplicate id in this file "
                                f"(override a rule from another file instead)")
                continue
            seen.add(rid)
            here = ItemPosition(file, index)
            prev = merged.get(rid)
            if prev is None or ("type" in item and item["type"] != prev.get("type")):
                merged[rid] = dict(item)
                origin[rid] = dict.fromkeys(item, here)
            else:
                prev.update(item)
                origin[rid].update(dict.fromkeys(item, here))
            home[rid] = here

    def rule_problem(rid: str, loc: KeyPath, message: str) -> str:
        """``file:line: rules.<id>.<key>: message``, at the item that set the key (else the rule's last item)."""
        key = loc[0] if loc and isinstance(loc[0], str) and loc[0] in origin[rid] else None
        pos = origin[rid][key] if key is not None else home[rid]
        where = at(pos.file, ("rules", pos.item, *loc) if key is not None else ("rules", pos.item))
        return f"{where}: rules.{rid}{''.join(f'.{p}' for p in loc)}: {message}"

    rules: dict[str, Rule] = {}
    for rid, data in merged.items():
        tag = data.get("type")
        model = RULE_MODELS.get(tag) if isinstance(tag, str) else None
        if model is None:
            problems.append(rule_problem(rid, ("type",) if "type" in data else (),
                                         f"type must be one of {', '.join(RULE_MODELS)}"
                                         + ("" if "type" in data else " (missing)")))
            continue
        try:
            rules[rid] = model.model_validate(data)  # type: ignore[assignment]
        except ValidationError as exc:
            found = [rule_problem(rid, tuple(p for p in e["loc"] if p not in _TYPE_TAGS), validation_message(e))
                     for e in exc.errors()]
            problems += list(dict.fromkeys(found))
    for rid, rule in rules.items():
        problems += [rule_problem(rid, loc, msg) for loc, msg in _rule_problems(rule, rules, community)]
    if problems:
        raise RulesError(sorted(problems, key=lambda p: _problem_order(p, texts)))
    enabled = tuple(r for r in rules.values() if r.enabled)
    return RuleSet(enabled, tuple(r.id for r in rules.values() if not r.enabled), tuple(sources))


def _problem_order(problem: str, texts: Sequence[tuple[str, str]]) -> tuple[int, int]:
    """Sort key: file order, then line."""
    for i, (source, _text) in enumerate(texts):
        if problem.startswith(source + ":"):
            line = problem[len(source) + 1:].split(":", 1)[0]
            return i, int(line) if line.isdigit() else 0
    return len(texts), 0


# pydantic puts these type tags in an error's loc (the last one names schema._as_list): not keys of the file
_TYPE_TAGS = {"bool", "float", "int", "str", "function-before[_as_list(), tuple[str, ...]]"}


def _kinds(rule: DeviceRuleBase, out: list[tuple[KeyPath, str]]) -> list[catalogue.DeviceKind]:
    found = []
    for i, k in enumerate(rule.kind):
        spec = catalogue.kind(k)
        if spec is None:
            out.append((("kind", i) if len(rule.kind) > 1 else ("kind",),
                        f"unknown device kind {k!r}; known: {', '.join(sorted(catalogue.KINDS))}"))
        else:
            found.append(spec)
    return found


def _event_problem(spec: catalogue.DeviceKind, code: str, *, latching: bool | None = None) -> str | None:
    ev = spec.event(code)
    if ev is None:
        return f"{spec.kind} has no event {code!r} (events: {', '.join(e.code for e in spec.events) or 'none'})"
    if latching is True and not ev.latching:
        return f"{code} is a one-off event of {spec.kind} (no cleared state): use type count"
    return None


def _field_problems(rule: FieldRuleBase, specs: list[catalogue.DeviceKind],
                    out: list[tuple[KeyPath, str]]) -> list[catalogue.TelemetryField]:
    fields = []
    for spec in specs:
        f = spec.field(rule.field)
        if f is None:
            known = ", ".join(x.name for x in spec.fields) or "none"
            out.append((("field",), f"{spec.kind} has no field {rule.field!r} (fields: {known})"))
            continue
        fields.append(f)
        allowed = (f.unit, f"{f.unit}/min") if isinstance(rule, RateRule) else (f.unit,)
        if rule.unit is not None and rule.unit not in allowed:
            out.append((("unit",), f"unit {rule.unit!r} does not match the catalogue unit of {spec.kind}."
                                   f"{f.name}: {f.unit or '(none)'!r}"))
        numeric = f.type is not catalogue.FieldType.BOOL
        if isinstance(rule, ThresholdRule | RateRule | DoseRule) and not numeric:
            out.append((("field",), f"{spec.kind}.{f.name} is true/false: use type duration with equals"))
    return fields


def _in_range(f: catalogue.TelemetryField, name: str, v: float, out: list[tuple[KeyPath, str]],
              where: KeyPath = ()) -> None:
    lo, hi = f.valid
    if not lo <= v <= hi:
        out.append(((*where, name), f"{v:g} is outside the valid range of {f.name} ({lo:g}..{hi:g} {f.unit}".rstrip()
                    + "): it can never be reached"))


def _condition_problems(cond: DurationRule | Period, f: catalogue.TelemetryField, where: KeyPath,
                        out: list[tuple[KeyPath, str]]) -> str | None:
    """Problems of a duration condition (exactly one of equals, above, below, fitting the field); its key."""
    given = [k for k in ("equals", "above", "below") if getattr(cond, k) is not None]
    boolean = f.type is catalogue.FieldType.BOOL
    if len(given) != 1:
        out.append((where, "give exactly one of equals, above, below"))
        return None
    key = given[0]
    if boolean and key != "equals":
        out.append(((*where, key), f"{f.name} is true/false: use equals: true or false"))
    elif key == "equals" and boolean != isinstance(cond.equals, bool):
        want = "true or false" if boolean else "a number"
        out.append(((*where, "equals"),
                    f"{f.name} is {'true/false' if boolean else 'a number'}: equals must be {want}"))
    else:
        v = getattr(cond, key)
        if not isinstance(v, bool):
            _in_range(f, key, float(v), out, where)
    return key


def _rule_problems(rule: Rule, rules: Mapping[str, Rule], community: Community | None) -> list[tuple[KeyPath, str]]:
    """What pydantic cannot see: the catalogue, thresholds that cannot work, references, the community."""
    out: list[tuple[KeyPath, str]] = []
    if rule.escalate is not None and rule.escalate.max.rank <= rule.severity.rank:
        out.append((("escalate", "max"), f"{rule.escalate.max.value} is not above severity "
                                         f"{rule.severity.value}: escalation would never change anything"))
    if community is not None:
        for i, b in enumerate(rule.buildings or ()):
            if community.building(b) is None:
                out.append((("buildings", i), f"unknown building {b!r} in community {community.id}"))
    specs: list[catalogue.DeviceKind] = []
    if isinstance(rule, DeviceRuleBase):
        specs = _kinds(rule, out)
        if community is not None:
            for i, d in enumerate(rule.devices or ()):
                dev = community.device(d)
                if dev is None:
                    out.append((("devices", i), f"unknown device {d!r} in community {community.id}"))
                elif dev.kind not in rule.kind:
                    out.append((("devices", i), f"{d} is a {dev.kind}, not a {' or '.join(rule.kind)}"))
    if isinstance(rule, FieldRuleBase):
        for f in _field_problems(rule, specs, out):
            if isinstance(rule, ThresholdRule) and f.type is not catalogue.FieldType.BOOL:
                high = rule.direction == "high"
                if (rule.clear > rule.raise_) if high else (rule.clear < rule.raise_):
                    out.append((("clear",), f"clear {rule.clear:g} is {'above' if high else 'below'} raise "
                                            f"{rule.raise_:g}: a {rule.direction} alarm clears "
                                            f"{'below' if high else 'above'} where it raises"))
                _in_range(f, "raise", rule.raise_, out)
                _in_range(f, "clear", rule.clear, out)
            elif isinstance(rule, DurationRule):
                given = _condition_problems(rule, f, (), out)
                for j, period in enumerate(rule.periods or ()):
                    where: KeyPath = ("periods", j)
                    if period.between[0] == period.between[1]:
                        out.append(((*where, "between"), "a window needs two different times"))
                    own = _condition_problems(period, f, where, out)
                    if given and own and own != given:
                        out.append(((*where, own), f"the rule's condition is {given}: a period changes its "
                                                   f"limit, so give {given} here too"))
            elif isinstance(rule, DoseRule) and f.type is not catalogue.FieldType.BOOL:
                _in_range(f, "baseline", rule.baseline, out)
                if rule.hold is not None and rule.hold <= 0:
                    out.append((("hold",), "must be a duration > 0"))
                if rule.clear >= rule.dose:
                    out.append((("clear",), f"clear {rule.clear:g} is not below dose {rule.dose:g}: the alarm "
                                            f"would clear as soon as it raises"))
            elif isinstance(rule, RateRule):
                if rule.clear is not None and rule.clear > rule.raise_:
                    out.append((("clear",), f"clear {rule.clear:g}/min is above raise {rule.raise_:g}/min"))
                if rule.min_span is not None and not 0 < rule.min_span <= rule.window:
                    out.append((("min_span",), "must be > 0 and not longer than window"))
    if isinstance(rule, CountRule):
        for spec in specs:
            msg = _event_problem(spec, rule.event)
            if msg:
                out.append((("event",), msg))
    if isinstance(rule, StateRule):
        for spec in specs:
            for i, code in enumerate(rule.event):
                msg = _event_problem(spec, code, latching=True)
                if msg:
                    out.append((("event", i) if len(rule.event) > 1 else ("event",), msg))
    if isinstance(rule, DeviceRuleBase):
        for i, code in enumerate(rule.suppressed_by or ()):
            for spec in specs:
                msg = _event_problem(spec, code, latching=True)
                if msg:
                    out.append((("suppressed_by", i), msg))
    if isinstance(rule, CorrelationRule):
        kinds: set[str] = set()
        for j, sig in enumerate(rule.signals):
            by_rule, by_event = sig.rule is not None, sig.kind is not None or sig.event is not None
            if by_rule == by_event or (by_event and (sig.kind is None or sig.event is None)):
                out.append((("signals", j), "a signal is either {kind, event} or {rule}"))
                continue
            if sig.rule is not None:
                ref = rules.get(sig.rule)
                if ref is None or not isinstance(ref, SIGNALLING_RULES):
                    out.append((("signals", j, "rule"), f"{sig.rule!r} is not a device rule of this rule set"
                                if ref is None else f"{sig.rule!r} is a {ref.type} rule: only device rules signal"))
                elif not ref.enabled:
                    out.append((("signals", j, "rule"), f"rule {sig.rule!r} is disabled"))
                else:
                    kinds.update(ref.kind)
                continue
            assert sig.kind is not None and sig.event is not None
            sig_spec = catalogue.kind(sig.kind)
            if sig_spec is None:
                out.append((("signals", j, "kind"), f"unknown device kind {sig.kind!r}"))
                continue
            kinds.add(sig_spec.kind)
            msg = _event_problem(sig_spec, sig.event, latching=True)
            if msg:
                out.append((("signals", j, "event"), msg))
        for i, code in enumerate(rule.suppressed_by or ()):
            if not any((s := catalogue.kind(k)) is not None and s.event(code) for k in kinds):
                out.append((("suppressed_by", i), f"no signal kind has an event {code!r}"))
    if isinstance(rule, InterlockRule):
        for i, rid in enumerate(rule.when):
            ref = rules.get(rid)
            on_at: KeyPath = ("when", i) if len(rule.when) > 1 else ("when",)
            if ref is None or not isinstance(ref, SIGNALLING_RULES):
                out.append((on_at, f"{rid!r} is not a device rule of this rule set" if ref is None
                            else f"{rid!r} is a {ref.type} rule: only device rules drive interlocks"))
            elif not ref.enabled:
                out.append((on_at, f"rule {rid!r} is disabled"))
        for j, cmd in enumerate(rule.commands):
            cmd_spec = catalogue.kind(cmd.kind)
            if cmd_spec is None:
                out.append((("commands", j, "kind"), f"unknown device kind {cmd.kind!r}"))
            elif not cmd_spec.commands:
                out.append((("commands", j, "kind"), f"a {cmd.kind} takes no commands (kinds that do: "
                            f"{', '.join(k.kind for k in catalogue.KINDS.values() if k.commands)})"))
            elif cmd_spec.command(cmd.command) is None:
                out.append((("commands", j, "command"), f"{cmd.kind} has no command {cmd.command!r} (commands: "
                            f"{', '.join(c.name for c in cmd_spec.commands)})"))
    if isinstance(rule, CareInactivityRule):
        if isinstance(rule.after, dict):
            missing = [lv for lv in CARE_LEVELS if lv not in rule.after]
            if missing:
                out.append((("after",), f"give a duration for every care level ({', '.join(CARE_LEVELS)}); "
                                        f"missing: {', '.join(missing)}"))
            out += [(("after", lv), "must be a duration > 0") for lv, v in rule.after.items() if v <= 0]
        elif rule.after <= 0:
            out.append((("after",), "must be a duration > 0"))
        for j, act in enumerate(rule.activity):
            act_spec = catalogue.kind(act.kind)
            if act_spec is None:
                out.append((("activity", j, "kind"), f"unknown device kind {act.kind!r}"))
            elif (act.field is None) == (act.event is None):
                out.append((("activity", j), "give exactly one of field, event"))
            elif act.field is not None and act_spec.field(act.field) is None:
                out.append((("activity", j, "field"), f"{act_spec.kind} has no field {act.field!r} (fields: "
                                                      f"{', '.join(f.name for f in act_spec.fields) or 'none'})"))
            elif act.event is not None and (msg := _event_problem(act_spec, act.event)):
                out.append((("activity", j, "event"), msg))
    out += _fire_water_problems(rule, specs, community)
    return out


def _fire_water_problems(rule: Rule, specs: list[catalogue.DeviceKind],
                         community: Community | None) -> list[tuple[KeyPath, str]]:
    """Thresholds at a riser's most unfavourable point, drops from a learned normal, pump cycling."""
    out: list[tuple[KeyPath, str]] = []
    if isinstance(rule, ThresholdRule) and rule.at == "most_unfavourable_point":
        for spec in specs:
            f = spec.field(rule.field)
            if f is not None and f.unit != "MPa":
                out.append((("at",), f"most_unfavourable_point needs a pipe pressure in MPa; {spec.kind}.{f.name} "
                                     f"is in {f.unit or '(no unit)'!r}"))
        if community is not None:
            lost = [d.id for d in community.devices if d.kind in rule.kind
                    and (rule.buildings is None or d.building in rule.buildings)
                    and (rule.devices is None or d.id in rule.devices)
                    and hydraulics.head_below_top(community, d) is None]
            if lost:
                out.append((("at",), f"{', '.join(lost[:3])}{f' and {len(lost) - 3} more' if len(lost) > 3 else ''} "
                                     f"{'has' if len(lost) == 1 else 'have'} no building and floor: the height below "
                                     f"the riser top is unknown (give them one, or list the rule's devices)"))
    elif isinstance(rule, DropFromNormalRule):
        if rule.drop is None and rule.drop_pct is None:
            out.append(((), "give drop (field units), drop_pct (%) or both"))
        for spec in specs:
            f = spec.field(rule.field)
            if f is None:
                continue
            if f.type is catalogue.FieldType.BOOL:
                out.append((("field",), f"{spec.kind}.{f.name} is true/false: a drop needs a number"))
            elif rule.drop is not None and rule.drop >= f.valid[1] - f.valid[0]:
                out.append((("drop",), f"{rule.drop:g} is more than the whole valid range of {f.name} "
                                       f"({f.valid[0]:g}..{f.valid[1]:g} {f.unit}): it can never be reached"))
        if rule.warmup > rule.learn:
            out.append((("warmup",), "is longer than learn: the warm-up could never be met inside the window"))
    elif isinstance(rule, PumpCyclingRule):
        if (rule.event is None) == (rule.field is None):
            out.append(((), "give exactly one of event (the pump's start event) or field (its running state, or a "
                            "pressure it holds, with rise)"))
            return out
        for spec in specs:
            if rule.event is not None:
                msg = _event_problem(spec, rule.event)
                if msg:
                    out.append((("event",), msg))
                continue
            f = spec.field(rule.field or "")
            if f is None:
                out.append((("field",), f"{spec.kind} has no field {rule.field!r} (fields: "
                                        f"{', '.join(x.name for x in spec.fields) or 'none'})"))
            elif f.type is catalogue.FieldType.BOOL and rule.rise is not None:
                out.append((("rise",), f"{f.name} is true/false: a start is its turning true, without rise"))
            elif f.type is not catalogue.FieldType.BOOL and rule.rise is None:
                out.append((("rise",), f"required for {spec.kind}.{f.name}: how far it must rise above its low to "
                                       f"count as a start"))
            elif rule.rise is not None and rule.rise >= f.valid[1] - f.valid[0]:
                out.append((("rise",), f"{rule.rise:g} is more than the whole valid range of {f.name}: it can never "
                                       f"be reached"))
    return out
