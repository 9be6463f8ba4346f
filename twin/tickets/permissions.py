"""Who may see a ticket and who may act on it (the state is checked separately, by the lifecycle)."""

from __future__ import annotations

from twin.people import Role, User
from twin.tickets.model import Ticket


def visible_to(user: User, t: Ticket) -> bool:
    """Operators and admins see every ticket; workers and supervisors those of their grids, and their own."""
    return user.may_see_grid(t.grid) or (user.worker_id is not None and user.worker_id in (t.assignee,
                                                                                           t.escalated_to))


_OPERATOR_ACTIONS = frozenset({"cancel", "reassign", "reopen", "escalate", "create"})


def permission_problem(user: User, t: Ticket | None, action: str) -> str | None:
    """Why ``user`` may not do ``action`` on ``t`` (None: allowed). The state is checked separately."""
    if t is not None and not visible_to(user, t):
        return f"ticket {t.id} belongs to grid {t.grid or '(none)'}, not to yours"
    if user.sees_everything():
        return None
    if action in _OPERATOR_ACTIONS:
        if user.role is Role.SUPERVISOR and action != "create":
            return None
        return f"only an operator{'' if action == 'create' else ' or a grid supervisor'} may {action} tickets"
    if action in ("accept", "progress", "resolve", "arrive", "release"):
        if user.role is Role.SUPERVISOR:
            return None
        if t is not None and user.worker_id is not None and user.worker_id == t.assignee:
            return None
        if t is None:
            return f"only the assigned worker may {action} a ticket"
        return f"ticket {t.id} is assigned to {t.assignee or 'nobody'}, not to you"
    return None
