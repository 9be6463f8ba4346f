"""Where people reach the knowledge assistant (:mod:`twin.assistant`), and the handoff to a person. Does I/O.

- :mod:`~gateway.assistant.core`: the process's assistant, the question's checks, the handoff: a resident's question
  (and the assistant's best guess) becomes a one-click report of category ``question`` (居民咨询/求助), so it gets
  the grid worker, the SLA and the rating like any report;
- :mod:`~gateway.assistant.api`: ``POST /api/v1/assistant/ask`` and ``/assistant/handoff`` for signed-in staff;
- :mod:`~gateway.assistant.box` and :mod:`~gateway.assistant.public`: the residents' ask box on the public building
  page (``/r/...``), the answer page and the handoff form (no account, rate-limited, form-protected);
- :mod:`~gateway.assistant.dashboard`: what the dashboard's assistant page and the worker's knowledge box read.

Nothing here imports :mod:`gateway.assistant.public` eagerly: the report page imports the box from this package.
"""
