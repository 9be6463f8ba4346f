"""Benchmark: how well the knowledge assistant (twin.assistant) answers the shipped question sets. Pure CPU.

``python -m benchmarks.qa [QUESTION FILES...]`` (or ``gridtwin bench qa``) asks every question of every file in
``benchmarks/qa_questions/`` (or of the files given) and prints as JSON:

- ``top1`` / ``top3``: share of in-scope questions (``expect`` an entry id) whose expected entry is the best
  match / among the best three;
- ``confident_wrong``: share of all questions answered confidently with the wrong entry (a confident answer to an
  out-of-scope question, ``expect: null``, counts as wrong);
- ``handoff_rate``: share of all questions the assistant is not sure about (it offers a person instead);
- ``out_of_scope_handoffs``: of the out-of-scope questions, how many it declined (``n / total``);
- ``latency_ms``: p50 and p95 of one ``ask()`` over all questions, the median over ``PASSES`` passes;
- ``build_s``: building the index (jieba already set up; ``jieba_s``: setting it up, once per process);
- ``misses``: each in-scope question whose best match is not the expected entry, each confident wrong answer.

A question file::

    audience: resident        # optional: who asks (resident | worker | all; default all), here or per question
    questions:
      - {q: 我家能不能吃低保, expect: faq_dibao_conditions}
      - {q: 护照怎么办, expect: null}      # out of scope: the assistant should not answer confidently
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from twin.assistant import Assistant
from twin.assistant.engine import AUDIENCES
from twin.assistant.text import tokenizer
from twin.knowledge import KNOWLEDGE_DIRS, KnowledgeBase

QUESTIONS_DIR = Path(__file__).resolve().parent / "qa_questions"
PASSES = 5  # latency: passes over all questions; the figures are the median over passes


@dataclass(frozen=True)
class Question:
    q: str
    expect: str | None
    audience: str
    source: str  # file: questions[i]


def load_questions(files: list[Path] | None = None) -> list[Question]:
    """The questions of ``files`` (default: every YAML file in benchmarks/qa_questions/); bad files raise
    ValueError naming the file and the question."""
    paths = files if files is not None else sorted(QUESTIONS_DIR.glob("*.yaml"))
    out: list[Question] = []
    problems: list[str] = []
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            problems.append(f"{path}: {e}")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
            problems.append(f"{path}: questions: a list of {{q: ..., expect: entry id or null}}")
            continue
        audience = data.get("audience", "all")
        if audience not in AUDIENCES:
            problems.append(f"{path}: audience: {audience!r}, one of {', '.join(AUDIENCES)}")
            continue
        for i, item in enumerate(data["questions"]):
            where = f"{path.name}: questions[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("q"), str) or not item["q"].strip():
                problems.append(f"{where}: q: the question's text")
                continue
            expect = item.get("expect")
            if expect is not None and not isinstance(expect, str):
                problems.append(f"{where}: expect: an entry id or null")
                continue
            who = item.get("audience", audience)
            if who not in AUDIENCES:
                problems.append(f"{where}: audience: {who!r}, one of {', '.join(AUDIENCES)}")
                continue
            out.append(Question(item["q"].strip(), expect, str(who), where))
    if problems:
        raise ValueError("\n".join(problems))
    return out


def load_kb() -> KnowledgeBase:
    files = [p for d in KNOWLEDGE_DIRS for p in sorted(d.glob("*.yaml"))]
    return KnowledgeBase.parse([(str(p), p.read_text(encoding="utf-8")) for p in files])


def evaluate(assistant: Assistant, questions: list[Question], kb: KnowledgeBase | None = None) -> dict[str, Any]:
    """Accuracy figures and misses (no timing)."""
    in_scope = [q for q in questions if q.expect is not None]
    out_scope = [q for q in questions if q.expect is None]
    top1 = top3 = confident_wrong = handoffs = oos_handoffs = 0
    misses: list[dict[str, Any]] = []
    by_file: dict[str, dict[str, int]] = {}
    unknown = sorted({q.expect for q in in_scope if kb is not None and q.expect and kb.get(q.expect) is None})
    for q in questions:
        a = assistant.ask(q.q, audience=q.audience, limit=3)  # type: ignore[arg-type]
        ids = [m.document.id for m in a.matches]
        got = ids[0] if ids else None
        wrong = got != q.expect
        if not a.confident:
            handoffs += 1
            oos_handoffs += q.expect is None
        elif wrong:
            confident_wrong += 1
        if q.expect is not None:
            top1 += not wrong
            top3 += q.expect in ids
            f = by_file.setdefault(q.source.split(":")[0], {"in_scope": 0, "top1": 0})
            f["in_scope"] += 1
            f["top1"] += not wrong
        if wrong and (q.expect is not None or a.confident):
            misses.append({"question": q.q, "expected": q.expect, "got": got, "top3": ids,
                           "confident": a.confident, "score": round(a.matches[0].score, 3) if a.matches else 0.0,
                           "where": q.source})
    n, n_in = len(questions), len(in_scope)
    return {
        "questions": n,
        "in_scope": n_in,
        "out_of_scope": len(out_scope),
        "top1": round(top1 / n_in, 4) if n_in else None,
        "top3": round(top3 / n_in, 4) if n_in else None,
        "confident_wrong": round(confident_wrong / n, 4) if n else None,
        "confident_wrong_count": confident_wrong,
        "handoff_rate": round(handoffs / n, 4) if n else None,
        "out_of_scope_handoffs": f"{oos_handoffs} / {len(out_scope)}",
        "unknown_expected_ids": unknown,
        "top1_by_file": {name: round(f["top1"] / f["in_scope"], 4) for name, f in sorted(by_file.items())},
        "misses": misses,
    }


def bench_qa(files: list[Path] | None = None, *, passes: int = PASSES) -> dict[str, Any]:
    """Accuracy, latency and build time of the assistant on the question sets."""
    questions = load_questions(files)
    if not questions:
        raise ValueError(f"no questions: put question files in {QUESTIONS_DIR}")
    t0 = time.perf_counter()
    tokenizer()
    jieba_s = time.perf_counter() - t0
    kb = load_kb()
    t0 = time.perf_counter()
    assistant = Assistant.build(kb)
    build_s = time.perf_counter() - t0
    result = evaluate(assistant, questions, kb)
    p50s, p95s = [], []
    for _ in range(passes):
        times = []
        for q in questions:
            t = time.perf_counter()
            assistant.ask(q.q, audience=q.audience, limit=3)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t) * 1000)
        p50s.append(statistics.median(times))
        p95s.append(statistics.quantiles(times, n=100, method="inclusive")[94] if len(times) > 1 else times[0])
    return {
        "documents": len(kb),
        "files": sorted({q.source.split(":")[0] for q in questions}),
        **{k: v for k, v in result.items() if k != "misses"},
        "latency_ms": {"p50": round(statistics.median(p50s), 3), "p95": round(statistics.median(p95s), 3),
                       "passes": passes},
        "build_s": round(build_s, 4),
        "jieba_s": round(jieba_s, 3),
        "misses": result["misses"],
    }


if __name__ == "__main__":
    print(json.dumps(bench_qa([Path(a) for a in sys.argv[1:]] or None), ensure_ascii=False, indent=2))
