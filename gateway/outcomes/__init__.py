"""Outcome analytics from PostgreSQL (seed 4.2/6.3): :func:`outcomes` reads tickets, ratings, one-click reports, care
visits and patrol check-ins of a community and measures them with :mod:`twin.outcomes.compute`. Does I/O."""

from gateway.outcomes.store import outcomes

__all__ = ["outcomes"]
