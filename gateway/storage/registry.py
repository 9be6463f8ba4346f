"""The registry: communities, buildings, floors, devices and metric names (what ``community load`` writes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import orjson
from psycopg.types.json import Jsonb

from gateway.storage.db import Database, StorageError
from twin import catalogue
from twin.community import Building, Community


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What `community load` changed, per section: ids added, changed and removed."""

    community: str
    added: dict[str, list[str]]
    changed: dict[str, list[str]]
    removed: dict[str, list[str]]

    def lines(self) -> list[str]:
        out = [f"community {self.community}:"]
        for section in ("buildings", "devices"):
            a, c, r = (self.added.get(section, []), self.changed.get(section, []), self.removed.get(section, []))
            out.append(f"  {section}: {len(a)} added, {len(c)} changed, {len(r)} removed")
            for label, ids in (("+", a), ("~", c), ("-", r)):
                if ids:
                    out.append(f"    {label} {', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}")
        return out


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: int
    community: str
    code: str
    kind: str


@dataclass(frozen=True, slots=True)
class _StoredBuilding:
    code: str
    name: str
    grid: str | None
    floors_above: int
    floors_below: int
    floor_height: float
    use: str
    footprint: list[list[float]]
    retired_at: datetime | None

    def same_as(self, b: Building) -> bool:
        """True when the file's building matches this row (a retired one coming back has changed)."""
        return self.retired_at is None and (
            self.name, self.grid, self.floors_above, self.floors_below, float(self.floor_height), self.use,
            self.footprint) == (b.name, b.grid, b.floors_above, b.floors_below, float(b.floor_height), b.use,
                                [list(p) for p in b.footprint])


@dataclass(frozen=True, slots=True)
class _StoredDevice:
    code: str
    kind: str
    building: str | None
    floor: int | None
    attrs: dict[str, Any]
    retired_at: datetime | None


