"""What a gateway needs to start while the database is down, saved from its last good start. Does file I/O.

The registry (devices and metric ids), the community documents and each community's rules-engine
snapshot. With it a gateway that (re)starts during a database outage validates, spools and raises
alarms as usual, and catches up when the database is back, as it does when the database fails
later. Written atomically (temp file + rename); a missing or unreadable cache means a cold start
needs the database.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.ingest.spool import write_durably
from gateway.storage import DeviceRef

log = logging.getLogger(__name__)


@dataclass
class StartCache:
    devices: list[DeviceRef]
    metrics: dict[str, int]
    communities: dict[str, dict[str, Any]]  # code -> community document
    rule_state: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> engine snapshot
    saved_at: str = ""

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        data = orjson.dumps({
            "devices": [[d.id, d.community, d.code, d.kind] for d in self.devices], "metrics": self.metrics,
            "communities": self.communities, "rule_state": self.rule_state, "saved_at": self.saved_at,
        })
        write_durably(tmp, data)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> StartCache | None:
        try:
            o = orjson.loads(path.read_bytes())
            return cls([DeviceRef(*d) for d in o["devices"]], dict(o["metrics"]), dict(o["communities"]),
                       dict(o.get("rule_state") or {}), str(o.get("saved_at", "")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("start-up cache %s unreadable (%s): ignored", path, exc)
            return None
