"""Reading the YAML data files the product ships and sites override (rules, incident policies), with every
problem placed as ``file:line: field: why``. Pure: parses text it is given, reads no files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from twin.community import _line_of

YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
KeyPath = tuple[str | int, ...]  # a place in a file, as pydantic's ``loc``: ("rules", 3, "raise")
Envelope = TypeVar("Envelope", bound=BaseModel)


class Locator:
    """``source:line`` of places in a list of ``(source, text)`` YAML files; each composed once, on first need."""

    def __init__(self, texts: Sequence[tuple[str, str]]) -> None:
        self._texts = texts
        self._roots: dict[int, yaml.Node | None] = {}

    def source(self, file: int) -> str:
        return self._texts[file][0]

    def root(self, file: int) -> yaml.Node | None:
        """The YAML node tree of a file (for line numbers); None when it does not parse."""
        if file not in self._roots:
            try:
                self._roots[file] = yaml.compose(self._texts[file][1], Loader=YamlLoader)
            except yaml.YAMLError:
                self._roots[file] = None
        return self._roots[file]

    def at(self, file: int, loc: KeyPath) -> str:
        """``source:line`` of a place in a file (``source`` alone when the line is unknown)."""
        line = _line_of(self.root(file), loc)
        return f"{self.source(file)}:{line}" if line else self.source(file)


def validation_message(err: Any) -> str:
    """One pydantic error in the words the data files' problems use."""
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required"
    return str(err["msg"]).removeprefix("Value error, ")


def load_envelope(model: type[Envelope], locator: Locator, file: int, problems: list[str], *,
                  shape: str) -> Envelope | None:
    """Parse one file and validate its top level with ``model``; on failure append each problem (``shape``
    says what the file should be when it is not a mapping) and return None."""
    source, text = locator.source(file), locator._texts[file][1]
    try:
        data = yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problems.append(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{source}:1: {shape}")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(f"{locator.at(file, loc)}: {'.'.join(map(str, loc))}: {validation_message(err)}")
        return None
