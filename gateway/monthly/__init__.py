"""The monthly report a community manager prints (`gridtwin report month`): :mod:`gateway.monthly.data` gathers a
:class:`~gateway.monthly.data.MonthReport` from PostgreSQL, :mod:`gateway.monthly.pdf` draws it
(docs/monthly-report.md)."""
