"""Whom a grid worker calls (issue 15): the ``contacts:`` section of the community file, and the call buttons of a
ticket (the SOP's ``calls:`` roles, resolved against it). Pure: validates and looks up.

In the community file (all optional; 119, 120 and 110 are China's national numbers and need no entry)::

    contacts:
      fire_control_room: {phone: '0571-8800 1119', name: 3号楼消防控制室, name_en: Fire control room, B3}
      elevator_rescue: {phone: '96333'}          # the city's elevator emergency platform
      elevator_maintenance: {phone: '400-800 1234', name: 安达电梯维保}
      gas_company: {phone: '0571-96777', name: 杭州燃气抢修}
      property: {phone: '0571-8800 2000', name: 阳光物业服务中心}
      fire_brigade: {phone: '119'}               # ambulance (120) and police (110) likewise
      residents:                 # the resident on record for a unit, where the care register has none
      - {unit: B3-1101, phone: '13900131101', name: 王秀英}

A phone is digits with optional spaces or hyphens and a leading ``+`` (3 to 20 digits); the ``tel:`` link dials
the digits only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from twin.contract import valid_id

CallRole = Literal["fire_control_room", "fire_brigade", "elevator_rescue", "elevator_maintenance", "gas_company",
                   "ambulance", "police", "property", "resident"]
CALL_ROLES: tuple[str, ...] = get_args(CallRole)
RESIDENT = "resident"
_PHONE = re.compile(r"^\+?[0-9](?:[0-9 \-]*[0-9])?$")


def check_phone(v: str) -> str:
    """A phone number as written in the file (digits, spaces, hyphens, a leading +); ValueError if it is not one."""
    v = v.strip()
    digits = sum(ch.isdigit() for ch in v)
    if not _PHONE.match(v) or not 3 <= digits <= 20 or "  " in v or "--" in v:
        raise ValueError(f"{v[:40]!r} is not a phone number: digits with optional spaces or hyphens and a "
                         "leading +, 3 to 20 digits (e.g. '119', '0571-8800 1119', '+86 138 0000 0101')")
    return v


def tel_href(phone: str) -> str:
    """The ``tel:`` link of a checked phone number: its digits (and a leading +) only."""
    return "tel:" + ("+" if phone.startswith("+") else "") + "".join(ch for ch in phone if ch.isdigit())


Phone = Annotated[str, AfterValidator(check_phone)]


def _check_unit(v: str) -> str:
    if not valid_id(v):
        raise ValueError("a unit is 1-64 of letters, digits, '_', '-', '.' (e.g. 'B1-1201')")
    return v


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Contact(_Model):
    phone: Phone
    name: str | None = Field(default=None, min_length=1, max_length=80, description="who answers, in Chinese")
    name_en: str | None = Field(default=None, min_length=1, max_length=80, description="the same in English")


class Resident(_Model):
    unit: Annotated[str, AfterValidator(_check_unit)]
    phone: Phone
    name: str | None = Field(default=None, min_length=1, max_length=80)


class Contacts(_Model):
    """The community's contacts by role; the national emergency numbers are there unless the file says otherwise."""

    fire_control_room: Contact | None = None
    fire_brigade: Contact = Contact(phone="119")
    elevator_rescue: Contact | None = None
    elevator_maintenance: Contact | None = None
    gas_company: Contact | None = None
    ambulance: Contact = Contact(phone="120")
    police: Contact = Contact(phone="110")
    property: Contact | None = None
    residents: list[Resident] = Field(default=[], max_length=100_000)

    @model_validator(mode="after")
    def _one_per_unit(self) -> Contacts:
        seen: set[str] = set()
        for r in self.residents:
            if r.unit in seen:
                raise ValueError(f"residents: unit {r.unit!r} is listed twice")
            seen.add(r.unit)
        return self

    def resident(self, unit: str | None) -> Resident | None:
        return next((r for r in self.residents if r.unit == unit), None) if unit else None


@dataclass(frozen=True, slots=True)
class Call:
    """One call button of a ticket: the role, the number and its ``tel:`` link, and who answers if known."""

    role: str
    phone: str
    href: str
    name: str | None = None
    name_en: str | None = None
    unit: str | None = None  # the resident's unit


def calls_for(contacts: Contacts, roles: tuple[str, ...] | list[str], unit: str | None = None, *,
              resident: Resident | None = None) -> list[Call]:
    """The call buttons for ``roles`` (an SOP's ``calls:``, in its order) that the community has a number for;
    ``resident``: the resident on record for ``unit`` (``resident`` if given: the care register's, else the one
    listed under ``contacts.residents``), if any."""
    out: list[Call] = []
    for role in dict.fromkeys(roles):
        if role == RESIDENT:
            r = resident if resident is not None else contacts.resident(unit)
            if r is not None:
                out.append(Call(role, r.phone, tel_href(r.phone), r.name, None, r.unit))
            continue
        c = getattr(contacts, role, None) if role in CALL_ROLES else None
        if isinstance(c, Contact):
            out.append(Call(role, c.phone, tel_href(c.phone), c.name, c.name_en))
    return out
