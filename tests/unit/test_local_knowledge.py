"""A community's own knowledge directories over the shipped knowledge base (``knowledge.dirs``): override by id,
new entries, problems named by file and entry, the process's setting, and `gridtwin knowledge check`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import settings as settings_mod
from gateway.cli import main
from gateway.tickets import views
from twin.knowledge import KnowledgeError

LOCAL = """\
entries:
  - id: faq_social_assistance_dibao_amount
    type: faq
    audience: resident
    title: Dibao in our city
    title_zh: 本市低保标准
    questions: [低保一个月多少钱, 我们这里低保标准是多少]
    keywords: [低保, 低保标准]
    answer: 本市低保标准为每人每月1234元，差额按月发放。
  - id: faq_local_property_hours
    type: faq
    audience: resident
    title: Property office hours
    title_zh: 物业办公室开放时间
    questions: [物业办公室几点开门, 物业几点上班]
    keywords: [物业办公室, 开放时间]
    answer: 物业办公室每天8:00-18:00开放，电话010-87654321。
"""

BROKEN = """\
entries:
  - id: faq_local_fine
    type: faq
    title: fine
    title_zh: 可以
    answer: 可以。
  - id: faq_local_no_answer
    type: faq
    title: no answer
    title_zh: 没有答案
"""


@pytest.fixture(autouse=True)
def _process_dirs_restored() -> Iterator[None]:
    yield
    views.use_local_knowledge(())


@pytest.fixture
def local(tmp_path: Path) -> Path:
    d = tmp_path / "kb"
    d.mkdir()
    (d / "city.yaml").write_text(LOCAL, encoding="utf-8")
    return d


def test_an_entry_with_a_shipped_id_replaces_it_and_a_new_id_adds_one(local: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    shipped = views.assistant(()).ask("我们这里低保标准是多少", audience="resident")
    assert shipped.best is not None and "1234" not in shipped.best.document.answer
    with caplog.at_level(logging.INFO, logger="gateway.tickets.views"):
        layered = views.use_local_knowledge([local])
    assert layered.replaced == ("faq_social_assistance_dibao_amount",)
    assert layered.added == ("faq_local_property_hours",)
    assert "1 added, 1 replaced" in caplog.text
    assert len(views.knowledge_base()) == len(views.knowledge_base(())) + 1  # the process's dirs by default
    ours = views.assistant().ask("我们这里低保标准是多少", audience="resident")
    assert ours.best is not None and "1234元" in ours.best.document.answer
    hours = views.assistant().ask("物业办公室几点开门", audience="resident")
    assert hours.best is not None and hours.best.document.id == "faq_local_property_hours"
    assert views.assistant(()).ask("我们这里低保标准是多少", audience="resident") == shipped  # cached per dirs


def test_a_bad_file_is_reported_with_file_and_entry(local: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    (bad / "again.yaml").write_text(LOCAL.partition("  - id: faq_local_property_hours")[0], encoding="utf-8")
    with pytest.raises(KnowledgeError) as caught:
        views.use_local_knowledge([local, bad])
    problems = caught.value.problems
    assert any(p.startswith(f"{bad / 'broken.yaml'}: entries[1]: ") and "answer" in p for p in problems), problems
    assert any(p.startswith(f"{bad / 'again.yaml'}: entries[0]: id: ") and "city.yaml" in p for p in problems)
    assert views.knowledge_base() is views.knowledge_base(())  # the process keeps what it had
    (bad / "again.yaml").write_text("id: sop_gas_leak\ntype: faq\ntitle: x\ntitle_zh: x\nanswer: x\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"again\.yaml: type: 'faq' would replace the shipped sop 'sop_gas_leak'"):
        views.knowledge_base([bad])
    missing = tmp_path / "nowhere"
    with pytest.raises(KnowledgeError, match="nowhere: knowledge directory not found"):
        views.knowledge_base([missing])
    cfg = settings_mod.load(None, env={"GRIDTWIN_KNOWLEDGE_DIRS": f'["{bad}"]'})
    assert views.knowledge_or_shipped(cfg.knowledge.dirs) is views.knowledge_base(())  # tickets never stop


def test_knowledge_check_cli_exit_codes(local: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["knowledge", "check", str(local)]) == 0
    out = capsys.readouterr().out
    assert "added (1): faq_local_property_hours" in out and "replaced (1): faq_social_assistance_dibao_amount" in out
    assert "faq " in out and "sop " in out
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    assert main(["knowledge", "check", str(bad)]) == 1
    assert f"{bad / 'broken.yaml'}: entries[1]:" in capsys.readouterr().out
    assert main(["knowledge", "check", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["knowledge", "check", str(local / "city.yaml")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_the_setting_is_a_json_list_and_a_plain_path_is_explained() -> None:
    assert settings_mod.load(None, env={"GRIDTWIN_KNOWLEDGE_DIRS": '["/a", "/b"]'}).knowledge.dirs == [Path("/a"),
                                                                                                      Path("/b")]
    with pytest.raises(settings_mod.SettingsError, match="GRIDTWIN_KNOWLEDGE_DIRS: not valid JSON"):
        settings_mod.load(None, env={"GRIDTWIN_KNOWLEDGE_DIRS": "/a"})
