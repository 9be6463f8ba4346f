"""MQTT accounts and the broker ACL: the one place that says who may publish and read what. Does file I/O.

Every ACL gridtwin ships or generates comes from :func:`acl_lines`: the ``deploy/mosquitto/acl`` of
the docker-compose deployment (:func:`shipped_acl`; ``python -m gateway.ops.credentials --shipped PATH``
rewrites it, a test checks it is current) and the files ``gridtwin devices credentials --out DIR``
writes for Mosquitto 2 (``password_file`` / ``acl_file``):

- ``passwd``: ``user:$7$iterations$salt$hash`` lines (PBKDF2-SHA512, Mosquitto's own format) for the
  service accounts, every device and every worker given;
- ``acl``: the complete ACL for those accounts (point ``acl_file`` at it);
- ``devices.passwd`` / ``devices.acl``: the same for the device and worker accounts only, to put next
  to the shipped files of the compose deployment (its broker appends them at start);
- ``secrets.csv`` (mode 0600): the plaintext passwords, for provisioning. Re-running keeps existing
  passwords, adds new accounts and drops retired ones.

Who may do what (``{root}/v1`` omitted; anything not listed is denied, and Mosquitto drops a denied
publish silently and never delivers a denied read):

============  ==========================================================  ======================================
account       publishes                                                   reads
============  ==========================================================  ======================================
gateway       ``+/+/error``, ``+/+/command`` (to devices),                ``+/+/telemetry|event|status|batch``,
              ``alarms/+`` (alarm events), ``workers/+/tickets``          ``alarms/+/commands``, ``workers/+/tickets``
                                                                          (the notifier: webhooks, Web Push)
dashboard     ``alarms/+/commands`` (operator actions),                   ``alarms/+`` (alarm events),
              ``workers/+/tickets`` (the REST API delivers tickets too)   ``workers/+/tickets`` (the live stream)
simulator     ``+/+/telemetry|event|status|batch``                        ``+/+/error``
device        its own ``{c}/{d}/telemetry|event|status|batch``            its own ``{c}/{d}/error|command``
worker        nothing                                                     its own ``workers/{w}/tickets``
============  ==========================================================  ======================================

Device and worker accounts get one explicit ``user`` block each, never a ``pattern`` rule: a pattern
applies to every account, and ``%u`` cannot bind a device to its community. User names follow
:mod:`twin.accounts` (``{community}/{device}``, ``worker@{worker}``), which cannot collide.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from twin import contract
from twin.accounts import SERVICE_ACCOUNTS, device_username, worker_username

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$
HEALTHCHECK_ACCOUNT = "healthcheck"  # compose only: the broker container's health check
SHIPPED_ROOT = "gridtwin"  # the topic root the shipped deploy/mosquitto/acl is written for

Rule = tuple[str, str]  # (read | write, topic filter)


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def username(community: str, device: str) -> str:
    """A device's MQTT user name (``{community}/{device}``, see :mod:`twin.accounts`)."""
    return device_username(community, device)


# -- the rules ----------------------------------------------------------------------------------------


def service_rules(root: str) -> dict[str, list[Rule]]:
    """What each service account may do, for topic root ``root``."""
    v = f"{root}/v{contract.SCHEMA_VERSION}"
    inbound = [f"{v}/+/+/{ch.value}" for ch in sorted(contract.DEVICE_TO_SERVER)]
    alarm_events = contract.alarms_topic(root, "+")
    alarm_commands = contract.alarm_commands_topic(root, "+")
    tickets = f"{v}/workers/+/tickets"
    # Each gateway's retained online/offline status (birth message, last will): see gateway/mqtt/common.py.
    gateway_status = f"{v}/gateways/+"
    return {
        "gateway": [
            *(("read", t) for t in inbound),
            ("read", alarm_commands),
            ("read", tickets),  # the notifier posts them to webhooks and phones (gateway/notify/)
            ("write", f"{v}/+/+/{contract.Channel.ERROR.value}"),
            ("write", f"{v}/+/+/{contract.Channel.COMMAND.value}"),
            ("write", alarm_events),
            ("write", tickets),
            ("write", gateway_status),
        ],
        "dashboard": [
            ("read", alarm_events),
            ("read", tickets),  # relayed to browsers by GET /api/v1/stream (gateway/web/live.py)
            ("read", gateway_status),
            ("write", alarm_commands),
            ("write", tickets),
        ],
        "simulator": [
            *(("write", t) for t in inbound),
            ("read", f"{v}/+/+/{contract.Channel.ERROR.value}"),
            # simulated gas valves and exhaust fans answer the interlock commands the gateway sends
            ("read", f"{v}/+/+/{contract.Channel.COMMAND.value}"),
        ],
    }


def device_rules(root: str, community: str, device: str) -> list[Rule]:
    out: list[Rule] = [("write", contract.topic(root, community, device, ch))
                       for ch in sorted(contract.DEVICE_TO_SERVER)]
    out += [("read", contract.topic(root, community, device, ch))
            for ch in (contract.Channel.ERROR, contract.Channel.COMMAND)]
    return out


def worker_rules(root: str, worker: str) -> list[Rule]:
    return [("read", contract.worker_topic(root, worker))]


