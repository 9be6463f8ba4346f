"""The knowledge base: SOP checklists, policies and cases, searchable by keyword. Pure: parses text.

Documents are YAML files under ``twin/sop/`` (SOPs, policies, cases: one document per file) and
``twin/knowledge_base/`` (FAQ entries for residents and workers: a file holds ``entries:``, a list of
documents); the caller reads them, :data:`KNOWLEDGE_DIRS` says where::

    id: sop_gas_leak            # unique, [a-z0-9_]
    type: sop                   # sop | policy | case
    title: Combustible gas leak
    title_zh: 燃气泄漏报警处置
    rules: [gas_level1, gas_level2]   # alarm rules this SOP is the checklist for
    categories: [gas]                 # ticket categories it is the fallback for
    keywords: [燃气, 泄漏, gas]
    steps: [...]                      # the checklist, in order
    calls: [gas_company, resident]    # optional: whom to call (contact roles, twin/contacts.py), in order
    notes: ...                        # optional background
    source: ...                       # where the numbers and the procedure come from

An FAQ entry (``type: faq``) answers one question instead of listing steps::

    id: faq_dibao_conditions
    type: faq
    audience: resident                # resident | worker | all: who asks it
    title: Who can get the minimum living allowance
    title_zh: 低保申请条件
    questions: [低保怎么申请, 什么条件能吃低保]   # how people ask it: paraphrases the search matches too
    keywords: [低保, 最低生活保障]
    answer: 家庭人均收入低于当地低保标准……   # Chinese, quoted by the assistant
    answer_en: ...                    # optional English
    handoff: social_assistance        # optional: what a person should help with when the answer is not enough
    source: 《社会救助暂行办法》（国务院令第649号）第九条

Search works without a word segmenter: a query is cut into Latin words and, for Chinese, into the
whole run plus its character bigrams ("电梯困人" -> 电梯困人, 电梯, 梯困, 困人), and each term scores
by the field it appears in (title > keywords > rules/id > steps/notes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twin.contacts import CallRole

SOP_DIR = Path(__file__).resolve().parent / "sop"
ENTRIES_DIR = Path(__file__).resolve().parent / "knowledge_base"
KNOWLEDGE_DIRS = (SOP_DIR, ENTRIES_DIR)
DocType = Literal["sop", "policy", "case", "faq"]
Audience = Literal["resident", "worker", "all"]


class KnowledgeError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    type: DocType
    audience: Audience = "worker"
    title: str = Field(min_length=1, max_length=200)
    title_zh: str = Field(min_length=1, max_length=200)
    rules: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    steps: tuple[str, ...] = ()  # the checklist (required for an SOP)
    steps_en: tuple[str, ...] = ()  # the steps in English, one for each (none: shown in Chinese)
    calls: tuple[CallRole, ...] = ()  # whom to call, by contact role (twin/contacts.py): the ticket's call buttons
    questions: tuple[str, ...] = ()  # how people ask it (FAQ entries): matched like keywords
    answer: str = Field(default="", max_length=2000)  # the answer in Chinese (required for an FAQ entry)
    answer_en: str = Field(default="", max_length=4000)
    handoff: str = Field(default="", max_length=64)  # what a person should help with beyond the answer
    notes: str = ""
    source: str = ""

    @model_validator(mode="after")
    def _steps_en_match(self) -> Document:
        if self.type == "sop" and not self.steps:
            raise ValueError("steps: an SOP needs at least one step")
        if self.type == "faq" and not self.answer.strip():
            raise ValueError("answer: an FAQ entry needs an answer")
        if not self.steps and not self.answer.strip():
            raise ValueError("steps or answer: a document needs one of them")
        if self.steps_en and len(self.steps_en) != len(self.steps):
            raise ValueError(f"steps_en: {len(self.steps_en)} steps, steps has {len(self.steps)}: one for each")
        return self

    def steps_for(self, lang: str) -> tuple[str, ...]:
        """The steps in ``lang`` (``en``: English where the document has it)."""
        return self.steps_en if lang == "en" and self.steps_en else self.steps

    @property
    def lead(self) -> str:
        """The first thing to show: the first step, else the answer's first line."""
        return self.steps[0] if self.steps else self.answer.strip().splitlines()[0]

    def summary(self) -> dict[str, object]:
        return {"id": self.id, "type": self.type, "title": self.title, "title_zh": self.title_zh}

    def as_dict(self) -> dict[str, object]:
        return self.model_dump()


@dataclass(frozen=True, slots=True)
class Hit:
    document: Document
    score: float
    snippet: str


_WORD = re.compile(r"[a-z0-9%.]+|[\u3400-\u9fff\uf900-\ufaff]+")
_TYPE_ORDER = {"sop": 0, "policy": 1, "faq": 2, "case": 3}
_WEIGHTS = (("title", 6.0), ("keywords", 4.0), ("ids", 3.0), ("steps", 1.0), ("notes", 1.0))


class _Ranked(NamedTuple):
    """A search candidate: the share of the query's terms it holds, its weighted score, and the line to show."""

    cover: float
    score: float
    document: Document
    snippet: str


def terms(query: str) -> list[str]:
    """Search terms of a query: Latin words, and each Chinese run with its character bigrams."""
    out: list[str] = []
    for run in _WORD.findall(query.lower()):
        if run.isascii():
            if len(run) >= 2 or run.isdigit():
                out.append(run.strip("."))
            continue
        out.append(run)
        if len(run) > 2:
            out += [run[i : i + 2] for i in range(len(run) - 1)]
    return list(dict.fromkeys(t for t in out if t))


