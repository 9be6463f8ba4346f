"""Errors the simulators raise for a user to read. Pure.

The CLI turns :class:`SimulationError` into exit code 2 (bad input) and :class:`BrokerUnreachable`
into exit code 3 (a service is unreachable), each as one line.
"""

from __future__ import annotations


class SimulationError(ValueError):
    """Bad input: an unknown scenario, device or kind, a malformed scenario file, an unresolvable role.

    ``problems`` keeps every problem found (each as ``file:line: path: message`` where known);
    ``str()`` is the first one, plus how many more there are, so it fits on one line.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        more = len(self.problems) - 1
        super().__init__(self.problems[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""))


class BrokerUnreachable(ConnectionError):
    """The MQTT broker cannot be reached or refused the connection."""
