"""The knowledge assistant (twin.assistant): segmentation, synonyms, audience, validation, confidence, and a
regression guard on the shipped question sets (benchmarks/qa_questions/: accuracy, not timing)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pytest

from benchmarks import qa
from twin.assistant import Answer, Assistant
from twin.assistant.engine import Tuning
from twin.assistant.text import build_tokenizer, intents, normalise, tokens
from twin.knowledge import Document, KnowledgeBase


@pytest.fixture(scope="module")
def shipped() -> Assistant:
    return Assistant.build(qa.load_kb())


def _faq(doc_id: str, audience: str, title_zh: str, questions: list[str], answer: str, **kw: object) -> Document:
    return Document.model_validate({"id": doc_id, "type": "faq", "audience": audience, "title": doc_id,
                                    "title_zh": title_zh, "questions": questions, "answer": answer, **kw})


def test_segmentation_keeps_domain_words_and_lowercases_latin() -> None:
    ts = tokens("我家能不能吃低保？楼上高空抛物怎么办，打96333，GAS报警")
    assert {"低保", "高空抛物", "96333", "gas"} <= set(ts)
    assert not {"怎么办", "我家", "？", "，"} & set(ts)  # stop words and punctuation dropped
    assert "网格员" in tokens("找网格员")


def test_jieba_is_set_up_quietly_without_cache_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capfd: pytest.CaptureFixture[str],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where jieba would write jieba.cache
    with caplog.at_level(logging.DEBUG):
        tk = build_tokenizer()
    assert "高空抛物" in tk.lcut("楼上高空抛物")
    assert list(tmp_path.iterdir()) == []
    assert capfd.readouterr() == ("", "") and not caplog.records  # no "Building prefix dict ..."


def test_synonyms_rewrite_how_residents_say_it() -> None:
    assert normalise("电瓶车") == "电动自行车"
    assert normalise("我被关在电梯里了") == "我被电梯困人了"
    assert "燃气" in tokens("家里煤气味很重")
    assert "高空抛物" in tokens("楼上老是往下扔东西")
    assert normalise("社区居委会") == normalise("居委") == normalise("居委会") == "居委会"  # canonical kept
    assert normalise("ＡＢＣ１２３") == "abc123"  # full-width folded


def test_audience_resident_sees_only_resident_and_all_entries() -> None:
    kb = KnowledgeBase([
        _faq("faq_lift_res", "resident", "电梯坏了找谁报修", ["电梯坏了怎么办"], "打物业电话报修。"),
        _faq("faq_lift_worker", "worker", "电梯故障工单处理", ["电梯故障工单怎么处理"], "联系维保单位。"),
        _faq("faq_lift_all", "all", "电梯年检", ["电梯多久检验一次"], "每年一次定期检验。"),
    ])
    a = Assistant.build(kb)
    worker = {m.document.id for m in a.ask("电梯故障工单怎么处理", audience="worker").matches}
    assert "faq_lift_worker" in worker
    resident = {m.document.id for m in a.ask("电梯故障工单怎么处理", audience="resident").matches}
    assert resident and "faq_lift_worker" not in resident
    assert resident <= {"faq_lift_res", "faq_lift_all"}


@pytest.mark.parametrize(("question", "message"), [
    ("", "empty"), ("   ", "empty"), ("问" * 501, "at most 500"),
])
def test_bad_questions_are_refused_clearly(shipped: Assistant, question: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shipped.ask(question)
    with pytest.raises(ValueError, match="audience"):
        shipped.ask("低保", audience="nobody")  # type: ignore[arg-type]


def test_confident_answer_and_json_shape() -> None:
    kb = KnowledgeBase([
        _faq("faq_dibao", "resident", "低保申请条件", ["什么条件可以申请低保"],
             "人均收入低于当地低保标准的家庭可以申请。",
             answer_en="Households below the local standard can apply.", handoff="social_assistance",
             source="《社会救助暂行办法》"),
        _faq("faq_waste", "resident", "垃圾分类", ["垃圾怎么分类"], "分四类。"),
        _faq("faq_noise", "resident", "装修噪音", ["邻居装修太吵"], "装修时间以本市规定为准。"),
        _faq("faq_dog", "resident", "养狗登记", ["养狗要办证吗"], "到派出所或线上登记。"),
    ])
    small = Tuning(min_score=2.0)  # BM25 scores are small on a four-document knowledge base
    a = Assistant.build(kb, small).ask("我家能不能吃低保", audience="resident")
    assert a.confident and a.best is not None and a.best.document.id == "faq_dibao"
    assert a.confident is True  # a plain bool (JSON)
    assert 0.5 <= a.best.score < 1 and a.best.quote == a.best.document.answer.strip()
    assert all(x.score >= y.score for x, y in zip(a.matches, a.matches[1:], strict=False))
    zh, en = a.as_dict(), a.as_dict("en")
    assert zh["matches"][0] == {"id": "faq_dibao", "type": "faq", "title": "低保申请条件", "quote": a.best.quote,
                                "source": "《社会救助暂行办法》", "score": round(a.best.score, 3),
                                "handoff": "social_assistance"}
    assert en["matches"][0]["title"] == "faq_dibao"
    assert en["matches"][0]["quote"] == "Households below the local standard can apply."
    assert zh["question"] == "我家能不能吃低保" and zh["confident"] is True
    sops = KnowledgeBase([*kb.documents.values(), Document.model_validate({
        "id": "sop_lift", "type": "sop", "title": "Entrapment", "title_zh": "电梯困人应急处置",
        "keywords": ["电梯", "困人"], "steps": ["安抚被困人员", "通知维保单位"], "steps_en": ["Reassure", "Call"]})])
    sop = Assistant.build(sops).ask("有人被关在电梯里怎么办", audience="worker")
    assert sop.best is not None and sop.best.document.id == "sop_lift"  # an SOP: its steps are the quote
    assert sop.best.quote == "安抚被困人员\n通知维保单位"
    assert sop.as_dict("en")["matches"][0]["quote"] == "Reassure\nCall"
    assert all(m.document.id != "sop_lift" for m in Assistant.build(sops).ask("电梯困人", audience="resident").matches)


def test_intent_and_worker_priors_break_near_ties() -> None:
    assert intents("低保一个月能领多少钱") == (False, True, False, False, False)  # condition, amount, ...
    assert intents("申请要带啥，多长时间批下来") == (False, False, True, True, True)
    kb = KnowledgeBase([
        _faq("faq_dibao_cond", "resident", "低保申请条件", ["什么条件能吃低保", "低保够不够格"], "收入低于标准。"),
        _faq("faq_dibao_amount", "resident", "低保标准是多少", ["低保能领多少钱", "低保给多少"], "按差额发放。"),
        _faq("faq_smoke", "resident", "烟感报警器响了", ["烟感误报怎么关"], "开窗通风，按消音键。"),
        _faq("worker_false_alarm", "worker", "误报工单怎么办结", ["烟感误报工单怎么关"], "选误报原因后办结。"),
    ])
    flat = Assistant.build(kb, Tuning(min_score=1.0, intent_weight=0.0, worker_prior=0.0))
    priors = Assistant.build(kb, Tuning(min_score=1.0))
    best = priors.ask("吃低保够格吗", audience="resident").best
    assert best is not None and best.document.id == "faq_dibao_cond"
    best = priors.ask("低保每月给多少", audience="resident").best
    assert best is not None and best.document.id == "faq_dibao_amount"
    worker = priors.ask("烟感误报怎么关", audience="worker").best
    assert worker is not None and worker.document.id == "worker_false_alarm"
    resident = priors.ask("烟感误报怎么关", audience="resident").best
    assert resident is not None and resident.document.id == "faq_smoke"
    assert flat.ask("烟感误报怎么关", audience="worker").best.document.id == "faq_smoke"  # type: ignore[union-attr]


@pytest.mark.parametrize("question", ["今天天气怎么样", "护照过期了去哪里换", "推荐一部好看的电影"])
def test_out_of_scope_question_is_not_answered_confidently(shipped: Assistant, question: str) -> None:
    a = shipped.ask(question, audience="resident")
    assert isinstance(a, Answer) and not a.confident


def test_shipped_question_sets_regression_guard(shipped: Assistant) -> None:
    files = sorted(qa.QUESTIONS_DIR.glob("*.yaml"))
    if not files:
        pytest.skip("no question sets in benchmarks/qa_questions/")
    questions = qa.load_questions(files)
    r = qa.evaluate(shipped, questions, qa.load_kb())
    misses = "\n".join(f"{m['question']} -> {m['got']} (expected {m['expected']})" for m in r["misses"])
    assert not r["unknown_expected_ids"], r["unknown_expected_ids"]
    assert r["top1"] is not None and r["top1"] >= 0.85, misses
    assert r["confident_wrong"] <= 0.05, misses


def test_question_file_errors_name_the_place(tmp_path: Path) -> None:
    bad = tmp_path / "residents_x.yaml"
    bad.write_text("questions:\n  - {q: '', expect: null}\n  - {q: 低保, expect: 3}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"questions\[0\]: q(.|\n)*questions\[1\]: expect"):
        qa.load_questions([bad])