class KnowledgeBase:
    """Documents by id; the SOP for an alarm rule or a ticket category; keyword search."""

    def __init__(self, documents: Iterable[Document]) -> None:
        self.documents: dict[str, Document] = {}
        problems = []
        for d in documents:
            if d.id in self.documents:
                problems.append(f"duplicate document id {d.id!r}")
            self.documents[d.id] = d
        if problems:
            raise KnowledgeError(problems)
        self._fields = {d.id: _fields(d) for d in self.documents.values()}

    @classmethod
    def parse(cls, texts: Sequence[tuple[str, str]]) -> KnowledgeBase:
        """Build from (source name, YAML text) pairs; every bad file and entry is reported.

        A file holds one document, or ``entries:`` with a list of them (reported as ``file: entries[3]``).
        """
        located, problems = _documents(texts)
        if problems:
            raise KnowledgeError(problems)
        return cls(d for _, d in located)

    @classmethod
    def layered(cls, shipped: Sequence[tuple[str, str]], local: Sequence[tuple[str, str]]) -> Layered:
        """The shipped documents with ``local`` ones over them: a local entry with a shipped id replaces it, a new
        id adds one. Every problem of both layers is reported (a local id given twice names both places)."""
        base, problems = _documents(shipped)
        over, local_problems = _documents(local)
        problems += local_problems
        docs: dict[str, Document] = {}
        for where, d in base:
            if d.id in docs:
                problems.append(f"{where}: id: duplicate document id {d.id!r}")
            docs[d.id] = d
        first: dict[str, str] = {}
        added: list[str] = []
        replaced: list[str] = []
        for where, d in over:
            if d.id in first:
                problems.append(f"{where}: id: {d.id!r} already given in {first[d.id]}")
                continue
            first[d.id] = where
            shipped_doc = docs.get(d.id)
            if shipped_doc is not None and shipped_doc.type != d.type:
                problems.append(f"{where}: type: {d.type!r} would replace the shipped {shipped_doc.type} {d.id!r}; "
                                "an override keeps the type")
                continue
            (replaced if shipped_doc is not None else added).append(d.id)
            docs[d.id] = d
        if problems:
            raise KnowledgeError(problems)
        return Layered(cls(docs.values()), tuple(added), tuple(replaced), len(over))

    def __len__(self) -> int:
        return len(self.documents)

    def get(self, doc_id: str) -> Document | None:
        return self.documents.get(doc_id)

    def sop_for(self, rule: str | None, category: str | None = None) -> Document | None:
        """The checklist for an alarm rule; else the one for the ticket category; else the general one."""
        sops = [d for d in self.documents.values() if d.type == "sop"]
        if rule:
            found = next((d for d in sops if rule in d.rules), None)
            if found:
                return found
        if category:
            found = next((d for d in sops if category in d.categories), None)
            if found:
                return found
        return next((d for d in sops if "other" in d.categories), None)

    def search(self, query: str, *, limit: int = 10, kind: DocType | None = None) -> list[Hit]:
        """Documents matching the query, best first. Ranking: share of the query's terms found, then score."""
        ts = terms(query)
        if not ts:
            return []
        ranked: list[_Ranked] = []
        for d in self.documents.values():
            if kind is not None and d.type != kind:
                continue
            fields = self._fields[d.id]
            score = 0.0
            found = 0
            best_term_length, best_line = 0, None  # the line showing the longest term found
            for t in ts:
                hit = False
                for name, weight in _WEIGHTS:
                    if t in fields[name]:
                        score += weight * (1.5 if len(t) > 2 else 1.0)
                        hit = True
                if hit:
                    found += 1
                    line = _best_line(d, t)
                    if line and (best_line is None or len(t) > best_term_length):
                        best_term_length, best_line = len(t), line
            if found:
                ranked.append(_Ranked(found / len(ts), score, d, best_line or d.lead))
        ranked.sort(key=lambda r: (-r.cover, -r.score, _TYPE_ORDER[r.document.type], r.document.id))
        return [Hit(r.document, round(r.cover * 10 + r.score / 10, 3), _clip(r.snippet)) for r in ranked[:limit]]


@dataclass(frozen=True, slots=True)
class Layered:
    """A knowledge base with local entries over the shipped ones: which ids they added and which they replaced."""

    kb: KnowledgeBase
    added: tuple[str, ...]
    replaced: tuple[str, ...]
    local: int  # local documents read


def _documents(texts: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, Document]], list[str]]:
    """(where, document) for every valid document of the (source name, YAML text) pairs, and every problem."""
    docs: list[tuple[str, Document]] = []
    problems: list[str] = []
    for source, text in texts:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problems.append(f"{source}: not valid YAML: {exc}")
            continue
        if isinstance(data, dict) and set(data) == {"entries"}:
            if not isinstance(data["entries"], list) or not data["entries"]:
                problems.append(f"{source}: entries: a non-empty list of documents")
                continue
            items = [(f"{source}: entries[{i}]", e) for i, e in enumerate(data["entries"])]
        else:
            items = [(source, data)]
        for where, item in items:
            try:
                docs.append((where, Document.model_validate(item)))
            except ValidationError as exc:
                problems += [f"{where}: {'.'.join(map(str, e['loc'])) or '(document)'}: {e['msg']}"
                             for e in exc.errors()]
    return docs, problems


def _fields(d: Document) -> dict[str, str]:
    return {
        "title": f"{d.title} {d.title_zh}".lower(),
        "keywords": " ".join((*d.keywords, *d.questions)).lower(),
        "ids": " ".join((d.id, *d.rules, *d.categories)).lower(),
        "steps": "\n".join(d.steps).lower(),
        "notes": f"{d.answer}\n{d.notes}".lower(),
    }


def _best_line(d: Document, term: str) -> str | None:
    for line in (*d.steps, *d.answer.splitlines(), *d.notes.splitlines()):
        if term in line.lower():
            return line
    return None


def _clip(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
