"""Text to search terms: the synonym table, jieba segmentation with the domain dictionary, stop words.

Data files next to this module: ``userdict.txt`` (words jieba keeps whole), ``synonyms.yaml`` (how residents
say it -> the knowledge base's word), ``stopwords.txt`` (words that carry no topic).

jieba is set up once per process, on first use, from its bundled dictionary: no cache file is read or written
(jieba's default writes ``jieba.cache`` to the temp directory) and nothing is logged, so several processes can
import and use this module at the same time.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from pathlib import Path

import jieba
import yaml

DATA_DIR = Path(__file__).resolve().parent
USERDICT_FILE = DATA_DIR / "userdict.txt"
SYNONYMS_FILE = DATA_DIR / "synonyms.yaml"
STOPWORDS_FILE = DATA_DIR / "stopwords.txt"

_TOKEN = re.compile(r"[a-z0-9]+|[\u3400-\u9fff\uf900-\ufaff]+")  # a term: a Latin word/number or Chinese
_lock = threading.Lock()
_built: list[jieba.Tokenizer] = []  # the process's tokenizer, once built


def _data_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def tokenizer() -> jieba.Tokenizer:
    """The process's jieba tokenizer with the domain words (built on first use, ~0.6 s)."""
    if not _built:
        with _lock:
            if not _built:
                _built.append(build_tokenizer())
    return _built[0]


def build_tokenizer() -> jieba.Tokenizer:
    """A jieba tokenizer from its bundled dictionary plus the domain words: what ``Tokenizer.initialize`` does,
    minus its cache file in the temp directory and its log lines."""
    tk = jieba.Tokenizer()
    with tk.get_dict_file() as f:
        tk.FREQ, tk.total = tk.gen_pfdict(f)
    tk.initialized = True
    for line in _data_lines(USERDICT_FILE):
        word, *rest = line.split()
        tk.add_word(word, int(rest[0]) if rest and rest[0].isdigit() else None)
    for word in sorted(set(synonyms().values())):  # what a rewrite produces stays whole
        if not tk.FREQ.get(word):
            tk.add_word(word, 1000)
    return tk


@cache
def synonyms() -> dict[str, str]:
    """Variant -> canonical word, from ``synonyms.yaml``."""
    data = yaml.safe_load(SYNONYMS_FILE.read_text(encoding="utf-8")) or {}
    table = data.get("synonyms") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"{SYNONYMS_FILE}: synonyms: a mapping of canonical word -> [variants]")
    out: dict[str, str] = {}
    for canonical, variants in table.items():
        if not isinstance(canonical, str) or not isinstance(variants, list) or \
                not all(isinstance(v, str) and v.strip() for v in variants):
            raise ValueError(f"{SYNONYMS_FILE}: synonyms.{canonical}: a list of variant words")
        for variant in variants:
            v = variant.strip().lower()
            if v in out and out[v] != canonical:
                raise ValueError(f"{SYNONYMS_FILE}: {v!r} is a variant of both {out[v]!r} and {canonical!r}")
            out[v] = str(canonical).lower()
    return out


@cache
def _rewrites() -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """One pattern matching every variant and every canonical word, longest first, and what each becomes: a
    canonical word matches as itself, so one containing a shorter variant (居委会 holds 居委) stays as it is."""
    table = synonyms()
    if not table:
        return None, {}
    rewrite = {**{c: c for c in table.values()}, **table}
    return re.compile("|".join(re.escape(v) for v in sorted(rewrite, key=len, reverse=True))), rewrite


@cache
def stopwords() -> frozenset[str]:
    return frozenset(_data_lines(STOPWORDS_FILE))


def normalise(text: str) -> str:
    """Lower-cased, full-width letters and digits folded, variants replaced by their canonical word."""
    text = text.translate(_FULL_WIDTH).lower()
    pattern, rewrite = _rewrites()
    if pattern is None:
        return text
    return pattern.sub(lambda m: rewrite[m.group(0)], text)


def tokens(text: str) -> list[str]:
    """Search terms of a text: normalised, segmented by jieba (search mode: a long word and its parts), Latin
    words lower-cased, punctuation and stop words dropped. Order kept, repeats kept (they count in BM25)."""
    out: list[str] = []
    stop = stopwords()
    for piece in _TOKEN.findall(normalise(text)):
        words = [piece] if piece.isascii() else tokenizer().lcut_for_search(piece, HMM=True)
        out += [w for w in words if w not in stop and _TOKEN.fullmatch(w)]
    return out


def bigrams(text: str) -> list[str]:
    """Character bigrams of a text's Chinese, plus those bridging its stop words (洗澡的时候头很晕: 洗澡, 澡的 …,
    and from 洗澡头晕 also 澡头, 头晕), and its Latin words. They match what segmentation cuts differently
    (头晕 vs 头 很 晕; 炒菜锅里 vs 锅里)."""
    out: list[str] = []
    stop = stopwords()
    for piece in _TOKEN.findall(normalise(text)):
        if piece.isascii():
            out.append(piece)
            continue
        grams = [piece[i:i + 2] for i in range(len(piece) - 1)] or [piece]
        kept = "".join(w for w in tokenizer().lcut(piece, HMM=True) if w not in stop)
        seen = set(grams)
        out += grams + [g for g in (kept[i:i + 2] for i in range(len(kept) - 1)) if g not in seen]
    return out


# What a question asks about a topic: entries on one topic (低保 conditions, amount, how to apply, materials, how
# long) differ by it. Matched on the normalised text (so 多长时间/好久 arrive as 多久, 哪儿 as 哪里). A question
# may ask several things or none. General question words only: no entry's wording (docs/assistant.md).
INTENT_PATTERNS: dict[str, str] = {
    "condition": r"条件|能不能|能否|能.{0,6}[吗不]|可以.{0,6}吗|够不够|够格|符合|资格|算不算|管不管|给不给",
    "amount": r"多少钱|标准|多少|金额|几百|几千|比例|给多少|能领|交多少|报多少|补多少",
    "process": r"怎么办|流程|怎么申请|申请|去哪|哪里|手续|办理|找谁|怎么弄|咋弄|咋办",
    "materials": r"材料|带什么|带啥|拿什么|拿啥|证件|需要什么|准备|要啥",
    "time": r"多久|几天|什么时候|啥时候|期限|时间|几个月|多少天|几号",
}
INTENTS: tuple[str, ...] = tuple(INTENT_PATTERNS)
_INTENT_RES = tuple(re.compile(p) for p in INTENT_PATTERNS.values())


def intents(text: str) -> tuple[bool, ...]:
    """Which of ``INTENTS`` the text asks (one flag each, in that order)."""
    t = normalise(text)
    return tuple(bool(r.search(t)) for r in _INTENT_RES)


_FULL_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
