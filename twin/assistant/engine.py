"""The knowledge assistant's retrieval: BM25 over the fields of each document, and a confidence decision."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import bm25s
import numpy as np

from twin.assistant.text import bigrams, characters, tokens
from twin.knowledge import Document, KnowledgeBase

MAX_QUESTION_CHARS = 500
Audience = Literal["resident", "worker", "all"]
AUDIENCES: tuple[str, ...] = ("resident", "worker", "all")

# Field weights: a term found in the title or in one of the ways people ask the question counts more than one
# found in the body. Chosen on the question sets in benchmarks/qa_questions/ (see docs/assistant.md).
FIELD_WEIGHTS: dict[str, float] = {"head": 2.0, "body": 1.0, "head:bi": 1.0}

# BM25's term-frequency saturation and length normalisation (bm25s defaults).
BM25_K1 = 1.5
BM25_B = 0.75

# The confidence decision (see docs/assistant.md for how these were measured on benchmarks/qa_questions/):
# confident only if the best document holds at least MIN_COVERAGE of the question's terms (weighted by how rare
# each term is; a word the knowledge base never uses counts as missing) and its BM25 score is at least
# MIN_MARGIN (a fraction) above the runner-up's.
MIN_COVERAGE = 0.5
MIN_MARGIN = 0.1


@dataclass(frozen=True)
class Tuning:
    """The knobs of retrieval and of the confidence decision (defaults: the constants above)."""

    field_weights: dict[str, float] = field(default_factory=lambda: dict(FIELD_WEIGHTS))
    min_coverage: float = MIN_COVERAGE
    min_margin: float = MIN_MARGIN
    k1: float = BM25_K1
    b: float = BM25_B
    method: str = "lucene"  # bm25s's BM25 variant


@dataclass(frozen=True)
class Signals:
    """What the confidence decision looks at, for the best document (for tuning and for explaining)."""

    coverage: float  # share of the question's terms (idf-weighted) the best document holds
    margin: float  # (best - runner-up) / best, BM25 scores
    terms: tuple[str, ...]  # the question's search terms
    coverage_bigrams: float = 0.0  # the same for the question's character bigrams


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
    title = f"{d.title_zh} {d.title}"
    keywords = " ".join((*d.keywords, *d.rules, *d.categories))
    return {
        "title": title,
        "questions": "\n".join(d.questions),
        "keywords": keywords,
        "body": "\n".join((d.answer, *d.steps, d.notes, d.answer_en, *d.steps_en)),
        "head": "\n".join((title, *d.questions, keywords)),
    }


def _terms(field_name: str, text: str) -> list[str]:
    """A field's terms: words, or character bigrams for a ``name:bi`` field, characters for ``name:uni``."""
    if field_name.endswith(":bi"):
        return bigrams(text)
    return characters(text) if field_name.endswith(":uni") else tokens(text)


@dataclass
class _Index:
    documents: list[Document]
    fields: dict[str, bm25s.BM25]  # a field no document has is left out
    term_docs: dict[str, set[int]] = field(default_factory=dict)  # term -> documents holding it (any field)
    audience_mask: dict[str, np.ndarray] = field(default_factory=dict)


class Assistant:
    """Answers a question from the knowledge base: the best documents, and whether the best is a sure answer."""

    def __init__(self, index: _Index, tuning: Tuning) -> None:
        self._index = index
        self.tuning = tuning

    @classmethod
    def build(cls, kb: KnowledgeBase, tuning: Tuning | None = None) -> Assistant:
        """Index the knowledge base's documents (in memory; about 0.1 s for 160 documents)."""
        tuning = tuning or Tuning()
        docs = sorted(kb.documents.values(), key=lambda d: d.id)
        per_field: dict[str, list[list[str]]] = {name: [] for name in tuning.field_weights}
        term_docs: dict[str, set[int]] = {}  # word or bigram -> documents holding it (any field)
        for i, d in enumerate(docs):
            texts = _fields(d)
            for name, corpus in per_field.items():
                ts = _terms(name, texts[name.split(":")[0]])
                corpus.append(ts)
                for t in ts:
                    term_docs.setdefault(t, set()).add(i)
        indices: dict[str, bm25s.BM25] = {}
        for name, corpus in per_field.items():
            if not any(corpus):
                continue
            bm = bm25s.BM25(k1=tuning.k1, b=tuning.b, method=tuning.method)
            bm.index(corpus, show_progress=False)
            indices[name] = bm
        resident = np.array([d.audience in ("resident", "all") for d in docs], dtype=bool)
        masks = {"resident": resident, "worker": np.ones(len(docs), dtype=bool), "all": np.ones(len(docs), dtype=bool)}
        return cls(_Index(docs, indices, term_docs, masks), tuning)

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
        ranked, signals = self.rank(q, audience)
        if not ranked or signals is None:
            return Answer(q, False, ())
        t = self.tuning
        confident = signals.coverage >= t.min_coverage and signals.margin >= t.min_margin
        top = ranked[0][1]
        docs = self._index.documents
        return Answer(q, confident, tuple(Match(docs[i], signals.coverage * raw / top, _quote(docs[i], "zh"))
                                          for i, raw in ranked[:limit]))

    def rank(self, question: str, audience: Audience = "all") -> tuple[list[tuple[int, float]], Signals | None]:
        """Documents (index, BM25 score) with a score above 0, best first, and the best one's signals."""
        ix = self._index
        n = len(ix.documents)
        terms = list(dict.fromkeys(tokens(question)))
        grams = list(dict.fromkeys(bigrams(question)))
        chars = list(dict.fromkeys(characters(question)))
        if not (terms or grams) or n == 0:
            return [], None
        raw = np.zeros(n, dtype=np.float64)
        for name, bm in ix.fields.items():
            q = grams if name.endswith(":bi") else chars if name.endswith(":uni") else terms
            if q:
                raw += self.tuning.field_weights[name] * bm.get_scores(q)
        raw[~ix.audience_mask[audience]] = 0.0
        ranked = [(int(i), float(raw[i])) for i in np.argsort(-raw, kind="stable") if raw[i] > 0]
        if not ranked:
            return [], None
        best, top = ranked[0]

        def coverage(ts: list[str]) -> float:
            df = {t: len(ix.term_docs.get(t, ())) for t in ts}
            idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in ts}
            total = sum(idf.values())
            return sum(w for t, w in idf.items() if best in ix.term_docs.get(t, ())) / total if total else 0.0

        second = ranked[1][1] if len(ranked) > 1 else 0.0
        return ranked, Signals(coverage(terms), (top - second) / top, tuple(terms), coverage(grams))
        return ranked, Signals(coverage, (top - second) / top, tuple(terms))
