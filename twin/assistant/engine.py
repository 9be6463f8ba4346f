"""The knowledge assistant's retrieval: BM25 over the fields of each document, and a confidence decision."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import bm25s
import numpy as np

from twin.assistant.text import tokens
from twin.knowledge import Document, KnowledgeBase

MAX_QUESTION_CHARS = 500
Audience = Literal["resident", "worker", "all"]
AUDIENCES: tuple[str, ...] = ("resident", "worker", "all")

# Field weights: a term found in the title or in one of the ways people ask the question counts more than one
# found in the body. Chosen on the question sets in benchmarks/qa_questions/ (see docs/assistant.md).
FIELD_WEIGHTS: dict[str, float] = {"title": 3.0, "questions": 2.0, "keywords": 2.0, "body": 1.0}

# The confidence decision (see docs/assistant.md for how these were measured on benchmarks/qa_questions/):
# confident only if the best document holds at least MIN_COVERAGE of the question's terms (weighted by how rare
# each term is; a word the knowledge base never uses counts as missing) and its BM25 score is at least
# MIN_MARGIN (a fraction) above the runner-up's.
MIN_COVERAGE = 0.5
MIN_MARGIN = 0.1


@dataclass(frozen=True)
class Match:
    document: Document
    score: float  # 0..1, relative confidence
    quote: str  # the text to show: the answer, or the document's steps joined

    def quote_for(self, lang: str) -> str:
        return _quote(self.document, lang)


@dataclass(frozen=True)
class Answer:
    question: str
    confident: bool
    matches: tuple[Match, ...]  # best first

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    def as_dict(self, lang: str = "zh") -> dict[str, Any]:
        """JSON-ready; titles and quotes in ``lang`` (``en``: English where the document has it)."""
        return {
            "question": self.question,
            "confident": self.confident,
            "matches": [{
                "id": m.document.id,
                "type": m.document.type,
                "title": m.document.title if lang == "en" else m.document.title_zh,
                "quote": m.quote_for(lang),
                "source": m.document.source,
                "score": round(m.score, 3),
                "handoff": m.document.handoff,
            } for m in self.matches],
        }


def _quote(d: Document, lang: str) -> str:
    if d.answer.strip():
        return (d.answer_en if lang == "en" and d.answer_en.strip() else d.answer).strip()
    return "\n".join(d.steps_for(lang))


def _fields(d: Document) -> dict[str, str]:
    return {
        "title": f"{d.title_zh} {d.title}",
        "questions": "\n".join(d.questions),
        "keywords": " ".join((*d.keywords, *d.rules, *d.categories)),
        "body": "\n".join((d.answer, *d.steps, d.notes, d.answer_en, *d.steps_en)),
    }


@dataclass
class _Index:
    documents: list[Document]
    fields: dict[str, bm25s.BM25]  # a field no document has is left out
    term_docs: dict[str, set[int]] = field(default_factory=dict)  # term -> documents holding it (any field)
    audience_mask: dict[str, np.ndarray] = field(default_factory=dict)


class Assistant:
    """Answers a question from the knowledge base: the best documents, and whether the best is a sure answer."""

    def __init__(self, index: _Index) -> None:
        self._index = index

    @classmethod
    def build(cls, kb: KnowledgeBase) -> Assistant:
        docs = sorted(kb.documents.values(), key=lambda d: d.id)
        per_field: dict[str, list[list[str]]] = {name: [] for name in FIELD_WEIGHTS}
        term_docs: dict[str, set[int]] = {}
        for i, d in enumerate(docs):
            for name, text in _fields(d).items():
                ts = tokens(text)
                per_field[name].append(ts)
                for t in ts:
                    term_docs.setdefault(t, set()).add(i)
        indices: dict[str, bm25s.BM25] = {}
        for name, corpus in per_field.items():
            if not any(corpus):
                continue
            bm = bm25s.BM25()
            bm.index(corpus, show_progress=False)
            indices[name] = bm
        resident = np.array([d.audience in ("resident", "all") for d in docs], dtype=bool)
        masks = {"resident": resident, "worker": np.ones(len(docs), dtype=bool), "all": np.ones(len(docs), dtype=bool)}
        return cls(_Index(docs, indices, term_docs, masks))

    def __len__(self) -> int:
        return len(self._index.documents)

    def ask(self, question: str, *, audience: Audience = "all", limit: int = 3) -> Answer:
        """The best ``limit`` documents for the question, for ``audience`` (resident: only entries for residents
        or everyone; worker or all: everything), and whether the best one is a confident answer."""
        if not isinstance(question, str):
            raise ValueError("question: text expected")
        q = question.strip()
        if not q:
            raise ValueError("question: empty; ask something, e.g. 低保怎么申请")
        if len(q) > MAX_QUESTION_CHARS:
            raise ValueError(f"question: {len(q)} characters, at most {MAX_QUESTION_CHARS}")
        if audience not in AUDIENCES:
            raise ValueError(f"audience: {audience!r}, one of {', '.join(AUDIENCES)}")
        if limit < 1:
            raise ValueError(f"limit: {limit}, at least 1")
        ix = self._index
        n = len(ix.documents)
        terms = list(dict.fromkeys(tokens(q)))
        if not terms or n == 0:
            return Answer(q, False, ())
        raw = np.zeros(n, dtype=np.float64)
        for name, bm in ix.fields.items():
            raw += FIELD_WEIGHTS[name] * bm.get_scores(terms)
        raw[~ix.audience_mask[audience]] = 0.0
        order = [int(i) for i in np.argsort(-raw, kind="stable") if raw[i] > 0][:max(limit, 2)]
        if not order:
            return Answer(q, False, ())
        idf = {t: math.log(1 + (n - len(ix.term_docs.get(t, ())) + 0.5) / (len(ix.term_docs.get(t, ())) + 0.5))
               for t in terms}
        total = sum(idf.values())

        def coverage(i: int) -> float:
            return sum(w for t, w in idf.items() if i in ix.term_docs.get(t, ())) / total

        top = raw[order[0]]
        cover = coverage(order[0])
        second = raw[order[1]] if len(order) > 1 else 0.0
        margin = (top - second) / top
        confident = bool(cover >= MIN_COVERAGE and margin >= MIN_MARGIN)
        matches = tuple(Match(ix.documents[i], float(cover * raw[i] / top), _quote(ix.documents[i], "zh"))
                        for i in order[:limit])
        return Answer(q, confident, matches)
