"""The string catalogue (viz.i18n and viz/strings/) is complete and translated. No services.

Every ``t(lang, "literal.key")`` in the dashboard and web server sources names a key of the catalogue;
every entry has both languages, the same ``{placeholders}`` in both, and is not the same text twice when
it has words to translate.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

from viz import i18n

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "viz").rglob("*.py")), *sorted((ROOT / "gateway" / "web").rglob("*.py"))]
# t(<lang expression>, "key" ...): the key as a literal string
CALL = re.compile(r"""\bt\(\s*[\w.\[\]"'()]+\s*,\s*(?:\n\s*)?["']([A-Za-z0-9_.\-]+)["'](?=\s*[,)])""")
PLACEHOLDER = re.compile(r"\{[^{}]*\}")
# entries whose languages need different placeholders, and why (none so far)
OWN_PLACEHOLDERS: dict[str, str] = {}
WORDS = re.compile(r"[A-Za-z]{3,}|[\u4e00-\u9fff]")


def _fields(text: str) -> set[str]:
    return {f for _lit, f, _spec, _conv in string.Formatter().parse(text) if f is not None}


def test_every_literal_key_the_sources_use_is_in_the_catalogue() -> None:
    used: dict[str, list[str]] = {}
    for path in SOURCES:
        for m in CALL.finditer(path.read_text(encoding="utf-8")):
            used.setdefault(m.group(1), []).append(str(path.relative_to(ROOT)))
    assert len(used) > 100, f"the pattern found only {len(used)} keys: is it still right?"
    missing = {k: sorted(set(v)) for k, v in used.items() if k not in i18n.STRINGS}
    assert not missing, f"keys used but not in the catalogue: {missing}"


def test_every_entry_is_translated_with_the_same_placeholders() -> None:
    problems = []
    for key, (zh, en) in i18n.STRINGS.items():
        if not zh.strip() or not en.strip():
            problems.append(f"{key}: empty ({zh!r}, {en!r})")
        elif zh == en and WORDS.search(PLACEHOLDER.sub("", zh)):
            problems.append(f"{key}: the same text in both languages: {zh!r}")
        elif zh in (key, f"[{key}]") or en in (key, f"[{key}]"):
            problems.append(f"{key}: the key itself stands in for the text")
        if _fields(zh) != _fields(en) and key not in OWN_PLACEHOLDERS:
            problems.append(f"{key}: placeholders differ: {sorted(_fields(zh))} vs {sorted(_fields(en))}")
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_bad_entry() -> None:
    assert _fields("已搁置至 {until}") != _fields("Shelved until {when}")
    assert WORDS.search("确认") and WORDS.search("Acknowledge") and not WORDS.search("{n}F")
    assert CALL.search('x = t(req.lang, "alarms.ticket_tag", id=3)').group(1) == "alarms.ticket_tag"  # type: ignore[union-attr]
    assert CALL.search("t(lang,\n    'kpi.title')").group(1) == "kpi.title"  # type: ignore[union-attr]
    assert CALL.search('t(lang, "role." + r)') is None  # built keys are not checked here


def test_accounts_named_after_their_role_read_in_the_users_language() -> None:
    from twin.people import Role

    assert set(i18n.ROLE_WORDS) == {r.value for r in Role}
    assert i18n.person_label("en", "值班员") == "operator"
    assert i18n.person_label("en", "网格长 s-1") == "supervisor s-1"
    assert i18n.person_label("en", "马刚") == "马刚" and i18n.person_label("zh", "值班员") == "值班员"


def test_every_sop_has_its_steps_in_english() -> None:
    from twin.knowledge import SOP_DIR, KnowledgeBase, KnowledgeError

    kb = KnowledgeBase.parse([(p.name, p.read_text(encoding="utf-8")) for p in sorted(SOP_DIR.glob("*.yaml"))])
    for d in kb.documents.values():
        if d.type != "sop":
            continue
        assert len(d.steps_en) == len(d.steps), d.id
        assert not any(re.search(r"[\u4e00-\u9fff]", s) for s in d.steps_en), d.id
        assert d.steps_for("en") == d.steps_en and d.steps_for("zh") == d.steps
    bad = "id: x\ntype: sop\ntitle: X\ntitle_zh: 甲\nsteps: [一, 二]\nsteps_en: [one]\n"
    try:
        KnowledgeBase.parse([("x.yaml", bad)])
    except KnowledgeError as exc:
        assert "steps_en" in str(exc)
    else:
        raise AssertionError("a steps_en list of the wrong length was accepted")
