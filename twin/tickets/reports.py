"""One-click reports (一键上报) and the supervisor's check (核查). Pure: parses text it is given, decides states.

A grid worker or a resident reports what no sensor sees (a blocked fire lane, a broken corridor light, objects
thrown from height, a resident in need). The categories are data (``twin/report_categories.yaml``,
:data:`CATEGORIES_FILE`): labels in Chinese and English, the ticket category, the SLA class (priority), whether a
resolved report waits for the grid supervisor's check (``verify``), whether residents may pick it (``public``) and
whether later alarms of its category at the place join its ticket (``collect``).

The check is a step between the worker's 办结 and the ticket's close, for categories with ``verify: true``::

    handling --resolve--> feedback [check pending] --verify pass--> feedback [checked]  --rate--> evaluated
                                                  \\--verify fail (reason)--> handling (back to the worker)

It lives in the ticket's history (``verify_pass`` / ``verify_fail`` entries after its last ``resolve``), so no
new ticket state is needed: :func:`verification` reads it from the state and the history's actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.datafiles import Locator, YamlLoader, validation_message
from twin.people import Role, User
from twin.tickets.model import InvalidInput, Priority, Ticket, TicketError, TicketState
from twin.tickets.permissions import visible_to

CATEGORIES_FILE = Path(__file__).resolve().parent.parent / "report_categories.yaml"
VERIFY_PASS = "verify_pass"  # noqa: S105 - a history action, not a password
VERIFY_FAIL = "verify_fail"
MAX_REASON = 1000


class CategoryError(ValueError):
    """A category file that does not load: every problem as ``file:line: field: why``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReportCategory(_Model):
    id: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    zh: Annotated[str, Field(min_length=1, max_length=40)]
    en: Annotated[str, Field(min_length=1, max_length=60)]
    category: Literal["fire", "elevator", "gas", "water", "care", "environment", "other"]
    priority: Priority
    verify: bool = False
    public: bool = True
    collect: bool = False  # later alarms of the category at the place join the report's ticket

    def label(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


class _File(_Model):
    version: Literal[1]
    categories: Annotated[list[ReportCategory], Field(min_length=1, max_length=100)]


@dataclass(frozen=True, slots=True)
class ReportCategories:
    """The categories in file order; :meth:`get` by id."""

    items: tuple[ReportCategory, ...]

    def get(self, category_id: str) -> ReportCategory | None:
        return next((c for c in self.items if c.id == category_id), None)

    def public(self) -> tuple[ReportCategory, ...]:
        return tuple(c for c in self.items if c.public)

    def need(self, category_id: str, *, resident: bool = False) -> ReportCategory:
        """The category of ``category_id``; :class:`InvalidInput` if there is none (or, for a resident, it is
        staff-only)."""
        c = self.get(category_id)
        if c is None or (resident and not c.public):
            shown = [x.id for x in (self.public() if resident else self.items)]
            raise InvalidInput(f"unknown report category {category_id[:40]!r}; one of {', '.join(shown)}")
        return c


def load_categories(text: str, source: str = "report_categories.yaml") -> ReportCategories:
    """Parse a category file; problems raise :class:`CategoryError` naming ``file:line: field: why``."""
    import yaml

    try:
        doc = yaml.load(text, Loader=YamlLoader)  # noqa: S506 - the safe loader (C or Python)
    except yaml.YAMLError as exc:
        raise CategoryError(f"{source}: not YAML: {exc}") from None
    try:
        f = _File.model_validate(doc)
    except ValidationError as exc:
        where = Locator([(source, text)])
        raise CategoryError("\n".join(f"{where.at(0, tuple(e['loc']))}: {validation_message(e)}"
                                      for e in exc.errors())) from None
    seen: set[str] = set()
    for i, c in enumerate(f.categories):
        if c.id in seen:
            raise CategoryError(f"{where_of(source, text, i)}: id {c.id!r} is listed twice")
        seen.add(c.id)
    return ReportCategories(tuple(f.categories))


def where_of(source: str, text: str, index: int) -> str:
    return Locator([(source, text)]).at(0, ("categories", index, "id"))


def default_categories() -> ReportCategories:
    """The shipped categories (:data:`CATEGORIES_FILE`)."""
    return load_categories(CATEGORIES_FILE.read_text(encoding="utf-8"), str(CATEGORIES_FILE))


# -- the supervisor's check (核查) ------------------------------------------------------------------------


class Verification(StrEnum):
    NONE = "none"  # the category needs no check
    AWAITING_RESOLUTION = "awaiting_resolution"  # needs one, once the worker resolves it
    PENDING = "pending"  # resolved: waits for the supervisor (it cannot be rated or closed yet)
    PASSED = "passed"  # checked: closes as usual (the resident rates it)
    CLOSED = "closed"  # cancelled, or rated before a check was asked for


def verification(required: bool, t: Ticket, actions: Sequence[str]) -> Verification:
    """Where the check of ``t`` stands; ``actions``: its history's actions, oldest first."""
    if not required:
        return Verification.NONE
    if t.state is TicketState.CANCELLED:
        return Verification.CLOSED
    if t.state not in (TicketState.FEEDBACK, TicketState.EVALUATED):
        return Verification.AWAITING_RESOLUTION
    last = next((a for a in reversed(actions) if a in ("resolve", VERIFY_PASS, VERIFY_FAIL)), None)
    if last == VERIFY_PASS:
        return Verification.PASSED
    if last == "resolve":
        return Verification.PENDING if t.state is TicketState.FEEDBACK else Verification.CLOSED
    return Verification.CLOSED


def verify_problem(user: User, t: Ticket) -> str | None:
    """Why ``user`` may not check ``t`` (None: allowed): the grid's supervisor, operators and admins may."""
    if not visible_to(user, t):
        return f"ticket {t.id} belongs to grid {t.grid or '(none)'}, not to yours"
    if user.sees_everything() or user.role is Role.SUPERVISOR:
        return None
    return "only the grid supervisor (网格长) or an operator may check (核查) a resolved report"


def verify_pass(t: Ticket, status: Verification) -> Ticket:
    """核查通过: the resolution stands; the ticket closes as usual (the resident may now rate it)."""
    _require_pending(t, status)
    return t


def verify_fail(t: Ticket, status: Verification, reason: str) -> Ticket:
    """核查不通过: back to the worker (handling) with the reason; the resolve clock keeps running."""
    _require_pending(t, status)
    reason = reason.strip()
    if not reason:
        raise InvalidInput("a failed check needs a reason the worker can act on")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    return replace(t, state=TicketState.HANDLING, resolved_at=None, close_reason=None, close_note=None)


def rate_problem(status: Verification) -> str | None:
    """Why a ticket in this check state cannot be rated yet (None: it can)."""
    if status is Verification.PENDING:
        return "this report is being checked by the grid supervisor (核查中); it can be rated once checked"
    return None


def _require_pending(t: Ticket, status: Verification) -> None:
    if status is Verification.NONE:
        raise TicketError(f"ticket {t.id} needs no check (its category is not checked)")
    if status is not Verification.PENDING:
        raise TicketError(f"ticket {t.id} has no check pending ({status.value}): a report is checked once the "
                          "worker has resolved it")


# -- what a resident may see ------------------------------------------------------------------------------

PUBLIC_STEPS = frozenset({"create", "dispatch", "accept", "arrive", "progress", "resolve", VERIFY_PASS, VERIFY_FAIL,
                          "reopen", "rate", "cancel", "reassign", "escalate"})


def public_steps(actions: Iterable[str]) -> list[str]:
    """The history entries a resident's tracking page shows (in order; repeated progress reports once each)."""
    return [a for a in actions if a in PUBLIC_STEPS]


def mask_name(name: str | None) -> str:
    """A worker's name as a resident sees it: the family name and ``*`` (张三 → 张*, Li Wei → L*)."""
    name = (name or "").strip()
    if not name:
        return ""
    return name[0] + "*" * min(2, max(1, len(name) - 1))
