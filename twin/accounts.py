"""MQTT account names (the broker's user names) of gridtwin's accounts. Pure.

One rule, used by the credentials generator (:mod:`gateway.ops.credentials`) and by the simulators that
log in as devices, so the two can never disagree:

- service accounts are plain words: ``gateway``, ``dashboard``, ``simulator``;
- a device logs in as ``{community_id}/{device_id}`` (the two topic levels that name it);
- a grid worker's (or supervisor's) phone logs in as ``worker@{worker_id}``.

Ids are 1-64 characters of ``[A-Za-z0-9_.-]`` (:func:`twin.contract.valid_id`), so neither ``/`` nor
``@`` can occur in one: a device name has exactly one ``/`` and no ``@``, a worker name exactly one ``@``
and no ``/``, a service name neither. Every name therefore maps back to exactly one account
(:func:`parse`); joining ids with ``.`` (the old rule) made ``a.b``+``c`` and ``a``+``b.c`` the same user.
Both characters are allowed in MQTT user names and in Mosquitto's password and ACL files; in an
``mqtt://`` URL write ``/`` as ``%2F`` and ``@`` as ``%40``.
"""

from __future__ import annotations

from typing import Literal

from twin import contract

SERVICE_ACCOUNTS = ("gateway", "dashboard", "simulator")
DEVICE_SEPARATOR = "/"
WORKER_PREFIX = "worker@"

AccountKind = Literal["service", "device", "worker"]


class AccountError(ValueError):
    """An id outside the grammar, or a user name that is no gridtwin account."""


def _check(what: str, value: str) -> str:
    if not contract.valid_id(value):
        raise AccountError(f"{what} {value!r} must be 1-64 of [A-Za-z0-9_.-], not starting with punctuation")
    return value


def device_username(community_id: str, device_id: str) -> str:
    """``{community_id}/{device_id}``."""
    return f"{_check('community id', community_id)}{DEVICE_SEPARATOR}{_check('device id', device_id)}"


def worker_username(worker_id: str) -> str:
    """``worker@{worker_id}``: the account of the phone that receives the worker's tickets."""
    return f"{WORKER_PREFIX}{_check('worker id', worker_id)}"


def parse(username: str) -> tuple[AccountKind, tuple[str, ...]]:
    """(kind, ids) of a user name: ``("device", (community, device))``, ``("worker", (worker,))`` or
    ``("service", (name,))``; :class:`AccountError` for anything else."""
    if username in SERVICE_ACCOUNTS:
        return "service", (username,)
    if username.startswith(WORKER_PREFIX):
        worker = username[len(WORKER_PREFIX):]
        if contract.valid_id(worker):
            return "worker", (worker,)
    community, sep, device = username.partition(DEVICE_SEPARATOR)
    if sep and contract.valid_id(community) and contract.valid_id(device):
        return "device", (community, device)
    raise AccountError(f"{username!r} is not a gridtwin MQTT account")
