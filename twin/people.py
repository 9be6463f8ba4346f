"""People who use gridtwin and what they may see. Pure.

Roles are shared by the REST API and the dashboard: a worker sees the tickets of the grids they
work in; an operator sees everything and acts on alarms and tickets; an admin also configures.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    WORKER = "worker"  # 网格员
    SUPERVISOR = "supervisor"  # 网格长 / street office
    OPERATOR = "operator"  # 指挥中心 / 消控室值班员
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class User:
    username: str
    display_name: str
    role: Role
    grids: tuple[str, ...] = ()  # for workers and supervisors: the grids they serve
    worker_id: str | None = None  # the community file's worker id, for workers

    def sees_everything(self) -> bool:
        return self.role in (Role.OPERATOR, Role.ADMIN)

    def may_see_grid(self, grid: str | None) -> bool:
        return self.sees_everything() or (grid is not None and grid in self.grids)