def acl_lines(root: str, devices: Iterable[tuple[str, str]] = (), workers: Iterable[str] = (), *,
              services: bool = True, healthcheck: bool = False) -> list[str]:
    """Mosquitto ACL lines: the service accounts (unless ``services=False``), the compose health check
    account if asked, then one block per device (``(community, device)`` pairs) and per worker."""
    blocks: list[tuple[str, list[Rule]]] = []
    if services:
        blocks += list(service_rules(root).items())
    if healthcheck:
        blocks.append((HEALTHCHECK_ACCOUNT, [("read", "$SYS/broker/uptime")]))
    blocks += [(device_username(c, d), device_rules(root, c, d)) for c, d in sorted(set(devices))]
    blocks += [(worker_username(w), worker_rules(root, w)) for w in sorted(set(workers))]
    lines: list[str] = []
    for user, rules in blocks:
        lines.append(f"user {user}")
        lines += [f"topic {access} {topic}" for access, topic in rules]
        lines.append("")
    return lines


def shipped_acl(root: str = SHIPPED_ROOT) -> str:
    """The text of ``deploy/mosquitto/acl``: service accounts and the health check, no devices."""
    head = [
        "# Mosquitto ACL of the docker-compose deployment (acl_file). GENERATED by",
        "# `python -m gateway.ops.credentials --shipped deploy/mosquitto/acl` from gateway/ops/credentials.py, the one",
        "# place that defines every gridtwin ACL; do not edit by hand (a test checks it is current).",
        f"# Topic root `{root}` (GRIDTWIN_MQTT_TOPIC_ROOT): generate again with --root if you change it.",
        "# Anything not granted here is denied. Device and worker accounts are not in this file: the broker",
        "# appends devices.acl (written by `gridtwin devices credentials`) at start, see deploy/README.md.",
        "",
    ]
    return "\n".join(head + acl_lines(root, healthcheck=True))


def people_with_tickets(community: object) -> list[str]:
    """Ids of everyone who may receive tickets on a phone: each grid's workers, supervisor and backup.
    ``community``: a :class:`twin.community.Community`."""
    ids: set[str] = set()
    for grid in getattr(community, "grids", ()):
        ids.update(w.id for w in grid.workers)
        ids.update(p for p in (grid.supervisor, grid.backup) if p)
    return sorted(i for i in ids if contract.valid_id(i))


# -- files --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CredentialsReport:
    devices: int
    added: int
    removed: int
    files: tuple[Path, ...]  # passwd, acl, secrets.csv
    workers: int = 0
    compose_files: tuple[Path, ...] = ()  # devices.passwd, devices.acl (for deploy/mosquitto/)


def generate(
    devices: Iterable[tuple[str, str]],
    out_dir: Path,
    *,
    root: str = "gridtwin",
    service_passwords: dict[str, str] | None = None,
    workers: Iterable[str] = (),
) -> CredentialsReport:
    """Write passwd, acl, devices.passwd, devices.acl and secrets.csv for ``devices`` = (community id,
    device id) pairs and ``workers`` = worker ids (phones that receive tickets)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets_file = out_dir / "secrets.csv"
    old: dict[str, str] = {}
    if secrets_file.exists():
        with secrets_file.open(newline="", encoding="utf-8") as f:
            old = {row["username"]: row["password"] for row in csv.DictReader(f)}
    pairs = sorted(set(devices))
    people = sorted(set(workers))
    accounts_: dict[str, str] = {}
    for name in SERVICE_ACCOUNTS:
        given = (service_passwords or {}).get(name)
        accounts_[name] = given or old.get(name) or secrets.token_urlsafe(18)
    own: list[str] = []
    added = 0
    renamed: set[str] = set()  # old names whose password moved to the new name
    for user, before in [(device_username(c, d), _legacy_name(c, d)) for c, d in pairs] + \
                        [(worker_username(w), None) for w in people]:
        kept = old.get(user)
        if kept is None and before is not None and before in old:
            kept = old[before]
            renamed.add(before)
        accounts_[user] = kept or secrets.token_urlsafe(18)
        added += kept is None
        own.append(user)
    removed = sum(1 for u in old if u not in accounts_ and u not in renamed)

    header = ["# generated by `gridtwin devices credentials` (gateway/ops/credentials.py); do not edit by hand", ""]
    files = {
        "passwd": "".join(f"{u}:{mosquitto_hash(p)}\n" for u, p in accounts_.items()),
        "acl": "\n".join(header + acl_lines(root, pairs, people)) + "\n",
        "devices.passwd": "".join(f"{u}:{mosquitto_hash(accounts_[u])}\n" for u in own),
        "devices.acl": "\n".join(header + acl_lines(root, pairs, people, services=False)) + "\n",
        "secrets.csv": "\n".join(["username,password"] + [f"{u},{p}" for u, p in accounts_.items()]) + "\n",
    }
    for name, text in files.items():
        _write_private(out_dir / name, text)
    return CredentialsReport(len(pairs), added, removed, tuple(out_dir / n for n in ("passwd", "acl", "secrets.csv")),
                             len(people), tuple(out_dir / n for n in ("devices.passwd", "devices.acl")))


def _legacy_name(community: str, device: str) -> str | None:
    """The ``{community}.{device}`` name an earlier version gave this device, when that name could belong
    to no other pair (both ids without a dot), so a re-run keeps its password. Names such as ``a.b.c``
    were shared by ``a.b``+``c`` and ``a``+``b.c``: those devices get new passwords."""
    return f"{community}.{device}" if "." not in community and "." not in device else None


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    tmp.replace(path)


def read_secrets(out_dir: Path) -> dict[str, str]:
    with (out_dir / "secrets.csv").open(newline="", encoding="utf-8") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.ops.credentials",
                                description="write the shipped compose ACL (deploy/mosquitto/acl)")
    p.add_argument("--shipped", type=Path, required=True, metavar="PATH", help="where to write it")
    p.add_argument("--root", default=SHIPPED_ROOT, help="topic root (default %(default)s)")
    args = p.parse_args(argv)
    args.shipped.write_text(shipped_acl(args.root), encoding="utf-8")
    print(f"wrote {args.shipped}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
