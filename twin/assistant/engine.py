"""The knowledge assistant's retrieval: BM25 over the fields of each document, and a confidence decision."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import bm25s
import numpy as np

from twin.assistant.text import bigrams, tokens
from twin.knowledge import Document, KnowledgeBase

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG

MAX_QUESTION_CHARS = 500
Audience = Literal["resident", "worker", "all"]
AUDIENCES: tuple[str, ...] = ("resident", "worker", "all")

# Fields and their weights. "head" is what a document is about: its titles, the ways people ask it (questions),
# keywords, rules and categories, as words; "head:bi" is the same text as character bigrams, plus those bridging
# stop words (they match what jieba cuts differently); "body" is the answer, steps and notes. One head field beat
# separate title, questions and keywords fields (short fields make BM25's length statistics noisy), and bigrams on
# the head beat none: measured with `gridtwin bench qa` (docs/assistant.md). bm25s's default k1 = 1.5, b = 0.75
# did as well as any.
FIELD_WEIGHTS: dict[str, float] = {"head": 2.0, "body": 1.0, "head:bi": 1.0}
BM25_K1 = 1.5
BM25_B = 0.75

# The confidence decision. An answer is confident only if the best document's weighted BM25 score is at least
# MIN_SCORE (how much of the question it matches, and how rare those words are) and at least MIN_MARGIN (a
# fraction) above the runner-up's (one document stands out). Chosen with a grid over both on the question sets in
# benchmarks/qa_questions/ (183 questions, 172 documents; see docs/assistant.md): the fewest handoffs with
# confident-but-wrong answers at or under 3 % is at MIN_SCORE 18, right above a cluster of wrong answers scoring
# 16-18 (8 confident wrong at 16, 4 at 18); 20 keeps the same 4 of 183 (2.2 %) a step further from that edge,
# for 3 points more handoffs. BM25 scores grow with the corpus's vocabulary: re-measure (`gridtwin bench qa`)
# when the knowledge base grows a lot or the weights change.
MIN_SCORE = 20.0
MIN_MARGIN = 0.1


@dataclass(frozen=True)
class Tuning:
    """The knobs of retrieval and of the confidence decision (defaults: the constants above)."""

    field_weights: dict[str, float] = field(default_factory=lambda: dict(FIELD_WEIGHTS))
    min_score: float = MIN_SCORE
    min_margin: float = MIN_MARGIN
    k1: float = BM25_K1
    b: float = BM25_B


@dataclass(frozen=True)
class Signals:
    """What the confidence decision looks at (for tuning and for explaining an answer)."""

    top: float  # the best document's weighted BM25 score
    margin: float  # (best - runner-up) / best
    terms: tuple[str, ...]  # the question's search terms (words)


@dataclass(frozen=True)
class Match:
    document: Document
    score: float  # 0..1, relative confidence: raw / (raw + MIN_SCORE), so 0.5 at the confidence threshold
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
        "head": "\n".join((d.title_zh, d.title, *d.questions, *d.keywords, *d.rules, *d.categories)),
        "body": "\n".join((d.answer, *d.steps, d.notes, d.answer_en, *d.steps_en)),
    }


def _terms(field_name: str, text: str) -> list[str]:
    """A field's terms: words, or character bigrams for a ``name:bi`` field."""
    return bigrams(text) if field_name.endswith(":bi") else tokens(text)


@dataclass(frozen=True)
class _Index:
    documents: list[Document]
    fields: dict[str, bm25s.BM25]  # a field no document has is left out
    audience_mask: dict[str, np.ndarray]  # audience -> which documents it may see


class Assistant:
    """Answers a question from the knowledge base: the best documents, and whether the best is a sure answer."""

    def __init__(self, index: _Index, tuning: Tuning) -> None:
        self._index = index
        self.tuning = tuning

    @classmethod
    def build(cls, kb: KnowledgeBase, tuning: Tuning | None = None) -> Assistant:
        """Index the knowledge base's documents in memory (about 0.1 s for 170 documents, plus about 0.6 s to set
        up jieba the first time in a process)."""
        tuning = tuning or Tuning()
        docs = sorted(kb.documents.values(), key=lambda d: d.id)
        unknown = sorted(set(tuning.field_weights) - {f"{n}{s}" for n in ("head", "body") for s in ("", ":bi")})
        if unknown:
            raise ValueError(f"field_weights: unknown fields {unknown}")
        texts = [_fields(d) for d in docs]
        indices: dict[str, bm25s.BM25] = {}
        for name in tuning.field_weights:
            corpus = [_terms(name, t[name.split(":")[0]]) for t in texts]
            if not any(corpus):
                continue
            bm = bm25s.BM25(k1=tuning.k1, b=tuning.b)
            bm.index(corpus, show_progress=False)
            indices[name] = bm
        everyone = np.ones(len(docs), dtype=bool)
        resident = np.array([d.audience in ("resident", "all") for d in docs], dtype=bool)
        return cls(_Index(docs, indices, {"resident": resident, "worker": everyone, "all": everyone}), tuning)

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
        if limit < 1:
            raise ValueError(f"limit: {limit}, at least 1")
        ranked, signals = self.rank(q, audience)
        if not ranked or signals is None:
            return Answer(q, False, ())
        t = self.tuning
        confident = signals.top >= t.min_score and signals.margin >= t.min_margin
        docs = self._index.documents
        return Answer(q, confident, tuple(Match(docs[i], raw / (raw + t.min_score), _quote(docs[i], "zh"))
                                          for i, raw in ranked[:limit]))

    def rank(self, question: str, audience: Audience = "all") -> tuple[list[tuple[int, float]], Signals | None]:
        """Documents (index, weighted BM25 score) scoring above 0, best first, and the confidence signals."""
        if audience not in AUDIENCES:
            raise ValueError(f"audience: {audience!r}, one of {', '.join(AUDIENCES)}")
        ix = self._index
        n = len(ix.documents)
        terms = list(dict.fromkeys(tokens(question)))
        grams = list(dict.fromkeys(bigrams(question)))
        if not (terms or grams) or n == 0:
            return [], None
        raw = np.zeros(n, dtype=np.float64)
        for name, bm in ix.fields.items():
            q = grams if name.endswith(":bi") else terms
            if q:
                raw += self.tuning.field_weights[name] * bm.get_scores(q)
        raw[~ix.audience_mask[audience]] = 0.0
        ranked = [(int(i), float(raw[i])) for i in np.argsort(-raw, kind="stable") if raw[i] > 0]
        if not ranked:
            return [], None
        top = ranked[0][1]
        second = ranked[1][1] if len(ranked) > 1 else 0.0
        return ranked, Signals(top, (top - second) / top, tuple(terms))
