"""How a knowledge base entry's text reads on a page. Pure."""

from __future__ import annotations

import re

_WRAPPED = re.compile(r"(?<![。！？；：.!?;:\n])[ \t]*\n[ \t]*(?=\S)")


def unwrap(text: str) -> str:
    """``text`` with the line breaks that only wrap a sentence (the YAML files are wrapped at 120 columns) taken
    out; a break after a sentence's end stays (one paragraph a line): ``"ring\\nbells."`` -> ``"ring bells."``."""
    return _WRAPPED.sub(" ", text.strip())
