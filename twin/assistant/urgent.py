"""Life safety first: which answers of the knowledge assistant are about an emergency, and which report category a
handoff about one becomes (so it gets that category's SLA clock and SOP, not the general 24 h of a question). Pure.

The rule decides from the matched entries; words only confirm, or catch what the assistant is unsure of:

1. the answer is confident: its best entry decides (an urgent entry: that kind; any other entry: not urgent, even
   if the question holds an alarm word: "燃气费怎么交" is a confident utilities answer);
2. not confident: the first kind (in match order) whose entries are both the best and the runner-up (the FAQ entry
   and its case agree: "有人被困在电梯里"), or one of the top matches while the question holds one of the kind's
   words ("厨房有煤气味");
3. not confident and no entry of a kind in the matches: a kind whose word the question holds ("老人走失了": no
   entry is about it yet). A word that is too common for this (漏水, 电梯) is not in the lists.

An emergency that is not urgent enough still wins over a general question: a handoff that is wrongly urgent costs
a grid worker an early visit, one that is wrongly general costs a life. :data:`KINDS` is checked against the
knowledge base and the report categories by the tests (every entry exists, residents see at least one of each
kind, every category exists and residents may file it). The workers' SOPs are in the table too: a staff handoff
(``audience="all"``) often matches the SOP first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from twin.assistant.engine import Answer


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of emergency: the report category a handoff becomes, whom to call first (contact roles,
    :mod:`twin.contacts`, in order), the entries about it and the words that confirm it."""

    id: str
    category: str
    calls: tuple[str, ...]
    entries: frozenset[str]
    words: tuple[str, ...]

    def said(self, question: str) -> bool:
        q = question.lower()
        return any(w in q for w in self.words)


KINDS: tuple[Kind, ...] = (
    Kind("gas", "gas_smell", ("gas_company", "fire_brigade"),
         frozenset({"faq_safety_gas_smell", "case_gas_hose_inspection", "faq_safety_water_heater_co",
                    "sop_gas_leak", "sop_co_alarm", "case_gas_hose"}),
         ("燃气味", "煤气味", "天然气味", "液化气味", "漏气", "燃气泄漏", "煤气泄漏", "一氧化碳中毒", "煤气中毒",
          "一氧化碳报警",
          "smell gas", "smell of gas", "gas smell", "gas leak", "smells of gas")),
    Kind("fire", "fire_smoke", ("fire_brigade", "fire_control_room", "property"),
         frozenset({"faq_safety_fire_escape", "faq_safety_oil_pan_fire", "faq_safety_smoke_alarm",
                    "case_ebike_charging_fire", "case_smoke_alarm_cooking", "sop_fire_confirmed",
                    "sop_fire_prealarm"}),
         ("着火", "起火", "失火", "火灾", "冒烟", "浓烟", "烧起来", "on fire", "smell smoke", "smell of smoke",
          "smoke coming", "full of smoke")),
    Kind("lift", "elevator_fault", ("elevator_rescue", "fire_brigade", "property"),
         frozenset({"faq_safety_elevator_trapped", "case_elevator_entrapment_rescue", "faq_safety_elevator_fault",
                    "sop_elevator_entrapment"}),
         ("困在电梯", "电梯困人", "关在电梯", "被困", "卡在电梯", "trapped", "stuck in the lift",
          "stuck in the elevator", "stuck in a lift", "stuck in an elevator")),
    Kind("person", "resident_in_need", ("ambulance", "police", "property"),
         frozenset({"case_elderly_fall_inactivity", "sop_care_inactivity", "worker_care_inactivity",
                    "faq_safety_missing_person"}),
         ("摔倒", "跌倒", "晕倒", "昏倒", "昏迷", "不省人事", "叫不醒", "没反应", "没有反应", "没动静", "没有动静",
          "走失", "失联",
          "fell down", "has fallen", "unconscious", "unresponsive", "not responding", "went missing",
          "is missing")),
    Kind("water", "water_leak", ("property",),
         frozenset({"case_pipe_burst_night", "faq_utilities_indoor_leak", "sop_water_leak"}),
         ("水管爆", "爆管", "水漫", "淹了", "水淹", "flooding", "flooded", "burst pipe", "pipe burst")),
    Kind("height", "falling_objects", ("police", "ambulance", "property"),
         frozenset({"faq_neighbourhood_high_throw", "case_high_throw_investigation"}),
         ("高空抛物", "高空坠物", "楼上扔", "往下扔", "砸到", "thrown from", "falling object", "objects thrown")),
)
BY_ID = {k.id: k for k in KINDS}
_OF_ENTRY = {e: k for k in KINDS for e in k.entries}


def kind_of_entry(entry_id: str | None) -> Kind | None:
    """The emergency kind an entry is about, None for any other entry."""
    return _OF_ENTRY.get(entry_id) if entry_id else None


def urgent_kind(question: str, entries: Sequence[str], confident: bool) -> Kind | None:
    """The emergency the question is about (see the module's rule), from the matched entry ids (best first)."""
    if confident and entries:
        return kind_of_entry(entries[0])
    kinds = [kind_of_entry(e) for e in entries[:3]]
    if len(kinds) >= 2 and kinds[0] is not None and kinds[0] is kinds[1]:
        return kinds[0]
    for k in kinds:
        if k is not None and k.said(question):
            return k
    return next((k for k in KINDS if k.said(question)), None)


def urgent(answer: Answer) -> Kind | None:
    """:func:`urgent_kind` of an answer of the assistant."""
    return urgent_kind(answer.question, [m.document.id for m in answer.matches], answer.confident)