class Registry(Database):
    def load_community(self, community: Community) -> LoadReport:
        """Insert or update the community's registry rows; retire what the file no longer lists."""
        doc = orjson.loads(community.model_dump_json())
        added: dict[str, list[str]] = {"buildings": [], "devices": []}
        changed: dict[str, list[str]] = {"buildings": [], "devices": []}
        removed: dict[str, list[str]] = {"buildings": [], "devices": []}
        with self._errors(f"loading community {community.id}"), self.conn.transaction():
            cid = self._scalar(
                "INSERT INTO communities (code, name, origin_lat, origin_lon, document) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (code) DO UPDATE SET name = excluded.name, origin_lat = excluded.origin_lat, "
                "origin_lon = excluded.origin_lon, document = excluded.document, loaded_at = now() RETURNING id",
                (community.id, community.name, community.origin[0], community.origin[1], Jsonb(doc)),
            )
            old_b = {r.code: r for r in self._typed(
                _StoredBuilding,
                "SELECT code, name, grid, floors_above, floors_below, floor_height, use, footprint, retired_at "
                "FROM buildings WHERE community_id = %s", (cid,))}
            bids: dict[str, int] = {}
            for b in community.buildings:
                prev_b = old_b.get(b.id)
                if prev_b is None:
                    added["buildings"].append(b.id)
                elif not prev_b.same_as(b):
                    changed["buildings"].append(b.id)
                bid = self._scalar(
                    "INSERT INTO buildings (community_id, code, name, grid, floors_above, floors_below, floor_height,"
                    " use, footprint) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (community_id, code) DO UPDATE"
                    " SET name=excluded.name, grid=excluded.grid, floors_above=excluded.floors_above,"
                    " floors_below=excluded.floors_below, floor_height=excluded.floor_height, use=excluded.use,"
                    " footprint=excluded.footprint, retired_at=NULL RETURNING id",
                    (cid, b.id, b.name, b.grid, b.floors_above, b.floors_below, b.floor_height, b.use,
                     Jsonb([list(p) for p in b.footprint])),
                )
                bids[b.id] = bid
                self.conn.execute("DELETE FROM floors WHERE building_id = %s", (bid,))
                with self.conn.cursor() as cur:
                    cur.executemany("INSERT INTO floors (building_id, number) VALUES (%s, %s)",
                                    [(bid, f) for f in b.floors])
            removed["buildings"] = [code for code, r in old_b.items() if code not in bids and r.retired_at is None]
            self.conn.execute(
                "UPDATE buildings SET retired_at = now() WHERE community_id = %s AND NOT (code = ANY(%s)) "
                "AND retired_at IS NULL", (cid, list(bids)))

            old_d = {r.code: r for r in self._typed(
                _StoredDevice,
                "SELECT d.code, d.kind, b.code AS building, d.floor, d.attrs, d.retired_at FROM devices d "
                "LEFT JOIN buildings b ON b.id = d.building_id WHERE d.community_id = %s", (cid,))}
            codes = []
            for d in community.devices:
                attrs = {k: v for k, v in orjson.loads(d.model_dump_json()).items()
                         if k not in ("id", "kind", "building", "floor") and v is not None}
                prev_d = old_d.get(d.id)
                if prev_d is None:
                    added["devices"].append(d.id)
                elif prev_d != _StoredDevice(d.id, d.kind, d.building, d.floor, attrs, None):
                    changed["devices"].append(d.id)
                self.conn.execute(
                    "INSERT INTO devices (community_id, code, kind, building_id, floor, attrs) VALUES "
                    "(%s,%s,%s,%s,%s,%s) ON CONFLICT (community_id, code) DO UPDATE SET kind=excluded.kind, "
                    "building_id=excluded.building_id, floor=excluded.floor, attrs=excluded.attrs, retired_at=NULL",
                    (cid, d.id, d.kind, bids.get(d.building) if d.building else None, d.floor,
                     Jsonb(attrs)),
                )
                codes.append(d.id)
            removed["devices"] = [code for code, r in old_d.items() if code not in codes and r.retired_at is None]
            self.conn.execute(
                "UPDATE devices SET retired_at = now() WHERE community_id = %s AND NOT (code = ANY(%s)) "
                "AND retired_at IS NULL", (cid, codes))
        return LoadReport(community.id, added, changed, removed)

    def devices(self) -> list[DeviceRef]:
        """Every active device of every community."""
        with self._errors("reading devices"):
            return self._typed(
                DeviceRef,
                "SELECT d.id, c.code AS community, d.code, d.kind FROM devices d "
                "JOIN communities c ON c.id = d.community_id WHERE d.retired_at IS NULL")

    def community_codes(self) -> list[str]:
        with self._errors("listing communities"):
            return self._scalars("SELECT code FROM communities ORDER BY code")

    def community_document(self, code: str | None = None) -> dict[str, Any] | None:
        with self._errors("reading community"):
            document: dict[str, Any] | None = (
                self._scalar("SELECT document FROM communities ORDER BY loaded_at DESC LIMIT 1") if code is None
                else self._scalar("SELECT document FROM communities WHERE code = %s", (code,)))
        return document

    def metric_ids(self) -> dict[str, int]:
        with self._errors("reading metrics"):
            return {name: mid for mid, name in self.conn.execute("SELECT id, name FROM metrics").fetchall()}

    def _sync_metrics(self) -> None:
        names = sorted({name for name, _unit in catalogue.all_metric_names()})
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO metrics (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                            [(n,) for n in names])

    def _device_id(self, device_code: str, community: str | None) -> int | None:
        q: LiteralString = "SELECT d.id FROM devices d JOIN communities c ON c.id = d.community_id WHERE d.code = %s"
        args: tuple[Any, ...] = (device_code,)
        if community:
            q += " AND c.code = %s"
            args = (device_code, community)
        ids = self._scalars(q, args)
        if len(ids) > 1:
            raise StorageError(f"device {device_code!r} exists in several communities; name the community")
        return ids[0] if ids else None
